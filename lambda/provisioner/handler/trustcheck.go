package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck/wire"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// TypeTrustCheck is the custom resource that proves, during the
// deployment, that a workload function can act as its Chainguard identity.
// The provisioner invokes the function (Lambda Invoke, RequestResponse)
// with a check request (package chainguard/trustcheck/wire), which the
// function answers through chainguard/trustcheck.Wrap: a fresh token
// exchange as the identity, with the function's own credentials and trust
// mode, and, with ListRepos, one listing of the group's repos.
//
// Properties (besides ProvisionerIdentity, Issuer and ApiUrl, which are
// only used to read the identity's trust for a failure's reason):
//
//	FunctionName  the function's ARN (required)
//	Identity      UIDP of the identity the function must act as (required)
//	Group         UIDP of the identity's group (required)
//	ListRepos     "true": the identity's roles allow listing repos, and the
//	              function lists the group's once; "false" (default): the
//	              exchange alone
//	Fingerprint   any string that changes exactly when what the check
//	              proves may change (the trust, the roles, the function's
//	              configuration): the constructs derive it, the handler
//	              only compares it
//
// Create and Update invoke the function: a check result that is ok
// answers SUCCESS (Data: Principal, what the function presented). An
// answer that is not a check result, or a function error, fails the event
// within seconds, saying how to wrap the function's handler. A refused or
// unreachable result (rights and new identities take seconds to apply) is
// retried on the provisioner's propagation schedule (2, 4, 8, 16, 16 ...
// s) within TrustCheckBudget, bounded by the event's deadline; the last
// one fails the event with a reason that names what the function
// presented and what the identity trusts (read with the provisioner's own
// token: it is owner). An Update whose five properties above did not
// change answers SUCCESS without invoking anything. Delete answers
// SUCCESS without any call. The physical ID is "trust-check:<Identity>",
// the same on every Update of the same identity.
const TypeTrustCheck = "Custom::ChainguardTrustCheck"

// Property names of TypeTrustCheck (PropGroup is shared with identities).
const (
	PropFunctionName = "FunctionName"
	PropIdentity     = "Identity"
	PropListRepos    = "ListRepos"
	PropFingerprint  = "Fingerprint"
)

// DefaultTrustCheckBudget is how long a trust check retries a refused or
// unreachable result, from its first attempt (within the event's deadline).
const DefaultTrustCheckBudget = 60 * time.Second

// EnvTrustCheckBudget names the variable that sets Config.TrustCheckBudget
// (a Go duration; unset: DefaultTrustCheckBudget), e.g. for a local run
// that expects a check to fail and need not wait a minute for it.
const EnvTrustCheckBudget = "PROVISIONER_TRUST_CHECK_BUDGET"

// TrustCheckBudgetFromEnv reads EnvTrustCheckBudget through lookup
// (os.LookupEnv in the function); unset means DefaultTrustCheckBudget.
func TrustCheckBudgetFromEnv(lookup func(string) (string, bool)) (time.Duration, error) {
	return durationFromEnv(lookup, EnvTrustCheckBudget, DefaultTrustCheckBudget, `"60s"`)
}

// trustCheckPhysicalPrefix starts the physical ID of TypeTrustCheck.
const trustCheckPhysicalPrefix = "trust-check:"

// WrapHint is the line that makes a Go Lambda function answer the trust
// check, quoted by the reasons of a check the function did not answer.
const WrapHint = "lambda.Start(trustcheck.Wrap(lambda.NewHandler(yourHandler), trustcheck.FromEnv(awsCfg))) " +
	"(package github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck; awsCfg from config.LoadDefaultConfig)"

// Timing of the check's invocations.
const (
	// maxInvokeTime bounds one invocation; the function is asked to answer
	// a second before (wire.Request.TimeoutMS).
	maxInvokeTime = 25 * time.Second
	// invokeSlack is what the function is asked to leave of an
	// invocation's time for its answer to travel.
	invokeSlack = time.Second
	// minAttemptTime is the least time worth starting an attempt with.
	minAttemptTime = 2 * time.Second
	// describeReserve is kept at the end of the work's time to read the
	// identity's trust for a failure's reason.
	describeReserve = 5 * time.Second
	// describeSlack ends the reading of the trust before the work's
	// deadline.
	describeSlack = 100 * time.Millisecond
)

