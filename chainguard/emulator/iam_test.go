package emulator_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestLifecycle walks the product's whole cycle through the real SDK clients
// as the seeded owner: group -> identity -> binding -> exchange as the
// identity -> list repos -> update -> delete, and checks that the emulator
// ends as it started.
func TestLifecycle(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	before := env.State()
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, emulatortest.Token(t, env.Emulator, env.ProvisionerCredentials, env.Provisioner))

	g, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Root, Group: &iam.Group{Name: "team", Description: "a team"}})
	checkErr(t, err, codes.OK)
	if uidp.Parent(g.GetId()) != env.Root || g.GetName() != "team" || g.GetDescription() != "a team" {
		t.Fatalf("created group %v, want team under %s", g, env.Root)
	}

	fn := emulator.AssumedRolePrincipal(account, "aws-auth", "aws-auth-fn")
	fnCreds := env.RegisterAWSPrincipal(fn)
	id, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: g.GetId(), Identity: &iam.Identity{
		Name: "aws-auth-identity", Description: "the function", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: fn.ExactTrust()},
	}})
	checkErr(t, err, codes.OK)
	if uidp.Parent(id.GetId()) != g.GetId() || id.GetCreatedAt() == nil {
		t.Fatalf("created identity %v, want a child of %s with created_at", id, g.GetId())
	}

	roles, err := c.Roles().List(ctx, &iam.RoleFilter{Name: "viewer"})
	checkErr(t, err, codes.OK)
	if len(roles.GetItems()) != 1 || roles.GetItems()[0].GetId() != env.RoleID("viewer") || !slices.Contains(roles.GetItems()[0].GetCapabilities(), "repo.list") {
		t.Fatalf("roles named viewer: %v", roles.GetItems())
	}
	rb, err := c.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: g.GetId(), RoleBinding: &iam.RoleBinding{Identity: id.GetId(), Role: roles.GetItems()[0].GetId()}})
	checkErr(t, err, codes.OK)
	if uidp.Parent(rb.GetId()) != g.GetId() {
		t.Fatalf("binding %s is not a child of %s", rb.GetId(), g.GetId())
	}
	list, err := c.RoleBindings().List(ctx, &iam.RoleBindingFilter{Uidp: &common.UIDPFilter{ChildrenOf: g.GetId()}})
	checkErr(t, err, codes.OK)
	if len(list.GetItems()) != 1 || list.GetItems()[0].GetGroup().GetId() != g.GetId() || list.GetItems()[0].GetRole().GetName() != "viewer" || list.GetItems()[0].GetIdentity() != id.GetId() {
		t.Fatalf("bindings of %s: %v", g.GetId(), list.GetItems())
	}

	// Exchange as the new identity: it may list its group (which holds no
	// repos) but not the seeded group's repos.
	fnTok := emulatortest.Token(t, env.Emulator, fnCreds, id.GetId())
	groups, err := iamClients(t, env.Emulator, fnTok).Groups().List(ctx, &iam.GroupFilter{})
	checkErr(t, err, codes.OK)
	if len(groups.GetItems()) != 1 || groups.GetItems()[0].GetId() != g.GetId() {
		t.Fatalf("groups visible to a viewer of %s: %v", g.GetId(), groups.GetItems())
	}
	repos, err := registryClient(t, env.Emulator, fnTok).ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
	checkErr(t, err, codes.OK)
	if len(repos.GetItems()) != 0 {
		t.Fatalf("repos of %s visible to a viewer of %s: %v", env.Group, g.GetId(), repos.GetItems())
	}

	// Update description and trust; the new trust is enforced.
	id.Description = "updated"
	id.Relationship = &iam.Identity_AwsIdentity{AwsIdentity: awsIdentity(account, fn.ARN, "AROAAAAAAAAAAAAAAAAAA:aws-auth-fn")}
	upd, err := c.Identities().Update(ctx, id)
	checkErr(t, err, codes.OK)
	if upd.GetDescription() != "updated" || upd.GetCreatedAt().AsTime() != id.GetCreatedAt().AsTime() {
		t.Fatalf("updated identity %v", upd)
	}
	_, err = emulatortest.Exchange(ctx, env.Emulator, fnCreds, id.GetId())
	checkErr(t, err, codes.PermissionDenied, "user ID")
	// Update role of the binding.
	rb.Role = env.RoleID("registry.pull")
	rb2, err := c.RoleBindings().Update(ctx, rb)
	checkErr(t, err, codes.OK)
	if rb2.GetRole() != env.RoleID("registry.pull") {
		t.Fatalf("updated binding %v", rb2)
	}

	// Strict deletes: children first.
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})
	checkErr(t, err, codes.FailedPrecondition, "1 identities", "1 role bindings", id.GetId(), rb.GetId())
	_, err = c.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: id.GetId()})
	checkErr(t, err, codes.FailedPrecondition, rb.GetId())
	_, err = c.RoleBindings().Delete(ctx, &iam.DeleteRoleBindingRequest{Id: rb.GetId()})
	checkErr(t, err, codes.OK)
	_, err = c.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: id.GetId()})
	checkErr(t, err, codes.OK)
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})
	checkErr(t, err, codes.OK)
	for _, err := range []error{
		second(c.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: id.GetId()})),
		second(c.RoleBindings().Delete(ctx, &iam.DeleteRoleBindingRequest{Id: rb.GetId()})),
		second(c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})),
	} {
		checkErr(t, err, codes.NotFound)
	}

	// The fn token is refused now that its identity is gone.
	_, err = iamClients(t, env.Emulator, fnTok).Groups().List(ctx, &iam.GroupFilter{})
	checkErr(t, err, codes.Unauthenticated, "no longer exists")

	after := env.State()
	if got, want := after.IDs(), before.IDs(); !slices.Equal(got, want) {
		t.Errorf("state after the cycle differs:\nafter:  %v\nbefore: %v", got, want)
	}
}

