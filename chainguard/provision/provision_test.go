package provision_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

const (
	account = "111122223333"

	provisionerARN    = "arn:aws:sts::111122223333:assumed-role/chainguard-provisioner/provisioner-fn"
	provisionerUserID = "AROAPROVISIONER00001:provisioner-fn"

	workloadARN    = "arn:aws:sts::111122223333:assumed-role/aws-auth/aws-auth-fn"
	workloadUserID = "AROAWORKLOAD000000001:aws-auth-fn"
)

// Method names for fault injection.
const (
	groupsCreate     = iam.GroupsService_CreateGroup_FullMethodName
	identitiesCreate = iam.IdentitiesService_CreateIdentity_FullMethodName
	identitiesList   = iam.IdentitiesService_ListIdentities_FullMethodName
	identitiesUpdate = iam.IdentitiesService_UpdateIdentity_FullMethodName
	groupsUpdate     = iam.GroupsService_UpdateGroup_FullMethodName
	bindingsCreate   = iam.RoleBindingsService_CreateRoleBinding_FullMethodName
	groupsDelete     = iam.GroupsService_DeleteGroup_FullMethodName
)

// fastOpts keeps retries quick in tests while exercising the same paths.
var fastOpts = []provision.Option{
	provision.WithBackoff(5*time.Millisecond, 20*time.Millisecond, 5),
	provision.WithPropagationBackoff(10*time.Millisecond, 40*time.Millisecond),
	provision.WithRPCTimeout(2 * time.Second),
}

// env is a running emulator with a root group and a provisioner identity
// bound with provisionerRole on it, and a Provisioner acting as that identity.
type env struct {
	e    *emulator.Emulator
	root string
	prov string // provisioner identity UIDP
	p    *provision.Provisioner
	// provisioner and workload are the AWS credentials of the two principals.
	provisioner, workload aws.Credentials
}

// newEnv starts an emulator, seeds it and returns a Provisioner that
// exchanges the provisioner principal's credentials for a fresh token on
// every connect (as the handler does). An empty provisionerRole binds none.
func newEnv(t testing.TB, provisionerRole string, opts ...provision.Option) *env {
	t.Helper()
	return newEnvWith(t, emulator.Options{}, provisionerRole, opts...)
}

// newEnvWith is newEnv with an emulator started with emuOpts.
func newEnvWith(t testing.TB, emuOpts emulator.Options, provisionerRole string, opts ...provision.Option) *env {
	t.Helper()
	e := emulatortest.Start(t, emuOpts)
	root := e.SeedGroup("", "acme", "the test organization")
	env := &env{
		e:           e,
		root:        root,
		provisioner: e.RegisterAWSPrincipal(emulator.AWSPrincipal{Account: account, ARN: provisionerARN, UserID: provisionerUserID}),
		workload:    e.RegisterAWSPrincipal(emulator.AWSPrincipal{Account: account, ARN: workloadARN, UserID: workloadUserID}),
	}
	var bindings map[string][]string
	if provisionerRole != "" {
		bindings = map[string][]string{root: {provisionerRole}}
	}
	env.prov = e.SeedIdentity(root, "provisioner", "the provisioner",
		provisionerPrincipal().ExactTrust(), bindings)
	if opts == nil {
		opts = fastOpts
	}
	env.p = env.newProvisioner(t, env.connector(), opts...)
	if provisionerRole != "" {
		// Connected before the test looks at the state: an exchange
		// records when the identity was last seen.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := env.p.Connect(ctx); err != nil {
			t.Fatalf("connect as the provisioner: %v", err)
		}
	}
	return env
}

// connector exchanges the provisioner principal's AWS credentials for a
// fresh token of the provisioner identity on every connect.
func (env *env) connector() provision.ConnectFunc {
	return func(ctx context.Context) (iam.Clients, error) {
		pair, err := emulatortest.Exchange(ctx, env.e, env.provisioner, env.prov)
		if err != nil {
			return nil, err
		}
		return provision.NewClients(ctx, env.e.APIURL(), pair.AccessToken)
	}
}

// newProvisioner returns a Provisioner through conn, closed when t ends.
func (env *env) newProvisioner(t testing.TB, conn provision.Connector, opts ...provision.Option) *provision.Provisioner {
	t.Helper()
	p := provision.New(conn, opts...)
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close the provisioner: %v", err)
		}
	})
	return p
}

// workloadToken returns a token of identity for the workload principal,
// once everything made so far has propagated to the STS.
func (env *env) workloadToken(t testing.TB, identity string) string {
	t.Helper()
	time.Sleep(env.e.PropagationDelay())
	return emulatortest.Token(t, env.e, env.workload, identity)
}

func listRepos(ctx context.Context, apiURL, tok, group string) ([]string, error) {
	c, err := registry.NewClients(ctx, apiURL, tok)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	list, err := c.Registry().ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: group}})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range list.GetItems() {
		names = append(names, r.GetName())
	}
	slices.Sort(names)
	return names, nil
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// workloadTrust trusts exactly the workload principal (workloadARN,
// workloadUserID).
func workloadTrust() trust.AWS {
	return trust.AWS{Account: account, Partition: "aws", RoleName: "aws-auth", RoleID: "AROAWORKLOAD000000001", Session: "aws-auth-fn"}
}

func workloadPrincipal() emulator.AWSPrincipal {
	return emulator.AWSPrincipal{Account: account, ARN: workloadARN, UserID: workloadUserID}
}

func provisionerPrincipal() emulator.AWSPrincipal {
	return emulator.AWSPrincipal{Account: account, ARN: provisionerARN, UserID: provisionerUserID}
}

// bindingsOf returns the role names bound to identity on scope, sorted.
func bindingsOf(e *emulator.Emulator, scope, identity string) []string {
	var roles []string
	for _, b := range e.State().RoleBindings {
		if b.Group == scope && b.Identity == identity {
			roles = append(roles, b.RoleName)
		}
	}
	slices.Sort(roles)
	return roles
}

