package provision_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
)

const (
	exchangeMethod = "/chainguard.platform.oidc.SecurityTokenService/Exchange"
	groupsList     = iam.GroupsService_ListGroups_FullMethodName
)

// hooks change what some RPCs do, around the real call (next), to stage
// what fault injection cannot: an answer lost after the service acted, a
// concurrent writer, fields the service fills in. A nil hook calls through.
// List hooks wrap the SDK's List...All (every page).
type hooks struct {
	createIdentity func(ctx context.Context, req *iam.CreateIdentityRequest, next func() (*iam.Identity, error)) (*iam.Identity, error)
	updateIdentity func(ctx context.Context, req *iam.UpdateIdentityRequest, next func() (*iam.Identity, error)) (*iam.Identity, error)
	listIdentities func(ctx context.Context, req *iam.ListIdentitiesRequest, next func() ([]*iam.Identity, error)) ([]*iam.Identity, error)
	createGroup    func(ctx context.Context, req *iam.CreateGroupRequest, next func() (*iam.Group, error)) (*iam.Group, error)
	updateGroup    func(ctx context.Context, req *iam.UpdateGroupRequest, next func() (*iam.Group, error)) (*iam.Group, error)
	listGroups     func(ctx context.Context, req *iam.ListGroupsRequest, next func() ([]*iam.Group, error)) ([]*iam.Group, error)
	createBinding  func(ctx context.Context, req *iam.CreateRoleBindingRequest, next func() (*iam.RoleBinding, error)) (*iam.RoleBinding, error)
}

// hooked connects through conn and applies h to the clients.
func hooked(conn provision.ConnectFunc, h *hooks) provision.ConnectFunc {
	return func(ctx context.Context) (iam.Clients, error) {
		c, err := conn(ctx)
		if err != nil {
			return nil, err
		}
		return hookedClients{c, h}, nil
	}
}

// through runs hook around next, or next alone when hook is nil.
func through[Req, Resp any](ctx context.Context, hook func(context.Context, Req, func() (Resp, error)) (Resp, error), req Req, next func() (Resp, error)) (Resp, error) {
	if hook == nil {
		return next()
	}
	return hook(ctx, req, next)
}

type hookedClients struct {
	iam.Clients
	h *hooks
}

func (c hookedClients) IdentitiesService() iam.IdentitiesServiceClient {
	return hookedIdentities{c.Clients.IdentitiesService(), c.h}
}

func (c hookedClients) GroupsService() iam.GroupsServiceClient {
	return hookedGroups{c.Clients.GroupsService(), c.h}
}

func (c hookedClients) RoleBindingsService() iam.RoleBindingsServiceClient {
	return hookedBindings{c.Clients.RoleBindingsService(), c.h}
}

func (c hookedClients) ListIdentitiesAll(ctx context.Context, req *iam.ListIdentitiesRequest) ([]*iam.Identity, error) {
	return through(ctx, c.h.listIdentities, req, func() ([]*iam.Identity, error) { return c.Clients.ListIdentitiesAll(ctx, req) })
}

func (c hookedClients) ListGroupsAll(ctx context.Context, req *iam.ListGroupsRequest) ([]*iam.Group, error) {
	return through(ctx, c.h.listGroups, req, func() ([]*iam.Group, error) { return c.Clients.ListGroupsAll(ctx, req) })
}

type hookedIdentities struct {
	iam.IdentitiesServiceClient
	h *hooks
}

func (c hookedIdentities) CreateIdentity(ctx context.Context, req *iam.CreateIdentityRequest, opts ...grpc.CallOption) (*iam.Identity, error) {
	return through(ctx, c.h.createIdentity, req, func() (*iam.Identity, error) { return c.IdentitiesServiceClient.CreateIdentity(ctx, req, opts...) })
}

func (c hookedIdentities) UpdateIdentity(ctx context.Context, req *iam.UpdateIdentityRequest, opts ...grpc.CallOption) (*iam.Identity, error) {
	return through(ctx, c.h.updateIdentity, req, func() (*iam.Identity, error) { return c.IdentitiesServiceClient.UpdateIdentity(ctx, req, opts...) })
}

