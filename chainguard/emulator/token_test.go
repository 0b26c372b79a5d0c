package emulator_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	cgauth "chainguard.dev/sdk/auth"
	cgaws "chainguard.dev/sdk/auth/aws"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestTokenIsJWT checks the token format under each expiry reading: a JWT
// whose claims the SDK reads (iss, sub, aud, exp) plus iat and jti, with the
// response's expiry equal to exp or, with OmitExpiry, unset.
func TestTokenIsJWT(t *testing.T) {
	tests := []struct {
		name       string
		omitExpiry bool
	}{
		{"expiry in the response", false},
		{"OmitExpiry", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := emulatortest.NewEnv(t, emulator.Options{OmitExpiry: tt.omitExpiry})
			before := time.Now()
			pair, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner)
			if err != nil {
				t.Fatal(err)
			}
			exp, err := cgauth.ExtractExpiry(pair.AccessToken)
			if err != nil {
				t.Fatalf("auth.ExtractExpiry: %v", err)
			}
			if want := before.Add(emulator.DefaultTokenTTL); exp.Before(want.Add(-time.Second)) || exp.After(want.Add(time.Second)) {
				t.Errorf("exp claim %s, want about %s", exp, want)
			}
			// With the environment override on, OmitExpiry is on whatever
			// the Options say.
			if omitted := tt.omitExpiry || env.OmitExpiry(); omitted != pair.Expiry.IsZero() {
				t.Errorf("response expiry %v with OmitExpiry %v", pair.Expiry, omitted)
			} else if !omitted && !pair.Expiry.Equal(exp) {
				t.Errorf("response expiry %s differs from the exp claim %s", pair.Expiry, exp)
			}
			iss, sub, err := cgauth.ExtractIssuerAndSubject(pair.AccessToken)
			if err != nil || iss != env.IssuerURL() || sub != env.Provisioner {
				t.Errorf("iss, sub = %q, %q (%v), want %q, %q", iss, sub, err, env.IssuerURL(), env.Provisioner)
			}
			aud, err := cgauth.ExtractAudiences(pair.AccessToken)
			if err != nil || !slices.Equal(aud, []string{env.APIURL()}) {
				t.Errorf("aud = %v (%v), want [%s]", aud, err, env.APIURL())
			}
			claims := jwtClaims(t, pair.AccessToken)
			if iat, ok := claims["iat"].(float64); !ok || time.Unix(int64(iat), 0).Before(before.Add(-time.Second)) {
				t.Errorf("iat claim %v, want the exchange time", claims["iat"])
			}
			if jti, ok := claims["jti"].(string); !ok || jti == "" {
				t.Errorf("jti claim %v, want a token ID", claims["jti"])
			}
		})
	}
}

// jwtClaims decodes the payload of a JWT without verifying it.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want a JWT's 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("JWT claims: %v", err)
	}
	return c
}

// TestForgedTokens checks that the API verifies the signature: a token with
// a changed payload, or one signed by another emulator, is refused.
func TestForgedTokens(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	other := emulatortest.NewEnv(t, emulator.Options{})
	tok := env.MintToken(env.Provisioner)
	parts := strings.Split(tok, ".")
	claims := jwtClaims(t, tok)
	claims["exp"] = time.Now().Add(24 * time.Hour).Unix()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
	}{
		{"payload changed", parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]},
		{"signed by another emulator", other.MintToken(other.Provisioner)},
		{"signature dropped", parts[0] + "." + parts[1] + "."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := iamClients(t, env.Emulator, tt.token).Groups().List(testCtx(t), &iam.GroupFilter{})
			checkErr(t, err, codes.Unauthenticated, "not one this emulator issued")
		})
	}
}

// TestTokenSnapshot checks that a token carries the role bindings of its
// exchange, under each reading of later changes. In both, a binding made
// later does not count (lists just shrink, scoped calls are denied). By
// default a deleted binding stops counting, a changed role counts for what
// both roles grant, and a deleted identity's token is refused; with
// StatelessTokens the token keeps what it was issued with. Bindings are
// seeded or waited for, so the test holds under any propagation delay.
func TestTokenSnapshot(t *testing.T) {
	tests := []struct {
		name      string
		stateless bool
	}{
		{"strict (default)", false},
		{"StatelessTokens", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testTokenSnapshot(t, tt.stateless)
		})
	}
}

