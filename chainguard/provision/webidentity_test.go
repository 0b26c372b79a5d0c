package provision_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// The web-identity trust (claim_match) against the emulator: the workload
// proves itself with a JWT from AWS sts:GetWebIdentityToken, through the
// real aws-sdk-go-v2 STS client at the emulator's AWS stand-in.

const (
	// The web workload: role web-auth under the path /team/, whose
	// sessions' tokens carry sub = webRoleARN.
	webRole     = "web-auth"
	webRolePath = "/team/"
	webRoleARN  = "arn:aws:iam::111122223333:role/team/web-auth"
	otherIssuer = "https://00000000-0000-0000-0000-000000000000.tokens.sts.global.api.aws"
)

// webEnv is env with the account's outbound identity federation enabled
// and the web workload registered with the AWS stand-in.
type webEnv struct {
	*env
	issuer string          // the account's federation issuer
	sts    *awssts.Client  // the web workload's STS client
	creds  aws.Credentials // the web workload's AWS credentials
}

func newWebEnv(t *testing.T) *webEnv {
	t.Helper()
	env := newEnv(t, "owner")
	workload := emulator.AssumedRolePrincipal(account, webRole, "web-auth-fn")
	workload.RoleARN = webRoleARN
	creds := env.e.RegisterAWSPrincipal(workload)
	return &webEnv{
		env:    env,
		issuer: env.e.EnableWebIdentityFederation(account),
		sts:    emulatortest.STSClient(env.e, creds, "us-east-1"),
		creds:  creds,
	}
}

// webTrust trusts the web workload's role through the account's issuer, for
// tokens whose audience is the emulator's issuer.
func (w *webEnv) webTrust() trust.WebIdentity {
	return trust.WebIdentity{Account: account, Partition: "aws", RoleName: webRole, RolePath: webRolePath, Issuer: w.issuer, Audience: w.e.IssuerURL()}
}

// webToken is a token of identity for the web workload, once everything
// made so far has propagated to the STS.
func (w *webEnv) webToken(t testing.TB, identity string) string {
	t.Helper()
	time.Sleep(w.e.PropagationDelay())
	return emulatortest.WebIdentityToken(t, w.e, w.sts, identity)
}

// wantWebRefused checks that the web workload's token is refused for
// identity with PermissionDenied naming what did not match.
func (w *webEnv) wantWebRefused(t *testing.T, identity, mismatch string) {
	t.Helper()
	time.Sleep(w.e.PropagationDelay())
	_, err := emulatortest.ExchangeWebIdentity(ctxT(t, 10*time.Second), w.e, w.sts, identity)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), mismatch) {
		t.Fatalf("exchange for %s = %v, want PermissionDenied naming the %s", identity, err, mismatch)
	}
}

// stored returns the identity id as the emulator holds it.
func stored(t *testing.T, e *emulator.Emulator, id string) emulator.Identity {
	t.Helper()
	s := e.State()
	i := slices.IndexFunc(s.Identities, func(i emulator.Identity) bool { return i.ID == id })
	if i < 0 {
		t.Fatalf("identity %s is not in the emulator", id)
	}
	return s.Identities[i]
}

// wantClaimMatch checks that the stored identity's claim_match is exactly
// issuer, subject and audience (no patterns, no other claims) and that it
// holds no aws_identity.
func wantClaimMatch(t *testing.T, got emulator.Identity, tr trust.WebIdentity) {
	t.Helper()
	want := &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: tr.Issuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: tr.Subject()},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: tr.Audience},
	}
	if got.AWS != nil || !proto.Equal(got.ClaimMatch, want) {
		t.Fatalf("identity %s trusts aws_identity %v, claim_match {%v}; want only claim_match {%v}", got.ID, got.AWS, got.ClaimMatch, want)
	}
}

// updates records the UpdateIdentity requests sent through the clients a
// connector wraps.
type updates struct {
	mu   sync.Mutex
	reqs []*iam.UpdateIdentityRequest
}