type hookedGroups struct {
	iam.GroupsServiceClient
	h *hooks
}

func (c hookedGroups) CreateGroup(ctx context.Context, req *iam.CreateGroupRequest, opts ...grpc.CallOption) (*iam.Group, error) {
	return through(ctx, c.h.createGroup, req, func() (*iam.Group, error) { return c.GroupsServiceClient.CreateGroup(ctx, req, opts...) })
}

func (c hookedGroups) UpdateGroup(ctx context.Context, req *iam.UpdateGroupRequest, opts ...grpc.CallOption) (*iam.Group, error) {
	return through(ctx, c.h.updateGroup, req, func() (*iam.Group, error) { return c.GroupsServiceClient.UpdateGroup(ctx, req, opts...) })
}

type hookedBindings struct {
	iam.RoleBindingsServiceClient
	h *hooks
}

func (c hookedBindings) CreateRoleBinding(ctx context.Context, req *iam.CreateRoleBindingRequest, opts ...grpc.CallOption) (*iam.RoleBinding, error) {
	return through(ctx, c.h.createBinding, req, func() (*iam.RoleBinding, error) {
		return c.RoleBindingsServiceClient.CreateRoleBinding(ctx, req, opts...)
	})
}

// answerLost makes the service act, then answers code, once.
func answerLost[Req, Resp any](code codes.Code) func(context.Context, Req, func() (Resp, error)) (Resp, error) {
	var once atomic.Bool
	return func(_ context.Context, _ Req, next func() (Resp, error)) (Resp, error) {
		res, err := next()
		if err == nil && once.CompareAndSwap(false, true) {
			var zero Resp
			return zero, status.Error(code, "test: the answer was lost after the service acted")
		}
		return res, err
	}
}

// A Create is tried again after a transient failure only when a re-list
// shows it made nothing; what the re-list finds is the result. AlreadyExists
// from Identities.Create is not adopted (the service never answers it:
// identity names are not unique).
func TestCreateRetriedOnlyWhenNothingWasMade(t *testing.T) {
	const name = "aws-auth-identity"
	tests := []struct {
		name          string
		hooks         hooks
		inject        func(e *emulator.Emulator)
		wantCreates   map[string]int // emulator calls by method
		wantErr       string         // GROUP is the group's UIDP
		wantErrorCode codes.Code
	}{{
		name:        "identity made, answer lost",
		hooks:       hooks{createIdentity: answerLost[*iam.CreateIdentityRequest, *iam.Identity](codes.Unavailable)},
		wantCreates: map[string]int{identitiesCreate: 1},
	}, {
		name:        "identity made, the attempt's own deadline passed",
		hooks:       hooks{createIdentity: answerLost[*iam.CreateIdentityRequest, *iam.Identity](codes.DeadlineExceeded)},
		wantCreates: map[string]int{identitiesCreate: 1},
	}, {
		name:        "identity not made: created again",
		inject:      func(e *emulator.Emulator) { e.FailNext(identitiesCreate, 1, codes.Internal) },
		wantCreates: map[string]int{identitiesCreate: 2},
	}, {
		name:        "group made, answer lost",
		hooks:       hooks{createGroup: answerLost[*iam.CreateGroupRequest, *iam.Group](codes.Unknown)},
		wantCreates: map[string]int{groupsCreate: 1},
	}, {
		name:        "role binding made, answer lost",
		hooks:       hooks{createBinding: answerLost[*iam.CreateRoleBindingRequest, *iam.RoleBinding](codes.Aborted)},
		wantCreates: map[string]int{bindingsCreate: 1},
	}, {
		name:          "AlreadyExists from Identities.Create is an error",
		inject:        func(e *emulator.Emulator) { e.FailNext(identitiesCreate, 1, codes.AlreadyExists) },
		wantCreates:   map[string]int{identitiesCreate: 1},
		wantErr:       `create identity "aws-auth-identity" in group GROUP: already exists: emulator: injected failure`,
		wantErrorCode: codes.AlreadyExists,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner")
			p := env.newProvisioner(t, hooked(env.connector(), &tt.hooks), fastOpts...)
			ctx := ctxT(t, 30*time.Second)
			if tt.inject != nil {
				tt.inject(env.e)
			}
			g, err := p.EnsureGroup(ctx, provision.GroupSpec{Parent: env.root, Name: "example-group", ManagedBy: managedBy})
			if err != nil {
				t.Fatalf("EnsureGroup: %v", err)
			}
			id, err := p.EnsureIdentity(ctx, provision.IdentitySpec{Group: g.ID, Name: name, Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy})
			if tt.wantErr != "" {
				t.Logf("error: %v", err)
				if want := strings.ReplaceAll(tt.wantErr, "GROUP", g.ID); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("EnsureIdentity error = %v\nwant it to contain %q", err, want)
				}
				if status.Code(err) != tt.wantErrorCode {
					t.Fatalf("status.Code(err) = %v, want %v", status.Code(err), tt.wantErrorCode)
				}
			} else {
				if err != nil {
					t.Fatalf("EnsureIdentity: %v", err)
				}
				if got := bindingsOf(env.e, g.ID, id.ID); !slices.Equal(got, []string{"viewer"}) {
					t.Errorf("bindings = %v, want [viewer]", got)
				}
				if n := len(identityNamed(env.e, g.ID, name)); n != 1 {
					t.Errorf("%d identities named %s, want 1", n, name)
				}
			}
			if n := countNamed(env.e.State(), env.root, "example-group"); n != 1 {
				t.Errorf("%d groups named example-group, want 1", n)
			}
			for method, want := range tt.wantCreates {
				if got := env.e.Calls(method); got != want {
					t.Errorf("%s calls = %d, want %d", method, got, want)
				}
			}
		})
	}
}

