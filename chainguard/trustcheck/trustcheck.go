// Package trustcheck lets a Lambda workload prove, while its stack deploys,
// that it can act as its Chainguard identity: the deployment fails, with a
// reason naming what the function presented and what the identity trusts,
// instead of the first production invocation.
//
// A workload opts in with one line around its handler:
//
//	lambda.Start(trustcheck.Wrap(lambda.NewHandler(handler), trustcheck.FromEnv(awsCfg)))
//
// Wrap recognises the check request (a JSON object whose only key is
// "chainguardTrustCheck", see package wire) and answers it; every other
// payload goes to the function's own handler untouched, and so does its
// answer. The check makes a fresh token exchange (never a cached token) as
// the function's identity, with the function's own trust mode and AWS
// credentials, and, when asked (the identity's roles allow reading), one
// read call: it lists the repos of the identity's group. It answers ok or
// the failure classified as refused, unreachable or config (wire.Class),
// and the principal the function presented: its assumed-role ARN and user
// ID (from AWS STS GetCallerIdentity, which needs no permission) with the
// caller-identity trust, the iss and sub of its web identity token with the
// web-identity trust. Neither the answer nor the log holds a token or a
// credential.
//
// # Where the check runs, and why
//
// The stack's Custom::ChainguardTrustCheck resource is served by the
// provisioner (its ServiceToken, like every Chainguard resource), which
// invokes the workload function synchronously (Lambda Invoke,
// RequestResponse) with the check request, and answers CloudFormation.
// The alternative, the workload function itself as the custom resource's
// handler, was rejected:
//
//   - The provisioner always answers CloudFormation before its deadline
//     (its Wrap and watchdog), and has the retry schedule for rights that
//     take time to apply (2, 4, 8, 16 s ...). A workload handler would have
//     to carry all of that.
//   - A function that is not wrapped answers something else, or fails: the
//     provisioner sees that within seconds and fails the check saying how
//     to wrap it. As the custom resource's handler, an unwrapped function
//     would never answer CloudFormation, and the deployment would wait for
//     the resource's ServiceTimeout.
//   - The only new permission is a resource-based AWS::Lambda::Permission
//     on that one workload function for the provisioner role's ARN: no new
//     identity-based grant, nothing broad, and the workload's own role is
//     unchanged.
package trustcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"chainguard.dev/sdk/auth"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/repos"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck/wire"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator"
)

// Environment variables FromEnv reads: the ones stacks.AssumableIdentity's
// ConfigureFunction sets.
const (
	EnvIdentity = "CHAINGUARD_IDENTITY"
	EnvIssuer   = "CHAINGUARD_ISSUER"
	EnvAPI      = "CHAINGUARD_API"
	EnvTrust    = "CHAINGUARD_TRUST"

	DefaultIssuer = "https://issuer.enforce.dev"
	DefaultAPI    = "https://console-api.enforce.dev"
)

// deadlineMargin is how long before the function's deadline the check
// stops and answers, so that the answer is never a Lambda timeout.
const deadlineMargin = 500 * time.Millisecond

// principalTimeout bounds the GetCallerIdentity call that names the
// function's principal.
const principalTimeout = 5 * time.Second

// CallerIdentityAPI is the part of the AWS SDK's STS client (*sts.Client)
// that names the function's principal with the caller-identity trust.
// GetCallerIdentity needs no IAM permission.
type CallerIdentityAPI interface {
	GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// Config is how the function acts as its identity: the same token.Config
// its own code exchanges with.
type Config struct {
	// Token names the identity, the issuer and API URLs, the trust mode and
	// the AWS credentials (caller identity) or STS client (web identity).
	Token token.Config
	// CallerIdentity names the function's principal with the
	// caller-identity trust, e.g. sts.NewFromConfig of the function's AWS
	// configuration; nil leaves it unnamed.
	CallerIdentity CallerIdentityAPI
	// Logger receives one line per check (never a token); nil: JSON on
	// standard output, as Lambda collects it.
	Logger *slog.Logger

	// err is a configuration error (FromEnv) every check answers with.
	err error
}

// FromEnv returns the Config of a function configured by
// stacks.AssumableIdentity.ConfigureFunction: CHAINGUARD_IDENTITY,
// CHAINGUARD_ISSUER and CHAINGUARD_API (defaults: Chainguard's), and
// CHAINGUARD_TRUST (caller-identity, the default, or web-identity), with
// awsCfg's credentials and an STS client made from it. It never fails: a
// missing or invalid variable makes every check answer with it (class
// config), so the function itself starts as it did before.
func FromEnv(awsCfg aws.Config) Config {
	return fromEnv(os.LookupEnv, awsCfg)
}

func fromEnv(lookup func(string) (string, bool), awsCfg aws.Config) Config {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && v != "" {
			return v
		}
		return def
	}
	client := sts.NewFromConfig(awsCfg)
	cfg := Config{
		Token: token.Config{
			Identity: get(EnvIdentity, ""),
			Issuer:   get(EnvIssuer, DefaultIssuer),
			APIURL:   get(EnvAPI, DefaultAPI),
		},
		CallerIdentity: client,
	}
	var errs []error
	trust, err := token.ParseTrust(get(EnvTrust, ""))
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvTrust, err))
	}
	cfg.Token.Trust = trust
	if trust == token.WebIdentity {
		cfg.Token.STS = client
	} else {
		cfg.Token.Credentials = awsCfg.Credentials
	}
	if cfg.Token.Identity == "" {
		errs = append(errs, fmt.Errorf("%s is not set: set it to the UIDP of the identity the function acts as (stacks AssumableIdentity.ConfigureFunction sets it)", EnvIdentity))
	} else if err := locator.UIDP(EnvIdentity, cfg.Token.Identity); err != nil {
		errs = append(errs, err)
	}
	for _, u := range []struct{ name, value string }{{EnvIssuer, cfg.Token.Issuer}, {EnvAPI, cfg.Token.APIURL}} {
		if err := locator.ServiceURL(u.name, u.value); err != nil {
			errs = append(errs, err)
		}
	}
	cfg.err = errors.Join(errs...)
	return cfg
}

