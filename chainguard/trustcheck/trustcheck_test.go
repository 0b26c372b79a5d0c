package trustcheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck/wire"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
)

const listReposMethod = "/chainguard.platform.registry.Registry/ListRepos"

// fixture is a seeded emulator and a workload function wrapped with
// trustcheck, acting as the workload principal with real SDK clients.
type fixture struct {
	*emulatortest.Env
	identity string
	logs     *syncbuf.Buffer
	next     *recordingHandler
}

// newFixture seeds an identity in the standard group trusting trusted
// (the workload principal when nil) with viewer on the group.
func newFixture(t *testing.T, trusted *iam.Identity_AWSIdentity) *fixture {
	t.Helper()
	e := emulatortest.NewEnv(t, emulator.Options{})
	if trusted == nil {
		trusted = e.WorkloadPrincipal.ExactTrust()
	}
	id := e.SeedIdentity(e.Group, "aws-auth-identity", "the workload", trusted, map[string][]string{e.Group: {"viewer"}})
	return &fixture{Env: e, identity: id, logs: &syncbuf.Buffer{}, next: &recordingHandler{answer: []byte(`{"repos":[]}`)}}
}

// callerConfig is the workload's caller-identity Config for identity.
func (f *fixture) callerConfig(identity string) trustcheck.Config {
	return trustcheck.Config{
		Token: token.Config{
			Issuer: f.IssuerURL(), APIURL: f.APIURL(), Identity: identity, Trust: token.CallerIdentity,
			Credentials: credentials.StaticCredentialsProvider{Value: f.WorkloadCredentials},
			RPCTimeout:  2 * time.Second,
		},
		CallerIdentity: emulatortest.STSClient(f.Emulator, f.WorkloadCredentials, "us-east-1"),
		Logger:         slog.New(slog.NewJSONHandler(f.logs, nil)),
	}
}

// recordingHandler is the function's own handler: it records what it gets.
type recordingHandler struct {
	got    [][]byte
	answer []byte
}

func (h *recordingHandler) Invoke(_ context.Context, payload []byte) ([]byte, error) {
	h.got = append(h.got, append([]byte(nil), payload...))
	return h.answer, nil
}

// check invokes fn with a check request and decodes its answer.
func check(t *testing.T, fn lambda.Handler, req wire.Request) wire.Result {
	t.Helper()
	payload, err := wire.EncodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := fn.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	res, ok, what := wire.DecodeResult(out)
	if !ok {
		t.Fatalf("the answer %s is not a check result: %s", out, what)
	}
	return res
}