func identityNamed(e *emulator.Emulator, group, name string) []emulator.Identity {
	var out []emulator.Identity
	for _, id := range e.State().Identities {
		if uidp.Parent(id.ID) == group && id.Name == name {
			out = append(out, id)
		}
	}
	return out
}

func TestFullCycle(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	before := env.e.State()

	g, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "example-group", Description: "Example group"})
	if err != nil {
		t.Fatalf("EnsureGroup: %v", err)
	}
	if !g.Created || g.Name != "example-group" {
		t.Fatalf("EnsureGroup = %+v, want a created group named example-group", g)
	}
	repo := env.e.SeedRepo(g.ID, "nginx")

	spec := provision.IdentitySpec{
		Group:       g.ID,
		Name:        "aws-auth-identity",
		Description: "Identity of the aws-auth function",
		Trust:       workloadTrust(),
		Roles:       []string{"viewer"},
	}
	id, err := env.p.EnsureIdentity(ctx, spec)
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	if !id.Created || !slices.Equal(id.Roles, []string{"viewer"}) {
		t.Fatalf("EnsureIdentity = %+v, want created with roles [viewer]", id)
	}
	if got := bindingsOf(env.e, g.ID, id.ID); !slices.Equal(got, []string{"viewer"}) {
		t.Fatalf("bindings on the group = %v, want [viewer]", got)
	}

	// The workload can now act as the identity and list the group's repos.
	tok := env.workloadToken(t, id.ID)
	repos, err := listRepos(ctx, env.e.APIURL(), tok, g.ID)
	if err != nil {
		t.Fatalf("list repos as the new identity: %v", err)
	}
	if !slices.Equal(repos, []string{"nginx"}) {
		t.Fatalf("repos = %v, want [nginx]", repos)
	}

	// Update description, trust (exact -> a session pattern of the role) and roles, in place.
	spec.Description = "Updated description"
	tr := spec.Trust.(trust.AWS)
	tr.Session, tr.SessionPattern = "", `[\w+=,.@-]+`
	spec.Trust = tr
	spec.Roles = []string{"registry.pull", "editor"}
	upd, err := env.p.EnsureIdentity(ctx, spec)
	if err != nil {
		t.Fatalf("EnsureIdentity (update): %v", err)
	}
	if upd.ID != id.ID || upd.Created {
		t.Fatalf("update = %+v, want the same identity %s updated in place", upd, id.ID)
	}
	if want := []string{"editor", "registry.pull"}; !slices.Equal(upd.Roles, want) || !slices.Equal(bindingsOf(env.e, g.ID, id.ID), want) {
		t.Fatalf("roles = %v, bindings = %v, want %v", upd.Roles, bindingsOf(env.e, g.ID, id.ID), want)
	}
	stored := identityNamed(env.e, g.ID, "aws-auth-identity")
	if len(stored) != 1 || stored[0].Description != spec.Description || !sameAWSIdentity(stored[0].AWS, spec.Trust.(trust.AWS)) {
		t.Fatalf("stored identity = %+v, want description %q and trust %+v", stored, spec.Description, spec.Trust)
	}
	// The new trust still admits the workload, and the new roles still list repos.
	tok = env.workloadToken(t, id.ID)
	if _, err := listRepos(ctx, env.e.APIURL(), tok, g.ID); err != nil {
		t.Fatalf("list repos after the update: %v", err)
	}

	if err := env.p.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatalf("DeleteIdentity: %v", err)
	}
	// The repo cannot be seen through IAM: the service refuses and says why.
	// (The emulator offers no way to delete a repo, so the group stays.)
	_, err = env.p.DeleteGroup(ctx, g.ID, "")
	if want := "delete group " + g.ID + ": failed precondition: the group still holds objects (for example registry repositories); delete them first (service: "; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("DeleteGroup of a group holding a repo: error = %v\nwant it to contain %q", err, want)
	}
	after := env.e.State()
	if len(after.Identities) != len(before.Identities) || len(after.RoleBindings) != len(before.RoleBindings) {
		t.Fatalf("after the cycle the emulator holds %d identities and %d bindings; want what it held before: %d and %d",
			len(after.Identities), len(after.RoleBindings), len(before.Identities), len(before.RoleBindings))
	}
	for _, gr := range after.Groups {
		if gr.ID != g.ID && !slices.ContainsFunc(before.Groups, func(b emulator.Group) bool { return b.ID == gr.ID }) {
			t.Fatalf("group %+v was left behind", gr)
		}
	}
	if len(after.Repos) != 1 || after.Repos[0].ID != repo {
		t.Fatalf("repos = %+v, want only the seeded %s", after.Repos, repo)
	}
}

// managedBy is the owner the handler would name: "<stack>/<logical ID>".
const managedBy = "aws-auth/AssumableIdentityGroup"

// The same cycle without a repo, with an owner, ends with the emulator
// exactly as it began.
func TestFullCycleLeavesNothing(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	before := env.e.State()
	g, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "example-group", Description: "Example group", ManagedBy: managedBy})
	if err != nil {
		t.Fatalf("EnsureGroup: %v", err)
	}
	id, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: g.ID, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer", "registry.pull"}, ManagedBy: managedBy})
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	tok := env.workloadToken(t, id.ID)
	if _, err := listRepos(ctx, env.e.APIURL(), tok, g.ID); err != nil {
		t.Fatalf("list repos as the new identity: %v", err)
	}
	if err := env.p.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatalf("DeleteIdentity: %v", err)
	}
	if left, err := env.p.DeleteGroup(ctx, g.ID, managedBy); err != nil || left {
		t.Fatalf("DeleteGroup = left %v, %v; want the group deleted", left, err)
	}
	// Replayed deletes (CloudFormation retries) succeed too.
	if err := env.p.DeleteIdentity(ctx, id.ID); err != nil {
		t.Fatalf("DeleteIdentity again: %v", err)
	}
	if left, err := env.p.DeleteGroup(ctx, g.ID, managedBy); err != nil || left {
		t.Fatalf("DeleteGroup again = left %v, %v; want nothing left", left, err)
	}
	after := env.e.State()
	if !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("the emulator ended with %v, want what it held before: %v", after.IDs(), before.IDs())
	}
}