// Wrap returns a Lambda handler that answers the trust check and passes
// every other payload, and its answer, through next untouched (next is
// e.g. lambda.NewHandler(yourHandler)).
func Wrap(next lambda.Handler, cfg Config) lambda.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stdout, nil))
	}
	return &handler{next: next, cfg: cfg}
}

type handler struct {
	next lambda.Handler
	cfg  Config
}

// Invoke implements lambda.Handler.
func (h *handler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	req, isCheck, err := wire.IsRequest(payload)
	if !isCheck {
		out, err := h.next.Invoke(ctx, payload)
		// lambda.NewHandler answers from a pooled buffer that it reuses
		// once Invoke returns: hand on a copy.
		return append([]byte(nil), out...), err
	}
	res := h.check(ctx, req, err)
	return wire.EncodeResult(res)
}

// check runs one check and logs its result.
func (h *handler) check(ctx context.Context, req wire.Request, reqErr error) (res wire.Result) {
	start := time.Now()
	log := h.cfg.Logger.With("trust_check", true)
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	trust, _ := token.ParseTrust(string(h.cfg.Token.Trust))
	res = wire.Result{Identity: h.cfg.Token.Identity, Trust: string(trust)}
	defer func() {
		if r := recover(); r != nil {
			log.Error("trust check panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			res.OK, res.Class, res.Error = false, wire.ClassConfig, fmt.Sprintf("internal error (panic) in the trust check during %s; see the function's log", orDefault(res.Step, "the check"))
		}
		res.DurationMS = float64(time.Since(start).Microseconds()) / 1000
		attrs := []any{"ok", res.OK, "identity", res.Identity, "trust", res.Trust, "principal", res.Principal.String(), "duration_ms", res.DurationMS}
		if res.Repos != nil {
			attrs = append(attrs, "repos", *res.Repos)
		}
		if !res.OK {
			log.Warn("trust check failed", append(attrs, "step", res.Step, "class", string(res.Class), "error", res.Error)...)
			return
		}
		log.Info("trust check passed", attrs...)
	}()

	fail := func(step string, class wire.Class, err error) wire.Result {
		res.Step, res.Class, res.Error = step, class, err.Error()
		return res
	}
	ctx, cancel := bound(ctx, req.TimeoutMS)
	defer cancel()

	switch {
	case reqErr != nil:
		return fail(wire.StepConfig, wire.ClassConfig, reqErr)
	case h.cfg.err != nil:
		return fail(wire.StepConfig, wire.ClassConfig, fmt.Errorf("the function's configuration is invalid: %w", h.cfg.err))
	case req.Identity != "" && req.Identity != h.cfg.Token.Identity:
		return fail(wire.StepConfig, wire.ClassConfig, fmt.Errorf("the function acts as identity %q (%s), but the stack made identity %s for it: give the function the identity's environment (stacks AssumableIdentity.ConfigureFunction)",
			h.cfg.Token.Identity, EnvIdentity, req.Identity))
	case req.ListRepos && req.Group == "":
		return fail(wire.StepConfig, wire.ClassConfig, errors.New("the check asks to list repos but names no group"))
	}
	tc := h.cfg.Token
	if err := tc.Validate(); err != nil {
		return fail(wire.StepConfig, wire.ClassConfig, err)
	}

	// Name the principal beside the exchange: with the caller-identity
	// trust an STS call of its own, with the web-identity trust the claims
	// of the token the exchange asks AWS for.
	var principal func() wire.Principal
	if trust == token.WebIdentity {
		rec := &recorder{next: tc.STS}
		tc.STS = rec
		principal = rec.principal
	} else {
		principal = h.callerIdentity(ctx)
	}
	defer func() { res.Principal = principal() }()

	res.Step = wire.StepExchange
	tok, err := token.Exchange(ctx, tc)
	if err != nil {
		return fail(wire.StepExchange, exchangeClass(err, trust), err)
	}
	if req.ListRepos {
		res.Step = wire.StepListRepos
		list, err := repos.List(ctx, tc.APIURL, tok.AccessToken, req.Group, 0)
		if err != nil {
			return fail(wire.StepListRepos, listClass(err), err)
		}
		n := len(list)
		res.Repos = &n
	}
	res.Step, res.OK = "", true
	return res
}

// bound returns ctx ending deadlineMargin before the function's deadline,
// and within timeoutMS when that is set.
func bound(ctx context.Context, timeoutMS int64) (context.Context, context.CancelFunc) {
	end, ok := ctx.Deadline()
	if ok {
		end = end.Add(-deadlineMargin)
	}
	if timeoutMS > 0 {
		if t := time.Now().Add(time.Duration(timeoutMS) * time.Millisecond); !ok || t.Before(end) {
			end, ok = t, true
		}
	}
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, end)
}

