package token_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"chainguard.dev/sdk/auth"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go/middleware"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
)

// The AWS actions of the AWS stand-in, as emulator.Calls names them.
const (
	getWebIdentityToken = "sts:GetWebIdentityToken"
	getCallerIdentity   = "sts:GetCallerIdentity" // in these tests: the Chainguard STS verifying a caller-identity token
)

// otherAccount holds principals of an account whose federation is off.
const otherAccount = "444455556666"

// wiFixture is a running emulator with the workload's account federated
// and an identity whose claim_match trusts the workload's role.
type wiFixture struct {
	e        *emulator.Emulator
	group    string
	identity string
	issuer   string // the workload account's AWS federation issuer
	tokens   *webIdentityTokens
	sts      *awssts.Client // signs as workload with the SDK's default retries, records its tokens
}

func startWebIdentity(t testing.TB, opts emulator.Options) wiFixture {
	t.Helper()
	e := emulatortest.Start(t, opts)
	root := e.SeedGroup("", "acme", "test root")
	group := e.SeedGroup(root, "example-group", "test group")
	issuer := e.EnableWebIdentityFederation(workload.Account)
	id := e.SeedClaimMatchIdentity(group, "aws-auth-identity", "trusts the workload role's web identity tokens",
		workload.WebIdentityTrust(issuer, e.IssuerURL()), map[string][]string{group: {"viewer"}})
	tokens := &webIdentityTokens{}
	return wiFixture{e: e, group: group, identity: id, issuer: issuer, tokens: tokens,
		sts: emulatortest.STSClient(e, e.RegisterAWSPrincipal(workload), "us-east-1", tokens.record, emulatortest.SDKRetries)}
}

// config is the web-identity Config of the workload for identity.
func (f wiFixture) config(identity string, client token.WebIdentityTokenAPI) token.Config {
	return token.Config{
		Issuer:     f.e.IssuerURL(),
		APIURL:     f.e.APIURL(),
		Identity:   identity,
		Trust:      token.WebIdentity,
		STS:        client,
		RPCTimeout: 2 * time.Second,
		Retry:      fastRetry,
	}
}

// webIdentityTokens records the GetWebIdentityToken requests of an SDK STS
// client and the tokens AWS answered (an SDK middleware: the client stays
// the real *sts.Client).
type webIdentityTokens struct {
	mu     sync.Mutex
	inputs []awssts.GetWebIdentityTokenInput
	jwts   []string
}

func (r *webIdentityTokens) record(o *awssts.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("recordWebIdentityToken",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if p, ok := in.Parameters.(*awssts.GetWebIdentityTokenInput); ok {
					r.mu.Lock()
					r.inputs = append(r.inputs, *p)
					if res, ok := out.Result.(*awssts.GetWebIdentityTokenOutput); ok && err == nil {
						r.jwts = append(r.jwts, aws.ToString(res.WebIdentityToken))
					}
					r.mu.Unlock()
				}
				return out, md, err
			}), middleware.After)
	})
}

func (r *webIdentityTokens) all() ([]awssts.GetWebIdentityTokenInput, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]awssts.GetWebIdentityTokenInput(nil), r.inputs...), append([]string(nil), r.jwts...)
}

// injecting injects fault (if not nil) into f's emulator, clearing every
// fault when t ends, and returns a check of the GetWebIdentityToken calls
// and Exchange RPCs made from then on.
func (f wiFixture) injecting(t *testing.T, fault func()) (wantCalls func(wantAWS, wantExchange int)) {
	t.Helper()
	t.Cleanup(f.e.ClearFaults)
	awsBefore, exBefore := f.e.Calls(getWebIdentityToken), f.e.Calls(exchangeMethod)
	if fault != nil {
		fault()
	}
	return func(wantAWS, wantExchange int) {
		t.Helper()
		if n := f.e.Calls(getWebIdentityToken) - awsBefore; n != wantAWS {
			t.Errorf("GetWebIdentityToken calls = %d, want %d", n, wantAWS)
		}
		if n := f.e.Calls(exchangeMethod) - exBefore; n != wantExchange {
			t.Errorf("Exchange RPCs = %d, want %d", n, wantExchange)
		}
	}
}