func (u *updates) masks() [][]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out [][]string
	for _, r := range u.reqs {
		out = append(out, r.GetUpdateMask().GetPaths())
	}
	return out
}

// recording wraps conn's clients so that u sees every UpdateIdentity.
func (u *updates) recording(conn provision.ConnectFunc) provision.ConnectFunc {
	return func(ctx context.Context) (iam.Clients, error) {
		c, err := conn(ctx)
		if err != nil {
			return nil, err
		}
		return recordingClients{Clients: c, u: u}, nil
	}
}

type recordingClients struct {
	iam.Clients
	u *updates
}

func (c recordingClients) IdentitiesService() iam.IdentitiesServiceClient {
	return recordingIdentities{IdentitiesServiceClient: c.Clients.IdentitiesService(), u: c.u}
}

type recordingIdentities struct {
	iam.IdentitiesServiceClient
	u *updates
}

func (r recordingIdentities) UpdateIdentity(ctx context.Context, req *iam.UpdateIdentityRequest, opts ...grpc.CallOption) (*iam.Identity, error) {
	r.u.mu.Lock()
	r.u.reqs = append(r.u.reqs, req)
	r.u.mu.Unlock()
	return r.IdentitiesServiceClient.UpdateIdentity(ctx, req, opts...)
}

// A claim_match identity's whole life: created with its bindings, used by
// the workload's web identity token to list repos, updated in place (the
// issuer, the role path, the description: same UIDP, mask claim_match),
// replayed and deleted with its bindings, leaving the emulator as it was.
func TestWebIdentityFullCycle(t *testing.T) {
	w := newWebEnv(t)
	var upd updates
	w.p = w.newProvisioner(t, upd.recording(w.connector()), fastOpts...)
	ctx := ctxT(t, 60*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	w.e.SeedRepo(group, "nginx")
	before := w.e.State()

	spec := provision.IdentitySpec{
		Group: group, Name: "web-auth-identity", Description: "first", Trust: w.webTrust(),
		Roles: []string{"viewer", "registry.pull"}, ManagedBy: managedBy,
	}
	id, err := w.p.EnsureIdentity(ctx, spec)
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	if !id.Created || uidp.Parent(id.ID) != group || id.Name != spec.Name || !slices.Equal(id.Roles, []string{"registry.pull", "viewer"}) {
		t.Fatalf("EnsureIdentity = %+v, want a new identity in %s bound as registry.pull and viewer", id, group)
	}
	got := stored(t, w.e, id.ID)
	wantClaimMatch(t, got, spec.Trust.(trust.WebIdentity))
	if got.ClaimMatch.GetSubject() != webRoleARN || got.ClaimMatch.GetIssuer() != w.issuer || got.ClaimMatch.GetAudience() != w.e.IssuerURL() {
		t.Fatalf("claim_match = %v, want issuer %s, subject %s (the role ARN with its path), audience %s", got.ClaimMatch, w.issuer, webRoleARN, w.e.IssuerURL())
	}
	if got.Description != "first"+marked {
		t.Fatalf("description = %q, want first%s", got.Description, marked)
	}
	if roles := bindingsOf(w.e, group, id.ID); !slices.Equal(roles, []string{"registry.pull", "viewer"}) {
		t.Fatalf("bindings = %v, want [registry.pull viewer]", roles)
	}

	// The workload's web identity token is exchanged for the identity,
	// whose token lists the group's repos.
	tok := w.webToken(t, id.ID)
	if repos, err := listRepos(ctx, w.e.APIURL(), tok, group); err != nil || !slices.Equal(repos, []string{"nginx"}) {
		t.Fatalf("list repos as the identity = %v, %v; want [nginx]", repos, err)
	}
	// The caller-identity proof of the same session is not what it trusts.
	time.Sleep(w.e.PropagationDelay())
	if _, err := emulatortest.Exchange(ctx, w.e, w.creds, id.ID); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a GetCallerIdentity token for the claim_match identity = %v, want PermissionDenied", err)
	}

	// A replay changes nothing and makes no duplicate: two lists.
	rpcs := w.p.RPCs()
	again, err := w.p.EnsureIdentity(ctx, spec)
	if err != nil || again.ID != id.ID || again.Created {
		t.Fatalf("replay = %+v, %v; want %s unchanged", again, err, id.ID)
	}
	if n := w.p.RPCs() - rpcs; n != 2 {
		t.Errorf("replay made %d RPCs, want 2 (list identities, list bindings)", n)
	}

	// Updates in place, each with the physical ID as CloudFormation sends
	// it: only the trust's contents and the description change.
	steps := []struct {
		name     string
		mutate   func(*provision.IdentitySpec)
		mismatch string // what the workload's token no longer matches; "" if it still works
	}{
		{"the role path", func(s *provision.IdentitySpec) {
			tr := s.Trust.(trust.WebIdentity)
			tr.RolePath = "/"
			s.Trust, s.Description = tr, "second"
		}, "subject"},
		{"the path back", func(s *provision.IdentitySpec) {
			tr := s.Trust.(trust.WebIdentity)
			tr.RolePath = webRolePath
			s.Trust = tr
		}, ""},
		{"the issuer", func(s *provision.IdentitySpec) {
			tr := s.Trust.(trust.WebIdentity)
			tr.Issuer = otherIssuer
			s.Trust = tr
		}, "issuer"},
		{"the issuer back and the description", func(s *provision.IdentitySpec) {
			tr := s.Trust.(trust.WebIdentity)
			tr.Issuer = w.issuer
			s.Trust, s.Description = tr, "third"
		}, ""},
	}
	spec.ID = id.ID
	for _, step := range steps {
		step.mutate(&spec)
		bindings := bindingIDs(w.e, group, id.ID)
		n := len(upd.masks())
		rpcs := w.p.RPCs()
		got, err := w.p.EnsureIdentity(ctx, spec)
		if err != nil || got.ID != id.ID || got.Created {
			t.Fatalf("update %s = %+v, %v; want %s updated in place", step.name, got, err, id.ID)
		}
		if r := w.p.RPCs() - rpcs; r != 3 {
			t.Errorf("update %s made %d RPCs, want 3 (list identities, update, list bindings)", step.name, r)
		}
		if masks := upd.masks()[n:]; len(masks) != 1 || !slices.Equal(masks[0], []string{"name", "description", "claim_match"}) {
			t.Fatalf("update %s sent update masks %v, want one: [name description claim_match]", step.name, masks)
		}
		s := stored(t, w.e, id.ID)
		wantClaimMatch(t, s, spec.Trust.(trust.WebIdentity))
		if s.Description != spec.Description+marked {
			t.Fatalf("description after updating %s = %q, want %s%s", step.name, s.Description, spec.Description, marked)
		}
		if after := bindingIDs(w.e, group, id.ID); !slices.Equal(after, bindings) {
			t.Fatalf("bindings went from %v to %v, want them kept", bindings, after)
		}
		if step.mismatch != "" {
			w.wantWebRefused(t, id.ID, step.mismatch)
		} else {
			w.webToken(t, id.ID)
		}
	}

	rpcs = w.p.RPCs()
	if err := w.p.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatalf("DeleteIdentity: %v", err)
	}
	if n := w.p.RPCs() - rpcs; n != 4 {
		// Two bindings: list them, delete each, delete the identity.
		t.Errorf("DeleteIdentity made %d RPCs, want 4", n)
	}
	if err := w.p.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatalf("DeleteIdentity again: %v", err)
	}
	if after := w.e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("the emulator ended with %v, want what it held before: %v", after.IDs(), before.IDs())
	}
}