// callerIdentity starts naming the principal with GetCallerIdentity and
// returns what waits for it (at most principalTimeout from now).
func (h *handler) callerIdentity(ctx context.Context) func() wire.Principal {
	if h.cfg.CallerIdentity == nil {
		return func() wire.Principal {
			return wire.Principal{Note: "not named: the check has no STS client (trustcheck.Config.CallerIdentity)"}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, principalTimeout)
	done := make(chan wire.Principal, 1)
	go func() {
		defer cancel()
		out, err := h.cfg.CallerIdentity.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			done <- wire.Principal{Note: "AWS STS GetCallerIdentity failed: " + err.Error()}
			return
		}
		done <- wire.Principal{ARN: aws.ToString(out.Arn), UserID: aws.ToString(out.UserId)}
	}()
	var once sync.Once
	var p wire.Principal
	return func() wire.Principal {
		once.Do(func() { p = <-done })
		return p
	}
}

// recorder passes GetWebIdentityToken on and keeps the iss and sub of the
// token it returns (never the token).
type recorder struct {
	next token.WebIdentityTokenAPI

	mu       sync.Mutex
	iss, sub string
	asked    bool
}

// GetWebIdentityToken implements token.WebIdentityTokenAPI.
func (r *recorder) GetWebIdentityToken(ctx context.Context, in *sts.GetWebIdentityTokenInput, optFns ...func(*sts.Options)) (*sts.GetWebIdentityTokenOutput, error) {
	out, err := r.next.GetWebIdentityToken(ctx, in, optFns...)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = true
	if err == nil && out != nil {
		r.iss, r.sub = claims(aws.ToString(out.WebIdentityToken))
	}
	return out, err
}

func (r *recorder) principal() wire.Principal {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.asked:
		return wire.Principal{Note: "not named: no web identity token was requested"}
	case r.iss == "" && r.sub == "":
		return wire.Principal{Note: "not named: AWS STS gave no readable web identity token"}
	}
	return wire.Principal{Issuer: r.iss, Subject: r.sub}
}

// claims reads the iss and sub of a JWT without verifying it (the
// Chainguard STS verifies it).
func claims(jwt string) (iss, sub string) {
	iss, sub, err := auth.ExtractIssuerAndSubject(jwt)
	if err != nil {
		return "", ""
	}
	return iss, sub
}

// exchangeClass classifies a token.Exchange error.
func exchangeClass(err error, trust token.Trust) wire.Class {
	switch {
	case errors.Is(err, token.ErrRefused):
		return wire.ClassRefused
	case errors.Is(err, token.ErrGenerate) && trust == token.WebIdentity:
		// AWS refused the web identity token: the grant or the account's
		// federation may not have applied yet.
		return wire.ClassRefused
	case errors.Is(err, token.ErrConfig), errors.Is(err, token.ErrCredentials), errors.Is(err, token.ErrGenerate):
		return wire.ClassConfig
	}
	return wire.ClassUnreachable
}

// listClass classifies a repos.List error.
func listClass(err error) wire.Class {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return wire.ClassUnreachable
	}
	st, ok := status.FromError(err)
	if !ok {
		return wire.ClassConfig // a bad group or URL, refused before any call
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		return wire.ClassRefused
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.Unimplemented:
		return wire.ClassConfig
	}
	return wire.ClassUnreachable
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
