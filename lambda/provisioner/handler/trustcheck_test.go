package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	lambdasvc "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
)

// Custom::ChainguardTrustCheck through Handle, in-process: the workload is
// a handler wrapped with trustcheck.Wrap using the real SDK clients against
// the emulator, behind a Lambda client that calls it as Lambda's Invoke
// would (package main's tests run the real bootstraps).

const (
	testFunctionARN = "arn:aws:lambda:us-east-1:111122223333:function:aws-auth"
	// fnTimeout is the workload function's own timeout.
	fnTimeout = 30 * time.Second
)

// lambdaFunctions is a Lambda Invoke stand-in: each function is a
// lambda.Handler run with its own deadline (fnTimeout), as Lambda runs it,
// whatever the caller's context; the caller stops waiting when its context
// ends. A handler error is a function error (200, FunctionError Unhandled).
type lambdaFunctions struct {
	fns   map[string]lambda.Handler
	calls atomic.Int32
	err   error // answered instead of invoking, when set
}

func (l *lambdaFunctions) Invoke(ctx context.Context, in *lambdasvc.InvokeInput, _ ...func(*lambdasvc.Options)) (*lambdasvc.InvokeOutput, error) {
	l.calls.Add(1)
	if l.err != nil {
		return nil, l.err
	}
	fn, ok := l.fns[aws.ToString(in.FunctionName)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "ResourceNotFoundException", Message: "Function not found: " + aws.ToString(in.FunctionName)}
	}
	type result struct {
		out *lambdasvc.InvokeOutput
	}
	done := make(chan result, 1)
	go func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fnTimeout)
		defer cancel()
		payload, err := fn.Invoke(fctx, in.Payload)
		if err != nil {
			body, _ := json.Marshal(map[string]string{"errorType": "errorString", "errorMessage": err.Error()})
			done <- result{&lambdasvc.InvokeOutput{StatusCode: 200, FunctionError: aws.String("Unhandled"), Payload: body}}
			return
		}
		done <- result{&lambdasvc.InvokeOutput{StatusCode: 200, Payload: payload}}
	}()
	select {
	case r := <-done:
		return r.out, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("operation error Lambda: Invoke: %w", ctx.Err())
	}
}

// checkEnv is the emulator's standard layout, a provisioner handler and
// the workload function (the standard workload principal) wrapped with
// trustcheck.
type checkEnv struct {
	*emulatortest.Env
	lambda *lambdaFunctions
	logs   *syncbuf.Buffer
	h      *Handler
}

func newCheckEnv(t *testing.T, opts emulator.Options, budget time.Duration) *checkEnv {
	t.Helper()
	e := &checkEnv{Env: emulatortest.NewEnv(t, opts), lambda: &lambdaFunctions{fns: map[string]lambda.Handler{}}, logs: &syncbuf.Buffer{}}
	e.h = New(Config{
		Credentials:      credentials.StaticCredentialsProvider{Value: e.ProvisionerCredentials},
		Margin:           time.Second,
		Logger:           slog.New(slog.NewJSONHandler(e.logs, nil)),
		Options:          fastRetries,
		Lambda:           e.lambda,
		TrustCheckBudget: budget,
	}, nil)
	return e
}