// jwtParts decodes a JWT's header and claims without verifying it.
func jwtParts(t testing.TB, raw string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	for i, into := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("decode JWT part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("parse JWT part %d: %v", i, err)
		}
	}
	return header, claims
}

// noSecrets fails t if err's text holds one of the secrets (a web identity
// token, an access key ID, a secret access key, a session token).
func noSecrets(t testing.TB, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error leaks a secret (%.8s...): %v", s, err)
		}
	}
}

// awsSecrets are the credentials of client.
func awsSecrets(t testing.TB, client *awssts.Client) []string {
	t.Helper()
	c, err := client.Options().Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return []string{c.AccessKeyID, c.SecretAccessKey, c.SessionToken}
}

// TestColdExchangeCalls counts the calls of a cold Source.Token in each
// trust mode: the workload's AWS calls and its Chainguard STS Exchange RPCs
// (and, for the caller-identity trust, the GetCallerIdentity the Chainguard
// STS makes itself to verify the signed request). Web identity: exactly 2,
// GetWebIdentityToken and Exchange.
func TestColdExchangeCalls(t *testing.T) {
	tests := []struct {
		trust          token.Trust
		wantAWS        int // sts:GetWebIdentityToken by the workload
		wantExchange   int
		wantVerifyCall int // sts:GetCallerIdentity by the Chainguard STS
	}{
		{trust: token.CallerIdentity, wantAWS: 0, wantExchange: 1, wantVerifyCall: 1},
		{trust: token.WebIdentity, wantAWS: 1, wantExchange: 1, wantVerifyCall: 0},
	}
	for _, tt := range tests {
		t.Run(string(tt.trust), func(t *testing.T) {
			e, cfg := coldConfig(t, tt.trust)
			s := mustSource(t, cfg)
			mustToken(t, s)
			aws, ex, verify := e.Calls(getWebIdentityToken), e.Calls(exchangeMethod), e.Calls(getCallerIdentity)
			t.Logf("cold exchange, %s trust: %d calls by the workload (%d AWS sts:GetWebIdentityToken + %d Chainguard STS Exchange); %d sts:GetCallerIdentity by the Chainguard STS",
				tt.trust, aws+ex, aws, ex, verify)
			if aws != tt.wantAWS || ex != tt.wantExchange || verify != tt.wantVerifyCall {
				t.Errorf("calls: GetWebIdentityToken %d, Exchange %d, GetCallerIdentity %d; want %d, %d, %d",
					aws, ex, verify, tt.wantAWS, tt.wantExchange, tt.wantVerifyCall)
			}
			for _, a := range []string{"iam:EnableOutboundWebIdentityFederation", "iam:GetOutboundWebIdentityFederationInfo", "iam:DisableOutboundWebIdentityFederation"} {
				if n := e.Calls(a); n != 0 {
					t.Errorf("Calls(%s) = %d, want 0: the workload never calls IAM", a, n)
				}
			}
		})
	}
}

// coldConfig starts an emulator with an identity for the workload in trust
// mode and returns the workload's Config.
func coldConfig(t testing.TB, trust token.Trust) (*emulator.Emulator, token.Config) {
	t.Helper()
	if trust == token.WebIdentity {
		f := startWebIdentity(t, emulator.Options{})
		return f.e, f.config(f.identity, f.sts)
	}
	f := start(t, emulator.Options{})
	return f.e, f.config(f.creds)
}