// Idempotent calls retry every transient code once; other codes are final.
func TestIdempotentCallsRetryTransientCodes(t *testing.T) {
	tests := []struct {
		code      codes.Code
		wantLists int // Identities/List calls: the failed one, the one before the create, the one after it (for duplicates)
		wantErr   string
	}{
		{code: codes.Unavailable, wantLists: 3},
		{code: codes.Unknown, wantLists: 3},
		{code: codes.Internal, wantLists: 3},
		{code: codes.Aborted, wantLists: 3},
		{code: codes.ResourceExhausted, wantLists: 3},
		{code: codes.DeadlineExceeded, wantLists: 3},
		{code: codes.FailedPrecondition, wantLists: 1, wantErr: `look up identity "aws-auth-identity" in group GROUP: failed precondition: emulator: injected failure`},
		{code: codes.InvalidArgument, wantLists: 1, wantErr: `look up identity "aws-auth-identity" in group GROUP: invalid argument: emulator: injected failure`},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			env := newEnv(t, "owner")
			ctx := ctxT(t, 30*time.Second)
			group := env.e.SeedGroup(env.root, "example-group", "")
			env.e.FailNext(identitiesList, 1, tt.code)
			_, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), ManagedBy: managedBy})
			if tt.wantErr == "" && err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			if want := strings.ReplaceAll(tt.wantErr, "GROUP", group); tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), want)) {
				t.Fatalf("EnsureIdentity error = %v\nwant it to contain %q", err, want)
			}
			if got, want := env.e.Calls(identitiesList), tt.wantLists; got != want {
				t.Fatalf("Identities/List calls = %d, want %d", got, want)
			}
		})
	}
}

// grantOnConnect returns a Connector that, on its connect number n (from
// 1), first binds role on scope to the provisioner: a role binding that
// appears while the provisioner retries. It counts connects in *connects.
func (env *env) grantOnConnect(n int, scope, role string, connects *atomic.Int32) provision.ConnectFunc {
	conn := env.connector()
	return func(ctx context.Context) (iam.Clients, error) {
		if int(connects.Add(1)) == n {
			env.e.SeedRoleBinding(scope, env.prov, role)
		}
		return conn(ctx)
	}
}

