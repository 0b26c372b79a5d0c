package emulator_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	cgauth "chainguard.dev/sdk/auth"
	cgaws "chainguard.dev/sdk/auth/aws"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/sts"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/chainguard-dev/clog"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

const (
	account      = "111122223333"
	otherAccount = "444455556666"
)

func TestExchange(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	fn := emulator.AssumedRolePrincipal(account, "aws-auth", "aws-auth-fn")
	otherAcct := emulator.AssumedRolePrincipal(otherAccount, "aws-auth", "aws-auth-fn")
	otherRole := emulator.AssumedRolePrincipal(account, "other-role", "aws-auth-fn")
	otherSession := emulator.AssumedRolePrincipal(account, "aws-auth", "other-fn")
	creds := map[string]aws.Credentials{}
	for name, p := range map[string]emulator.AWSPrincipal{"fn": fn, "otherAcct": otherAcct, "otherRole": otherRole, "otherSession": otherSession} {
		creds[name] = env.RegisterAWSPrincipal(p)
	}
	seed := func(name string, trust *iam.Identity_AWSIdentity) string {
		return env.SeedIdentity(env.Group, name, "", trust, map[string][]string{env.Group: {"viewer"}})
	}
	exact := seed("exact", fn.ExactTrust())
	pattern := seed("pattern", awsIdentity(account,
		`^arn:aws:sts::111122223333:assumed-role/aws-auth/[^/]+$`, `^`+emulator.RoleUniqueID(account, "aws-auth")+`:aws-auth-fn$`))
	recreatedRole := seed("recreated-role", awsIdentity(account, fn.ARN, "AROAAAAAAAAAAAAAAAAAA:aws-auth-fn"))
	unanchored := seed("unanchored", awsIdentity(account, `^arn:aws:sts::111122223333:assumed-role/aws-auth`, `^AROA.*`))
	ctx := testCtx(t)
	claims, err := iamClients(t, env.Emulator, env.MintToken(env.Provisioner)).Identities().Create(ctx, &iam.CreateIdentityRequest{
		ParentId: env.Group, Identity: &iam.Identity{Name: "oidc", Relationship: &iam.Identity_ClaimMatch_{ClaimMatch: &iam.Identity_ClaimMatch{
			Iss: &iam.Identity_ClaimMatch_Issuer{Issuer: "https://token.actions.githubusercontent.com"},
			Sub: &iam.Identity_ClaimMatch_Subject{Subject: "repo:org/repo:ref:refs/heads/main"},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(env.PropagationDelay()) // the identity made through the API reaches the STS
	missing := string(uidp.UIDP(env.Group).NewChild())

	withSecret := func(c aws.Credentials, secret string) aws.Credentials { c.SecretAccessKey = secret; return c }
	withSession := func(c aws.Credentials, tok string) aws.Credentials { c.SessionToken = tok; return c }
	withKey := func(c aws.Credentials, key string) aws.Credentials { c.AccessKeyID = key; return c }
	gen := func(c aws.Credentials, audience, identity string, at time.Time) string {
		t.Helper()
		tok, err := emulatortest.GenerateTokenAt(ctx, c, audience, identity, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	tests := []struct {
		name     string
		awsToken string // the AWS token sent
		identity string // the identity requested
		audience string // requested audience ("" = the API URL)
		wantErr  codes.Code
		wantMsg  []string
	}{
		{"exact trust", gen(creds["fn"], env.IssuerURL(), exact, now), exact, "", codes.OK, nil},
		{"SDK GenerateToken", sdkToken(t, creds["fn"], env.IssuerURL(), exact), exact, "", codes.OK, nil},
		{"pattern trust", gen(creds["fn"], env.IssuerURL(), pattern, now), pattern, "", codes.OK, nil},
		{"signed 14 minutes ago", gen(creds["fn"], env.IssuerURL(), exact, now.Add(-14*time.Minute)), exact, "", codes.OK, nil},
		{"wrong account", gen(creds["otherAcct"], env.IssuerURL(), exact, now), exact, "", codes.PermissionDenied, []string{"account 444455556666 is not the trusted account 111122223333"}},
		{"wrong ARN (other role)", gen(creds["otherRole"], env.IssuerURL(), exact, now), exact, "", codes.PermissionDenied, []string{"is not the trusted ARN"}},
		{"wrong ARN (other session)", gen(creds["otherSession"], env.IssuerURL(), exact, now), exact, "", codes.PermissionDenied, []string{"is not the trusted ARN"}},
		{"wrong user ID (role re-created)", gen(creds["fn"], env.IssuerURL(), recreatedRole, now), recreatedRole, "", codes.PermissionDenied, []string{"is not the trusted user ID"}},
		{"ARN pattern mismatch", gen(creds["otherRole"], env.IssuerURL(), pattern, now), pattern, "", codes.PermissionDenied, []string{"does not match the trusted arn_pattern"}},
		{"user ID pattern mismatch", gen(creds["otherSession"], env.IssuerURL(), pattern, now), pattern, "", codes.PermissionDenied, []string{"does not match the trusted user_id_pattern"}},
		// An unanchored pattern admits any value that merely contains a match.
		{"unanchored patterns match anywhere", gen(creds["fn"], env.IssuerURL(), unanchored, now), unanchored, "", codes.OK, nil},
		{"wrong secret", gen(withSecret(creds["fn"], "wrong-secret"), env.IssuerURL(), exact, now), exact, "", codes.Unauthenticated, []string{"SignatureDoesNotMatch"}},
		{"unknown access key", gen(withKey(creds["fn"], "ASIAUNKNOWNUNKNOWN00"), env.IssuerURL(), exact, now), exact, "", codes.Unauthenticated, []string{"InvalidClientTokenId", "unknown access key"}},
		{"wrong session token", gen(withSession(creds["fn"], "other"), env.IssuerURL(), exact, now), exact, "", codes.Unauthenticated, []string{"InvalidClientTokenId", "session token"}},
		{"signed 20 minutes ago", gen(creds["fn"], env.IssuerURL(), exact, now.Add(-20*time.Minute)), exact, "", codes.Unauthenticated, []string{"older than 15 minutes"}},
		{"signed 10 minutes ahead", gen(creds["fn"], env.IssuerURL(), exact, now.Add(10*time.Minute)), exact, "", codes.Unauthenticated, []string{"future"}},
		{"token for another issuer", gen(creds["fn"], "https://issuer.enforce.dev", exact, now), exact, "", codes.Unauthenticated, []string{"another audience", env.IssuerURL()}},
		{"token for another identity", gen(creds["fn"], env.IssuerURL(), pattern, now), exact, "", codes.Unauthenticated, []string{"another identity"}},
		{"unsigned binding headers", unsignedBindingToken(t, creds["fn"], env.IssuerURL(), exact), exact, "", codes.Unauthenticated, []string{"does not sign"}},
		{"not an AWS token", "not-a-token", exact, "", codes.InvalidArgument, []string{"not an AWS token"}},
		{"unknown identity", gen(creds["fn"], env.IssuerURL(), missing, now), missing, "", codes.NotFound, []string{missing}},
		{"identity not assumable by AWS", gen(creds["fn"], env.IssuerURL(), claims.GetId(), now), claims.GetId(), "", codes.PermissionDenied, []string{"no aws_identity"}},
		{"no identity requested", gen(creds["fn"], env.IssuerURL(), exact, now), "", "", codes.InvalidArgument, []string{"identity is required"}},
		{"wrong audience requested", gen(creds["fn"], env.IssuerURL(), exact, now), exact, "https://console-api.enforce.dev", codes.InvalidArgument, []string{"is not served by this issuer", env.APIURL()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aud := tt.audience
			if aud == "" {
				aud = env.APIURL()
			}
			ctx := testCtx(t)
			pair, err := sts.New(env.IssuerURL(), aud, sts.WithIdentity(tt.identity)).Exchange(ctx, tt.awsToken)
			checkErr(t, err, tt.wantErr, tt.wantMsg...)
			if err == nil {
				wantHourTokenListingRepos(t, env, pair)
			}
		})
	}
}

// sdkToken is auth/aws.GenerateToken itself.
func sdkToken(t *testing.T, c aws.Credentials, audience, identity string) string {
	t.Helper()
	tok, err := cgaws.GenerateToken(testCtx(t), c, audience, identity)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsignedBindingToken signs a GetCallerIdentity request and adds the
// Chainguard headers after signing.
func unsignedBindingToken(t *testing.T, c aws.Credentials, audience, identity string) string {
	t.Helper()
	req := newSTSRequest(t, nil)
	if err := v4.NewSigner().SignHTTP(testCtx(t), c, req, emptySHA256, "sts", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Chainguard-Audience", audience)
	req.Header.Set("Chainguard-Identity", identity)
	return encodeRequest(t, req)
}

// TestExchangedTokenExpires checks that the exp claim is the truth: the token
// works until that second and is refused from it on.
func TestExchangedTokenExpires(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{TokenTTL: time.Second})
	ctx := testCtx(t)
	pair, err := emulatortest.Exchange(ctx, env.Emulator, env.ProvisionerCredentials, env.Provisioner)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := cgauth.ExtractExpiry(pair.AccessToken)
	if err != nil {
		t.Fatalf("auth.ExtractExpiry: %v", err)
	}
	if d := time.Until(exp); d <= 0 || d > time.Second {
		t.Errorf("exp claim in %s, want within a second", d)
	}
	groups := iamClients(t, env.Emulator, pair.AccessToken).Groups()
	_, err = groups.List(ctx, &iam.GroupFilter{})
	checkErr(t, err, codes.OK)
	time.Sleep(time.Until(exp) + 10*time.Millisecond)
	_, err = groups.List(ctx, &iam.GroupFilter{})
	checkErr(t, err, codes.Unauthenticated, "expired")
}

func TestAPIAuthentication(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	issuerTokenOnAPI := func() string {
		// The AWS token is not an API token.
		return sdkToken(t, env.ProvisionerCredentials, env.IssuerURL(), env.Provisioner)
	}
	deletedIdentityToken := func() string {
		id := env.SeedIdentity(env.Group, "short-lived", "", env.ProvisionerPrincipal.ExactTrust(), nil)
		tok := env.MintToken(id)
		_, err := iamClients(t, env.Emulator, env.MintToken(env.Provisioner)).Identities().Delete(testCtx(t), &iam.DeleteIdentityRequest{Id: id})
		checkErr(t, err, codes.OK)
		return tok
	}
	tests := []struct {
		name    string
		token   string
		wantErr codes.Code
		wantMsg string
	}{
		{"valid raw token", env.MintToken(env.Provisioner), codes.OK, ""},
		{"valid Bearer token", "Bearer " + env.MintToken(env.Provisioner), codes.OK, ""},
		{"no token", "", codes.Unauthenticated, "authorization"},
		{"unknown token", "made-up", codes.Unauthenticated, "not one this emulator issued"},
		{"AWS token", issuerTokenOnAPI(), codes.Unauthenticated, "not one this emulator issued"},
		{"identity deleted", deletedIdentityToken(), codes.Unauthenticated, "no longer exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := iamClients(t, env.Emulator, tt.token).Roles().List(testCtx(t), &iam.RoleFilter{Name: "viewer"})
			checkErr(t, err, tt.wantErr, tt.wantMsg)
		})
	}
}

// TestTwoEmulators checks that tokens are verified by the emulator they were
// generated for, with several emulators in one process.
func TestTwoEmulators(t *testing.T) {
	a := emulatortest.NewEnv(t, emulator.Options{})
	b := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	for _, env := range []*emulatortest.Env{a, b} {
		if _, err := emulatortest.Exchange(ctx, env.Emulator, env.ProvisionerCredentials, env.Provisioner); err != nil {
			t.Fatalf("exchange at %s: %v", env.IssuerURL(), err)
		}
	}
	// a's credentials are unknown to b's AWS STS stand-in.
	tok := sdkToken(t, a.ProvisionerCredentials, b.IssuerURL(), b.Provisioner)
	_, err := emulatortest.ExchangeToken(ctx, b.Emulator, tok, b.Provisioner)
	checkErr(t, err, codes.Unauthenticated, "unknown access key")
	// A closed emulator's issuer is no longer routed.
	c := emulatortest.NewEnv(t, emulator.Options{})
	tok = sdkToken(t, c.ProvisionerCredentials, c.IssuerURL(), c.Provisioner)
	_ = c.Close()
	quiet := clog.WithLogger(ctx, clog.NewLogger(slog.New(slog.DiscardHandler)))
	_, err = cgaws.VerifyToken(quiet, tok, cgaws.WithIdentity(c.Provisioner), cgaws.WithAudience(setOf(c.IssuerURL())))
	if err == nil || !strings.Contains(err.Error(), "refusing to send an AWS token") {
		t.Errorf("VerifyToken for a closed emulator: got %v, want a refusal to contact the real AWS STS", err)
	}
}

func TestExchangeWithoutAuthorization(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	_, err := sts.New(env.IssuerURL(), env.APIURL(), sts.WithIdentity(env.Provisioner)).Exchange(testCtx(t), "")
	checkErr(t, err, codes.Unauthenticated, "authorization")
}