// workload wraps the function's own handler (nil: one that answers {})
// with trustcheck as identity, and deploys it as testFunctionARN.
func (e *checkEnv) workload(identity string, own lambda.Handler) {
	if own == nil {
		own = lambda.NewHandler(func(context.Context) (map[string]any, error) { return map[string]any{}, nil })
	}
	e.lambda.fns[testFunctionARN] = trustcheck.Wrap(own, trustcheck.Config{
		Token: token.Config{
			Issuer: e.IssuerURL(), APIURL: e.APIURL(), Identity: identity,
			Credentials: credentials.StaticCredentialsProvider{Value: e.WorkloadCredentials},
		},
		CallerIdentity: emulatortest.STSClient(e.Emulator, e.WorkloadCredentials, "us-east-1"),
		Logger:         slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
}

// checkProps are the check's properties for identity.
func (e *checkEnv) checkProps(identity, fingerprint string) map[string]any {
	return map[string]any{
		PropFunctionName: testFunctionARN, PropIdentity: identity, PropGroup: e.Group,
		PropListRepos: "true", PropFingerprint: fingerprint, "ServiceTimeout": "180",
	}
}

func (e *checkEnv) event(kind cfn.RequestType, physicalID string, props, old map[string]any) cfn.Event {
	ev := emuEvent(e.Env, e.Provisioner, kind, TypeTrustCheck, physicalID, props)
	ev.LogicalResourceID = "IdentityTrustCheck"
	if old != nil {
		ev.OldResourceProperties = emuEvent(e.Env, e.Provisioner, kind, TypeTrustCheck, physicalID, old).ResourceProperties
	}
	return ev
}

// send handles ev within timeout and checks that the answer came before
// the work's deadline (timeout minus the handler's margin).
func (e *checkEnv) send(t *testing.T, ev cfn.Event, timeout time.Duration) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	id, data, err := e.h.Handle(ctx, ev)
	if d := time.Since(start); d > timeout-e.h.cfg.Margin+200*time.Millisecond {
		t.Errorf("answered after %s, not before the work's deadline (%s less the %s margin)", d, timeout, e.h.cfg.Margin)
	}
	return answer{id, data, err}
}

// seedWorkloadIdentity seeds an identity in the group trusting trusted,
// with viewer.
func (e *checkEnv) seedWorkloadIdentity(trusted emulator.AWSPrincipal) string {
	return e.SeedIdentity(e.Group, "aws-auth-identity", "the workload", trusted.ExactTrust(), map[string][]string{e.Group: {"viewer"}})
}

func TestTrustCheckPasses(t *testing.T) {
	// given a function wrapped with trustcheck whose identity trusts it
	e := newCheckEnv(t, emulator.Options{}, 0)
	id := e.seedWorkloadIdentity(e.WorkloadPrincipal)
	e.workload(id, nil)

	// when the check is created
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 20*time.Second)

	// then it succeeds at the first invocation, with a stable physical ID, naming the principal
	wantSuccess(t, a, "trust-check:"+id, map[string]any{"Principal": e.WorkloadPrincipal.ARN + " (user ID " + e.WorkloadPrincipal.UserID + ")"})
	if n := e.lambda.calls.Load(); n != 1 {
		t.Errorf("invocations = %d, want 1", n)
	}
	// and nothing the provisioner or the function logged holds a secret
	for _, c := range []aws.Credentials{e.WorkloadCredentials, e.ProvisionerCredentials} {
		if strings.Contains(e.logs.String(), c.SecretAccessKey) || strings.Contains(e.logs.String(), c.SessionToken) {
			t.Errorf("the logs hold an AWS secret")
		}
	}
}

func TestTrustCheckWrongTrust(t *testing.T) {
	// given an identity that trusts another role's session (role-a/aws-auth), the function runs as aws-auth/aws-auth
	e := newCheckEnv(t, emulator.Options{}, 5*time.Second)
	other := emulator.AssumedRolePrincipal(e.WorkloadPrincipal.Account, "role-a", "aws-auth")
	id := e.seedWorkloadIdentity(other)
	e.workload(id, nil)

	// when the check is created
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 20*time.Second)

	// then it fails after retrying within its budget, naming what the identity trusts and what the function ran as
	wantFailed(t, a, "trust-check:"+id,
		"trust check of function "+testFunctionARN+" failed (2 attempts over",
		"the function could not act as identity "+id+" (refused, at the token exchange)",
		"Identity "+id+" trusts "+other.ARN+" (user ID "+other.UserID+") of account "+other.Account,
		"the function ran as "+e.WorkloadPrincipal.ARN+" (user ID "+e.WorkloadPrincipal.UserID+")")
	if n := e.lambda.calls.Load(); n != 2 {
		t.Errorf("invocations = %d, want 2 (at 0 s and 2 s within the 5 s budget)", n)
	}
}

func TestTrustCheckBoundedByTheDeadline(t *testing.T) {
	// given a wrong trust and the default 60 s budget, but an event with 9 s left
	e := newCheckEnv(t, emulator.Options{}, 0)
	other := emulator.AssumedRolePrincipal(e.WorkloadPrincipal.Account, "role-a", "aws-auth")
	id := e.seedWorkloadIdentity(other)
	e.workload(id, nil)

	// when the check is created
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 9*time.Second)

	// then it answers before the deadline, still naming both principals
	wantFailed(t, a, "trust-check:"+id, "Identity "+id+" trusts "+other.ARN, "the function ran as "+e.WorkloadPrincipal.ARN)
}