// A token carries the rights its identity had when it was exchanged: after
// PermissionDenied only a fresh token can see a role binding made since.
// Each refusal that the budget lets be retried is retried with a fresh token;
// a role that no token can see is not found only once rights are visible.
func TestRefusalsRetriedWithAFreshToken(t *testing.T) {
	budget := []provision.Option{provision.WithPermissionDeniedBudget(5 * time.Second)}
	tests := []struct {
		name         string
		role         string // the provisioner's role on the root from the start
		grantAt      int    // the connect that binds owner on the root; 0: none
		roles        []string
		opts         []provision.Option
		wantErr      []string
		wantConnects int // 0: at least 2
	}{{
		name: "permission denied until the owner binding", role: "viewer", grantAt: 2, roles: []string{"viewer"}, opts: budget,
		wantConnects: 2,
	}, {
		name: "no role visible until the owner binding", grantAt: 2, roles: []string{"viewer"}, opts: budget,
		wantConnects: 2,
	}, {
		name: "an unknown role fails at once, naming the roles there are", role: "owner", roles: []string{"viewr"}, opts: budget,
		wantErr:      []string{`look up role "viewr": no role has that name: use one of the roles visible to the provisioner: `, "editor, ", "owner, ", "viewer"},
		wantConnects: 1,
	}, {
		name: "no role ever visible", roles: []string{"viewer"}, opts: []provision.Option{provision.WithPermissionDeniedBudget(100 * time.Millisecond)},
		wantErr: []string{"look up roles: no role is visible to the provisioner identity: it needs the owner role on the group or a group above it (the built-in roles include viewer, editor, owner, registry.pull and registry.push) (retried "},
	}, {
		name: "permission denied without a budget: no fresh token", role: "viewer", grantAt: 2, roles: []string{"viewer"},
		wantErr:      []string{`create identity "aws-auth-identity" in group GROUP: permission denied: the provisioner identity needs the owner role on this group (service: `},
		wantConnects: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, tt.role)
			group := env.e.SeedGroup(env.root, "example-group", "")
			var connects atomic.Int32
			p := env.newProvisioner(t, env.grantOnConnect(tt.grantAt, env.root, "owner", &connects), append(slices.Clone(fastOpts), tt.opts...)...)
			ctx := ctxT(t, 30*time.Second)
			exchanges := env.e.Calls(exchangeMethod)
			id, err := p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: tt.roles, ManagedBy: managedBy})
			n := int(connects.Load())
			if tt.wantConnects > 0 && n != tt.wantConnects || tt.wantConnects == 0 && n < 2 {
				t.Errorf("connects = %d, want %d (0: at least 2)", n, tt.wantConnects)
			}
			if got := env.e.Calls(exchangeMethod) - exchanges; got != n {
				t.Errorf("exchanges = %d, want one per connect (%d)", got, n)
			}
			if len(tt.wantErr) > 0 {
				t.Logf("error: %v", err)
				for _, want := range tt.wantErr {
					if want = strings.ReplaceAll(want, "GROUP", group); err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("EnsureIdentity error = %v\nwant it to contain %q", err, want)
					}
				}
				if n := len(identityNamed(env.e, group, "aws-auth-identity")); n != 0 {
					t.Fatalf("%d identities were created, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			if got := bindingsOf(env.e, group, id.ID); !slices.Equal(got, []string{"viewer"}) {
				t.Fatalf("bindings = %v, want [viewer]", got)
			}
		})
	}
}