func TestEnsureIdentityReplay(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	group := env.e.SeedGroup(env.root, "example-group", "")
	spec := provision.IdentitySpec{
		Group: group, Name: "aws-auth-identity", Description: "d", Trust: workloadTrust(),
		Roles: []string{"viewer", "registry.pull", "viewer"},
	}
	var ids []string
	for i := range 3 {
		rpcs := env.p.RPCs()
		got, err := env.p.EnsureIdentity(ctx, spec)
		if err != nil {
			t.Fatalf("EnsureIdentity #%d: %v", i+1, err)
		}
		if got.Created != (i == 0) {
			t.Errorf("EnsureIdentity #%d: Created = %v, want %v", i+1, got.Created, i == 0)
		}
		if i > 0 {
			// Nothing to change: look up the identity and its bindings, nothing else.
			if n := env.p.RPCs() - rpcs; n != 2 {
				t.Errorf("EnsureIdentity #%d made %d RPCs, want 2 (list identities, list bindings)", i+1, n)
			}
		}
		ids = append(ids, got.ID)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("replays returned different identities: %v", ids)
	}
	if n := len(identityNamed(env.e, group, "aws-auth-identity")); n != 1 {
		t.Fatalf("%d identities named aws-auth-identity, want 1", n)
	}
	if got, want := bindingsOf(env.e, group, ids[0]), []string{"registry.pull", "viewer"}; !slices.Equal(got, want) {
		t.Fatalf("bindings = %v, want one per role %v", got, want)
	}
}

// Concurrent deliveries of the same event (each with its own provisioner,
// like two Lambda invocations) converge on one group, one identity and one
// binding per role, though identity names are not unique in a group.
func TestConcurrentEnsure(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	const n = 4
	provisioners := []*provision.Provisioner{env.p}
	for range n - 1 {
		provisioners = append(provisioners, env.newProvisioner(t, env.connector(), fastOpts...))
	}
	var wg sync.WaitGroup
	groups, idents, errs := make([]string, n), make([]string, n), make([]error, n)
	for i, p := range provisioners {
		wg.Go(func() {
			g, err := p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "example-group", ManagedBy: managedBy})
			if err != nil {
				errs[i] = err
				return
			}
			id, err := p.EnsureIdentity(ctx, provision.IdentitySpec{Group: g.ID, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer", "registry.pull"}, ManagedBy: managedBy})
			groups[i], idents[i], errs[i] = g.ID, id.ID, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("provisioner %d: %v", i, err)
		}
	}
	for i := range n {
		if groups[i] != groups[0] || idents[i] != idents[0] {
			t.Fatalf("provisioners disagree: groups %v, identities %v", groups, idents)
		}
	}
	if c := len(identityNamed(env.e, groups[0], "aws-auth-identity")); c != 1 {
		t.Fatalf("%d identities, want 1", c)
	}
	if got, want := bindingsOf(env.e, groups[0], idents[0]), []string{"registry.pull", "viewer"}; !slices.Equal(got, want) {
		t.Fatalf("bindings = %v, want %v", got, want)
	}
}

// Bindings added behind the provisioner's back are reconciled to exactly the
// wanted roles; other identities' bindings are left alone.
func TestEnsureIdentityReconcilesBindings(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	group := env.e.SeedGroup(env.root, "example-group", "")
	spec := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}}
	id, err := env.p.EnsureIdentity(ctx, spec)
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	env.e.SeedRoleBinding(group, id.ID, "editor")
	env.e.SeedRoleBinding(group, id.ID, "registry.push")
	other := env.e.SeedIdentity(group, "other", "", workloadPrincipal().ExactTrust(), map[string][]string{group: {"editor"}})

	if _, err := env.p.EnsureIdentity(ctx, spec); err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	if got := bindingsOf(env.e, group, id.ID); !slices.Equal(got, []string{"viewer"}) {
		t.Fatalf("bindings = %v, want [viewer]", got)
	}
	if got := bindingsOf(env.e, group, other); !slices.Equal(got, []string{"editor"}) {
		t.Fatalf("another identity's bindings = %v, want them untouched: [editor]", got)
	}

	// No roles at all: every binding of the identity goes.
	spec.Roles = nil
	if _, err := env.p.EnsureIdentity(ctx, spec); err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	if got := bindingsOf(env.e, group, id.ID); len(got) != 0 {
		t.Fatalf("bindings = %v, want none", got)
	}
}

// bindingIDs returns the IDs of identity's bindings on scope, sorted.
func bindingIDs(e *emulator.Emulator, scope, identity string) []string {
	var out []string
	for _, b := range e.State().RoleBindings {
		if b.Group == scope && b.Identity == identity {
			out = append(out, b.ID)
		}
	}
	slices.Sort(out)
	return out
}