// TestWebIdentityExchangeEmulator: a web-identity exchange through the real
// SDK clients asks AWS for a token with audience = Config.Issuer, ES384 and
// 300 s, gets the one the emulator's account issuer signed (with the
// workload's role ARN as subject), and exchanges it for an hour's token of
// the identity.
func TestWebIdentityExchangeEmulator(t *testing.T) {
	for _, m := range expiryModes {
		t.Run(m.name, func(t *testing.T) {
			f := startWebIdentity(t, m.opts)
			cfg := f.config(f.identity, f.sts)
			tok, err := token.Exchange(t.Context(), cfg)
			if err != nil {
				t.Fatalf("Exchange() error = %v", err)
			}
			if tok.AccessToken == "" || time.Until(tok.Expiry) < 50*time.Minute {
				t.Fatalf("Exchange() = %v, want a token valid for about an hour", tok)
			}
			if _, claims := jwtParts(t, tok.AccessToken); claims["sub"] != f.identity {
				t.Errorf("Chainguard token sub = %v, want the identity %s", claims["sub"], f.identity)
			}

			inputs, jwts := f.tokens.all()
			if len(inputs) != 1 || len(jwts) != 1 {
				t.Fatalf("GetWebIdentityToken requests = %d (tokens %d), want 1", len(inputs), len(jwts))
			}
			in := inputs[0]
			if len(in.Audience) != 1 || in.Audience[0] != cfg.Issuer || aws.ToString(in.SigningAlgorithm) != "ES384" ||
				aws.ToInt32(in.DurationSeconds) != 300 || len(in.Tags) != 0 {
				t.Errorf("request: audience %q, algorithm %s, duration %d, %d tags; want [%s], ES384, 300, none",
					in.Audience, aws.ToString(in.SigningAlgorithm), aws.ToInt32(in.DurationSeconds), len(in.Tags), cfg.Issuer)
			}
			header, claims := jwtParts(t, jwts[0])
			if header["alg"] != "ES384" || header["kid"] != "EC384_0" {
				t.Errorf("JWT header %v, want alg ES384, kid EC384_0", header)
			}
			if claims["aud"] != cfg.Issuer || claims["iss"] != f.issuer || claims["sub"] != workload.WebIdentitySubject() {
				t.Errorf("JWT aud %v, iss %v, sub %v; want %s, %s, %s", claims["aud"], claims["iss"], claims["sub"], cfg.Issuer, f.issuer, workload.WebIdentitySubject())
			}
			if life := claims["exp"].(float64) - claims["iat"].(float64); life != 300 {
				t.Errorf("JWT lifetime exp - iat = %v s, want 300", life)
			}
			if n := f.e.Calls(getWebIdentityToken) + f.e.Calls(exchangeMethod); n != 2 {
				t.Errorf("calls = %d, want 2", n)
			}
		})
	}
}

// TestWebIdentitySourceRefresh: a Source serves warm calls without any AWS
// or Chainguard STS call until DefaultRefreshMargin before the token's
// expiry, then refreshes with exactly 2 calls (a fresh web identity token:
// the first lived 5 minutes).
func TestWebIdentitySourceRefresh(t *testing.T) {
	for _, m := range expiryModes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.TokenTTL = time.Hour
			f := startWebIdentity(t, opts)
			var c clock
			c.set(time.Now())
			s := mustSource(t, f.config(f.identity, f.sts), token.WithClock(c.now))
			calls := func() int { return f.e.Calls(getWebIdentityToken) + f.e.Calls(exchangeMethod) }

			first := mustToken(t, s)
			if n := calls(); n != 2 {
				t.Fatalf("cold Token(): %d calls, want 2", n)
			}
			expiry, err := auth.ExtractExpiry(first) // the Source's expiry (TestExchangeExpiry)
			if err != nil {
				t.Fatal(err)
			}
			refreshAt := expiry.Add(-token.DefaultRefreshMargin)
			steps := []struct {
				name      string
				at        time.Time
				wantCalls int // in all, since the start
				wantSame  bool
			}{
				{name: "just after", at: c.now().Add(time.Second), wantCalls: 2, wantSame: true},
				{name: "past the web identity token's 5 minutes", at: c.now().Add(6 * time.Minute), wantCalls: 2, wantSame: true},
				{name: "half an hour on", at: c.now().Add(30 * time.Minute), wantCalls: 2, wantSame: true},
				{name: "a second before the margin", at: refreshAt.Add(-time.Second), wantCalls: 2, wantSame: true},
				{name: "at the margin: refreshed", at: refreshAt, wantCalls: 4},
			}
			prev := first
			for _, st := range steps {
				c.set(st.at)
				for range 3 {
					got := mustToken(t, s)
					if (got == prev) != st.wantSame {
						t.Errorf("%s: token same as before = %v, want %v", st.name, got == prev, st.wantSame)
					}
					prev = got
					if !st.wantSame {
						break // the new token's refresh time depends on the emulator's clock, not c
					}
				}
				if n := calls(); n != st.wantCalls {
					t.Errorf("%s: %d calls in all, want %d", st.name, n, st.wantCalls)
				}
			}
			if n := f.e.Calls(getWebIdentityToken); n != 2 {
				t.Errorf("GetWebIdentityToken calls = %d, want 2 (one per exchange)", n)
			}
		})
	}
}