// A change of the kind of trust, with the physical ID set as on an Update,
// is a replacement: a new identity of the new kind, the old one left
// untouched for CloudFormation's Delete, and never taken for a namesake
// (refused) or a duplicate (deleted). Then CloudFormation deletes the old
// one, and the change back goes the same way.
func TestTrustKindChangeReplaces(t *testing.T) {
	w := newWebEnv(t)
	ctx := ctxT(t, 60*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	before := w.e.State()
	aws := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Description: "d", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
	web := aws
	web.Trust = w.webTrust()

	first, err := w.p.EnsureIdentity(ctx, aws)
	if err != nil {
		t.Fatalf("EnsureIdentity (caller identity): %v", err)
	}
	// Warm: the role cache is filled; what follows counts only the change.
	replace := func(from provision.Identity, to provision.IdentitySpec, kind string) provision.Identity {
		t.Helper()
		to.ID = from.ID
		old := stored(t, w.e, from.ID)
		oldBindings := bindingIDs(w.e, group, from.ID)
		rpcs := w.p.RPCs()
		got, err := w.p.EnsureIdentity(ctx, to)
		if err != nil {
			t.Fatalf("EnsureIdentity (to %s) with the old ID: %v", kind, err)
		}
		if !got.Created || got.ID == from.ID || uidp.Parent(got.ID) != group || got.Name != to.Name {
			t.Fatalf("EnsureIdentity (to %s) = %+v, want a new identity in %s beside %s", kind, got, group, from.ID)
		}
		if n := w.p.RPCs() - rpcs; n > 4 {
			t.Errorf("the replacement made %d RPCs, want at most 4", n)
		}
		if now := stored(t, w.e, from.ID); !reflect.DeepEqual(now, old) || !slices.Equal(bindingIDs(w.e, group, from.ID), oldBindings) {
			t.Fatalf("the old identity changed: %+v with bindings %v, was %+v with %v", now, bindingIDs(w.e, group, from.ID), old, oldBindings)
		}
		if roles := bindingsOf(w.e, group, got.ID); !slices.Equal(roles, []string{"viewer"}) {
			t.Fatalf("bindings of the new identity = %v, want [viewer]", roles)
		}
		// A replay of the Update (same old ID) finds the new one.
		replay, err := w.p.EnsureIdentity(ctx, to)
		if err != nil || replay.ID != got.ID || replay.Created {
			t.Fatalf("replayed Update = %+v, %v; want %s found", replay, err, got.ID)
		}
		// An Update of the new one while the old one still exists (the
		// same name, the other kind): neither refused nor deleted.
		to.ID, to.Description = got.ID, "changed"
		if again, err := w.p.EnsureIdentity(ctx, to); err != nil || again.ID != got.ID || again.Created {
			t.Fatalf("Update of the new identity beside the old = %+v, %v; want %s in place", again, err, got.ID)
		}
		if n := len(identityNamed(w.e, group, to.Name)); n != 2 {
			t.Fatalf("%d identities named %s, want 2: the old and the new", n, to.Name)
		}
		// CloudFormation's Delete of the old physical ID.
		if err := w.p.DeleteIdentity(ctx, from.ID); err != nil {
			t.Fatalf("DeleteIdentity of the old identity: %v", err)
		}
		if left := identityNamed(w.e, group, to.Name); len(left) != 1 || left[0].ID != got.ID {
			t.Fatalf("identities named %s = %+v, want just %s", to.Name, left, got.ID)
		}
		return got
	}

	second := replace(first, web, "web identity")
	wantClaimMatch(t, stored(t, w.e, second.ID), web.Trust.(trust.WebIdentity))
	w.webToken(t, second.ID)

	third := replace(second, aws, "caller identity")
	if got := stored(t, w.e, third.ID); got.ClaimMatch != nil || !sameAWSIdentity(got.AWS, workloadTrust()) {
		t.Fatalf("identity %s trusts aws_identity %v, claim_match %v; want only the caller-identity trust", third.ID, got.AWS, got.ClaimMatch)
	}
	w.workloadToken(t, third.ID)

	if err := w.p.DeleteIdentity(ctx, third.ID); err != nil {
		t.Fatalf("DeleteIdentity: %v", err)
	}
	if after := w.e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("the emulator ended with %v, want what it held before: %v", after.IDs(), before.IDs())
	}
}