// An identity whose current ID is known is updated in place: a rename keeps
// its UIDP and its bindings. Without a usable ID it is found by name.
func TestEnsureIdentityInPlace(t *testing.T) {
	const (
		oldName = "aws-auth-identity"
		newName = "renamed-identity"
		taken   = "other-identity"
	)
	// IDs the cases pass and expect, resolved per run.
	const (
		cur      = "CURRENT" // the identity made before the case runs
		other    = "OTHER"   // another identity in the group, named taken
		fresh    = "FRESH"   // want: a newly created identity
		goneID   = "GONE"    // a UIDP in the group that names nothing
		notUIDP  = "a1b2c3d4-request-id"
		inGroup2 = "GROUP2" // spec.Group is a second group
	)
	tests := []struct {
		name        string
		id          string
		group       string // "" or inGroup2
		specName    string
		roles       []string
		description string
		inject      func(env *env)
		wantID      string // cur, other or fresh
		wantRoles   []string
		wantRPCs    int // 0: not checked
		wantErr     string
		wantCode    codes.Code // checked unless OK
	}{{
		name: "rename keeps the UIDP and the bindings", id: cur, specName: newName, roles: []string{"viewer", "registry.pull"},
		wantID: cur, wantRoles: []string{"registry.pull", "viewer"},
		wantRPCs: 3, // list identities, update, list bindings
	}, {
		name: "rename with new description and roles", id: cur, specName: newName, roles: []string{"editor"}, description: "changed",
		wantID: cur, wantRoles: []string{"editor"},
	}, {
		name: "nothing changed", id: cur, specName: oldName, roles: []string{"viewer", "registry.pull"},
		wantID: cur, wantRoles: []string{"registry.pull", "viewer"},
		wantRPCs: 2, // list identities, list bindings
	}, {
		name: "rename onto a name another identity has", id: cur, specName: taken, roles: []string{"viewer"},
		wantErr: `rename identity "aws-auth-identity" (CURRENT) to "other-identity" in group GROUP: refused: another identity there already has that name (OTHER): choose another name`,
	}, {
		name: "name taken between the check and the update", id: cur, specName: newName, roles: []string{"viewer"},
		inject:   func(env *env) { env.e.FailNext(identitiesUpdate, 1, codes.AlreadyExists) },
		wantErr:  `rename identity "aws-auth-identity" (CURRENT) to "renamed-identity": already exists: another identity in group GROUP has that name: choose another name`,
		wantCode: codes.AlreadyExists,
	}, {
		name: "ID gone: created by name", id: goneID, specName: newName, roles: []string{"viewer"},
		wantID: fresh, wantRoles: []string{"viewer"},
	}, {
		name: "ID gone: the namesake is adopted", id: goneID, specName: taken, roles: []string{"viewer"},
		wantID: other, wantRoles: []string{"viewer"},
	}, {
		name: "ID not a UIDP: created by name", id: notUIDP, specName: newName, roles: []string{"viewer"},
		wantID: fresh, wantRoles: []string{"viewer"},
	}, {
		name: "ID in another group: a new identity there", id: cur, group: inGroup2, specName: oldName, roles: []string{"viewer"},
		wantID: fresh, wantRoles: []string{"viewer"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner")
			ctx := ctxT(t, 30*time.Second)
			group := env.e.SeedGroup(env.root, "example-group", "")
			group2 := env.e.SeedGroup(env.root, "second-group", "")
			made, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: oldName, Description: "first", Trust: workloadTrust(), Roles: []string{"viewer", "registry.pull"}})
			if err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			otherID := env.e.SeedIdentity(group, taken, "", workloadPrincipal().ExactTrust(), nil)
			resolve := strings.NewReplacer(cur, made.ID, other, otherID, goneID, group+"/0123456789abcdef", "GROUP", group)
			spec := provision.IdentitySpec{
				ID: resolve.Replace(tt.id), Group: group, Name: tt.specName,
				Description: cmpOrString(tt.description, "first"), Trust: workloadTrust(), Roles: tt.roles,
			}
			if tt.group == inGroup2 {
				spec.Group = group2
			}
			bindingsBefore := bindingIDs(env.e, group, made.ID)
			before := env.e.State()
			if tt.inject != nil {
				tt.inject(env)
			}
			rpcs := env.p.RPCs()
			got, err := env.p.EnsureIdentity(ctx, spec)
			if tt.wantErr != "" {
				t.Logf("error: %v", err)
				if want := resolve.Replace(tt.wantErr); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("EnsureIdentity error = %v\nwant it to contain %q", err, want)
				}
				if tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
					t.Errorf("status.Code(err) = %v, want %v", status.Code(err), tt.wantCode)
				}
				if after := env.e.State(); !reflect.DeepEqual(after.Identities, before.Identities) || !reflect.DeepEqual(after.IDs(), before.IDs()) {
					t.Fatalf("a refused rename changed the emulator's identities or bindings")
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			switch tt.wantID {
			case fresh:
				if !got.Created || got.ID == made.ID || got.ID == otherID || uidp.Parent(got.ID) != spec.Group {
					t.Fatalf("EnsureIdentity = %+v, want a new identity in %s", got, spec.Group)
				}
				// The identity the ID named is not touched.
				if still := identityNamed(env.e, group, oldName); len(still) != 1 || still[0].ID != made.ID {
					t.Fatalf("identities named %s in the first group = %+v, want %s untouched", oldName, still, made.ID)
				}
			default:
				if want := resolve.Replace(tt.wantID); got.ID != want || got.Created {
					t.Fatalf("EnsureIdentity = %+v, want %s updated in place", got, want)
				}
			}
			if got.Name != spec.Name || !slices.Equal(got.Roles, tt.wantRoles) {
				t.Fatalf("EnsureIdentity = %+v, want name %q and roles %v", got, spec.Name, tt.wantRoles)
			}
			stored := identityNamed(env.e, spec.Group, spec.Name)
			if len(stored) != 1 || stored[0].ID != got.ID || stored[0].Description != spec.Description {
				t.Fatalf("identities named %q in %s = %+v, want just %s with description %q", spec.Name, spec.Group, stored, got.ID, spec.Description)
			}
			if got := bindingsOf(env.e, spec.Group, got.ID); !slices.Equal(got, tt.wantRoles) {
				t.Fatalf("bindings = %v, want %v", got, tt.wantRoles)
			}
			if got.ID == made.ID && slices.Equal(tt.roles, []string{"viewer", "registry.pull"}) {
				if after := bindingIDs(env.e, group, made.ID); !slices.Equal(after, bindingsBefore) {
					t.Fatalf("binding IDs went from %v to %v, want them kept", bindingsBefore, after)
				}
			}
			if n := env.p.RPCs() - rpcs; tt.wantRPCs > 0 && n != tt.wantRPCs {
				t.Errorf("EnsureIdentity made %d RPCs, want %d", n, tt.wantRPCs)
			}
			// The identity still works for the workload under its (new) name.
			env.workloadToken(t, got.ID)

			// A replay changes nothing and makes no duplicate.
			rpcs = env.p.RPCs()
			again, err := env.p.EnsureIdentity(ctx, spec)
			if err != nil || again.ID != got.ID || again.Created {
				t.Fatalf("replay = %+v, %v; want %s unchanged", again, err, got.ID)
			}
			if n := env.p.RPCs() - rpcs; n != 2 {
				t.Errorf("replay made %d RPCs, want 2 (list identities, list bindings)", n)
			}
			if n := len(identityNamed(env.e, spec.Group, spec.Name)); n != 1 {
				t.Fatalf("%d identities named %q after the replay, want 1", n, spec.Name)
			}
		})
	}
}