// TestWebIdentityExchangeRefusals: every refusal says which side refused
// (AWS: ErrGenerate; Chainguard: ErrRefused) and why, and calls only what
// it must; no error holds the web identity token or an AWS key.
func TestWebIdentityExchangeRefusals(t *testing.T) {
	f := startWebIdentity(t, emulator.Options{})
	otherIssuer := f.e.EnableWebIdentityFederation("999988887777")
	otherRole := emulator.AssumedRolePrincipal(workload.Account, "other-role", "my-fn")
	trustsOtherRole := f.e.SeedClaimMatchIdentity(f.group, "other-role-identity", "", otherRole.WebIdentityTrust(f.issuer, f.e.IssuerURL()), map[string][]string{f.group: {"viewer"}})
	trustsOtherIssuer := f.e.SeedClaimMatchIdentity(f.group, "other-issuer-identity", "", workload.WebIdentityTrust(otherIssuer, f.e.IssuerURL()), map[string][]string{f.group: {"viewer"}})
	trustsAWSIdentity := f.e.SeedIdentity(f.group, "caller-identity", "", workload.ExactTrust(), map[string][]string{f.group: {"viewer"}})
	offPrincipal := emulator.AssumedRolePrincipal(otherAccount, "aws-auth", "my-fn")
	offTokens := &webIdentityTokens{}
	federationOff := emulatortest.STSClient(f.e, f.e.RegisterAWSPrincipal(offPrincipal), "us-east-1", offTokens.record, emulatortest.SDKRetries)
	// The SDK's own retries of a 5xx, without their waits of up to seconds.
	quickRetries := emulatortest.STSClient(f.e, f.e.RegisterAWSPrincipal(workload), "us-east-1", f.tokens.record, emulatortest.SDKRetries, func(o *awssts.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.Backoff = retry.BackoffDelayerFunc(noBackoff) })
	})
	presented := "the AWS token presented iss " + f.issuer + " and sub " + workload.WebIdentitySubject()

	tests := []struct {
		name         string
		identity     string
		client       *awssts.Client
		fault        func()
		wantIs       error
		wantAs       any // a pointer to an error type errors.As must find
		wantCode     codes.Code
		wantErr      []string
		notErr       []string // what the error must not say
		wantAWS      int      // sts:GetWebIdentityToken calls
		wantExchange int
	}{
		{
			name: "federation disabled (AWS)", identity: f.identity, client: federationOff,
			wantIs: token.ErrGenerate, wantAs: new(*ststypes.OutboundWebIdentityFederationDisabledException),
			wantErr: []string{
				"get an AWS web identity token for identity " + f.identity + " at " + f.e.IssuerURL(),
				"AWS refused: outbound identity federation is not enabled for this AWS account",
				"-c trust=webIdentity", "aws iam enable-outbound-web-identity-federation",
			},
			wantAWS: 1,
		},
		{
			name: "access denied (AWS)", identity: f.identity, client: f.sts,
			fault:  func() { f.e.FailNextAWS(getWebIdentityToken, 1, "AccessDenied", http.StatusForbidden) },
			wantIs: token.ErrGenerate,
			wantErr: []string{
				"get an AWS web identity token for identity " + f.identity,
				"AWS refused: this role may not call sts:GetWebIdentityToken for audience " + f.e.IssuerURL() + ", algorithm ES384 and 5m0s: grant it",
				"AccessDenied",
			},
			wantAWS: 1,
		},
		{
			name: "AWS fails on its side, past the SDK's retries", identity: f.identity, client: quickRetries,
			fault:   func() { f.e.FailNextAWS(getWebIdentityToken, 3, "InternalFailure", http.StatusInternalServerError) },
			wantIs:  token.ErrUnreachable,
			wantErr: []string{"get an AWS web identity token for identity " + f.identity, "AWS STS GetWebIdentityToken", "InternalFailure"},
			wantAWS: 3,
		},
		{
			name: "identity trusts another role (Chainguard)", identity: trustsOtherRole, client: f.sts,
			wantIs: token.ErrRefused, wantCode: codes.PermissionDenied,
			wantErr: []string{
				"exchange AWS token for identity " + trustsOtherRole + " at " + f.e.IssuerURL() + ": refused: permission denied",
				"subject " + workload.WebIdentitySubject() + " is not the trusted subject " + otherRole.WebIdentitySubject(),
				presented,
			},
			wantAWS: 1, wantExchange: 1,
		},
		{
			name: "identity trusts another issuer (Chainguard)", identity: trustsOtherIssuer, client: f.sts,
			wantIs: token.ErrRefused, wantCode: codes.PermissionDenied,
			wantErr: []string{"refused: permission denied", "is not the trusted issuer " + otherIssuer, presented},
			wantAWS: 1, wantExchange: 1,
		},
		{
			name: "identity trusts a caller identity (Chainguard)", identity: trustsAWSIdentity, client: f.sts,
			wantIs: token.ErrRefused, wantCode: codes.PermissionDenied,
			wantErr: []string{"is not assumable with OIDC tokens (it has no claim_match)", presented},
			wantAWS: 1, wantExchange: 1,
		},
		{
			name: "identity does not exist (Chainguard)", identity: f.group + "/0123456789abcdef", client: f.sts,
			wantIs: token.ErrRefused, wantCode: codes.NotFound,
			wantErr: []string{"refused: not found", "check the identity UIDP"},
			notErr:  []string{"the AWS token presented"},
			wantAWS: 1, wantExchange: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCalls := f.injecting(t, tt.fault)
			_, err := token.Exchange(t.Context(), f.config(tt.identity, tt.client))
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Exchange() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			t.Logf("error: %v", err)
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
				}
			}
			for _, w := range tt.notErr {
				if strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it not to contain %q", err, w)
				}
			}
			if tt.wantAs != nil && !errors.As(err, tt.wantAs) {
				t.Errorf("Exchange() error = %v, want errors.As %T", err, tt.wantAs)
			}
			if tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
				t.Errorf("status.Code = %v, want %v", status.Code(err), tt.wantCode)
			}
			if tt.wantIs == token.ErrGenerate && errors.Is(err, token.ErrRefused) {
				t.Errorf("an AWS refusal matches ErrRefused (the Chainguard side's): %v", err)
			}
			wantCalls(tt.wantAWS, tt.wantExchange)
			_, jwts := f.tokens.all()
			_, offJWTs := offTokens.all()
			noSecrets(t, err, append(append(append(jwts, offJWTs...), awsSecrets(t, tt.client)...), "eyJ")...)
		})
	}
}