func testTokenSnapshot(t *testing.T, stateless bool) {
	env := emulatortest.NewEnv(t, emulator.Options{StatelessTokens: stateless})
	ctx := testCtx(t)
	owner := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	id := env.SeedIdentity(env.Group, "snapshot", "", env.WorkloadPrincipal.ExactTrust(), nil)
	visibleGroups := func(tok string) int {
		t.Helper()
		l, err := iamClients(t, env.Emulator, tok).Groups().List(ctx, &iam.GroupFilter{})
		checkErr(t, err, codes.OK)
		return len(l.GetItems())
	}
	visibleRepos := func(tok string) int {
		t.Helper()
		l, err := registryClient(t, env.Emulator, tok).ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
		checkErr(t, err, codes.OK)
		return len(l.GetItems())
	}
	createIdentity := func(tok string) error {
		_, err := iamClients(t, env.Emulator, tok).Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{
			Name: "made-by-snapshot", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()},
		}})
		return err
	}
	ifStrict := func(strict, whenStateless codes.Code) codes.Code {
		if stateless {
			return whenStateless
		}
		return strict
	}

	// A binding made after the exchange does not count, in both readings.
	before := env.MintToken(id)
	binding := env.SeedRoleBinding(env.Group, id, "owner")
	if n := visibleGroups(before); n != 0 {
		t.Errorf("a token exchanged before the binding lists %d groups, want 0", n)
	}
	if n := visibleRepos(before); n != 0 {
		t.Errorf("a token exchanged before the binding lists %d repos, want 0", n)
	}
	checkErr(t, createIdentity(before), codes.PermissionDenied, "CAP_IAM_IDENTITY_CREATE", "exchange a fresh one")
	after := env.MintToken(id)
	if n := visibleGroups(after); n != 1 {
		t.Errorf("a token exchanged after the binding lists %d groups, want 1", n)
	}
	checkErr(t, createIdentity(after), codes.OK)

	// Owner changed to viewer: listing stays; creating needs owner.
	_, err := owner.RoleBindings().Update(ctx, &iam.RoleBinding{Id: binding, Role: env.RoleID("viewer")})
	checkErr(t, err, codes.OK)
	if n := visibleRepos(after); n != len(env.Repos) {
		t.Errorf("after owner -> viewer, the older token lists %d repos, want %d", n, len(env.Repos))
	}
	checkErr(t, createIdentity(after), ifStrict(codes.PermissionDenied, codes.OK))

	// The binding deleted.
	_, err = owner.RoleBindings().Delete(ctx, &iam.DeleteRoleBindingRequest{Id: binding})
	checkErr(t, err, codes.OK)
	wantRepos, wantRoles := 0, 0
	if stateless {
		wantRepos, wantRoles = len(env.Repos), len(env.State().Roles)
	}
	if n := visibleRepos(after); n != wantRepos {
		t.Errorf("after the binding was deleted, the older token lists %d repos, want %d", n, wantRepos)
	}
	l, err := iamClients(t, env.Emulator, after).Roles().List(ctx, &iam.RoleFilter{})
	checkErr(t, err, codes.OK)
	if len(l.GetItems()) != wantRoles {
		t.Errorf("after the binding was deleted, the older token lists %d roles, want %d", len(l.GetItems()), wantRoles)
	}

	// The identity deleted.
	_, err = owner.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: id})
	checkErr(t, err, codes.OK)
	_, err = iamClients(t, env.Emulator, after).Groups().List(ctx, &iam.GroupFilter{})
	checkErr(t, err, ifStrict(codes.Unauthenticated, codes.OK))
}

