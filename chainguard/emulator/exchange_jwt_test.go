package emulator_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/sts"
	"chainguard.dev/sdk/uidp"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// roleARN is the sub of the web identity tokens of role name in account.
func roleARN(name string) string { return "arn:aws:iam::" + account + ":role/" + name }

// claimMatch builds a claim_match; a value starting with "^" is a pattern.
func claimMatch(issuer, subject string) *iam.Identity_ClaimMatch {
	c := &iam.Identity_ClaimMatch{}
	if strings.HasPrefix(issuer, "^") {
		c.Iss = &iam.Identity_ClaimMatch_IssuerPattern{IssuerPattern: issuer}
	} else {
		c.Iss = &iam.Identity_ClaimMatch_Issuer{Issuer: issuer}
	}
	if strings.HasPrefix(subject, "^") {
		c.Sub = &iam.Identity_ClaimMatch_SubjectPattern{SubjectPattern: subject}
	} else {
		c.Sub = &iam.Identity_ClaimMatch_Subject{Subject: subject}
	}
	return c
}

// withAudience sets c's audience (a value starting with "^" is a pattern).
func withAudience(c *iam.Identity_ClaimMatch, aud string) *iam.Identity_ClaimMatch {
	if strings.HasPrefix(aud, "^") {
		c.Aud = &iam.Identity_ClaimMatch_AudiencePattern{AudiencePattern: aud}
	} else {
		c.Aud = &iam.Identity_ClaimMatch_Audience{Audience: aud}
	}
	return c
}