// Without an owner (ManagedBy), nothing tells the caller's identity of the
// other kind from someone else's: a change of kind is refused, naming the
// identity, and nothing changes.
func TestTrustKindChangeWithoutOwnerIsRefused(t *testing.T) {
	w := newWebEnv(t)
	ctx := ctxT(t, 30*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	spec := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}}
	made, err := w.p.EnsureIdentity(ctx, spec)
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	before := w.e.State()
	for _, id := range []string{made.ID, ""} {
		spec.ID, spec.Trust = id, w.webTrust()
		_, err = w.p.EnsureIdentity(ctx, spec)
		t.Logf("error: %v", err)
		if want := `identity "aws-auth-identity" (` + made.ID + `) holds the other kind of trust, which is never changed in place`; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("EnsureIdentity (ID %q) error = %v, want it to contain %q", id, err, want)
		}
	}
	if after := w.e.State(); !reflect.DeepEqual(after.Identities, before.Identities) || !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatal("a refused change of kind changed the emulator")
	}
}

// An identity of this name made by someone else (no marker) is refused
// whatever its kind, and one of the caller's of the other kind found by
// name alone (a Create replayed after a kind change) is not adopted.
func TestWebIdentityOwnership(t *testing.T) {
	w := newWebEnv(t)
	ctx := ctxT(t, 30*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	foreign := w.e.SeedIdentity(group, "taken", "someone else's", workloadPrincipal().ExactTrust(), nil)
	spec := provision.IdentitySpec{Group: group, Name: "taken", Trust: w.webTrust(), ManagedBy: managedBy}
	if _, err := w.p.EnsureIdentity(ctx, spec); err == nil || !strings.Contains(err.Error(), `identity "taken" already exists in group `+group+` and was not created by this stack`) {
		t.Fatalf("EnsureIdentity onto a foreign namesake: error = %v, want a refusal", err)
	}
	if n := len(identityNamed(w.e, group, "taken")); n != 1 {
		t.Fatalf("%d identities named taken, want only %s", n, foreign)
	}

	ours := w.e.SeedIdentity(group, "ours", "d"+marked, workloadPrincipal().ExactTrust(), map[string][]string{group: {"viewer"}})
	spec.Name = "ours"
	got, err := w.p.EnsureIdentity(ctx, spec)
	if err != nil || !got.Created || got.ID == ours {
		t.Fatalf("EnsureIdentity of a web identity named as the caller's caller-identity one = %+v, %v; want a new identity", got, err)
	}
	if roles := bindingsOf(w.e, group, ours); !slices.Equal(roles, []string{"viewer"}) {
		t.Fatalf("the caller-identity one's bindings = %v, want them untouched: [viewer]", roles)
	}
}

// A claim_match identity is deleted with its bindings; deleting it again
// succeeds.
func TestDeleteWebIdentity(t *testing.T) {
	w := newWebEnv(t)
	ctx := ctxT(t, 30*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	before := w.e.State()
	tr := w.webTrust()
	seeded := w.e.SeedClaimMatchIdentity(group, "web-auth-identity", "d"+marked, &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: tr.Issuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: tr.Subject()},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: tr.Audience},
	}, map[string][]string{group: {"viewer"}})
	w.webToken(t, seeded) // it works before

	rpcs := w.p.RPCs()
	if err := w.p.DeleteIdentity(ctx, seeded); err != nil {
		t.Fatalf("DeleteIdentity: %v", err)
	}
	if n := w.p.RPCs() - rpcs; n > 3 {
		t.Errorf("DeleteIdentity made %d RPCs, want at most 3", n)
	}
	if after := w.e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("the emulator holds %v after the delete, want %v", after.IDs(), before.IDs())
	}
	if err := w.p.DeleteIdentity(ctx, seeded); err != nil {
		t.Fatalf("DeleteIdentity again: %v", err)
	}
	_, err := emulatortest.ExchangeWebIdentity(ctx, w.e, w.sts, seeded)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("exchange for the deleted identity = %v, want NotFound", err)
	}
}