// TestWebIdentityNotYetPropagated: an identity created through the API a
// moment ago is not yet known to the STS (the emulator's propagation
// delay): NotFound, a Chainguard refusal that says so, and the same token
// once it has propagated.
func TestWebIdentityNotYetPropagated(t *testing.T) {
	const delay = time.Second
	f := startWebIdentity(t, emulator.Options{PropagationDelay: delay})
	owner := f.e.SeedIdentity(f.group, "owner", "", intruder.ExactTrust(), map[string][]string{f.group: {"owner"}})
	client, err := iam.NewClients(t.Context(), f.e.APIURL(), f.e.MintToken(owner))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	created, err := client.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: f.group, Identity: &iam.Identity{
		Name:         "fresh",
		Relationship: &iam.Identity_ClaimMatch_{ClaimMatch: workload.WebIdentityTrust(f.issuer, f.e.IssuerURL())},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The server stamped the identity before Create returned: the delay
	// has surely passed once it has passed from now.
	createdBy := time.Now()
	cfg := f.config(created.GetId(), f.sts)
	_, err = token.Exchange(t.Context(), cfg)
	if !errors.Is(err, token.ErrRefused) || status.Code(err) != codes.NotFound {
		t.Fatalf("Exchange() right after Create: error = %v, want ErrRefused with NotFound", err)
	}
	for _, w := range []string{"refused: not found", emulator.NotYetKnown, "it propagates within " + delay.String()} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
		}
	}
	t.Logf("error: %v", err)
	time.Sleep(time.Until(createdBy.Add(delay)))
	if _, err := token.Exchange(t.Context(), cfg); err != nil {
		t.Fatalf("Exchange() after the propagation delay: %v", err)
	}
}