// TestPropagationDelay checks the lag of objects created through the API: a
// new identity is NotFound at the STS until the delay has passed, and a new
// binding is left out of tokens exchanged before created+delay (for good:
// the token does not pick it up later).
func TestPropagationDelay(t *testing.T) {
	const delay = 500 * time.Millisecond
	env := emulatortest.NewEnv(t, emulator.Options{PropagationDelay: delay})
	ctx := testCtx(t)
	owner := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	trust := &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()}
	// within reports whether less than the delay has passed since start: the
	// lag is asserted only then, so a slow machine cannot fail the test.
	within := func(start time.Time) bool { return time.Since(start) < delay }

	start := time.Now()
	created, err := owner.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "fresh", Relationship: trust}})
	checkErr(t, err, codes.OK)
	_, err = emulatortest.Exchange(ctx, env.Emulator, env.WorkloadCredentials, created.GetId())
	if within(start) {
		checkErr(t, err, codes.NotFound, emulator.NotYetKnown, created.GetId())
	}
	// emulatortest.Token waits it out, as a client should.
	emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, created.GetId())
	if took := time.Since(start); took < delay {
		t.Errorf("the identity propagated after %s, want %s", took, delay)
	}

	// A seeded identity is known at once; a binding created through the API
	// is not in a token exchanged before created+delay, not even once the
	// delay has passed.
	seeded := env.SeedIdentity(env.Group, "seeded", "", env.WorkloadPrincipal.ExactTrust(), nil)
	repos := func(tok string) int {
		t.Helper()
		l, err := registryClient(t, env.Emulator, tok).ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
		checkErr(t, err, codes.OK)
		return len(l.GetItems())
	}
	start = time.Now()
	_, err = owner.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iam.RoleBinding{Identity: seeded, Role: env.RoleID("viewer")}})
	checkErr(t, err, codes.OK)
	done := time.Now() // the binding was stamped between start and done
	early := emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, seeded)
	if within(start) {
		if n := repos(early); n != 0 {
			t.Errorf("a token exchanged within the delay lists %d repos, want 0", n)
		}
		time.Sleep(time.Until(done.Add(delay)))
		if n := repos(early); n != 0 {
			t.Errorf("after the delay, the early token lists %d repos, want 0 (its bindings are those of its exchange)", n)
		}
	} else {
		time.Sleep(time.Until(done.Add(delay)))
	}
	if n := repos(emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, seeded)); n != len(env.Repos) {
		t.Errorf("a token exchanged after the delay lists %d repos, want %d", n, len(env.Repos))
	}

	// A role change propagates like a new binding.
	bindings, err := owner.RoleBindings().List(ctx, &iam.RoleBindingFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
	checkErr(t, err, codes.OK)
	var binding string
	for _, b := range bindings.GetItems() {
		if b.GetIdentity() == seeded {
			binding = b.GetId()
		}
	}
	start = time.Now()
	_, err = owner.RoleBindings().Update(ctx, &iam.RoleBinding{Id: binding, Role: env.RoleID("registry.pull")})
	checkErr(t, err, codes.OK)
	if tok := emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, seeded); within(start) {
		if n := repos(tok); n != 0 {
			t.Errorf("a token exchanged within the delay after a role change lists %d repos, want 0", n)
		}
	}
}

// TestExchangeScopes checks requested scopes and capabilities: a token holds
// only the bindings on (or above) its scopes, applied to those scopes and
// their descendants, and only the requested capabilities.
func TestExchangeScopes(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	exchange := func(opts ...sts.ExchangerOption) (string, error) {
		awsTok, err := cgaws.GenerateToken(ctx, env.ProvisionerCredentials, env.IssuerURL(), env.Provisioner)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := sts.New(env.IssuerURL(), env.APIURL(), append(opts, sts.WithIdentity(env.Provisioner))...).Exchange(ctx, awsTok)
		return pair.AccessToken, err
	}
	tests := []struct {
		name       string
		opts       []sts.ExchangerOption
		wantErr    codes.Code
		wantGroups int // groups listed (the provisioner owns the root: 2 without restriction)
		wantRepos  int
	}{
		{"no scope", nil, codes.OK, 2, 3},
		{"scope = the child group", []sts.ExchangerOption{sts.WithScope(env.Group)}, codes.OK, 1, 3},
		{"groups.list only", []sts.ExchangerOption{sts.WithCapabilities("groups.list")}, codes.OK, 2, 0},
		{"scope not a UIDP", []sts.ExchangerOption{sts.WithScope("example-group")}, codes.InvalidArgument, 0, 0},
		{"unknown capability", []sts.ExchangerOption{sts.WithCapabilities("groups.lsit")}, codes.InvalidArgument, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := exchange(tt.opts...)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				return
			}
			g, err := iamClients(t, env.Emulator, tok).Groups().List(ctx, &iam.GroupFilter{})
			checkErr(t, err, codes.OK)
			r, err := registryClient(t, env.Emulator, tok).ListRepos(ctx, &registry.RepoFilter{})
			checkErr(t, err, codes.OK)
			if len(g.GetItems()) != tt.wantGroups || len(r.GetItems()) != tt.wantRepos {
				t.Errorf("listed %d groups and %d repos, want %d and %d", len(g.GetItems()), len(r.GetItems()), tt.wantGroups, tt.wantRepos)
			}
		})
	}
}