func second[T any](_ T, err error) error { return err }

func TestDeleteEmptyGroup(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	before := env.State()
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	g, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Group, Group: &iam.Group{Name: "empty"}})
	checkErr(t, err, codes.OK)
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: env.Group})
	checkErr(t, err, codes.FailedPrecondition, "1 groups", g.GetId())
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})
	checkErr(t, err, codes.OK)
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})
	checkErr(t, err, codes.NotFound)
	if after := env.State(); len(after.Groups) != len(before.Groups) {
		t.Errorf("groups after delete: %v, before: %v", after.Groups, before.Groups)
	}
}

// TestDeleteRepo plays a user pushing an image to a group and deleting it:
// the repo is listed and keeps the group from being deleted until
// DeleteRepo removes it.
func TestDeleteRepo(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	before := env.State()
	ctx := testCtx(t)
	tok := env.MintToken(env.Provisioner)
	c := iamClients(t, env.Emulator, tok)
	g, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Group, Group: &iam.Group{Name: "pushed"}})
	checkErr(t, err, codes.OK)
	repo := env.SeedRepo(g.GetId(), "hello")
	listed := func() []string {
		t.Helper()
		l, err := registryClient(t, env.Emulator, tok).ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: g.GetId()}})
		checkErr(t, err, codes.OK)
		var ids []string
		for _, r := range l.GetItems() {
			ids = append(ids, r.GetId())
		}
		return ids
	}
	if got := listed(); !slices.Equal(got, []string{repo}) {
		t.Fatalf("repos of the group = %v, want [%s]", got, repo)
	}
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})
	checkErr(t, err, codes.FailedPrecondition, "repos", repo)

	env.DeleteRepo(repo)
	if got := listed(); len(got) != 0 {
		t.Fatalf("repos of the group after DeleteRepo = %v, want none", got)
	}
	_, err = c.Groups().Delete(ctx, &iam.DeleteGroupRequest{Id: g.GetId()})
	checkErr(t, err, codes.OK)
	if got, want := env.State().IDs(), before.IDs(); !slices.Equal(got, want) {
		t.Errorf("state after the push and delete differs:\nafter:  %v\nbefore: %v", got, want)
	}
}