func TestTrustCheckRightsAppliedLate(t *testing.T) {
	// given an emulator whose STS learns of new identities after 1.5 s
	e := newCheckEnv(t, emulator.Options{PropagationDelay: 1500 * time.Millisecond}, 0)
	// and the identity the provisioner has just created, trusting the function
	id, _, err := handle(t, e.h, emuEvent(e.Env, e.Provisioner, cfn.RequestCreate, TypeIdentity, "", identityProps(e.Env, e.Group)))
	if err != nil {
		t.Fatalf("create the identity: %v", err)
	}
	e.workload(id, nil)

	// when the check is created at once
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 30*time.Second)

	// then the first refusal is retried and the check passes
	if a.err != nil {
		t.Fatalf("Handle: %v", a.err)
	}
	if n := e.lambda.calls.Load(); n < 2 {
		t.Errorf("invocations = %d, want a retry after the first refusal", n)
	}
}

func TestTrustCheckUnwrappedFunction(t *testing.T) {
	tests := []struct {
		name string
		own  lambda.Handler
		want string
	}{
		{name: "answers something else", own: lambda.NewHandler(func(context.Context) (string, error) { return "hello", nil }),
			want: "did not answer the trust check (it answered a JSON string): wrap its handler with trustcheck.Wrap: " + WrapHint},
		{name: "answers an object", own: lambda.NewHandler(func(context.Context) (map[string]int, error) { return map[string]int{"count": 3}, nil }),
			want: "did not answer the trust check (it answered a JSON object"},
		{name: "fails", own: lambda.NewHandler(func(context.Context) (string, error) { return "", errors.New("boom") }),
			want: "did not answer the trust check: it failed (Unhandled: errorString, boom). If its handler is not wrapped yet, wrap it with trustcheck.Wrap: " + WrapHint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// given a function that is not wrapped
			e := newCheckEnv(t, emulator.Options{}, 0)
			id := e.seedWorkloadIdentity(e.WorkloadPrincipal)
			e.lambda.fns[testFunctionARN] = tt.own

			// when the check is created
			start := time.Now()
			a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 30*time.Second)

			// then it fails at once, saying how to wrap the handler
			wantFailed(t, a, "trust-check:"+id, tt.want)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("failed after %s, want within seconds", d)
			}
			if n := e.lambda.calls.Load(); n != 1 {
				t.Errorf("invocations = %d, want 1", n)
			}
		})
	}
}

func TestTrustCheckHungFunction(t *testing.T) {
	// given a wrapped function whose own configuration hangs its exchange
	e := newCheckEnv(t, emulator.Options{}, 0)
	id := e.seedWorkloadIdentity(e.WorkloadPrincipal)
	e.lambda.fns[testFunctionARN] = hung{}

	// when the check is created with 6 s left
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 6*time.Second)

	// then it answers before the deadline, saying the function did not answer
	wantFailed(t, a, "trust-check:"+id, "it did not answer the trust check within")
}

// hung is a function that answers nothing until Lambda stops it.
type hung struct{}

func (hung) Invoke(ctx context.Context, _ []byte) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestTrustCheckInvokeRefused(t *testing.T) {
	// given a function without the resource-based permission for the provisioner
	e := newCheckEnv(t, emulator.Options{}, 0)
	id := e.seedWorkloadIdentity(e.WorkloadPrincipal)
	e.lambda.err = &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "User is not authorized to perform: lambda:InvokeFunction"}

	// when the check is created
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 20*time.Second)

	// then it fails at once, naming the permission
	wantFailed(t, a, "trust-check:"+id, "Lambda refused", "AWS::Lambda::Permission", "lambda:InvokeFunction")
	if n := e.lambda.calls.Load(); n != 1 {
		t.Errorf("invocations = %d, want 1", n)
	}
}