// LambdaAPI is the part of the AWS SDK's Lambda client (*lambda.Client of
// aws-sdk-go-v2/service/lambda) TypeTrustCheck calls. The provisioner's
// role needs no identity-based permission for it: each checked function
// carries a resource-based permission (AWS::Lambda::Permission) for the
// provisioner role's ARN.
type LambdaAPI interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// trustCheckProperties are a Custom::ChainguardTrustCheck's own properties.
type trustCheckProperties struct {
	FunctionName string `cfn:"FunctionName"`
	Identity     string `cfn:"Identity"`
	Group        string `cfn:"Group"`
	ListRepos    string `cfn:"ListRepos"`
	Fingerprint  string `cfn:"Fingerprint"`
}

// functionARNRE matches an unqualified or qualified Lambda function ARN.
var functionARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9_-]{1,64}(:[a-zA-Z0-9$_-]{1,128})?$`)

// Validate reports the first invalid property of p.
func (p trustCheckProperties) Validate() error {
	if err := required(PropFunctionName, p.FunctionName, "arn:aws:lambda:us-east-1:111122223333:function:my-function"); err != nil {
		return err
	}
	if !functionARNRE.MatchString(p.FunctionName) {
		return fmt.Errorf("property %s %q is not a Lambda function ARN: pass the function's ARN, e.g. arn:aws:lambda:us-east-1:111122223333:function:my-function", PropFunctionName, p.FunctionName)
	}
	for _, f := range []struct{ name, v, example string }{
		{PropIdentity, p.Identity, "the UIDP of the identity the function acts as"},
		{PropGroup, p.Group, "the UIDP of the identity's group"},
	} {
		if err := required(f.name, f.v, f.example); err != nil {
			return err
		}
		if err := validate.UIDP(f.name, f.v); err != nil {
			return fmt.Errorf("property %w", err)
		}
	}
	if p.ListRepos != "" && p.ListRepos != "true" && p.ListRepos != "false" {
		return fmt.Errorf("property %s is %q: want \"true\" or \"false\"", PropListRepos, p.ListRepos)
	}
	return nil
}

// trustCheck serves TypeTrustCheck.
func (h *Handler) trustCheck(ctx context.Context, ev cfn.Event, st *steps) (string, map[string]any, error) {
	if ev.RequestType == cfn.RequestDelete {
		st.log.Info("trust check deleted: nothing to do", "physical_id", ev.PhysicalResourceID)
		return ev.PhysicalResourceID, nil, nil
	}
	st.begin("read properties")
	props := properties(ev.ResourceProperties)
	var p trustCheckProperties
	if err := props.decodeAll(TypeTrustCheck, &p); err != nil {
		return "", nil, err
	}
	if err := p.Validate(); err != nil {
		return "", nil, err
	}
	tgt, err := parseTarget(props)
	if err != nil {
		return "", nil, err
	}
	id := trustCheckPhysicalPrefix + p.Identity
	if ev.RequestType == cfn.RequestUpdate {
		var old trustCheckProperties
		if properties(ev.OldResourceProperties).decode(&old) == nil && old == p {
			st.log.Info("trust check unchanged: not run again", "function", p.FunctionName, "identity", p.Identity)
			return id, nil, nil
		}
	}
	if h.cfg.Lambda == nil {
		return "", nil, errors.New("the provisioner has no Lambda client: it runs without an AWS configuration")
	}
	res, err := h.runTrustCheck(ctx, p, tgt, st)
	if err != nil {
		return id, nil, err
	}
	return id, map[string]any{"Principal": res.Principal.String()}, nil
}

// checkOutcome is what one invocation came to.
type checkOutcome int

const (
	outcomeOK    checkOutcome = iota
	outcomeRetry              // refused or unreachable: rights may still be applying
	outcomeFinal              // retrying cannot help
)

// runTrustCheck invokes the function until its check passes, fails for
// good, or the budget is spent.
func (h *Handler) runTrustCheck(ctx context.Context, p trustCheckProperties, tgt Target, st *steps) (wire.Result, error) {
	budget := h.cfg.TrustCheckBudget
	if budget <= 0 {
		budget = DefaultTrustCheckBudget
	}
	start := time.Now()
	end := start.Add(budget)
	if d, ok := ctx.Deadline(); ok {
		// Keep time to read the identity's trust for the reason.
		reserve := min(describeReserve, time.Until(d)/4)
		if e := d.Add(-reserve); e.Before(end) {
			end = e
		}
	}
	req := wire.Request{Identity: p.Identity, Group: p.Group, ListRepos: p.ListRepos == "true"}
	waits := provision.PropagationBackOff()

	var (
		res      wire.Result
		why      error
		attempts int
	)
	for {
		attempts++
		st.begin(fmt.Sprintf("trust check of function %s as identity %s (attempt %d)", p.FunctionName, p.Identity, attempts))
		var outcome checkOutcome
		res, outcome, why = h.invokeCheck(ctx, p.FunctionName, req, end)
		if outcome == outcomeOK {
			st.end("principal", res.Principal.String(), "attempts", attempts)
			return res, nil
		}
		if outcome == outcomeFinal {
			if res.Step == "" { // not a check result: the error says what happened
				return res, why
			}
			break
		}
		st.log.Warn("trust check not passed yet", "step", st.current(), "error", why.Error())
		if !sleepBefore(ctx, waits.NextBackOff(), end) {
			break
		}
	}
	over := time.Since(start).Round(100 * time.Millisecond)
	tries := fmt.Sprintf("%d attempts over %s", attempts, over)
	if attempts == 1 {
		tries = "1 attempt"
	}
	if res.Step == "" { // no check result: the invocation itself failed
		return res, fmt.Errorf("trust check of function %s failed (%s): %w", p.FunctionName, tries, why)
	}
	st.begin("read the trust of identity " + p.Identity + " for the reason")
	return res, fmt.Errorf("trust check of function %s failed (%s): %w%s", p.FunctionName, tries, why, h.describeMismatch(ctx, tgt, p, res, st))
}

// sleepBefore waits d unless the wait and an attempt after it would not
// fit before end; it reports whether another attempt may be made.
func sleepBefore(ctx context.Context, d time.Duration, end time.Time) bool {
	if ctx.Err() != nil || time.Now().Add(d+minAttemptTime).After(end) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// invokeCheck makes one invocation, within end, and says what it came to;
// the error explains anything but outcomeOK.
func (h *Handler) invokeCheck(ctx context.Context, fn string, req wire.Request, end time.Time) (wire.Result, checkOutcome, error) {
	timeout := min(time.Until(end), maxInvokeTime)
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	req.TimeoutMS = max(timeout-invokeSlack, invokeSlack/2).Milliseconds()
	payload, err := wire.EncodeRequest(req)
	if err != nil {
		return wire.Result{}, outcomeFinal, err
	}
	ictx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := h.cfg.Lambda.Invoke(ictx, &lambda.InvokeInput{
		FunctionName:   aws.String(fn),
		InvocationType: lambdatypes.InvocationTypeRequestResponse,
		Payload:        payload,
	})
	if err != nil {
		return wire.Result{}, invokeErrorOutcome(err), invokeError(fn, timeout, err)
	}
	if out.FunctionError != nil {
		kind, msg := functionError(out.Payload)
		if timedOut(msg) {
			return wire.Result{}, outcomeRetry, fmt.Errorf("the function timed out (%s): raise its timeout", msg)
		}
		return wire.Result{}, outcomeFinal, fmt.Errorf("the function %s did not answer the trust check: it failed (%s: %s, %s). If its handler is not wrapped yet, wrap it with trustcheck.Wrap: %s",
			fn, aws.ToString(out.FunctionError), kind, msg, WrapHint)
	}
	res, ok, what := wire.DecodeResult(out.Payload)
	if !ok {
		return wire.Result{}, outcomeFinal, fmt.Errorf("the function %s did not answer the trust check (it answered %s): wrap its handler with trustcheck.Wrap: %s", fn, what, WrapHint)
	}
	switch {
	case res.OK:
		return res, outcomeOK, nil
	case res.Class == wire.ClassRefused || res.Class == wire.ClassUnreachable:
		return res, outcomeRetry, checkFailure(req, res)
	}
	return res, outcomeFinal, checkFailure(req, res)
}

// checkFailure words a failed check result.
func checkFailure(req wire.Request, res wire.Result) error {
	var what string
	switch res.Step {
	case wire.StepListRepos:
		what = fmt.Sprintf("the function acted as identity %s but could not list the repos of group %s", req.Identity, req.Group)
	case wire.StepExchange:
		what = fmt.Sprintf("the function could not act as identity %s", req.Identity)
	default:
		what = "the function cannot run the check as configured"
	}
	return fmt.Errorf("%s (%s, at the %s): %s", what, orDefault(string(res.Class), "failed"), orDefault(res.Step, "check"), res.Error)
}

// describeMismatch returns what a failed check's reason adds: what the
// identity trusts and what the function ran as, the trust read with the
// provisioner's own token (a short step: the reason must go out before the
// deadline).
func (h *Handler) describeMismatch(ctx context.Context, tgt Target, p trustCheckProperties, res wire.Result, st *steps) string {
	ran := fmt.Sprintf("the function ran as %s", res.Principal)
	switch {
	case res.Step != wire.StepExchange && res.Principal == (wire.Principal{}):
		return "" // it did not get as far as presenting anything
	case res.Step != wire.StepExchange:
		return ". " + upperFirst(ran)
	}
	// Within the time runTrustCheck kept for it, and a moment before the
	// work's deadline, so that this error, not the timeout's, is answered.
	end := time.Now().Add(describeReserve)
	if d, ok := ctx.Deadline(); ok && d.Add(-describeSlack).Before(end) {
		end = d.Add(-describeSlack)
	}
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	trusts, err := h.readTrust(ctx, tgt, p.Identity, st)
	if err != nil {
		st.log.Warn("the identity's trust could not be read for the reason", "identity", p.Identity, "error", err.Error())
		return fmt.Sprintf(". %s; what identity %s trusts could not be read (%v)", upperFirst(ran), p.Identity, err)
	}
	return fmt.Sprintf(". Identity %s trusts %s; %s", p.Identity, trusts, ran)
}

// readTrust reads the identity id and describes whom it trusts.
func (h *Handler) readTrust(ctx context.Context, tgt Target, id string, st *steps) (string, error) {
	p, closeFn, err := h.dial(ctx, tgt, st)
	if err != nil {
		return "", err
	}
	defer closeFn()
	ident, err := p.Identity(ctx, id)
	if err != nil {
		return "", err
	}
	return trust.Describe(ident), nil
}

// invokeErrorOutcome says whether a failed Invoke call is worth another:
// throttling, the service failing, the function not ready yet (being
// created or updated), or no answer in time; not a refusal (the
// permission), a missing function or a bad request.
func invokeErrorOutcome(err error) checkOutcome {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "TooManyRequestsException", "ResourceNotReadyException", "ResourceConflictException", "ServiceException":
			return outcomeRetry
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		// Status 0: no response at all (the SDK wraps a failed send too).
		if s := re.HTTPStatusCode(); s == 0 || s >= 500 || s == 429 {
			return outcomeRetry
		}
		return outcomeFinal
	}
	if api != nil {
		return outcomeFinal
	}
	return outcomeRetry // not answered: a network error, or no answer in time
}

// invokeError explains a failed Invoke call.
func invokeError(fn string, timeout time.Duration, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch code := api.ErrorCode(); {
		case strings.HasPrefix(code, "AccessDenied"):
			return fmt.Errorf("invoke function %s: Lambda refused: the provisioner role may not invoke it: the function needs a resource-based permission (AWS::Lambda::Permission, lambda:InvokeFunction) for the provisioner role's ARN, which stacks AssumableIdentity adds with Check; check that the provisioner role ARN parameter names the deployed provisioner's role: %w", fn, err)
		case code == "ResourceNotFoundException":
			return fmt.Errorf("invoke function %s: it does not exist: %w", fn, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("invoke function %s: it did not answer the trust check within %s: %w", fn, timeout.Round(time.Millisecond), err)
	}
	return fmt.Errorf("invoke function %s: %w", fn, err)
}

// functionError reads a Lambda error payload (errorType, errorMessage).
func functionError(payload []byte) (kind, msg string) {
	var e struct {
		Type    string `json:"errorType"`
		Message string `json:"errorMessage"`
	}
	if json.Unmarshal(payload, &e) != nil {
		return "unknown error", fmt.Sprintf("an error payload of %d bytes that is not Lambda's", len(payload))
	}
	return orDefault(e.Type, "error"), e.Message
}

// timedOutRE matches Lambda's message for an invocation that ran out of
// time ("... Task timed out after 30.03 seconds").
var timedOutRE = regexp.MustCompile(`Task timed out after [0-9.]+ seconds`)

func timedOut(msg string) bool { return timedOutRE.MatchString(msg) }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