func TestAuthorization(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	a := env.SeedGroup(env.Root, "group-a", "")
	b := env.SeedGroup(env.Root, "group-b", "")
	repoA := env.SeedRepo(a, "in-a")
	env.SeedRepo(b, "in-b")
	p := env.ProvisionerPrincipal.ExactTrust()
	viewerRoot := env.SeedIdentity(env.Root, "viewer-root", "", p, map[string][]string{env.Root: {"viewer"}})
	viewerA := env.SeedIdentity(a, "viewer-a", "", p, map[string][]string{a: {"viewer"}})
	editorA := env.SeedIdentity(a, "editor-a", "", p, map[string][]string{a: {"editor"}})
	ownerA := env.SeedIdentity(a, "owner-a", "", p, map[string][]string{a: {"owner"}})
	pullA := env.SeedIdentity(a, "pull-a", "", p, map[string][]string{a: {"registry.pull"}})
	noRoles := env.SeedIdentity(a, "no-roles", "", p, nil)
	victim := env.SeedIdentity(a, "victim", "", p, nil)
	newIdentity := &iam.Identity{Name: "new", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: p}}

	tests := []struct {
		name    string
		caller  string
		call    func(c iam.Clients) error
		wantErr codes.Code
		wantMsg []string
	}{
		{"viewer cannot create identities", viewerRoot, func(c iam.Clients) error {
			_, err := c.Identities().Create(testCtx(t), &iam.CreateIdentityRequest{ParentId: a, Identity: newIdentity})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_CREATE", a, viewerRoot, "owner"}},
		{"editor cannot create identities", editorA, func(c iam.Clients) error {
			_, err := c.Identities().Create(testCtx(t), &iam.CreateIdentityRequest{ParentId: a, Identity: newIdentity})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_CREATE"}},
		{"owner of A creates identities in A", ownerA, func(c iam.Clients) error {
			_, err := c.Identities().Create(testCtx(t), &iam.CreateIdentityRequest{ParentId: a, Identity: newIdentity})
			return err
		}, codes.OK, nil},
		{"owner of A cannot create identities in B", ownerA, func(c iam.Clients) error {
			_, err := c.Identities().Create(testCtx(t), &iam.CreateIdentityRequest{ParentId: b, Identity: newIdentity})
			return err
		}, codes.PermissionDenied, []string{b}},
		{"owner of A cannot create groups in root", ownerA, func(c iam.Clients) error {
			_, err := c.Groups().Create(testCtx(t), &iam.CreateGroupRequest{Parent: env.Root, Group: &iam.Group{Name: "xyz"}})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_GROUPS_CREATE"}},
		{"nobody creates root groups", env.Provisioner, func(c iam.Clients) error {
			_, err := c.Groups().Create(testCtx(t), &iam.CreateGroupRequest{Group: &iam.Group{Name: "xyz"}})
			return err
		}, codes.PermissionDenied, []string{"root group"}},
		{"editor cannot delete identities", editorA, func(c iam.Clients) error {
			_, err := c.Identities().Delete(testCtx(t), &iam.DeleteIdentityRequest{Id: victim})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_IDENTITY_DELETE"}},
		{"editor cannot bind roles", editorA, func(c iam.Clients) error {
			_, err := c.RoleBindings().Create(testCtx(t), &iam.CreateRoleBindingRequest{Parent: a, RoleBinding: &iam.RoleBinding{Identity: victim, Role: env.RoleID("viewer")}})
			return err
		}, codes.PermissionDenied, []string{"CAP_IAM_ROLE_BINDINGS_CREATE"}},
		{"no roles: cannot list roles", noRoles, func(c iam.Clients) error {
			l, err := c.Roles().List(testCtx(t), &iam.RoleFilter{})
			if err == nil && len(l.GetItems()) != 0 {
				return fmt.Errorf("listed %d roles", len(l.GetItems()))
			}
			return err
		}, codes.OK, nil},
		{"no roles: sees no groups", noRoles, func(c iam.Clients) error {
			l, err := c.Groups().List(testCtx(t), &iam.GroupFilter{})
			if err == nil && len(l.GetItems()) != 0 {
				return fmt.Errorf("listed groups %v", l.GetItems())
			}
			return err
		}, codes.OK, nil},
		{"viewer of A sees A only", viewerA, func(c iam.Clients) error {
			l, err := c.Groups().List(testCtx(t), &iam.GroupFilter{})
			if err == nil && (len(l.GetItems()) != 1 || l.GetItems()[0].GetId() != a) {
				return fmt.Errorf("listed groups %v", l.GetItems())
			}
			return err
		}, codes.OK, nil},
		{"viewer of A lists identities of A", viewerA, func(c iam.Clients) error {
			l, err := c.Identities().List(testCtx(t), &iam.IdentityFilter{Uidp: &common.UIDPFilter{ChildrenOf: a}})
			if err == nil && len(l.GetItems()) < 6 {
				return fmt.Errorf("listed identities %v", l.GetItems())
			}
			return err
		}, codes.OK, nil},
		{"viewer of A sees no identities of root", viewerA, func(c iam.Clients) error {
			l, err := c.Identities().List(testCtx(t), &iam.IdentityFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Root}})
			if err == nil && len(l.GetItems()) != 0 {
				return fmt.Errorf("listed identities %v", l.GetItems())
			}
			return err
		}, codes.OK, nil},
		{"invalid scope", ownerA, func(c iam.Clients) error {
			_, err := c.Identities().Delete(testCtx(t), &iam.DeleteIdentityRequest{Id: "not-a-uidp"})
			return err
		}, codes.InvalidArgument, []string{"not a UIDP"}},
		{"missing scope", ownerA, func(c iam.Clients) error {
			_, err := c.Identities().Delete(testCtx(t), &iam.DeleteIdentityRequest{})
			return err
		}, codes.InvalidArgument, []string{"id is required"}},
		{"unimplemented method", ownerA, func(c iam.Clients) error {
			_, err := c.Roles().Create(testCtx(t), &iam.CreateRoleRequest{ParentId: a, Role: &iam.Role{Name: "custom"}})
			return err
		}, codes.Unimplemented, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.call(iamClients(t, env.Emulator, env.MintToken(tt.caller))), tt.wantErr, tt.wantMsg...)
		})
	}

	repoTests := []struct {
		name   string
		caller string
		filter *registry.RepoFilter
		want   []string // repo names
	}{
		{"viewer of A lists repos of A", viewerA, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: a}}, []string{"in-a"}},
		{"viewer of A cannot list repos of B", viewerA, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: b}}, nil},
		{"viewer of A, no filter", viewerA, &registry.RepoFilter{}, []string{"in-a"}},
		{"registry.pull of A", pullA, &registry.RepoFilter{Uidp: &common.UIDPFilter{DescendantsOf: env.Root}}, []string{"in-a"}},
		{"no roles", noRoles, &registry.RepoFilter{}, nil},
		{"viewer of root, descendants", viewerRoot, &registry.RepoFilter{Uidp: &common.UIDPFilter{DescendantsOf: env.Root}}, []string{"in-a", "in-b", "nginx", "python", "static"}},
		{"by name", viewerRoot, &registry.RepoFilter{Name: "in-b"}, []string{"in-b"}},
		{"by id", viewerRoot, &registry.RepoFilter{Id: repoA}, []string{"in-a"}},
	}
	for _, tt := range repoTests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := registryClient(t, env.Emulator, env.MintToken(tt.caller)).ListRepos(testCtx(t), tt.filter)
			checkErr(t, err, codes.OK)
			var got []string
			for _, r := range l.GetItems() {
				got = append(got, r.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("repos = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidation(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	aws := func(a *iam.Identity_AWSIdentity) *iam.Identity_AwsIdentity {
		return &iam.Identity_AwsIdentity{AwsIdentity: a}
	}
	good := env.ProvisionerPrincipal.ExactTrust()
	taken := env.SeedIdentity(env.Group, "taken", "", good, nil)
	tests := []struct {
		name    string
		call    func() error
		wantErr codes.Code
		wantMsg string
	}{
		{"group name upper case", func() error {
			_, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Root, Group: &iam.Group{Name: "Team"}})
			return err
		}, codes.InvalidArgument, "name"},
		{"group description with newline", func() error {
			_, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Root, Group: &iam.Group{Name: "team", Description: "a\nb"}})
			return err
		}, codes.InvalidArgument, "description"},
		{"group parent not a UIDP", func() error {
			_, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: "acme", Group: &iam.Group{Name: "team"}})
			return err
		}, codes.InvalidArgument, "not a UIDP"},
		{"group parent missing", func() error {
			_, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: string(uidp.UIDP(env.Root).NewChild()), Group: &iam.Group{Name: "team"}})
			return err
		}, codes.NotFound, "parent group"},
		{"group name taken", func() error {
			_, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Root, Group: &iam.Group{Name: env.GroupName}})
			return err
		}, codes.AlreadyExists, env.Group},
		{"group rename to a taken name", func() error {
			g := env.SeedGroup(env.Root, "other", "")
			_, err := c.Groups().Update(ctx, &iam.Group{Id: g, Name: env.GroupName})
			return err
		}, codes.AlreadyExists, env.Group},
		{"group update missing", func() error {
			_, err := c.Groups().Update(ctx, &iam.Group{Id: string(uidp.UIDP(env.Root).NewChild()), Name: "xyz"})
			return err
		}, codes.NotFound, "not found"},
		{"identity in a missing group", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: string(uidp.UIDP(env.Group).NewChild()), Identity: &iam.Identity{Name: "xyz", Relationship: aws(good)}})
			return err
		}, codes.NotFound, "group"},
		{"identity name invalid", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "a/b", Relationship: aws(good)}})
			return err
		}, codes.InvalidArgument, "name"},
		{"identity without relationship", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "xyz"}})
			return err
		}, codes.InvalidArgument, "relationship"},
		{"aws account invalid", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "xyz", Relationship: aws(awsIdentity("1234", "arn", "id"))}})
			return err
		}, codes.InvalidArgument, "aws_account"},
		{"aws arn missing", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "xyz", Relationship: aws(&iam.Identity_AWSIdentity{AwsAccount: account, AwsUserId: good.AwsUserId})}})
			return err
		}, codes.InvalidArgument, "arn_pattern is required"},
		{"aws user id missing", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "xyz", Relationship: aws(&iam.Identity_AWSIdentity{AwsAccount: account, AwsArn: good.AwsArn})}})
			return err
		}, codes.InvalidArgument, "user_id_pattern is required"},
		{"arn pattern does not compile", func() error {
			_, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "xyz", Relationship: aws(awsIdentity(account, "^arn(", "id"))}})
			return err
		}, codes.InvalidArgument, "does not compile"},
		{"identity update missing", func() error {
			_, err := c.Identities().Update(ctx, &iam.Identity{Id: string(uidp.UIDP(env.Group).NewChild()), Name: "xyz", Relationship: aws(good)})
			return err
		}, codes.NotFound, "not found"},
		{"binding to unknown role", func() error {
			_, err := c.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iam.RoleBinding{Identity: taken, Role: "viewer"}})
			return err
		}, codes.NotFound, "role"},
		{"binding of unknown identity", func() error {
			_, err := c.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iam.RoleBinding{Identity: string(uidp.UIDP(env.Group).NewChild()), Role: env.RoleID("viewer")}})
			return err
		}, codes.NotFound, "identity"},
		{"duplicate binding", func() error {
			env.SeedRoleBinding(env.Group, taken, "viewer")
			_, err := c.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iam.RoleBinding{Identity: taken, Role: env.RoleID("viewer")}})
			return err
		}, codes.AlreadyExists, "already has role viewer"},
		{"list filter not a UIDP", func() error {
			_, err := c.Identities().List(ctx, &iam.IdentityFilter{Uidp: &common.UIDPFilter{ChildrenOf: "x"}})
			return err
		}, codes.InvalidArgument, "children_of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, tt.call(), tt.wantErr, tt.wantMsg)
		})
	}
}