// The first deployment right after the trust step: the provisioner identity
// and its owner binding were just made through the API, and the STS learns
// of them only after the propagation delay. The refused exchange and the
// refusals of the first token are retried with fresh tokens within the
// budget, and everything is made.
func TestFirstDeployRightAfterTheTrustStep(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{PropagationDelay: time.Second})
	root := e.SeedGroup("", "acme", "the test organization")
	admin := e.SeedIdentity(root, "admin", "the user who runs the trust step", workloadPrincipal().ExactTrust(), map[string][]string{root: {"owner"}})
	creds := e.RegisterAWSPrincipal(emulator.AWSPrincipal{Account: account, ARN: provisionerARN, UserID: provisionerUserID})
	ctx := ctxT(t, 30*time.Second)

	// The trust step (chainctl iam identities create aws ... --role owner),
	// through IAM v1 as the localrun trust step makes it: both versions
	// serve the same objects.
	c, err := iamv1.NewClients(ctx, e.APIURL(), e.MintToken(admin))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prov, err := c.Identities().Create(ctx, &iamv1.CreateIdentityRequest{ParentId: root, Identity: &iamv1.Identity{
		Name: "provisioner", Relationship: &iamv1.Identity_AwsIdentity{AwsIdentity: provisionerPrincipal().ExactTrust()},
	}})
	if err != nil {
		t.Fatalf("trust step: create the provisioner identity: %v", err)
	}
	if _, err := c.RoleBindings().Create(ctx, &iamv1.CreateRoleBindingRequest{Parent: root, RoleBinding: &iamv1.RoleBinding{Identity: prov.GetId(), Role: e.RoleID("owner")}}); err != nil {
		t.Fatalf("trust step: bind owner: %v", err)
	}

	// At once, the first deployment.
	env := &env{e: e, root: root, prov: prov.GetId(), provisioner: creds}
	p := env.newProvisioner(t, env.connector(), provision.WithPermissionDeniedBudget(10*time.Second), provision.WithPropagationBackoff(100*time.Millisecond, 400*time.Millisecond))
	g, err := p.EnsureGroup(ctx, provision.GroupSpec{Parent: root, Name: "example-group", ManagedBy: managedBy})
	if err != nil {
		t.Fatalf("EnsureGroup right after the trust step: %v", err)
	}
	id, err := p.EnsureIdentity(ctx, provision.IdentitySpec{Group: g.ID, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy})
	if err != nil {
		t.Fatalf("EnsureIdentity right after the trust step: %v", err)
	}
	if got := bindingsOf(e, g.ID, id.ID); !slices.Equal(got, []string{"viewer"}) {
		t.Fatalf("bindings = %v, want [viewer]", got)
	}
	if n := e.Calls(exchangeMethod); n < 2 {
		t.Fatalf("%d exchanges, want the refused ones retried", n)
	}
}

// A group that is not listed is gone only when a group above it is listed;
// otherwise the provisioner cannot see it, and DeleteGroup fails instead of
// leaving it behind unnoticed.
func TestDeleteGroupTellsGoneFromNotVisible(t *testing.T) {
	tests := []struct {
		name        string
		role        string // the provisioner's role on the root
		siblingRole string // the provisioner's role on a sibling group
		grantAt     int    // the connect that binds owner on the root; 0: none
		gone        bool   // the group is deleted first
		parentGone  bool   // and so is its parent
		wantErr     []string
	}{
		{name: "visible: deleted", role: "owner"},
		{name: "gone, its parent visible", role: "owner", gone: true},
		{name: "gone with its parent, the root visible", role: "owner", gone: true, parentGone: true},
		{name: "visible after a fresh token: deleted", grantAt: 2},
		{name: "not visible", siblingRole: "owner", wantErr: []string{
			"delete group GROUP: neither the group nor any group above it is visible to the provisioner identity, so whether it is gone cannot be told: the provisioner identity needs the owner role on the group or a group above it",
			"(retried ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, tt.role)
			parent := env.e.SeedGroup(env.root, "parent", "")
			group := env.e.SeedGroup(parent, "team", "ours"+marked)
			if tt.siblingRole != "" {
				env.e.SeedRoleBinding(env.e.SeedGroup(env.root, "sibling", ""), env.prov, tt.siblingRole)
			}
			if tt.gone {
				admin := env.newProvisioner(t, provision.Static(env.e.APIURL(), env.e.MintToken(env.prov)))
				if tt.role == "" {
					t.Fatal("a case that deletes first needs a role")
				}
				ids := []string{group}
				if tt.parentGone {
					ids = append(ids, parent)
				}
				for _, id := range ids {
					if _, err := admin.DeleteGroup(ctxT(t, 10*time.Second), id, ""); err != nil {
						t.Fatalf("delete %s first: %v", id, err)
					}
				}
			}
			var connects atomic.Int32
			p := env.newProvisioner(t, env.grantOnConnect(tt.grantAt, env.root, "owner", &connects),
				append(slices.Clone(fastOpts), provision.WithPermissionDeniedBudget(200*time.Millisecond))...)
			left, err := p.DeleteGroup(ctxT(t, 30*time.Second), group, managedBy)
			_, stillThere := findGroup(env.e.State(), group)
			if len(tt.wantErr) > 0 {
				t.Logf("error: %v", err)
				for _, want := range tt.wantErr {
					if want = strings.ReplaceAll(want, "GROUP", group); err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("DeleteGroup error = %v\nwant it to contain %q", err, want)
					}
				}
				if !stillThere {
					t.Fatal("the group is gone, want it left (the provisioner cannot see it)")
				}
				return
			}
			if err != nil || left || stillThere {
				t.Fatalf("DeleteGroup = left %v, %v; group still there: %v; want it deleted", left, err, stillThere)
			}
		})
	}
}