func cmpOrString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// A group whose current ID is known is updated in place; without a usable ID
// it is found by name.
func TestEnsureGroupInPlace(t *testing.T) {
	tests := []struct {
		name     string
		id       string // CURRENT, OTHER, GONE or literal
		parent   string // "" (root) or CHILD (another parent)
		specName string
		wantID   string // CURRENT, OTHER or FRESH
		wantRPCs int
		wantErr  string
	}{
		{name: "rename keeps the UIDP", id: "CURRENT", specName: "team-b", wantID: "CURRENT", wantRPCs: 2},
		{name: "nothing changed", id: "CURRENT", specName: "team-a", wantID: "CURRENT", wantRPCs: 1},
		{
			name: "rename onto a name another group has", id: "CURRENT", specName: "other-team",
			wantErr: `rename group "team-a" (CURRENT) to "other-team" in group ROOT: refused: another group there already has that name (OTHER): choose another name`,
		},
		{name: "ID gone: created by name", id: "GONE", specName: "team-b", wantID: "FRESH"},
		{name: "ID gone: the namesake is adopted", id: "GONE", specName: "other-team", wantID: "OTHER", wantRPCs: 1},
		{name: "ID not a UIDP: created by name", id: "a1b2c3d4-request-id", specName: "team-b", wantID: "FRESH"},
		{name: "ID under another parent: a new group there", id: "CURRENT", parent: "CHILD", specName: "team-a", wantID: "FRESH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner")
			ctx := ctxT(t, 30*time.Second)
			made, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "team-a", Description: "d"})
			if err != nil {
				t.Fatalf("EnsureGroup: %v", err)
			}
			member := env.e.SeedIdentity(made.ID, "member", "", workloadPrincipal().ExactTrust(), map[string][]string{made.ID: {"viewer"}})
			otherID := env.e.SeedGroup(env.root, "other-team", "d")
			child := env.e.SeedGroup(env.root, "child", "")
			resolve := strings.NewReplacer("CURRENT", made.ID, "OTHER", otherID, "GONE", env.root+"/0123456789abcdef", "ROOT", env.root, "CHILD", child)
			spec := provision.GroupSpec{ID: resolve.Replace(tt.id), Parent: env.root, Name: tt.specName, Description: "d"}
			if tt.parent != "" {
				spec.Parent = resolve.Replace(tt.parent)
			}
			before := env.e.State()
			rpcs := env.p.RPCs()
			got, err := env.p.EnsureGroup(ctx, spec)
			if tt.wantErr != "" {
				t.Logf("error: %v", err)
				if want := resolve.Replace(tt.wantErr); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("EnsureGroup error = %v\nwant it to contain %q", err, want)
				}
				if !reflect.DeepEqual(env.e.State().Groups, before.Groups) || env.e.Calls(groupsUpdate) != 0 {
					t.Fatal("a refused rename changed the groups")
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureGroup: %v", err)
			}
			if tt.wantID == "FRESH" {
				if !got.Created || got.ID == made.ID || uidp.Parent(got.ID) != spec.Parent {
					t.Fatalf("EnsureGroup = %+v, want a new group under %s", got, spec.Parent)
				}
			} else if want := resolve.Replace(tt.wantID); got.ID != want || got.Created {
				t.Fatalf("EnsureGroup = %+v, want %s updated in place", got, want)
			}
			if got.Name != spec.Name {
				t.Fatalf("EnsureGroup = %+v, want name %q", got, spec.Name)
			}
			var named []string
			for _, g := range env.e.State().Groups {
				if uidp.Parent(g.ID) == spec.Parent && g.Name == spec.Name {
					named = append(named, g.ID)
				}
			}
			if !slices.Equal(named, []string{got.ID}) {
				t.Fatalf("groups named %q under %s = %v, want just %s", spec.Name, spec.Parent, named, got.ID)
			}
			// What the group holds stays where it was.
			if got := bindingsOf(env.e, made.ID, member); !slices.Equal(got, []string{"viewer"}) {
				t.Fatalf("bindings in the group = %v, want [viewer]", got)
			}
			if n := env.p.RPCs() - rpcs; tt.wantRPCs > 0 && n != tt.wantRPCs {
				t.Errorf("EnsureGroup made %d RPCs, want %d", n, tt.wantRPCs)
			}
			// A replay changes nothing.
			rpcs = env.p.RPCs()
			if again, err := env.p.EnsureGroup(ctx, spec); err != nil || again.ID != got.ID || again.Created {
				t.Fatalf("replay = %+v, %v; want %s unchanged", again, err, got.ID)
			}
			if n := env.p.RPCs() - rpcs; n != 1 {
				t.Errorf("replay made %d RPCs, want 1", n)
			}
		})
	}
}