// TestWebIdentityDeadlines: every step is bounded by Config.RPCTimeout. An
// AWS endpoint that never answers (a listener that accepts and stays
// silent, or the emulator's AWS side hanging) fails the AWS step within the
// timeout as ErrUnreachable, with no Chainguard call; a Chainguard STS that
// hangs is retried with the same web identity token (one AWS call).
func TestWebIdentityDeadlines(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := startWebIdentity(t, emulator.Options{})
	silent := silentListener(t)
	silentSTS := emulatortest.STSClient(f.e, f.e.RegisterAWSPrincipal(workload), "us-east-1", emulatortest.SDKRetries, func(o *awssts.Options) { o.BaseEndpoint = aws.String(silent) })

	tests := []struct {
		name         string
		client       *awssts.Client
		fault        func()
		wantIs       error
		wantErr      []string
		maxTime      time.Duration
		wantAWS      int
		wantExchange int
	}{
		{
			name: "AWS endpoint never answers", client: silentSTS,
			wantIs:  token.ErrUnreachable,
			wantErr: []string{"get an AWS web identity token for identity " + f.identity, "AWS STS did not answer GetWebIdentityToken within 300ms: check AWS_REGION", "deadline exceeded"},
			maxTime: timeout + 500*time.Millisecond,
		},
		{
			name: "AWS hangs", client: f.sts, fault: func() { f.e.HangNext(getWebIdentityToken, 1) },
			wantIs:  token.ErrUnreachable,
			wantErr: []string{"get an AWS web identity token for identity " + f.identity, "AWS STS did not answer GetWebIdentityToken within 300ms", "deadline exceeded"},
			maxTime: timeout + 500*time.Millisecond,
			wantAWS: 1,
		},
		{
			name: "Chainguard STS hangs once: retried with the same AWS token", client: f.sts, fault: func() { f.e.HangNext(exchangeMethod, 1) },
			maxTime: 2*timeout + 500*time.Millisecond,
			wantAWS: 1, wantExchange: 2,
		},
		{
			name: "Chainguard STS hangs on every attempt", client: f.sts, fault: func() { f.e.HangNext(exchangeMethod, 1000) },
			wantIs:  token.ErrUnreachable,
			wantErr: []string{"exchange AWS token for identity " + f.identity, "unreachable: no answer within 300ms", "(after 4 attempts)"},
			maxTime: 4*timeout + time.Second,
			wantAWS: 1, wantExchange: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCalls := f.injecting(t, tt.fault)
			cfg := f.config(f.identity, tt.client)
			cfg.RPCTimeout = timeout
			began := time.Now()
			tok, err := token.Exchange(t.Context(), cfg)
			took := time.Since(began)
			if took > tt.maxTime {
				t.Errorf("Exchange() took %s, want at most %s", took, tt.maxTime)
			}
			wantCalls(tt.wantAWS, tt.wantExchange)
			if tt.wantIs == nil {
				if err != nil || tok.AccessToken == "" {
					t.Fatalf("Exchange() = %v, %v; want a token", tok, err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Exchange() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			t.Logf("error after %s: %v", took.Round(time.Millisecond), err)
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
				}
			}
			_, jwts := f.tokens.all()
			noSecrets(t, err, append(jwts, awsSecrets(t, tt.client)...)...)
		})
	}
}

func noBackoff(int, error) (time.Duration, error) { return time.Millisecond, nil }

// silentListener is the URL of a listener that accepts connections and
// never answers (closed when t ends).
func silentListener(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + l.Addr().String()
}
