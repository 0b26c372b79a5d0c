package emulator_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"chainguard.dev/sdk/proto/capabilities"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestNameLength checks the 3-63 character rule of group and identity names
// on Create, Update and the Seed methods.
func TestNameLength(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	trust := &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()}
	existing := env.SeedIdentity(env.Group, "existing", "", env.WorkloadPrincipal.ExactTrust(), nil)
	existingGroup := env.SeedGroup(env.Group, "existing-group", "")
	tests := []struct {
		name    string
		n       int
		wantErr codes.Code
	}{
		{"2 characters", 2, codes.InvalidArgument},
		{"3 characters", 3, codes.OK},
		{"63 characters", 63, codes.OK},
		{"64 characters", 64, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := strings.Repeat("a", tt.n-1) + "b"
			_, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Group, Group: &iam.Group{Name: name}})
			checkErr(t, err, tt.wantErr)
			_, err = c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: name, Relationship: trust}})
			checkErr(t, err, tt.wantErr)
			// Renames, to a name of its own so that groups stay unique.
			rename := strings.Repeat("c", tt.n-1) + "d"
			_, err = c.Groups().Update(ctx, &iam.Group{Id: existingGroup, Name: rename})
			checkErr(t, err, tt.wantErr)
			_, err = c.Identities().Update(ctx, &iam.Identity{Id: existing, Name: rename, Relationship: trust})
			checkErr(t, err, tt.wantErr)
			if tt.wantErr != codes.OK {
				checkErr(t, err, tt.wantErr, "3 to 63")
				for _, seed := range []func(){
					func() { env.SeedGroup(env.Group, name, "") },
					func() { env.SeedIdentity(env.Group, name, "", env.WorkloadPrincipal.ExactTrust(), nil) },
				} {
					if !panics(seed) {
						t.Errorf("seeding the name %q did not panic", name)
					}
				}
			}
		})
	}
}

func panics(f func()) (did bool) {
	defer func() { did = recover() != nil }()
	f()
	return false
}

// TestGroupServerOwnedFields checks that groups carry kind and status, that
// an update echoing them unchanged passes, and that one carrying a different
// server-owned value is refused; unset fields keep the stored value, and an
// omitted description clears it (v1 has no update mask).
func TestGroupServerOwnedFields(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	g, err := c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Group, Group: &iam.Group{Name: "team", Description: "a team"}})
	checkErr(t, err, codes.OK)
	if g.GetKind() != iam.OrgKind_ORG_KIND_CUSTOMER || g.GetStatus() != iam.OrgStatus_ORG_STATUS_READY {
		t.Fatalf("created group kind %s status %s, want the root's CUSTOMER and READY", g.GetKind(), g.GetStatus())
	}
	l, err := c.Groups().List(ctx, &iam.GroupFilter{Id: g.GetId()})
	checkErr(t, err, codes.OK)
	if len(l.GetItems()) != 1 || !proto.Equal(l.GetItems()[0], g) {
		t.Fatalf("listed %v, want %v", l.GetItems(), g)
	}
	with := func(f func(*iam.Group)) *iam.Group {
		u := proto.Clone(g).(*iam.Group)
		f(u)
		return u
	}
	tests := []struct {
		name    string
		update  *iam.Group
		wantErr codes.Code
		wantMsg string
	}{
		{"read-modify-write, unchanged server fields", with(func(u *iam.Group) { u.Description = "renamed team" }), codes.OK, ""},
		{"minimal object", &iam.Group{Id: g.GetId(), Name: "team"}, codes.OK, ""},
		{"kind changed", with(func(u *iam.Group) { u.Kind = iam.OrgKind_ORG_KIND_STARTER }), codes.InvalidArgument, "kind"},
		{"status changed", with(func(u *iam.Group) { u.Status = iam.OrgStatus_ORG_STATUS_SUSPENDED }), codes.InvalidArgument, "status"},
		{"verified set", with(func(u *iam.Group) { u.Verified = true }), codes.InvalidArgument, "verified"},
		{"resource_limits set", with(func(u *iam.Group) { u.ResourceLimits = map[string]int32{"identities": 10} }), codes.InvalidArgument, "resource_limits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Groups().Update(ctx, tt.update)
			checkErr(t, err, tt.wantErr, tt.wantMsg)
			if err != nil {
				return
			}
			if got.GetKind() != g.GetKind() || got.GetStatus() != g.GetStatus() || got.GetDescription() != tt.update.GetDescription() {
				t.Errorf("updated group %v: want the stored kind and status and the sent description %q", got, tt.update.GetDescription())
			}
		})
	}
	_, err = c.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Group, Group: &iam.Group{Name: "suspended", Status: iam.OrgStatus_ORG_STATUS_SUSPENDED}})
	checkErr(t, err, codes.InvalidArgument, "status")
}