func TestEnsureGroupAdoptsAndUpdates(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	seeded := env.e.SeedGroup(env.root, "example-group", "old description")
	env.e.SeedGroup(env.root, "unrelated", "")

	for i, desc := range []string{"new description", "new description"} {
		g, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "example-group", Description: desc})
		if err != nil {
			t.Fatalf("EnsureGroup #%d: %v", i+1, err)
		}
		if g.ID != seeded || g.Created || g.Description != desc {
			t.Fatalf("EnsureGroup #%d = %+v, want the seeded group %s adopted with description %q", i+1, g, seeded, desc)
		}
	}
	for _, g := range env.e.State().Groups {
		if g.ID == seeded && g.Description != "new description" {
			t.Fatalf("stored description = %q, want %q", g.Description, "new description")
		}
	}
}

func TestValidationBeforeAnyRPC(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	group := env.e.SeedGroup(env.root, "example-group", "")
	good := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}}
	tests := []struct {
		name    string
		mutate  func(*provision.IdentitySpec)
		wantErr string
	}{
		{"group not a UIDP", func(s *provision.IdentitySpec) { s.Group = "example-group" }, `group "example-group" is not a Chainguard UIDP`},
		{"uppercase name", func(s *provision.IdentitySpec) { s.Name = "AWS-Auth" }, `identity name "AWS-Auth" is not valid`},
		{"empty role", func(s *provision.IdentitySpec) { s.Roles = []string{""} }, `role name is empty`},
		{"trust without session", func(s *provision.IdentitySpec) { tr := s.Trust.(trust.AWS); tr.Session = ""; s.Trust = tr }, `Session or SessionPattern: neither is set`},
		{"trust of another partition", func(s *provision.IdentitySpec) { tr := s.Trust.(trust.AWS); tr.Partition = "aws-cn"; s.Trust = tr }, `Partition: partition "aws-cn"`},
		{"two problems", func(s *provision.IdentitySpec) { s.Name = ""; s.Roles = []string{"a,b"} }, `identity name is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := good
			spec.Roles = slices.Clone(good.Roles)
			tt.mutate(&spec)
			rpcs := env.p.RPCs()
			_, err := env.p.EnsureIdentity(ctx, spec)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("EnsureIdentity error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("error %v does not match validate.ErrInvalid", err)
			}
			if n := env.p.RPCs() - rpcs; n != 0 {
				t.Errorf("made %d RPCs for an invalid spec, want 0", n)
			}
		})
	}

	t.Run("group spec", func(t *testing.T) {
		_, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: "", Name: "Bad Name"})
		if err == nil || !strings.Contains(err.Error(), "parent is empty") || !strings.Contains(err.Error(), `group name "Bad Name" is not valid`) {
			t.Fatalf("EnsureGroup error = %v, want both the parent and the name problems", err)
		}
	})

	t.Run("unknown role fails before the identity is created", func(t *testing.T) {
		spec := good
		spec.Roles = []string{"viewr"}
		_, err := env.p.EnsureIdentity(ctx, spec)
		if want := `look up role "viewr": no role has that name`; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("EnsureIdentity error = %v, want it to contain %q", err, want)
		}
		if n := len(identityNamed(env.e, group, spec.Name)); n != 0 {
			t.Fatalf("%d identities were created, want 0", n)
		}
	})
}

func TestAuthorization(t *testing.T) {
	env := newEnv(t, "viewer")
	ctx := ctxT(t, 30*time.Second)
	group := env.e.SeedGroup(env.root, "example-group", "")
	_, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}})
	t.Logf("error: %v", err)
	want := `create identity "aws-auth-identity" in group ` + group + `: permission denied: the provisioner identity needs the owner role on this group (service: `
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("EnsureIdentity as a viewer: error = %v\nwant it to contain %q", err, want)
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("status.Code(err) = %v, want PermissionDenied", status.Code(err))
	}
	if strings.Contains(err.Error(), "attempts") {
		t.Errorf("a plain PermissionDenied was retried: %v", err)
	}
	if n := len(identityNamed(env.e, group, "aws-auth-identity")); n != 0 {
		t.Fatalf("%d identities exist, want 0", n)
	}
}

func TestFaults(t *testing.T) {
	const name = "aws-auth-identity"
	tests := []struct {
		name    string
		opts    []provision.Option
		timeout time.Duration
		// inject sets up the fault; it may use the Provisioner first.
		inject      func(t *testing.T, env *env, group string)
		wantErr     string // substring; "" means success; GROUP is replaced by the group UIDP
		wantNote    string // a further substring of the error
		wantCode    codes.Code
		wantCreates int           // Identities/Create calls seen by the emulator; 0: not checked
		maxElapsed  time.Duration // 0: no bound checked
	}{{
		name: "unavailable twice then success",
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 2, codes.Unavailable)
		},
		wantCreates: 3,
	}, {
		name: "resource exhausted listing, unavailable binding, then success",
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesList, 1, codes.ResourceExhausted)
			env.e.FailNext(bindingsCreate, 2, codes.Unavailable)
		},
		wantCreates: 1,
	}, {
		name: "unavailable beyond the tries gives up",
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 10, codes.Unavailable)
		},
		wantErr:     `create identity "aws-auth-identity" in group GROUP: unavailable: emulator: injected failure of /chainguard.platform.iam.v2.IdentitiesService/CreateIdentity (after 5 attempts)`,
		wantCode:    codes.Unavailable,
		wantCreates: 5,
	}, {
		name: "invalid argument is not retried",
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 1, codes.InvalidArgument)
		},
		wantErr:     `create identity "aws-auth-identity" in group GROUP: invalid argument`,
		wantCode:    codes.InvalidArgument,
		wantCreates: 1,
	}, {
		name: "no wait past the caller's deadline",
		opts: []provision.Option{provision.WithBackoff(5*time.Second, 10*time.Second, 5)},
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 1, codes.Unavailable)
		},
		timeout:     time.Second,
		wantErr:     `create identity "aws-auth-identity" in group GROUP: unavailable: emulator: injected failure of /chainguard.platform.iam.v2.IdentitiesService/CreateIdentity (the next retry would pass the caller's deadline)`,
		wantCode:    codes.Unavailable,
		wantCreates: 1,
		maxElapsed:  500 * time.Millisecond,
	}, {
		name: "one hang hits the per-RPC timeout, the retry succeeds",
		opts: []provision.Option{provision.WithRPCTimeout(200 * time.Millisecond)},
		inject: func(t *testing.T, env *env, group string) {
			env.e.HangNext(identitiesCreate, 1)
		},
		wantCreates: 2,
	}, {
		name: "hang until the caller's deadline",
		inject: func(t *testing.T, env *env, group string) {
			env.e.HangNext(identitiesCreate, 100)
		},
		timeout:     time.Second,
		wantErr:     `create identity "aws-auth-identity" in group GROUP: deadline exceeded: `,
		wantNote:    "(the caller's deadline passed or it gave up)",
		wantCode:    codes.DeadlineExceeded,
		wantCreates: 1,
		maxElapsed:  1500 * time.Millisecond,
	}, {
		name: "permission denied twice then success, within the budget",
		opts: []provision.Option{provision.WithPermissionDeniedBudget(5 * time.Second)},
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 2, codes.PermissionDenied)
		},
		wantCreates: 3,
	}, {
		name: "permanent permission denied gives up when the budget is spent",
		opts: []provision.Option{provision.WithPermissionDeniedBudget(150 * time.Millisecond)},
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 1000, codes.PermissionDenied)
		},
		wantErr:    `create identity "aws-auth-identity" in group GROUP: permission denied: the provisioner identity needs the owner role on this group (service: emulator: injected failure of /chainguard.platform.iam.v2.IdentitiesService/CreateIdentity) (retried `,
		wantNote:   "; a new role binding can take a few seconds to apply)",
		wantCode:   codes.PermissionDenied,
		maxElapsed: time.Second,
	}, {
		name: "permission denied without a budget is final",
		inject: func(t *testing.T, env *env, group string) {
			env.e.FailNext(identitiesCreate, 1, codes.PermissionDenied)
		},
		wantErr:     `create identity "aws-auth-identity" in group GROUP: permission denied: the provisioner identity needs the owner role on this group (service: emulator: injected failure of /chainguard.platform.iam.v2.IdentitiesService/CreateIdentity)`,
		wantCode:    codes.PermissionDenied,
		wantCreates: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner", append(slices.Clone(fastOpts), tt.opts...)...)
			group := env.e.SeedGroup(env.root, "example-group", "")
			tt.inject(t, env, group)
			timeout := cmpOr(tt.timeout, 30*time.Second)
			ctx := ctxT(t, timeout)
			start := time.Now()
			id, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: name, Trust: workloadTrust(), Roles: []string{"viewer"}})
			elapsed := time.Since(start)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("EnsureIdentity: %v", err)
				}
				if got := bindingsOf(env.e, group, id.ID); !slices.Equal(got, []string{"viewer"}) {
					t.Errorf("bindings = %v, want [viewer]", got)
				}
				if n := len(identityNamed(env.e, group, name)); n != 1 {
					t.Errorf("%d identities named %s, want 1", n, name)
				}
			} else {
				t.Logf("error: %v", err)
				want := strings.ReplaceAll(tt.wantErr, "GROUP", group)
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), tt.wantNote) {
					t.Fatalf("EnsureIdentity error = %v\nwant it to contain %q and %q", err, want, tt.wantNote)
				}
				if status.Code(err) != tt.wantCode {
					t.Errorf("status.Code(err) = %v, want %v", status.Code(err), tt.wantCode)
				}
			}
			if got := env.e.Calls(identitiesCreate); tt.wantCreates > 0 && got != tt.wantCreates {
				t.Errorf("Identities/Create calls = %d, want %d", got, tt.wantCreates)
			}
			if tt.maxElapsed > 0 && elapsed > tt.maxElapsed {
				t.Errorf("EnsureIdentity took %v, want at most %v (deadline %v)", elapsed, tt.maxElapsed, timeout)
			}
		})
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func TestDeleteGroupRefusesWhileNotEmpty(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	g, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "example-group"})
	if err != nil {
		t.Fatalf("EnsureGroup: %v", err)
	}
	id, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: g.ID, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}})
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	sub := env.e.SeedGroup(g.ID, "team", "")
	before := env.e.State()

	_, err = env.p.DeleteGroup(ctx, g.ID, "")
	t.Logf("error: %v", err)
	for _, want := range []string{
		"delete group " + g.ID + ": refused: it still holds ",
		`1 group: "team" ` + sub,
		`1 identity: "aws-auth-identity" ` + id.ID,
		`1 role binding: ` + id.ID + ` as "viewer"`,
		"delete those first",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("DeleteGroup error = %v\nwant it to contain %q", err, want)
		}
	}
	if got := len(env.e.State().Groups); got != len(before.Groups) {
		t.Fatalf("groups went from %d to %d after a refused delete", len(before.Groups), got)
	}
	if n := env.e.Calls(groupsDelete); n != 0 {
		t.Fatalf("Groups/Delete was called %d times, want 0", n)
	}
}