// TestStartSettings checks the strictness settings and their environment
// overrides (not parallel: it sets the environment).
func TestStartSettings(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		opts      emulator.Options
		wantErr   string
		wantDelay time.Duration
		wantOmit  bool
	}{
		{"defaults", map[string]string{emulator.EnvPropagationDelay: "", emulator.EnvOmitExpiry: ""}, emulator.Options{}, "", 0, false},
		{"environment", map[string]string{emulator.EnvPropagationDelay: "250ms", emulator.EnvOmitExpiry: "1"}, emulator.Options{}, "", 250 * time.Millisecond, true},
		{"environment false", map[string]string{emulator.EnvPropagationDelay: "0s", emulator.EnvOmitExpiry: "false"}, emulator.Options{}, "", 0, false},
		{"Options win", map[string]string{emulator.EnvPropagationDelay: "250ms", emulator.EnvOmitExpiry: "0"}, emulator.Options{PropagationDelay: time.Second, OmitExpiry: true}, "", time.Second, true},
		{"invalid delay", map[string]string{emulator.EnvPropagationDelay: "soon"}, emulator.Options{}, emulator.EnvPropagationDelay, 0, false},
		{"invalid omit", map[string]string{emulator.EnvPropagationDelay: "", emulator.EnvOmitExpiry: "yes"}, emulator.Options{}, emulator.EnvOmitExpiry, 0, false},
		{"negative delay", map[string]string{emulator.EnvPropagationDelay: "-1s"}, emulator.Options{}, "negative", 0, false},
		{"TTL under a second", nil, emulator.Options{TokenTTL: 500 * time.Millisecond}, "whole seconds", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Cases start from an empty environment: a CI job's own values
			// must not decide them.
			t.Setenv(emulator.EnvPropagationDelay, "")
			t.Setenv(emulator.EnvOmitExpiry, "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			e, err := emulator.Start(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start = %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = e.Close() }()
			if e.PropagationDelay() != tt.wantDelay || e.OmitExpiry() != tt.wantOmit {
				t.Errorf("PropagationDelay, OmitExpiry = %s, %v; want %s, %v", e.PropagationDelay(), e.OmitExpiry(), tt.wantDelay, tt.wantOmit)
			}
		})
	}
}

// TestIssuerReachable makes the issuer unreachable and back: an exchange
// blocks until its deadline meanwhile (the SDK waits for readiness), the API
// keeps serving, and the issuer answers on the same URL afterwards.
func TestIssuerReachable(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	if _, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call is a no-op
		if err := env.SetIssuerReachable(false); err != nil {
			t.Fatal(err)
		}
	}
	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := emulatortest.Exchange(ctx, env.Emulator, env.ProvisionerCredentials, env.Provisioner)
	if took := time.Since(start); took < deadline-10*time.Millisecond {
		t.Errorf("exchange with the issuer unreachable returned after %s, want a wait until its %s deadline", took, deadline)
	}
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("exchange with the issuer unreachable: %v, want DeadlineExceeded", err)
	}
	_, err = iamClients(t, env.Emulator, env.MintToken(env.Provisioner)).Groups().List(testCtx(t), &iam.GroupFilter{})
	checkErr(t, err, codes.OK)

	if err := env.SetIssuerReachable(true); err != nil {
		t.Fatal(err)
	}
	if _, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner); err != nil {
		t.Fatalf("exchange after the issuer came back: %v", err)
	}
	_ = env.Close()
	if err := env.SetIssuerReachable(false); err == nil {
		t.Error("SetIssuerReachable after Close succeeded")
	}
}