// TestIdentityServerOwnedFields checks the timestamps of identities: stored
// and returned, an update echoing them unchanged passes, and one echoing a
// stale updated_at or a made-up last_seen is refused.
func TestIdentityServerOwnedFields(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	trust := &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()}
	id, err := c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "stamped", Description: "d", Relationship: trust}})
	checkErr(t, err, codes.OK)
	if id.GetCreatedAt() == nil || id.GetUpdatedAt() == nil || id.GetLastSeen() != nil {
		t.Fatalf("created identity %v: want created_at and updated_at, no last_seen", id)
	}
	stale := proto.Clone(id).(*iam.Identity)
	id.Description = "read-modify-write"
	upd, err := c.Identities().Update(ctx, id)
	checkErr(t, err, codes.OK)
	if !upd.GetUpdatedAt().AsTime().After(id.GetUpdatedAt().AsTime()) || !proto.Equal(upd.GetCreatedAt(), id.GetCreatedAt()) {
		t.Errorf("updated identity %v: want a later updated_at and the same created_at", upd)
	}
	tests := []struct {
		name    string
		update  *iam.Identity
		wantErr codes.Code
		wantMsg string
	}{
		{"stale updated_at", stale, codes.InvalidArgument, "updated_at"},
		{"made-up last_seen", func() *iam.Identity {
			u := proto.Clone(upd).(*iam.Identity)
			u.LastSeen = timestamppb.New(time.Now())
			return u
		}(), codes.InvalidArgument, "last_seen"},
		{"created_at changed", func() *iam.Identity {
			u := proto.Clone(upd).(*iam.Identity)
			u.CreatedAt = timestamppb.New(time.Unix(0, 0))
			return u
		}(), codes.InvalidArgument, "created_at"},
		{"minimal object", &iam.Identity{Id: id.GetId(), Name: "stamped", Relationship: trust}, codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Identities().Update(ctx, tt.update)
			checkErr(t, err, tt.wantErr, tt.wantMsg)
		})
	}
	_, err = c.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "backdated", Relationship: trust, CreatedAt: timestamppb.New(time.Unix(0, 0))}})
	checkErr(t, err, codes.InvalidArgument, "created_at")

	// An exchange sets last_seen: echoing the value read before it is stale.
	seeded := env.SeedIdentity(env.Group, "exchanger", "", env.WorkloadPrincipal.ExactTrust(), nil)
	read := func() *iam.Identity {
		t.Helper()
		l, err := c.Identities().List(ctx, &iam.IdentityFilter{Id: seeded})
		checkErr(t, err, codes.OK)
		return l.GetItems()[0]
	}
	first := read()
	emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, seeded)
	second := read()
	if second.GetLastSeen() == nil {
		t.Fatal("last_seen unset after an exchange")
	}
	second.LastSeen = timestamppb.New(second.GetLastSeen().AsTime().Add(-time.Second))
	_, err = c.Identities().Update(ctx, second)
	checkErr(t, err, codes.InvalidArgument, "last_seen")
	_, err = c.Identities().Update(ctx, first) // last_seen unset: kept
	checkErr(t, err, codes.OK)
}

// TestBuiltinRoles checks that every documented built-in role is served with
// the SDK's capability set, and one behaviour the reference documents: the
// pull token creator creates identities and bindings but cannot list them.
func TestBuiltinRoles(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	want := map[string][]capabilities.Capability{
		"owner":                                   capabilities.OwnerCaps,
		"editor":                                  capabilities.EditorCaps,
		"viewer":                                  capabilities.ViewerCaps,
		"console_viewer":                          capabilities.ConsoleViewerCaps,
		"registry.pull":                           capabilities.RegistryPullCaps,
		"registry.push":                           capabilities.RegistryPushCaps,
		"registry.pull_token_creator":             capabilities.RegistryPullTokenCreatorCaps,
		"apk.pull":                                capabilities.APKPullCaps,
		"libraries.java.pull":                     capabilities.LibrariesJavaPullCaps,
		"libraries.java.pull_token_creator":       capabilities.SortCaps(capabilities.PullTokenCreatorCaps, capabilities.LibrariesJavaPullCaps),
		"libraries.python.pull":                   capabilities.LibrariesPythonPullCaps,
		"libraries.python.pull_token_creator":     capabilities.SortCaps(capabilities.PullTokenCreatorCaps, capabilities.LibrariesPythonPullCaps),
		"libraries.javascript.pull":               capabilities.LibrariesJavascriptPullCaps,
		"libraries.javascript.pull_token_creator": capabilities.SortCaps(capabilities.PullTokenCreatorCaps, capabilities.LibrariesJavascriptPullCaps),
		"guardener.user":                          capabilities.GuardenerUserCaps,
		"guardener.admin":                         capabilities.GuardenerAdminCaps,
		"actions.viewer":                          capabilities.ActionsViewerCaps,
		"argos.osv.reader":                        capabilities.ArgosOSVReaderCaps,
	}
	l, err := c.Roles().List(ctx, &iam.RoleFilter{})
	checkErr(t, err, codes.OK)
	got := map[string][]string{}
	for _, r := range l.GetItems() {
		got[r.GetName()] = r.GetCapabilities()
	}
	for name, caps := range want {
		wantNames, err := capabilities.StringifyAll(caps)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got[name], wantNames) {
			t.Errorf("role %s capabilities = %v, want %v", name, got[name], wantNames)
		}
	}
	if len(got) != len(want) {
		t.Errorf("served %d roles, want %d", len(got), len(want))
	}

	creator := env.SeedIdentity(env.Group, "token-creator", "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{env.Group: {"registry.pull_token_creator"}})
	cc := iamClients(t, env.Emulator, env.MintToken(creator))
	made, err := cc.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{
		Name: "pull-token", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()},
	}})
	checkErr(t, err, codes.OK)
	_, err = cc.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iam.RoleBinding{Identity: made.GetId(), Role: env.RoleID("registry.pull")}})
	checkErr(t, err, codes.OK)
	ids, err := cc.Identities().List(ctx, &iam.IdentityFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
	checkErr(t, err, codes.OK)
	if len(ids.GetItems()) != 0 {
		t.Errorf("registry.pull_token_creator listed %d identities, want none (it has no identity.list)", len(ids.GetItems()))
	}
	_, err = cc.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: made.GetId()})
	checkErr(t, err, codes.PermissionDenied, "CAP_IAM_IDENTITY_DELETE")
}