// Every invalid field of a web-identity trust is refused before any RPC,
// naming the field, as validate.ErrInvalid.
func TestWebIdentityValidationBeforeAnyRPC(t *testing.T) {
	w := newWebEnv(t)
	ctx := ctxT(t, 30*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	tests := []struct {
		name    string
		mutate  func(*trust.WebIdentity)
		wantErr string
	}{
		{"account", func(tr *trust.WebIdentity) { tr.Account = "1234" }, `Account: AWS account ID "1234" is not valid`},
		{"partition", func(tr *trust.WebIdentity) { tr.Partition = "aws-cn" }, `Partition: partition "aws-cn"`},
		{"no partition", func(tr *trust.WebIdentity) { tr.Partition = "" }, `Partition: partition ""`},
		{"role name", func(tr *trust.WebIdentity) { tr.RoleName = "team/web-auth" }, `RoleName: IAM role name "team/web-auth"`},
		{"no role path", func(tr *trust.WebIdentity) { tr.RolePath = "" }, `RolePath: IAM role path is empty`},
		{"role path without slashes", func(tr *trust.WebIdentity) { tr.RolePath = "team" }, `RolePath: IAM role path "team" is not valid`},
		{"no issuer", func(tr *trust.WebIdentity) { tr.Issuer = "" }, `Issuer: web identity issuer is empty`},
		{"issuer over plain http", func(tr *trust.WebIdentity) { tr.Issuer = "http://example.com/federation/x" }, `Issuer: web identity issuer "http://example.com/federation/x" uses plain http`},
		{"issuer with a trailing slash", func(tr *trust.WebIdentity) { tr.Issuer = otherIssuer + "/" }, `ends with "/"`},
		{"issuer with a query", func(tr *trust.WebIdentity) { tr.Issuer = otherIssuer + "?x=1" }, `without query or fragment`},
		{"no audience", func(tr *trust.WebIdentity) { tr.Audience = "" }, `Audience: `},
		{"audience not a URL", func(tr *trust.WebIdentity) { tr.Audience = "issuer.enforce.dev" }, `Audience: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := w.webTrust()
			tt.mutate(&tr)
			rpcs := w.p.RPCs()
			_, err := w.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "web-auth-identity", Trust: tr, Roles: []string{"viewer"}, ManagedBy: managedBy})
			t.Logf("error: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("EnsureIdentity error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("error %v does not match validate.ErrInvalid", err)
			}
			var fe *trust.FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v holds no *trust.FieldError", err)
			}
			if n := w.p.RPCs() - rpcs; n != 0 {
				t.Errorf("made %d RPCs for an invalid trust, want 0", n)
			}
		})
	}
	if n := len(identityNamed(w.e, group, "web-auth-identity")); n != 0 {
		t.Fatalf("%d identities were created, want 0", n)
	}
}

// The RPC targets hold in the web-identity trust as in the other: a create
// with one binding makes at most 4 RPCs (the role cache warm), a delete at
// most 3.
func TestWebIdentityRPCTargets(t *testing.T) {
	w := newWebEnv(t)
	ctx := ctxT(t, 30*time.Second)
	group := w.e.SeedGroup(w.root, "example-group", "")
	spec := func(name string) provision.IdentitySpec {
		return provision.IdentitySpec{Group: group, Name: name, Trust: w.webTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
	}
	if _, err := w.p.EnsureIdentity(ctx, spec("warm")); err != nil { // fills the role cache
		t.Fatal(err)
	}
	rpcs := w.p.RPCs()
	id, err := w.p.EnsureIdentity(ctx, spec("web-auth-identity"))
	if err != nil {
		t.Fatal(err)
	}
	if n := w.p.RPCs() - rpcs; n > 4 {
		t.Errorf("create made %d RPCs, want at most 4", n)
	}
	rpcs = w.p.RPCs()
	if err := w.p.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatal(err)
	}
	if n := w.p.RPCs() - rpcs; n > 3 {
		t.Errorf("delete made %d RPCs, want at most 3", n)
	}
}