func TestTrustCheckUpdateAndDelete(t *testing.T) {
	e := newCheckEnv(t, emulator.Options{}, 0)
	id := e.seedWorkloadIdentity(e.WorkloadPrincipal)
	e.workload(id, nil)
	physical := "trust-check:" + id
	props := e.checkProps(id, "f1")
	tests := []struct {
		name      string
		ev        cfn.Event
		wantCalls int32
	}{
		{name: "update without a relevant change", ev: e.event(cfn.RequestUpdate, physical, with(props, "ServiceTimeout", "300"), props), wantCalls: 0},
		{name: "update of the fingerprint", ev: e.event(cfn.RequestUpdate, physical, with(props, PropFingerprint, "f2"), props), wantCalls: 1},
		{name: "update of ListRepos", ev: e.event(cfn.RequestUpdate, physical, with(props, PropListRepos, "false"), props), wantCalls: 1},
		{name: "delete", ev: e.event(cfn.RequestDelete, physical, props, nil), wantCalls: 0},
		{name: "delete after a failed create", ev: e.event(cfn.RequestDelete, "6c0d8a4e-request", props, nil), wantCalls: 0},
		{name: "delete with bad properties", ev: e.event(cfn.RequestDelete, physical, with(props, PropFunctionName, 1.0), nil), wantCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// given the check's event
			before := e.lambda.calls.Load()
			exchanges := e.Calls(exchangeMethod)

			// when it is handled
			a := e.send(t, tt.ev, 20*time.Second)

			// then it succeeds with its physical ID, invoking only when what the check proves may have changed;
			// a check that ran names the principal the function presented, one that did not returns no data
			var wantData map[string]any
			if tt.wantCalls > 0 {
				wantData = map[string]any{"Principal": fmt.Sprintf("%s (user ID %s)", e.WorkloadPrincipal.ARN, e.WorkloadPrincipal.UserID)}
			}
			wantSuccess(t, a, tt.ev.PhysicalResourceID, wantData)
			if n := e.lambda.calls.Load() - before; n != tt.wantCalls {
				t.Errorf("invocations = %d, want %d", n, tt.wantCalls)
			}
			if tt.wantCalls == 0 && e.Calls(exchangeMethod) != exchanges {
				t.Errorf("a token was exchanged")
			}
		})
	}
}

const exchangeMethod = "/chainguard.platform.oidc.SecurityTokenService/Exchange"

func TestTrustCheckProperties(t *testing.T) {
	e := newCheckEnv(t, emulator.Options{}, 0)
	id := e.Group + "/0123456789abcdef"
	props := e.checkProps(id, "f1")
	for _, tt := range []struct {
		name  string
		props map[string]any
		want  string
	}{
		{"missing function", with(props, PropFunctionName, nil), "property FunctionName is missing"},
		{"function name, not ARN", with(props, PropFunctionName, "aws-auth"), `property FunctionName "aws-auth" is not a Lambda function ARN`},
		{"bad identity", with(props, PropIdentity, "x"), "property Identity"},
		{"missing group", with(props, PropGroup, nil), "property Group is missing"},
		{"bad ListRepos", with(props, PropListRepos, "yes"), `property ListRepos is "yes"`},
		{"unknown property", with(props, "Roles", "viewer"), "property Roles is not part of the Custom::ChainguardTrustCheck contract"},
		{"bad target", with(props, PropIssuer, "ftp://x"), "property Issuer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given a check with a bad property, when it is created
			ev := e.event(cfn.RequestCreate, "", props, nil)
			ev.ResourceProperties = with(ev.ResourceProperties, "", nil)
			for k, v := range tt.props {
				ev.ResourceProperties[k] = v
			}
			for k := range ev.ResourceProperties {
				if _, ok := tt.props[k]; !ok && k != PropProvisionerIdentity && k != PropIssuer && k != PropAPIURL {
					delete(ev.ResourceProperties, k)
				}
			}
			if tt.name == "bad target" {
				ev.ResourceProperties[PropIssuer] = "ftp://x"
			}
			a := e.send(t, ev, 10*time.Second)

			// then it fails naming the property, without invoking anything
			wantFailed(t, a, "", tt.want)
		})
	}
	if n := e.lambda.calls.Load(); n != 0 {
		t.Errorf("invocations = %d, want 0", n)
	}
}