// Deleting what is already gone, or an ID that is not a UIDP (CloudFormation
// sends the request ID after a failed Create), succeeds.
func TestDeleteGoneOrNotUIDP(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	group := env.e.SeedGroup(env.root, "example-group", "")
	gone := group + "/0123456789abcdef"
	deleteGroup := func(ctx context.Context, id string) error {
		_, err := env.p.DeleteGroup(ctx, id, "")
		return err
	}
	deleteOwnedGroup := func(ctx context.Context, id string) error {
		_, err := env.p.DeleteGroup(ctx, id, managedBy)
		return err
	}
	tests := []struct {
		name     string
		del      func(context.Context, string) error
		id       string
		wantRPCs bool
	}{
		{"identity: request ID", env.p.DeleteIdentity, "a1b2c3d4-request-id", false},
		{"identity: empty", env.p.DeleteIdentity, "", false},
		{"identity: root UIDP", env.p.DeleteIdentity, env.root, false},
		{"identity: missing", env.p.DeleteIdentity, gone, true},
		{"group: request ID", deleteGroup, "a1b2c3d4-request-id", false},
		{"group: missing", deleteGroup, gone, true},
		{"group: missing, with an owner", deleteOwnedGroup, gone, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rpcs := env.p.RPCs()
			if err := tt.del(ctx, tt.id); err != nil {
				t.Fatalf("delete %q: %v, want nil", tt.id, err)
			}
			if made := env.p.RPCs() > rpcs; made != tt.wantRPCs {
				t.Fatalf("delete %q made RPCs: %v, want %v", tt.id, made, tt.wantRPCs)
			}
		})
	}
}