// TestExchangeJWT probes the exchange of OIDC tokens (the web-identity
// trust mode) through the SDK's STS client: what must pass passes, and every
// refusal has the code and names the reason the emulator documents
// (exchange_jwt.go).
func TestExchangeJWT(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	iss := startTestOIDCIssuer(t)
	other := startTestOIDCIssuer(t) // another account's issuer
	fn := roleARN("aws-auth")
	seed := func(name string, trust *iam.Identity_ClaimMatch) string {
		return env.SeedClaimMatchIdentity(env.Group, name, "", trust, map[string][]string{env.Group: {"viewer"}})
	}
	exact := seed("exact", claimMatch(iss.URL, fn))
	explicitAud := seed("explicit-aud", withAudience(claimMatch(iss.URL, fn), env.IssuerURL()))
	patterns := seed("patterns", withAudience(claimMatch(`^`+regexp.QuoteMeta(iss.URL)+`$`, `^arn:aws:iam::111122223333:role/aws-.*$`), `^http://127\.0\.0\.1:[0-9]+$`))
	enforceAud := seed("enforce-aud", withAudience(claimMatch(iss.URL, fn), "https://issuer.enforce.dev"))
	withClaims := claimMatch(iss.URL, fn)
	withClaims.Claims = map[string]string{"team": "payments"}
	withClaims.ClaimPatterns = map[string]string{"team": `^pay`, "env": `^(dev|prod)$`}
	claims := seed("claims", withClaims)
	nested := claimMatch(iss.URL, fn)
	nested.Claims = map[string]string{"https://sts.amazonaws.com/": "111122223333"}
	nestedClaim := seed("nested-claim", nested)
	flag := claimMatch(iss.URL, fn)
	flag.ClaimPatterns = map[string]string{"admin": `^true$`}
	boolClaim := seed("bool-claim", flag)
	missing := string(uidp.UIDP(env.Group).NewChild())

	now := time.Now()
	tok := func(edit func(c map[string]any)) string {
		c := iss.claims(fn, env.IssuerURL(), now)
		if edit != nil {
			edit(c)
		}
		return iss.sign(t, c)
	}
	set := func(kv ...any) func(map[string]any) {
		return func(c map[string]any) {
			for i := 0; i < len(kv); i += 2 {
				c[kv[i].(string)] = kv[i+1]
			}
		}
	}
	del := func(keys ...string) func(map[string]any) {
		return func(c map[string]any) {
			for _, k := range keys {
				delete(c, k)
			}
		}
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	es256Key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// An issuer whose discovery document names another issuer.
	liar := startTestOIDCIssuer(t)
	liar.advertise(iss.URL)
	notFound := httptest.NewServer(nil) // 404 for everything
	t.Cleanup(notFound.Close)

	tests := []struct {
		name     string
		token    string
		identity string
		wantErr  codes.Code
		wantMsg  []string
	}{
		// Accepted.
		{"ES384 token, exact trust, default audience", tok(nil), exact, codes.OK, nil},
		{"RS256 token", signTestJWT(t, jose.RS256, iss.rsa, testRSAKid, iss.claims(fn, env.IssuerURL(), now)), exact, codes.OK, nil},
		{"explicit audience", tok(nil), explicitAud, codes.OK, nil},
		{"audience as an array", tok(set("aud", []string{"https://example.com", env.IssuerURL()})), exact, codes.OK, nil},
		{"patterns", tok(nil), patterns, codes.OK, nil},
		{"claims and claim_patterns", tok(set("team", "payments", "env", "prod")), claims, codes.OK, nil},
		{"iat a minute ahead (clock skew)", tok(set("iat", now.Add(time.Minute).Unix())), exact, codes.OK, nil},
		// The guide's audience, for an identity that names it.
		{"the guide's audience when the identity names it", tok(set("aud", "https://issuer.enforce.dev")), enforceAud, codes.OK, nil},

		// Refused by claim_match: PermissionDenied naming what did not match.
		{"wrong issuer", other.sign(t, other.claims(fn, env.IssuerURL(), now)), exact, codes.PermissionDenied, []string{"issuer " + other.URL + " is not the trusted issuer " + iss.URL}},
		{"wrong issuer (pattern)", other.sign(t, other.claims(fn, env.IssuerURL(), now)), patterns, codes.PermissionDenied, []string{"does not match the trusted issuer_pattern"}},
		{"wrong subject", tok(set("sub", roleARN("other-role"))), exact, codes.PermissionDenied, []string{"subject arn:aws:iam::111122223333:role/other-role is not the trusted subject " + fn}},
		{"wrong subject (pattern)", tok(set("sub", roleARN("other-role"))), patterns, codes.PermissionDenied, []string{"does not match the trusted subject_pattern"}},
		{"wrong audience (the guide's, identity without audience)", tok(set("aud", "https://issuer.enforce.dev")), exact, codes.PermissionDenied, []string{"audience", env.IssuerURL(), "requires"}},
		{"audience is the issuer's host only", tok(set("aud", strings.TrimPrefix(env.IssuerURL(), "http://"))), exact, codes.PermissionDenied, []string{"audience"}},
		{"wrong audience (explicit)", tok(set("aud", "https://console-api.enforce.dev")), explicitAud, codes.PermissionDenied, []string{"does not contain the trusted audience " + env.IssuerURL()}},
		{"wrong audience (pattern)", tok(set("aud", "https://issuer.enforce.dev")), patterns, codes.PermissionDenied, []string{"no value matching the trusted audience_pattern"}},
		{"claim value differs", tok(set("team", "payroll", "env", "prod")), claims, codes.PermissionDenied, []string{`claim "team" value "payroll" is not the trusted value "payments"`}},
		{"claim pattern mismatch", tok(set("team", "payments", "env", "staging")), claims, codes.PermissionDenied, []string{`claim "env"`, "claim_patterns"}},
		{"claim missing", tok(set("team", "payments")), claims, codes.PermissionDenied, []string{`claim "env" is missing`}},
		{"nested claim never matches", tok(nil), nestedClaim, codes.PermissionDenied, []string{`claim "https://sts.amazonaws.com/" is not a string`}},
		{"boolean claim never matches", tok(set("admin", true)), boolClaim, codes.PermissionDenied, []string{`claim "admin" is not a string`}},
		{"identity without claim_match", tok(nil), env.Provisioner, codes.PermissionDenied, []string{"no claim_match"}},

		// Refused by verification: Unauthenticated.
		{"expired", tok(set("iat", now.Add(-10*time.Minute).Unix(), "exp", now.Add(-5*time.Minute).Unix())), exact, codes.Unauthenticated, []string{"expired"}},
		{"no exp", tok(del("exp")), exact, codes.Unauthenticated, []string{"no exp claim"}},
		{"iat in the future", tok(set("iat", now.Add(10*time.Minute).Unix(), "exp", now.Add(15*time.Minute).Unix())), exact, codes.Unauthenticated, []string{"dated in the future"}},
		{"no iat", tok(del("iat")), exact, codes.Unauthenticated, []string{"no iat claim"}},
		{"signed by another key (same kid)", signTestJWT(t, jose.ES384, otherKey, testECKid, iss.claims(fn, env.IssuerURL(), now)), exact, codes.Unauthenticated, []string{"does not verify against its issuer " + iss.URL}},
		{"signed with an unsupported algorithm", signTestJWT(t, jose.ES256, es256Key, testECKid, iss.claims(fn, env.IssuerURL(), now)), exact, codes.Unauthenticated, []string{"does not verify"}},
		{"token of another issuer claiming this one", signTestJWT(t, jose.ES384, other.ec, testECKid, iss.claims(fn, env.IssuerURL(), now)), exact, codes.Unauthenticated, []string{"does not verify"}},

		// Refused before or at discovery: InvalidArgument.
		{"unknown issuer (discovery 404)", tok(set("iss", notFound.URL+"/federation/unknown")), exact, codes.InvalidArgument, []string{"discover the token's issuer " + notFound.URL}},
		{"unreachable issuer", tok(set("iss", "http://127.0.0.1:1")), exact, codes.InvalidArgument, []string{"discover the token's issuer"}},
		{"discovery names another issuer", liar.sign(t, liar.claims(fn, env.IssuerURL(), now)), exact, codes.InvalidArgument, []string{"discover the token's issuer " + liar.URL, "did not match"}},
		{"non-loopback http issuer", tok(set("iss", "http://issuer.example.com")), exact, codes.InvalidArgument, []string{"not a valid issuer URL", "loopback"}},
		{"issuer with a query", tok(set("iss", iss.URL+"?x=1")), exact, codes.InvalidArgument, []string{"not a valid issuer URL"}},
		{"no iss", tok(del("iss")), exact, codes.InvalidArgument, []string{"without an iss claim"}},
		{"no sub", tok(del("sub")), exact, codes.InvalidArgument, []string{"no sub claim"}},
		{"not a JWT", "a.b.c", exact, codes.InvalidArgument, []string{"neither an AWS token nor a JWT"}},

		// The identity.
		{"unknown identity", tok(nil), missing, codes.NotFound, []string{missing}},
		{"no identity requested", tok(nil), "", codes.InvalidArgument, []string{"identity is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			pair, err := sts.New(env.IssuerURL(), env.APIURL(), sts.WithIdentity(tt.identity)).Exchange(ctx, tt.token)
			checkErr(t, err, tt.wantErr, tt.wantMsg...)
			if msg := errMessage(err); strings.Contains(msg, tt.token) {
				t.Errorf("the error carries the token: %q", msg)
			}
			if err != nil {
				return
			}
			wantHourTokenListingRepos(t, env, pair)
			for _, id := range env.State().Identities {
				if id.ID == tt.identity && id.Proto.GetLastSeen() == nil {
					t.Errorf("identity %s has no last_seen after an exchange", id.ID)
				}
			}
		})
	}
}

// errMessage is the message of err ("" for nil).
func errMessage(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestExchangeJWTDiscoveryCache checks that an issuer is discovered once and
// kept, and that a failed discovery is not kept: an issuer that starts
// serving (federation enabled later) is found on the next exchange.
func TestExchangeJWTDiscoveryCache(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	iss := startTestOIDCIssuer(t)
	fn := roleARN("aws-auth")
	id := env.SeedClaimMatchIdentity(env.Group, "fn-1", "", claimMatch(iss.URL, fn), map[string][]string{env.Group: {"viewer"}})
	exchange := func() error {
		_, err := sts.New(env.IssuerURL(), env.APIURL(), sts.WithIdentity(id)).Exchange(testCtx(t), iss.sign(t, iss.claims(fn, env.IssuerURL(), time.Now())))
		return err
	}
	iss.setDown(true)
	checkErr(t, exchange(), codes.InvalidArgument, "discover")
	iss.setDown(false)
	checkErr(t, exchange(), codes.OK)
	checkErr(t, exchange(), codes.OK)
	if got := iss.discoveries(); got != 2 {
		t.Errorf("discovery requested %d times, want 2 (one failed, then one kept)", got)
	}
	// Kept for the emulator's lifetime: an issuer that stops answering
	// discovery is still verified with what was discovered.
	iss.setDown(true)
	checkErr(t, exchange(), codes.OK)
}

// TestExchangeJWTLikeAWS checks that what holds for AWS tokens holds for
// OIDC tokens: an identity created through the API is not known to the STS
// until the propagation delay has passed, a role binding created through the
// API reaches tokens only after it, and the token carries the bindings of
// its exchange (a binding created later does not count for it).
func TestExchangeJWTLikeAWS(t *testing.T) {
	const delay = 300 * time.Millisecond
	env := emulatortest.NewEnv(t, emulator.Options{PropagationDelay: delay})
	iss := startTestOIDCIssuer(t)
	fn := roleARN("aws-auth")
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	created, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{
		Name: "fn-1", Relationship: &iam.Identity_ClaimMatch_{ClaimMatch: withAudience(claimMatch(iss.URL, fn), env.IssuerURL())},
	}})
	checkErr(t, err, codes.OK)
	_, err = c.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iam.RoleBinding{Identity: created.GetId(), Role: env.RoleID("viewer")}})
	checkErr(t, err, codes.OK)
	exchange := func() (sts.TokenPair, error) {
		return sts.New(env.IssuerURL(), env.APIURL(), sts.WithIdentity(created.GetId())).Exchange(testCtx(t), iss.sign(t, iss.claims(fn, env.IssuerURL(), time.Now())))
	}
	_, err = exchange()
	checkErr(t, err, codes.NotFound, emulator.NotYetKnown)
	time.Sleep(delay)
	pair, err := exchange()
	checkErr(t, err, codes.OK)
	repos := registryClient(t, env.Emulator, pair.AccessToken)
	_, err = repos.ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
	checkErr(t, err, codes.OK)
	// A binding created after the exchange does not count for the token.
	_, err = c.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Root, RoleBinding: &iam.RoleBinding{Identity: created.GetId(), Role: env.RoleID("viewer")}})
	checkErr(t, err, codes.OK)
	time.Sleep(delay)
	v2 := emulatortest.IAMv2(t, env.Emulator, pair.AccessToken)
	_, err = v2.GroupsService().GetGroup(ctx, &iamv2.GetGroupRequest{Uid: env.Root})
	checkErr(t, err, codes.PermissionDenied)
	fresh, err := exchange()
	checkErr(t, err, codes.OK)
	_, err = emulatortest.IAMv2(t, env.Emulator, fresh.AccessToken).GroupsService().GetGroup(ctx, &iamv2.GetGroupRequest{Uid: env.Root})
	checkErr(t, err, codes.OK)
}