// jwtLike matches a JWT (the Chainguard token, a web identity token).
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`)

// noSecrets fails t when any of texts holds the workload's AWS secrets or
// anything that looks like a token.
func (f *fixture) noSecrets(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, secret := range []string{f.WorkloadCredentials.SecretAccessKey, f.WorkloadCredentials.SessionToken} {
			if strings.Contains(s, secret) {
				t.Errorf("an AWS secret leaked into %q", s)
			}
		}
		if m := jwtLike.FindString(s); m != "" {
			t.Errorf("a token-like string (%d characters) leaked", len(m))
		}
	}
}

func TestOtherPayloadsPassUntouched(t *testing.T) {
	// given a function wrapped with trustcheck
	f := newFixture(t, nil)
	fn := trustcheck.Wrap(f.next, f.callerConfig(f.identity))
	payloads := []string{
		`{}`,
		`{"key":"value"}`,
		`"chainguardTrustCheck"`,
		`{"chainguardTrustCheck":{"identity":"x"},"other":1}`, // two keys: the function's own event
		`{"detail":{"chainguardTrustCheck":{}}}`,
		`not json at all`,
		``,
	}
	for _, p := range payloads {
		// when it is invoked with another payload
		out, err := fn.Invoke(t.Context(), []byte(p))

		// then its own handler gets the payload byte for byte, and its answer is returned as it is
		if err != nil {
			t.Fatalf("invoke %q: %v", p, err)
		}
		if got := f.next.got[len(f.next.got)-1]; !bytes.Equal(got, []byte(p)) {
			t.Errorf("the handler got %q, want %q", got, p)
		}
		if !bytes.Equal(out, f.next.answer) {
			t.Errorf("answer = %q, want the handler's %q", out, f.next.answer)
		}
	}
	// and no exchange was made for them
	if n := f.Calls("/chainguard.platform.oidc.SecurityTokenService/Exchange"); n != 0 {
		t.Errorf("exchanges = %d, want 0", n)
	}
}

func TestCheckPasses(t *testing.T) {
	// given a function whose identity trusts its principal, with viewer on the group
	f := newFixture(t, nil)
	fn := trustcheck.Wrap(f.next, f.callerConfig(f.identity))

	// when it is checked, with a listing of the group's repos
	res := check(t, fn, wire.Request{Identity: f.identity, Group: f.Group, ListRepos: true})

	// then the check passes without calling the function's own handler
	if !res.OK || res.Class != "" || res.Error != "" {
		t.Fatalf("result = %+v, want ok", res)
	}
	if len(f.next.got) != 0 {
		t.Errorf("the function's handler was called with %q", f.next.got)
	}
	// and it names the principal, the identity, the trust mode and the repos it listed
	if res.Principal.ARN != f.WorkloadPrincipal.ARN || res.Principal.UserID != f.WorkloadPrincipal.UserID {
		t.Errorf("principal = %+v, want %s (%s)", res.Principal, f.WorkloadPrincipal.ARN, f.WorkloadPrincipal.UserID)
	}
	if res.Identity != f.identity || res.Trust != string(token.CallerIdentity) {
		t.Errorf("identity, trust = %q, %q", res.Identity, res.Trust)
	}
	if res.Repos == nil || *res.Repos != len(f.Repos) {
		t.Errorf("repos = %v, want %d", res.Repos, len(f.Repos))
	}
	// and a fresh exchange was made each time (never a cached token)
	check(t, fn, wire.Request{Identity: f.identity})
	if n := f.Calls("/chainguard.platform.oidc.SecurityTokenService/Exchange"); n != 2 {
		t.Errorf("exchanges = %d, want 2: one per check", n)
	}
	out, _ := json.Marshal(res)
	f.noSecrets(t, string(out), f.logs.String())
	if !strings.Contains(f.logs.String(), `"msg":"trust check passed"`) {
		t.Errorf("no log line for the check: %s", f.logs)
	}
}

func TestCheckRefused(t *testing.T) {
	// given an identity that trusts another session of the role
	other := emulator.AssumedRolePrincipal("111122223333", "aws-auth", "other-fn")
	f := newFixture(t, other.ExactTrust())
	fn := trustcheck.Wrap(f.next, f.callerConfig(f.identity))

	// when the function is checked
	res := check(t, fn, wire.Request{Identity: f.identity, Group: f.Group, ListRepos: true})

	// then the exchange is refused, and the result names what the function presented
	if res.OK || res.Class != wire.ClassRefused || res.Step != wire.StepExchange {
		t.Fatalf("result = %+v, want refused at the exchange", res)
	}
	if res.Principal.ARN != f.WorkloadPrincipal.ARN {
		t.Errorf("principal = %+v, want %s", res.Principal, f.WorkloadPrincipal.ARN)
	}
	if !strings.Contains(res.Error, "permission denied") {
		t.Errorf("error = %q, want the STS's refusal", res.Error)
	}
	out, _ := json.Marshal(res)
	f.noSecrets(t, string(out), f.logs.String())
}

func TestCheckListRefused(t *testing.T) {
	// given a function whose listing is refused
	f := newFixture(t, nil)
	f.FailNext(listReposMethod, 1, codes.PermissionDenied)
	fn := trustcheck.Wrap(f.next, f.callerConfig(f.identity))

	// when it is checked
	res := check(t, fn, wire.Request{Identity: f.identity, Group: f.Group, ListRepos: true})

	// then the failure is the listing's, classified as refused
	if res.OK || res.Class != wire.ClassRefused || res.Step != wire.StepListRepos {
		t.Fatalf("result = %+v, want refused at the listing", res)
	}
}

func TestCheckUnreachable(t *testing.T) {
	// given an issuer that refuses connections
	f := newFixture(t, nil)
	if err := f.SetIssuerReachable(false); err != nil {
		t.Fatal(err)
	}
	fn := trustcheck.Wrap(f.next, f.callerConfig(f.identity))

	// when the function is checked within 1.5 s
	start := time.Now()
	res := check(t, fn, wire.Request{Identity: f.identity, TimeoutMS: 1500})

	// then it answers in time that the issuer was not reached
	if res.OK || res.Class != wire.ClassUnreachable || res.Step != wire.StepExchange {
		t.Fatalf("result = %+v, want unreachable at the exchange", res)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %s, want within about the 1.5 s asked for", d)
	}
}

func TestCheckConfig(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name    string
		cfg     trustcheck.Config
		req     wire.Request
		payload string // instead of req
		want    string
	}{
		{name: "another identity", cfg: f.callerConfig(f.identity), req: wire.Request{Identity: f.Group + "/0123456789abcdef"},
			want: "but the stack made identity"},
		{name: "listing without group", cfg: f.callerConfig(f.identity), req: wire.Request{Identity: f.identity, ListRepos: true},
			want: "names no group"},
		{name: "no credentials", cfg: func() trustcheck.Config { c := f.callerConfig(f.identity); c.Token.Credentials = nil; return c }(),
			req: wire.Request{Identity: f.identity}, want: "no AWS credentials provider"},
		{name: "malformed request", cfg: f.callerConfig(f.identity), payload: `{"chainguardTrustCheck":{"identity":1}}`,
			want: "request is malformed"},
		{name: "newer request", cfg: f.callerConfig(f.identity), payload: `{"chainguardTrustCheck":{"version":2}}`,
			want: "of version 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// given a function configured as the case says
			fn := trustcheck.Wrap(f.next, tt.cfg)

			// when it is checked
			var res wire.Result
			if tt.payload != "" {
				out, err := fn.Invoke(t.Context(), []byte(tt.payload))
				if err != nil {
					t.Fatal(err)
				}
				var ok bool
				if res, ok, _ = wire.DecodeResult(out); !ok {
					t.Fatalf("answer %s is not a check result", out)
				}
			} else {
				res = check(t, fn, tt.req)
			}

			// then it answers a configuration failure, saying what is wrong
			if res.OK || res.Class != wire.ClassConfig || !strings.Contains(res.Error, tt.want) {
				t.Fatalf("result = %+v, want class config with %q", res, tt.want)
			}
		})
	}
	if n := f.Calls("/chainguard.platform.oidc.SecurityTokenService/Exchange"); n != 0 {
		t.Errorf("exchanges = %d, want none for a configuration failure", n)
	}
}

func TestFromEnv(t *testing.T) {
	// given a function whose environment lacks its identity
	f := newFixture(t, nil)
	t.Setenv(trustcheck.EnvIdentity, "")
	t.Setenv(trustcheck.EnvTrust, "")
	awsCfg := aws.Config{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: f.WorkloadCredentials}}
	fn := trustcheck.Wrap(f.next, trustcheck.FromEnv(awsCfg))

	// when it is checked
	res := check(t, fn, wire.Request{Identity: f.identity})

	// then the check says which variable to set
	if res.OK || res.Class != wire.ClassConfig || !strings.Contains(res.Error, trustcheck.EnvIdentity+" is not set") {
		t.Fatalf("result = %+v, want the missing variable named", res)
	}

	// given the environment ConfigureFunction sets, and the AWS endpoint of the emulator
	t.Setenv(trustcheck.EnvIdentity, f.identity)
	t.Setenv(trustcheck.EnvIssuer, f.IssuerURL())
	t.Setenv(trustcheck.EnvAPI, f.APIURL())
	t.Setenv("AWS_ENDPOINT_URL_STS", f.AWSURL())
	awsCfg.BaseEndpoint = aws.String(f.AWSURL())
	fn = trustcheck.Wrap(f.next, trustcheck.FromEnv(awsCfg))

	// when it is checked
	res = check(t, fn, wire.Request{Identity: f.identity, Group: f.Group, ListRepos: true})

	// then it passes and names its principal
	if !res.OK || res.Principal.ARN != f.WorkloadPrincipal.ARN {
		t.Fatalf("result = %+v, want ok as %s", res, f.WorkloadPrincipal.ARN)
	}
}

func TestWebIdentity(t *testing.T) {
	// given a workload account with outbound identity federation, and its role's web identity tokens trusted
	e := emulatortest.NewEnv(t, emulator.Options{})
	issuer := e.EnableWebIdentityFederation(e.WorkloadPrincipal.Account)
	trusted := e.SeedClaimMatchIdentity(e.Group, "web", "trusts the workload role", e.WorkloadPrincipal.WebIdentityTrust(issuer, e.IssuerURL()),
		map[string][]string{e.Group: {"viewer"}})
	other := emulator.AssumedRolePrincipal(e.WorkloadPrincipal.Account, "another-role", "fn")
	untrusted := e.SeedClaimMatchIdentity(e.Group, "other", "trusts another role", other.WebIdentityTrust(issuer, e.IssuerURL()), nil)
	logs := &syncbuf.Buffer{}
	config := func(identity string) trustcheck.Config {
		return trustcheck.Config{
			Token: token.Config{
				Issuer: e.IssuerURL(), APIURL: e.APIURL(), Identity: identity, Trust: token.WebIdentity,
				STS: emulatortest.STSClient(e.Emulator, e.WorkloadCredentials, "us-east-1"), RPCTimeout: 2 * time.Second,
			},
			Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		}
	}
	next := &recordingHandler{}
	subject := e.WorkloadPrincipal.WebIdentitySubject()

	// when the function acting as the trusting identity is checked
	res := check(t, trustcheck.Wrap(next, config(trusted)), wire.Request{Identity: trusted, Group: e.Group, ListRepos: true})

	// then it passes, naming the iss and sub of the token it presented
	if !res.OK || res.Trust != string(token.WebIdentity) || res.Principal.Issuer != issuer || res.Principal.Subject != subject {
		t.Fatalf("result = %+v, want ok with iss %s and sub %s", res, issuer, subject)
	}

	// when the function acting as an identity that trusts another role is checked
	res = check(t, trustcheck.Wrap(next, config(untrusted)), wire.Request{Identity: untrusted})

	// then it is refused, naming the same iss and sub
	if res.OK || res.Class != wire.ClassRefused || res.Principal.Subject != subject {
		t.Fatalf("result = %+v, want refused, presenting sub %s", res, subject)
	}
	if !strings.Contains(res.Principal.String(), "a web identity token with iss "+issuer+" and sub "+subject) {
		t.Errorf("principal reads %q", res.Principal)
	}
	out, _ := json.Marshal(res)
	for _, s := range []string{string(out), logs.String()} {
		if m := jwtLike.FindString(s); m != "" {
			t.Errorf("a token-like string (%d characters) leaked", len(m))
		}
	}
}

func TestPanicAnswers(t *testing.T) {
	// given a function whose STS client panics
	f := newFixture(t, nil)
	cfg := f.callerConfig(f.identity)
	cfg.Token.Credentials = panicking{}
	fn := trustcheck.Wrap(f.next, cfg)

	// when it is checked
	res := check(t, fn, wire.Request{Identity: f.identity})

	// then the check still answers, with the failure
	if res.OK || !strings.Contains(res.Error, "internal error (panic)") {
		t.Fatalf("result = %+v, want the panic reported", res)
	}
}

type panicking struct{}

func (panicking) Retrieve(context.Context) (aws.Credentials, error) { panic("credentials exploded") }