// TestIdentityNameUniqueness races creates of one name in one group, under
// each reading: by default every create succeeds (the service allows
// duplicates); with UniqueIdentityNames exactly one wins and the others get
// AlreadyExists. Renaming onto a taken name follows the same rule.
func TestIdentityNameUniqueness(t *testing.T) {
	tests := []struct {
		name   string
		unique bool
		wantOK int
	}{
		{"duplicates allowed (default)", false, 8},
		{"UniqueIdentityNames", true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := emulatortest.NewEnv(t, emulator.Options{UniqueIdentityNames: tt.unique})
			c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
			const n = 8
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					_, errs[i] = c.Identities().Create(testCtx(t), &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{
						Name: "same", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: env.ProvisionerPrincipal.ExactTrust()},
					}})
				})
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
					continue
				}
				checkErr(t, err, codes.AlreadyExists, "same")
			}
			if ok != tt.wantOK {
				t.Errorf("%d creates succeeded, want %d", ok, tt.wantOK)
			}
			other := env.SeedIdentity(env.Group, "other", "", env.ProvisionerPrincipal.ExactTrust(), nil)
			_, err := c.Identities().Update(testCtx(t), &iam.Identity{Id: other, Name: "same",
				Relationship: &iam.Identity_AwsIdentity{AwsIdentity: env.ProvisionerPrincipal.ExactTrust()}})
			want := codes.OK
			if tt.unique {
				want = codes.AlreadyExists
			}
			checkErr(t, err, want)
		})
	}
}