func findGroup(s emulator.State, id string) (emulator.Group, bool) {
	i := slices.IndexFunc(s.Groups, func(g emulator.Group) bool { return g.ID == id })
	if i < 0 {
		return emulator.Group{}, false
	}
	return s.Groups[i], true
}

// Updates send only what the provisioner writes, under an explicit update
// mask naming just those fields, never the object it listed: the service
// fills in server-owned fields (here: a last_seen_time, an update_time, a
// status and a verified flag newer than the listing), and sending them back
// may be refused.
func TestUpdateSendsOnlyWritableFields(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	later := timestamppb.New(time.Now().Add(time.Hour))
	var mu sync.Mutex
	var sentIdentity *iam.UpdateIdentityRequest
	var sentGroup *iam.UpdateGroupRequest
	h := &hooks{
		listIdentities: func(_ context.Context, _ *iam.ListIdentitiesRequest, next func() ([]*iam.Identity, error)) ([]*iam.Identity, error) {
			list, err := next()
			for _, i := range list {
				i.LastSeenTime, i.UpdateTime = later, later
			}
			return list, err
		},
		updateIdentity: func(_ context.Context, req *iam.UpdateIdentityRequest, next func() (*iam.Identity, error)) (*iam.Identity, error) {
			mu.Lock()
			sentIdentity = proto.CloneOf(req)
			mu.Unlock()
			return next()
		},
		listGroups: func(_ context.Context, _ *iam.ListGroupsRequest, next func() ([]*iam.Group, error)) ([]*iam.Group, error) {
			list, err := next()
			for _, g := range list {
				g.Verified, g.Status, g.UpdateTime = true, iam.OrgStatus_ORG_STATUS_SUSPENDED, later
			}
			return list, err
		},
		updateGroup: func(_ context.Context, req *iam.UpdateGroupRequest, next func() (*iam.Group, error)) (*iam.Group, error) {
			mu.Lock()
			sentGroup = proto.CloneOf(req)
			mu.Unlock()
			return next()
		},
	}
	p := env.newProvisioner(t, hooked(env.connector(), h), fastOpts...)
	gspec := provision.GroupSpec{Parent: env.root, Name: "team-a", Description: "first", ManagedBy: managedBy}
	g, err := p.EnsureGroup(ctx, gspec)
	if err != nil {
		t.Fatalf("EnsureGroup: %v", err)
	}
	ispec := provision.IdentitySpec{Group: g.ID, Name: "aws-auth-identity", Description: "first", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
	id, err := p.EnsureIdentity(ctx, ispec)
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}

	gspec.ID, gspec.Name, gspec.Description = g.ID, "team-b", "second"
	if _, err := p.EnsureGroup(ctx, gspec); err != nil {
		t.Fatalf("rename the group: %v", err)
	}
	ispec.ID, ispec.Name, ispec.Description = id.ID, "renamed-identity", "second"
	if _, err := p.EnsureIdentity(ctx, ispec); err != nil {
		t.Fatalf("rename the identity: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	wantGroup := &iam.UpdateGroupRequest{
		Group:      &iam.Group{Uid: g.ID, Name: "team-b", Description: "second" + marked},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "description"}},
	}
	if !proto.Equal(sentGroup, wantGroup) {
		t.Errorf("group update sent %v, want only %v", sentGroup, wantGroup)
	}
	wantIdentity := &iam.UpdateIdentityRequest{
		Identity: &iam.Identity{Uid: id.ID, Name: "renamed-identity", Description: "second" + marked, Relationship: &iam.Identity_AwsIdentity{AwsIdentity: &iam.Identity_AWSIdentity{
			AwsAccount: account,
			AwsArn:     &iam.Identity_AWSIdentity_Arn{Arn: workloadARN},
			AwsUserId:  &iam.Identity_AWSIdentity_UserId{UserId: workloadUserID},
		}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "description", "aws_identity"}},
	}
	if !proto.Equal(sentIdentity, wantIdentity) {
		t.Errorf("identity update sent %v, want only %v", sentIdentity, wantIdentity)
	}
}