// BenchmarkEnsureIdentityCreate reports the RPCs to create an identity with
// one binding, the role cache warm (target: at most 4).
func BenchmarkEnsureIdentityCreate(b *testing.B) {
	env := newEnv(b, "owner")
	ctx := context.Background()
	group := env.e.SeedGroup(env.root, "example-group", "")
	spec := func(i int) provision.IdentitySpec {
		return provision.IdentitySpec{Group: group, Name: "id-" + strconv.Itoa(i), Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
	}
	if _, err := env.p.EnsureIdentity(ctx, spec(-1)); err != nil { // warms the role cache
		b.Fatal(err)
	}
	rpcs, n := 0, 0
	for ; b.Loop(); n++ {
		i := n
		before := env.p.RPCs()
		if _, err := env.p.EnsureIdentity(ctx, spec(i)); err != nil {
			b.Fatal(err)
		}
		rpcs += env.p.RPCs() - before
	}
	b.ReportMetric(float64(rpcs)/float64(n), "rpcs/op")
}

// BenchmarkDeleteIdentity reports the RPCs to delete an identity with one
// binding (target: at most 3).
func BenchmarkDeleteIdentity(b *testing.B) {
	env := newEnv(b, "owner")
	ctx := context.Background()
	group := env.e.SeedGroup(env.root, "example-group", "")
	rpcs, n := 0, 0
	for ; b.Loop(); n++ {
		i := n
		b.StopTimer()
		id, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "id-" + strconv.Itoa(i), Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		before := env.p.RPCs()
		if err := env.p.DeleteIdentity(ctx, id.ID); err != nil {
			b.Fatal(err)
		}
		rpcs += env.p.RPCs() - before
	}
	b.ReportMetric(float64(rpcs)/float64(n), "rpcs/op")
}

// BenchmarkEnsureIdentityRename reports the RPCs to rename an identity in
// place (keeping its UIDP and its one binding) by its current ID: a list, the
// update and the bindings' list.
func BenchmarkEnsureIdentityRename(b *testing.B) {
	env := newEnv(b, "owner")
	ctx := context.Background()
	group := env.e.SeedGroup(env.root, "example-group", "")
	spec := provision.IdentitySpec{Group: group, Name: "id-start", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
	id, err := env.p.EnsureIdentity(ctx, spec) // also warms the role cache
	if err != nil {
		b.Fatal(err)
	}
	spec.ID = id.ID
	rpcs, n := 0, 0
	for ; b.Loop(); n++ {
		spec.Name = "id-" + strconv.Itoa(n)
		before := env.p.RPCs()
		got, err := env.p.EnsureIdentity(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if got.ID != id.ID {
			b.Fatalf("rename returned %s, want %s", got.ID, id.ID)
		}
		rpcs += env.p.RPCs() - before
	}
	b.ReportMetric(float64(rpcs)/float64(n), "rpcs/op")
}

// BenchmarkEnsureGroupRename reports the RPCs to rename a group in place by
// its current ID: a list and the update.
func BenchmarkEnsureGroupRename(b *testing.B) {
	env := newEnv(b, "owner")
	ctx := context.Background()
	spec := provision.GroupSpec{Parent: env.root, Name: "group-start", ManagedBy: managedBy}
	g, err := env.p.EnsureGroup(ctx, spec)
	if err != nil {
		b.Fatal(err)
	}
	spec.ID = g.ID
	rpcs, n := 0, 0
	for ; b.Loop(); n++ {
		spec.Name = "group-" + strconv.Itoa(n)
		before := env.p.RPCs()
		got, err := env.p.EnsureGroup(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		if got.ID != spec.ID {
			b.Fatalf("rename returned %s, want %s", got.ID, spec.ID)
		}
		rpcs += env.p.RPCs() - before
	}
	b.ReportMetric(float64(rpcs)/float64(n), "rpcs/op")
}

// sameAWSIdentity reports whether stored (as the emulator keeps it, IAM v1)
// is the aws_identity t builds.
func sameAWSIdentity(stored *iamv1.Identity_AWSIdentity, t trust.AWS) bool {
	want := t.AWSIdentity()
	return stored.GetAwsAccount() == want.GetAwsAccount() &&
		stored.GetArn() == want.GetArn() && stored.GetArnPattern() == want.GetArnPattern() &&
		stored.GetUserId() == want.GetUserId() && stored.GetUserIdPattern() == want.GetUserIdPattern()
}