func TestSeedPanics(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	tests := []struct {
		name string
		f    func()
	}{
		{"invalid group name", func() { env.SeedGroup(env.Root, "Bad Name", "") }},
		{"duplicate group", func() { env.SeedGroup(env.Root, env.GroupName, "") }},
		{"repo in missing group", func() { env.SeedRepo(string(uidp.UIDP(env.Root).NewChild()), "x") }},
		{"delete missing repo", func() { env.DeleteRepo(string(uidp.UIDP(env.Group).NewChild())) }},
		{"identity without trust", func() { env.SeedIdentity(env.Group, "xyz", "", nil, nil) }},
		{"unknown role", func() { env.SeedRoleBinding(env.Group, env.Provisioner, "admin") }},
		{"unknown identity token", func() { env.MintToken(string(uidp.UIDP(env.Group).NewChild())) }},
		{"unknown method", func() { env.Calls("/chainguard.platform.iam.Identities/Creat") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.f()
		})
	}
}

// State.IDs is what tests compare states by: it must name every object.
func TestStateIDs(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	before := env.State().IDs()
	g := env.SeedGroup(env.Group, "team", "")
	r := env.SeedRepo(g, "app")
	id := env.SeedIdentity(g, "ci-job", "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{g: {"viewer"}})
	after := env.State().IDs()
	for _, want := range []string{"group " + g, "repo " + r, "identity " + id} {
		if !slices.Contains(after, want) || slices.Contains(before, want) {
			t.Errorf("IDs before %v / after %v: want %q only after seeding", before, after, want)
		}
	}
	if got, want := len(after)-len(before), 4; got != want { // group, repo, identity, binding
		t.Errorf("seeding added %d IDs, want %d (the binding too)", got, want)
	}
}

// State.RolesOf and BindingsOf name exactly one identity's bindings.
func TestStateBindingsOf(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	g := env.SeedGroup(env.Group, "team", "")
	id := env.SeedIdentity(g, "ci-job", "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{g: {"viewer", "registry.pull"}})
	other := env.SeedIdentity(g, "other-job", "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{g: {"owner"}})
	st := env.State()
	if got, want := st.RolesOf(id), []string{"registry.pull", "viewer"}; !slices.Equal(got, want) {
		t.Errorf("RolesOf(%s) = %v, want %v", id, got, want)
	}
	if got := st.RolesOf(other); !slices.Equal(got, []string{"owner"}) {
		t.Errorf("RolesOf(%s) = %v, want [owner]", other, got)
	}
	bindings := st.BindingsOf(id)
	if len(bindings) != 2 || !slices.IsSorted(bindings) {
		t.Fatalf("BindingsOf(%s) = %v, want its 2 bindings, sorted", id, bindings)
	}
	for _, b := range bindings {
		if !slices.ContainsFunc(st.RoleBindings, func(rb emulator.RoleBinding) bool { return rb.ID == b && rb.Identity == id }) {
			t.Errorf("BindingsOf(%s) holds %s, which is not one of its bindings", id, b)
		}
	}
}