// Identity names are not unique in a group: the caller's identities of one
// name (two deliveries of a Create at once, or a replay after that) end as
// one, the oldest, and the event still succeeds.
func TestDuplicatesEndAsOne(t *testing.T) {
	const name = "aws-auth-identity"
	tests := []struct {
		name string
		// setup seeds identities and returns the one that must survive
		// ("" for the one the Ensure creates) and hooks.
		setup   func(env *env, group string) (survivor string, h *hooks)
		byID    bool // the Ensure names the survivor by ID (an Update)
		foreign bool // another identity of the name, not the stack's, is there too
	}{{
		name: "a replay finds two of its own", foreign: true,
		setup: func(env *env, group string) (string, *hooks) {
			first := env.e.SeedIdentity(group, name, "d"+marked, workloadPrincipal().ExactTrust(), map[string][]string{group: {"editor"}})
			env.e.SeedIdentity(group, name, "d"+marked, workloadPrincipal().ExactTrust(), map[string][]string{group: {"viewer"}})
			return first, &hooks{}
		},
	}, {
		name: "another delivery creates one at the same time",
		setup: func(env *env, group string) (string, *hooks) {
			var other atomic.Value
			return "OTHER", &hooks{createIdentity: func(_ context.Context, _ *iam.CreateIdentityRequest, next func() (*iam.Identity, error)) (*iam.Identity, error) {
				if other.Load() == nil {
					other.Store(env.e.SeedIdentity(group, name, "d"+marked, workloadPrincipal().ExactTrust(), nil))
				}
				return next()
			}}
		},
	}, {
		name: "an update by ID finds a duplicate of its own",
		byID: true, foreign: true,
		setup: func(env *env, group string) (string, *hooks) {
			cur := env.e.SeedIdentity(group, name, "d"+marked, workloadPrincipal().ExactTrust(), map[string][]string{group: {"viewer"}})
			env.e.SeedIdentity(group, name, "d"+marked, workloadPrincipal().ExactTrust(), nil)
			return cur, &hooks{}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner")
			ctx := ctxT(t, 30*time.Second)
			group := env.e.SeedGroup(env.root, "example-group", "")
			theirs := ""
			if tt.foreign {
				theirs = env.e.SeedIdentity(group, name, "theirs", workloadPrincipal().ExactTrust(), map[string][]string{group: {"editor"}})
			}
			survivor, h := tt.setup(env, group)
			p := env.newProvisioner(t, hooked(env.connector(), h), fastOpts...)
			spec := provision.IdentitySpec{Group: group, Name: name, Description: "d", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
			if tt.byID {
				spec.ID = survivor
			}
			got, err := p.EnsureIdentity(ctx, spec)
			if err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			var ours []string
			for _, i := range identityNamed(env.e, group, name) {
				if i.ID != theirs {
					ours = append(ours, i.ID)
				}
			}
			if len(ours) != 1 || ours[0] != got.ID {
				t.Fatalf("the stack's identities named %s = %v, want just the one returned, %s", name, ours, got.ID)
			}
			if survivor == "OTHER" {
				if got.Created {
					t.Fatalf("EnsureIdentity = %+v, want the other delivery's (older) identity kept, not its own", got)
				}
			} else if survivor != "" && got.ID != survivor {
				t.Fatalf("EnsureIdentity kept %s, want the oldest, %s", got.ID, survivor)
			}
			if roles := bindingsOf(env.e, group, got.ID); !slices.Equal(roles, []string{"viewer"}) {
				t.Fatalf("bindings of the kept identity = %v, want [viewer]", roles)
			}
			for _, b := range env.e.State().RoleBindings {
				if b.Group == group && b.Identity != got.ID && b.Identity != theirs {
					t.Fatalf("a binding of a deleted duplicate is left: %+v", b)
				}
			}
			if roles := bindingsOf(env.e, group, theirs); tt.foreign && !slices.Equal(roles, []string{"editor"}) {
				t.Fatalf("the foreign namesake's bindings = %v, want them untouched: [editor]", roles)
			}
		})
	}
}

// A refused connect (the provisioner identity not yet known to the STS:
// NotFound, or PermissionDenied) is retried within the budget; other
// refusals are final.
func TestRefusedConnectRetried(t *testing.T) {
	tests := []struct {
		name         string
		code         codes.Code
		n            int // refusals injected
		budget       time.Duration
		wantConnects int
		wantErr      []string
	}{
		{name: "not found once", code: codes.NotFound, n: 1, budget: 5 * time.Second, wantConnects: 2},
		{name: "permission denied twice", code: codes.PermissionDenied, n: 2, budget: 5 * time.Second, wantConnects: 3},
		{name: "unauthenticated is final", code: codes.Unauthenticated, n: 1, budget: 5 * time.Second, wantConnects: 1,
			wantErr: []string{"code = Unauthenticated desc = emulator: injected failure"}},
		{name: "not found without a budget is final", code: codes.NotFound, n: 1, wantConnects: 1,
			wantErr: []string{"code = NotFound desc = emulator: injected failure"}},
		{name: "not found past the budget", code: codes.NotFound, n: 1000, budget: 100 * time.Millisecond,
			wantErr: []string{"code = NotFound desc = emulator: injected failure", "(retried ", "; a new identity or role binding can take a few seconds to apply)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner")
			var connects atomic.Int32
			p := env.newProvisioner(t, env.grantOnConnect(0, "", "", &connects), append(slices.Clone(fastOpts), provision.WithPermissionDeniedBudget(tt.budget))...)
			env.e.FailNext(exchangeMethod, tt.n, tt.code)
			err := p.Connect(ctxT(t, 30*time.Second))
			if n := int(connects.Load()); tt.wantConnects > 0 && n != tt.wantConnects {
				t.Errorf("connects = %d, want %d", n, tt.wantConnects)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				return
			}
			t.Logf("error: %v", err)
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Connect error = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

// Whether or not the service refuses a second identity of one name in a
// group (the evidence says it does not; the emulator can take either
// reading), a Create, its replay, a rename and a Delete behave the same.
func TestBothIdentityNameReadings(t *testing.T) {
	tests := []struct {
		name   string
		unique bool
	}{{"names not unique", false}, {"names unique", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnvWith(t, emulator.Options{UniqueIdentityNames: tt.unique}, "owner", fastOpts...)
			ctx := ctxT(t, 30*time.Second)
			group := env.e.SeedGroup(env.root, "example-group", "")
			spec := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
			first, err := env.p.EnsureIdentity(ctx, spec)
			if err != nil || !first.Created {
				t.Fatalf("Create = %+v, %v; want a new identity", first, err)
			}
			if again, err := env.p.EnsureIdentity(ctx, spec); err != nil || again.ID != first.ID || again.Created {
				t.Fatalf("replay = %+v, %v; want %s again", again, err, first.ID)
			}
			spec.ID, spec.Name = first.ID, "renamed-identity"
			if renamed, err := env.p.EnsureIdentity(ctx, spec); err != nil || renamed.ID != first.ID || renamed.Name != spec.Name {
				t.Fatalf("rename = %+v, %v; want %s renamed", renamed, err, first.ID)
			}
			if err := env.p.DeleteIdentity(ctx, first.ID); err != nil {
				t.Fatalf("DeleteIdentity: %v", err)
			}
			if n := len(identityNamed(env.e, group, "renamed-identity")); n != 0 {
				t.Fatalf("%d identities left, want 0", n)
			}
		})
	}
}