func TestTrustCheckMisconfiguredFunction(t *testing.T) {
	// given a wrapped function configured for another identity than the stack's
	e := newCheckEnv(t, emulator.Options{}, 0)
	id := e.seedWorkloadIdentity(e.WorkloadPrincipal)
	other := e.seedWorkloadIdentity(e.WorkloadPrincipal)
	e.workload(other, nil)

	// when the check is created
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 20*time.Second)

	// then it fails at once, without retrying, saying what is wrong
	wantFailed(t, a, "trust-check:"+id, "failed (1 attempt): the function cannot run the check as configured (config, at the configuration)",
		"the function acts as identity \""+other+"\" (CHAINGUARD_IDENTITY), but the stack made identity "+id)
	if n := e.lambda.calls.Load(); n != 1 {
		t.Errorf("invocations = %d, want 1", n)
	}
}

func TestTrustCheckBudgetFromEnv(t *testing.T) {
	for _, tt := range []struct {
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		{env: nil, want: DefaultTrustCheckBudget},
		{env: map[string]string{EnvTrustCheckBudget: "5s"}, want: 5 * time.Second},
		{env: map[string]string{EnvTrustCheckBudget: "0s"}, wantErr: true},
		{env: map[string]string{EnvTrustCheckBudget: "soon"}, wantErr: true},
	} {
		got, err := TrustCheckBudgetFromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("TrustCheckBudgetFromEnv(%v) = %s, %v; want %s, error %v", tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestTrustCheckWrongWebIdentityTrust(t *testing.T) {
	// given a workload account with outbound identity federation, and an identity trusting another role's web identity tokens
	e := newCheckEnv(t, emulator.Options{}, 3*time.Second)
	issuer := e.EnableWebIdentityFederation(e.WorkloadPrincipal.Account)
	other := emulator.AssumedRolePrincipal(e.WorkloadPrincipal.Account, "role-a", "aws-auth")
	id := e.SeedClaimMatchIdentity(e.Group, "web", "trusts role-a", other.WebIdentityTrust(issuer, e.IssuerURL()), map[string][]string{e.Group: {"viewer"}})
	// and the function, acting by web identity
	e.lambda.fns[testFunctionARN] = trustcheck.Wrap(lambda.NewHandler(func(context.Context) (string, error) { return "", nil }), trustcheck.Config{
		Token: token.Config{
			Issuer: e.IssuerURL(), APIURL: e.APIURL(), Identity: id, Trust: token.WebIdentity,
			STS: emulatortest.STSClient(e.Emulator, e.WorkloadCredentials, "us-east-1"),
		},
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)),
	})

	// when the check is created
	a := e.send(t, e.event(cfn.RequestCreate, "", e.checkProps(id, "f1"), nil), 20*time.Second)

	// then it fails naming the claims the identity trusts and the ones the function's token carried
	wantFailed(t, a, "trust-check:"+id,
		"Identity "+id+" trusts web identity tokens with iss "+issuer+", sub "+other.WebIdentitySubject()+" and aud "+e.IssuerURL(),
		"the function ran as a web identity token with iss "+issuer+" and sub "+e.WorkloadPrincipal.WebIdentitySubject())
}

func TestInvokeErrorOutcome(t *testing.T) {
	send := &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{}}, Err: errors.New("dial tcp: lookup lambda.us-east-1.amazonaws.com: no such host")}
	status := func(code int, api string) error {
		return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: &smithy.GenericAPIError{Code: api}}
	}
	for _, tt := range []struct {
		name string
		err  error
		want checkOutcome
	}{
		{"not sent", fmt.Errorf("operation error Lambda: Invoke: %w", send), outcomeRetry},
		{"no answer in time", fmt.Errorf("operation error Lambda: Invoke: %w", context.DeadlineExceeded), outcomeRetry},
		{"throttled", status(429, "TooManyRequestsException"), outcomeRetry},
		{"function being updated", status(409, "ResourceConflictException"), outcomeRetry},
		{"function not ready", status(502, "ResourceNotReadyException"), outcomeRetry},
		{"service error", status(500, "ServiceException"), outcomeRetry},
		{"access denied", status(403, "AccessDeniedException"), outcomeFinal},
		{"no such function", status(404, "ResourceNotFoundException"), outcomeFinal},
		{"bad request", status(400, "InvalidRequestContentException"), outcomeFinal},
	} {
		if got := invokeErrorOutcome(tt.err); got != tt.want {
			t.Errorf("%s: outcome = %d, want %d", tt.name, got, tt.want)
		}
	}
}
