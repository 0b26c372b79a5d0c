package emulator_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestV2Authorization checks that v2 methods are authorized by their own
// chainguard.annotations.iam options: scoped ones on their iam_scope field
// (nested for Update: group.uid, identity.uid, role_binding.uid) or an
// ancestor, unscoped Lists filtered by the caller's rights.
func TestV2Authorization(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	a := env.SeedGroup(env.Root, "group-a", "")
	b := env.SeedGroup(env.Root, "group-b", "")
	p := env.ProvisionerPrincipal.ExactTrust()
	viewerA := env.SeedIdentity(a, "viewer-a", "", p, map[string][]string{a: {"viewer"}})
	editorA := env.SeedIdentity(a, "editor-a", "", p, map[string][]string{a: {"editor"}})
	ownerA := env.SeedIdentity(a, "owner-a", "", p, map[string][]string{a: {"owner"}})
	pullA := env.SeedIdentity(a, "pull-a", "", p, map[string][]string{a: {"registry.pull"}})
	inB := env.SeedIdentity(b, "in-b", "", p, nil)
	bindingB := env.SeedRoleBinding(b, inB, "viewer")
	bindingA := env.SeedRoleBinding(a, editorA, "viewer")
	newIdentity := &iamv2.Identity{Name: "new-one", Relationship: awsV2(env.WorkloadPrincipal)}

	tests := []struct {
		name    string
		caller  string
		call    func(c iamv2.Clients) error
		wantErr codes.Code
		wantMsg []string
	}{
		{"viewer gets its group", viewerA, func(c iamv2.Clients) error {
			_, err := c.GroupsService().GetGroup(testCtx(t), &iamv2.GetGroupRequest{Uid: a})
			return err
		}, codes.OK, nil},
		{"viewer of A cannot get B", viewerA, func(c iamv2.Clients) error {
			_, err := c.GroupsService().GetGroup(testCtx(t), &iamv2.GetGroupRequest{Uid: b})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_GROUPS_LIST", b}},
		{"viewer cannot update its group", viewerA, func(c iamv2.Clients) error {
			_, err := c.GroupsService().UpdateGroup(testCtx(t), &iamv2.UpdateGroupRequest{Group: &iamv2.Group{Uid: a, Description: "x"}, UpdateMask: mask("description")})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_GROUPS_UPDATE", a}},
		{"owner of A updates A", ownerA, func(c iamv2.Clients) error {
			_, err := c.GroupsService().UpdateGroup(testCtx(t), &iamv2.UpdateGroupRequest{Group: &iamv2.Group{Uid: a, Description: "x"}, UpdateMask: mask("description")})
			return err
		}, codes.OK, nil},
		{"owner of A cannot create groups in root (unscoped, checked on parent)", ownerA, func(c iamv2.Clients) error {
			_, err := c.GroupsService().CreateGroup(testCtx(t), &iamv2.CreateGroupRequest{Parent: env.Root, Group: &iamv2.Group{Name: "xyz"}})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_GROUPS_CREATE"}},
		{"owner of A cannot delete B", ownerA, func(c iamv2.Clients) error {
			_, err := c.GroupsService().DeleteGroup(testCtx(t), &iamv2.DeleteGroupRequest{Uid: b})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_GROUPS_DELETE"}},
		{"editor cannot create identities", editorA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().CreateIdentity(testCtx(t), &iamv2.CreateIdentityRequest{Parent: a, Identity: newIdentity})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_CREATE", "owner"}},
		{"owner of A creates identities in A", ownerA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().CreateIdentity(testCtx(t), &iamv2.CreateIdentityRequest{Parent: a, Identity: newIdentity})
			return err
		}, codes.OK, nil},
		{"owner of A cannot update an identity of B (identity.uid)", ownerA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().UpdateIdentity(testCtx(t), &iamv2.UpdateIdentityRequest{Identity: &iamv2.Identity{Uid: inB, Description: "x"}, UpdateMask: mask("description")})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_UPDATE", inB}},
		{"editor cannot update identities", editorA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().UpdateIdentity(testCtx(t), &iamv2.UpdateIdentityRequest{Identity: &iamv2.Identity{Uid: viewerA, Description: "x"}, UpdateMask: mask("description")})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_UPDATE"}},
		{"an update without its resource names the nested scope field", ownerA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().UpdateIdentity(testCtx(t), &iamv2.UpdateIdentityRequest{UpdateMask: mask("description")})
			return err
		}, codes.InvalidArgument, []string{"identity.uid is required"}},
		{"a malformed nested scope", ownerA, func(c iamv2.Clients) error {
			_, err := c.RoleBindingsService().UpdateRoleBinding(testCtx(t), &iamv2.UpdateRoleBindingRequest{RoleBinding: &iamv2.RoleBinding{Uid: "nope"}})
			return err
		}, codes.InvalidArgument, []string{"role_binding.uid", "not a UIDP"}},
		{"viewer cannot get identities of B", viewerA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().GetIdentity(testCtx(t), &iamv2.GetIdentityRequest{Uid: inB})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_LIST"}},
		{"editor cannot delete identities", editorA, func(c iamv2.Clients) error {
			_, err := c.IdentitiesService().DeleteIdentity(testCtx(t), &iamv2.DeleteIdentityRequest{Uid: viewerA})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_DELETE"}},
		{"editor cannot bind roles", editorA, func(c iamv2.Clients) error {
			_, err := c.RoleBindingsService().CreateRoleBinding(testCtx(t), &iamv2.CreateRoleBindingRequest{Parent: a, RoleBinding: &iamv2.RoleBinding{IdentityUid: viewerA, RoleUid: env.RoleID("owner")}})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_ROLE_BINDINGS_CREATE"}},
		{"owner of A cannot update a binding in B", ownerA, func(c iamv2.Clients) error {
			_, err := c.RoleBindingsService().UpdateRoleBinding(testCtx(t), &iamv2.UpdateRoleBindingRequest{RoleBinding: &iamv2.RoleBinding{Uid: bindingB, RoleUid: env.RoleID("owner")}})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_ROLE_BINDINGS_UPDATE", bindingB}},
		{"owner of A cannot delete a binding in B, even a missing one", ownerA, func(c iamv2.Clients) error {
			_, err := c.RoleBindingsService().DeleteRoleBinding(testCtx(t), &iamv2.DeleteRoleBindingRequest{Uid: b + "/0123456789abcdef"})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_ROLE_BINDINGS_DELETE"}},
		{"viewer gets a binding of its group", viewerA, func(c iamv2.Clients) error {
			_, err := c.RoleBindingsService().GetRoleBinding(testCtx(t), &iamv2.GetRoleBindingRequest{Uid: bindingA})
			return err
		}, codes.OK, nil},
		{"registry.pull cannot get roles", pullA, func(c iamv2.Clients) error {
			_, err := c.RolesService().GetRole(testCtx(t), &iamv2.GetRoleRequest{Uid: env.RoleID("viewer")})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_ROLES_LIST"}},
		{"viewer gets a role", viewerA, func(c iamv2.Clients) error {
			r, err := c.RolesService().GetRole(testCtx(t), &iamv2.GetRoleRequest{Uid: env.RoleID("viewer")})
			if err == nil && (r.GetName() != "viewer" || len(r.GetCapabilities()) == 0) {
				return errors.New("GetRole returned " + r.String())
			}
			return err
		}, codes.OK, nil},
		{"registry.pull lists no roles", pullA, func(c iamv2.Clients) error {
			l, err := c.RolesService().ListRoles(testCtx(t), &iamv2.ListRolesRequest{})
			if err == nil && len(l.GetRoles()) != 0 {
				return errors.New("listed roles")
			}
			return err
		}, codes.OK, nil},
		{"viewer of A lists only A's identities", viewerA, func(c iamv2.Clients) error {
			ids, err := c.ListIdentitiesAll(testCtx(t), &iamv2.ListIdentitiesRequest{})
			if err != nil {
				return err
			}
			for _, id := range ids {
				if id.GetUid() == inB || id.GetUid() == env.Provisioner {
					return errors.New("listed " + id.GetUid())
				}
			}
			if !slices.ContainsFunc(ids, func(id *iamv2.Identity) bool { return id.GetUid() == viewerA }) {
				return errors.New("did not list itself")
			}
			return nil
		}, codes.OK, nil},
		{"viewer of A lists only A's groups and bindings", viewerA, func(c iamv2.Clients) error {
			gs, err := c.ListGroupsAll(testCtx(t), &iamv2.ListGroupsRequest{})
			if err != nil {
				return err
			}
			if len(gs) != 1 || gs[0].GetUid() != a {
				return errors.New("groups: " + gs[0].String())
			}
			bs, err := c.ListRoleBindingsAll(testCtx(t), &iamv2.ListRoleBindingsRequest{})
			if err != nil {
				return err
			}
			for _, rb := range bs {
				if rb.GetGroup().GetUid() != a {
					return errors.New("binding outside A: " + rb.GetUid())
				}
			}
			return nil
		}, codes.OK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := emulatortest.IAMv2(t, env.Emulator, env.MintToken(tt.caller))
			checkErr(t, tt.call(c), tt.wantErr, tt.wantMsg...)
		})
	}
	t.Run("no token", func(t *testing.T) {
		_, err := emulatortest.IAMv2(t, env.Emulator, "").GroupsService().GetGroup(testCtx(t), &iamv2.GetGroupRequest{Uid: a})
		checkErr(t, err, codes.Unauthenticated)
	})
}

// TestV2Propagation checks that v2 writes propagate as v1 writes do: an
// identity created through v2 is not yet known to the STS, a binding created
// or changed through v2 is left out of tokens exchanged within the delay,
// and a binding moved to another identity stops counting for the first at
// once.
func TestV2Propagation(t *testing.T) {
	const delay = 400 * time.Millisecond
	env := emulatortest.NewEnv(t, emulator.Options{PropagationDelay: delay})
	ctx := testCtx(t)
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	within := func(start time.Time) bool { return time.Since(start) < delay }
	repos := func(tok string) int {
		t.Helper()
		l, err := registryClient(t, env.Emulator, tok).ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
		checkErr(t, err, codes.OK)
		return len(l.GetItems())
	}

	start := time.Now()
	fresh, err := v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{Name: "fresh", Relationship: awsV2(env.WorkloadPrincipal)}})
	checkErr(t, err, codes.OK)
	_, err = emulatortest.Exchange(ctx, env.Emulator, env.WorkloadCredentials, fresh.GetUid())
	if within(start) {
		checkErr(t, err, codes.NotFound, emulator.NotYetKnown)
	}

	first := env.SeedIdentity(env.Group, "first", "", env.WorkloadPrincipal.ExactTrust(), nil)
	second := env.SeedIdentity(env.Group, "second", "", env.WorkloadPrincipal.ExactTrust(), nil)
	start = time.Now()
	rb, err := v2.RoleBindingsService().CreateRoleBinding(ctx, &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{IdentityUid: first, RoleUid: env.RoleID("viewer")}})
	checkErr(t, err, codes.OK)
	// The server stamps the binding between start and now: "within" counts
	// from start (surely within), the wait from now (surely after).
	done := time.Now()
	if tok := emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, first); within(start) {
		if n := repos(tok); n != 0 {
			t.Errorf("a token exchanged within the delay after a v2 CreateRoleBinding lists %d repos, want 0", n)
		}
	}
	time.Sleep(time.Until(done.Add(delay)))
	firstTok := emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, first)
	if n := repos(firstTok); n != len(env.Repos) {
		t.Fatalf("after the delay the binding's token lists %d repos, want %d", n, len(env.Repos))
	}

	// Move the binding to the second identity.
	start = time.Now()
	_, err = v2.RoleBindingsService().UpdateRoleBinding(ctx, &iamv2.UpdateRoleBindingRequest{RoleBinding: &iamv2.RoleBinding{Uid: rb.GetUid(), IdentityUid: second}, UpdateMask: mask("identity_uid")})
	checkErr(t, err, codes.OK)
	done = time.Now()
	if n := repos(firstTok); n != 0 {
		t.Errorf("the first identity's token lists %d repos after its binding moved away, want 0", n)
	}
	if tok := emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, second); within(start) {
		if n := repos(tok); n != 0 {
			t.Errorf("a token exchanged within the delay after the move lists %d repos, want 0", n)
		}
	}
	time.Sleep(time.Until(done.Add(delay)))
	if n := repos(emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, second)); n != len(env.Repos) {
		t.Errorf("after the delay the moved binding's token lists %d repos, want %d", n, len(env.Repos))
	}
}

// TestV2Faults checks that v2 methods are counted and take injected faults
// under their full gRPC names.
func TestV2Faults(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	const create = "/chainguard.platform.iam.v2.IdentitiesService/CreateIdentity"
	methods := []string{
		"/chainguard.platform.iam.v2.GroupsService/GetGroup", "/chainguard.platform.iam.v2.GroupsService/ListGroups",
		"/chainguard.platform.iam.v2.GroupsService/CreateGroup", "/chainguard.platform.iam.v2.GroupsService/UpdateGroup",
		"/chainguard.platform.iam.v2.GroupsService/DeleteGroup",
		"/chainguard.platform.iam.v2.IdentitiesService/GetIdentity", "/chainguard.platform.iam.v2.IdentitiesService/ListIdentities",
		create, "/chainguard.platform.iam.v2.IdentitiesService/UpdateIdentity", "/chainguard.platform.iam.v2.IdentitiesService/DeleteIdentity",
		"/chainguard.platform.iam.v2.RolesService/GetRole", "/chainguard.platform.iam.v2.RolesService/ListRoles",
		"/chainguard.platform.iam.v2.RoleBindingsService/GetRoleBinding", "/chainguard.platform.iam.v2.RoleBindingsService/ListRoleBindings",
		"/chainguard.platform.iam.v2.RoleBindingsService/CreateRoleBinding", "/chainguard.platform.iam.v2.RoleBindingsService/UpdateRoleBinding",
		"/chainguard.platform.iam.v2.RoleBindingsService/DeleteRoleBinding",
	}
	for _, m := range methods {
		if n := env.Calls(m); n != 0 { // panics on a method the emulator does not serve
			t.Errorf("Calls(%s) = %d before any call", m, n)
		}
	}
	req := &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{Name: "faulty", Relationship: awsV2(env.WorkloadPrincipal)}}
	env.FailNext(create, 1, codes.Unknown)
	_, err := v2.IdentitiesService().CreateIdentity(testCtx(t), req)
	checkErr(t, err, codes.Unknown, "injected")
	env.HangNext(create, 1)
	ctx, cancel := contextWithTimeout(t, 200*time.Millisecond)
	defer cancel()
	_, err = v2.IdentitiesService().CreateIdentity(ctx, req)
	checkErr(t, err, codes.DeadlineExceeded)
	_, err = v2.IdentitiesService().CreateIdentity(testCtx(t), req)
	checkErr(t, err, codes.OK)
	if n := env.Calls(create); n != 3 {
		t.Errorf("Calls(%s) = %d, want 3", create, n)
	}
	if n := len(env.State().Identities); n != 2 {
		t.Errorf("%d identities, want the provisioner and one made by the third call", n)
	}
}
