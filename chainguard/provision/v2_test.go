package provision_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
)

// fiveRoles are built-in roles the tests bind, one binding each.
var fiveRoles = []string{"editor", "owner", "registry.pull", "registry.push", "viewer"}

// seedGroups seeds n groups under parent carrying the test's marker and
// returns their UIDPs.
func seedGroups(env *env, parent string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = env.e.SeedGroup(parent, fmt.Sprintf("team-%d", i), "d"+marked)
	}
	return ids
}

// seedIdentities seeds n identities in group carrying the test's marker,
// the first bound to roles on group, and returns their UIDPs.
func seedIdentities(env *env, group string, n int, roles []string) []string {
	ids := make([]string, n)
	for i := range ids {
		var bindings map[string][]string
		if i == 0 && len(roles) > 0 {
			bindings = map[string][]string{group: roles}
		}
		ids[i] = env.e.SeedIdentity(group, fmt.Sprintf("id-%d", i), "d"+marked, workloadPrincipal().ExactTrust(), bindings)
	}
	return ids
}

// nameOf returns the name of the group or identity id.
func nameOf(s emulator.State, id string) string {
	for _, g := range s.Groups {
		if g.ID == id {
			return g.Name
		}
	}
	for _, i := range s.Identities {
		if i.ID == id {
			return i.Name
		}
	}
	return ""
}

// Every list follows its pages (the SDK's List...All): with the emulator's
// pages capped at two items, the object sought sits on the last page of its
// list (the highest UIDP: lists are ordered by uid) and is still found, and
// the contents that block a group's delete are all counted.
func TestListsFollowPages(t *testing.T) {
	tests := []struct {
		name  string
		list  string // the List method whose pages must be followed
		check func(t *testing.T, env *env, group string)
	}{{
		name: "a group by ID on the last page is updated in place",
		list: iam.GroupsService_ListGroups_FullMethodName,
		check: func(t *testing.T, env *env, group string) {
			target := slices.Max(seedGroups(env, group, 5))
			spec := provision.GroupSpec{ID: target, Parent: group, Name: nameOf(env.e.State(), target), Description: "d", ManagedBy: managedBy}
			got, err := env.p.EnsureGroup(ctxT(t, 30*time.Second), spec)
			if err != nil || got.ID != target || got.Created {
				t.Fatalf("EnsureGroup = %+v, %v; want %s found as it is", got, err, target)
			}
			if n := env.e.Calls(groupsCreate) + env.e.Calls(groupsUpdate); n != 0 {
				t.Fatalf("%d group creates and updates, want 0", n)
			}
		},
	}, {
		name: "an identity by ID on the last page is updated in place",
		list: iam.IdentitiesService_ListIdentities_FullMethodName,
		check: func(t *testing.T, env *env, group string) {
			ids := seedIdentities(env, group, 5, nil)
			target := slices.Max(ids)
			spec := provision.IdentitySpec{ID: target, Group: group, Name: nameOf(env.e.State(), target), Description: "d", Trust: workloadTrust(), ManagedBy: managedBy}
			got, err := env.p.EnsureIdentity(ctxT(t, 30*time.Second), spec)
			if err != nil || got.ID != target || got.Created {
				t.Fatalf("EnsureIdentity = %+v, %v; want %s found as it is", got, err, target)
			}
			if n := env.e.Calls(identitiesCreate) + env.e.Calls(identitiesUpdate); n != 0 {
				t.Fatalf("%d identity creates and updates, want 0", n)
			}
			if n := len(env.e.State().Identities); n != len(ids)+1 { // and the provisioner
				t.Fatalf("%d identities, want %d: none deleted", n, len(ids)+1)
			}
		},
	}, {
		name: "the caller's namesakes on every page end as one",
		list: iam.IdentitiesService_ListIdentities_FullMethodName,
		check: func(t *testing.T, env *env, group string) {
			var ids []string
			for range 5 {
				ids = append(ids, env.e.SeedIdentity(group, "aws-auth-identity", "d"+marked, workloadPrincipal().ExactTrust(), nil))
			}
			spec := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Description: "d", Trust: workloadTrust(), ManagedBy: managedBy}
			got, err := env.p.EnsureIdentity(ctxT(t, 30*time.Second), spec)
			if err != nil || !slices.Contains(ids, got.ID) || got.Created {
				t.Fatalf("EnsureIdentity = %+v, %v; want one of %v adopted", got, err, ids)
			}
			if left := identityNamed(env.e, group, "aws-auth-identity"); len(left) != 1 || left[0].ID != got.ID {
				t.Fatalf("identities named aws-auth-identity = %v, want just %s", left, got.ID)
			}
			if n := env.e.Calls(identitiesCreate); n != 0 {
				t.Fatalf("%d identity creates, want 0", n)
			}
		},
	}, {
		name: "a binding on the last page is kept, the others deleted",
		list: iam.RoleBindingsService_ListRoleBindings_FullMethodName,
		check: func(t *testing.T, env *env, group string) {
			ident := seedIdentities(env, group, 1, fiveRoles)[0]
			keep := slices.Max(bindingIDs(env.e, group, ident))
			var role string
			for _, b := range env.e.State().RoleBindings {
				if b.ID == keep {
					role = b.RoleName
				}
			}
			spec := provision.IdentitySpec{ID: ident, Group: group, Name: "id-0", Description: "d", Trust: workloadTrust(), Roles: []string{role}, ManagedBy: managedBy}
			if _, err := env.p.EnsureIdentity(ctxT(t, 30*time.Second), spec); err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			if got := bindingIDs(env.e, group, ident); !slices.Equal(got, []string{keep}) {
				t.Fatalf("bindings = %v, want just %s (%s), kept", got, keep, role)
			}
			if n := env.e.Calls(bindingsCreate); n != 0 {
				t.Fatalf("%d binding creates, want 0", n)
			}
		},
	}, {
		name: "a role on the last page is found",
		list: iam.RolesService_ListRoles_FullMethodName,
		check: func(t *testing.T, env *env, group string) {
			roles := env.e.State().Roles
			last := slices.MaxFunc(roles, func(a, b emulator.Role) int { return strings.Compare(a.ID, b.ID) })
			spec := provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{last.Name}, ManagedBy: managedBy}
			got, err := env.p.EnsureIdentity(ctxT(t, 30*time.Second), spec)
			if err != nil {
				t.Fatalf("EnsureIdentity with role %q: %v", last.Name, err)
			}
			if roles := bindingsOf(env.e, group, got.ID); !slices.Equal(roles, []string{last.Name}) {
				t.Fatalf("bindings = %v, want [%s]", roles, last.Name)
			}
		},
	}, {
		name: "a group's delete counts what every page holds",
		list: iam.IdentitiesService_ListIdentities_FullMethodName,
		check: func(t *testing.T, env *env, group string) {
			seedGroups(env, group, 5)
			seedIdentities(env, group, 5, fiveRoles)
			before := env.e.State().IDs()
			_, err := env.p.DeleteGroup(ctxT(t, 30*time.Second), group, "")
			t.Logf("error: %v", err)
			for _, want := range []string{"refused: it still holds 5 groups: ", "; 5 identities: ", "; 5 role bindings: "} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("DeleteGroup error = %v, want it to contain %q", err, want)
				}
			}
			if after := env.e.State().IDs(); !slices.Equal(after, before) {
				t.Fatal("a refused delete changed the emulator")
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnvWith(t, emulator.Options{PageSize: 2}, "owner", fastOpts...)
			group := env.e.SeedGroup(env.root, "example-group", "")
			lists := env.e.Calls(tt.list)
			tt.check(t, env, group)
			if n := env.e.Calls(tt.list) - lists; n < 3 {
				t.Fatalf("%s was called %d times, want every page read (at least 3)", tt.list, n)
			}
		})
	}
}

// Updates name the fields they write in an explicit mask and carry no
// server-owned field, so they work whether the service refuses such fields
// (the Terraform provider's reading, the emulator's default) or ignores them
// (google.api.field_behavior's reading): a rename and a new description
// and trust change exactly those, on a group and an identity that have
// been used (their server-owned fields hold values).
func TestUpdatesUnderBothOutputOnlyReadings(t *testing.T) {
	tests := []struct {
		name   string
		ignore bool
	}{{"server-owned fields refused", false}, {"server-owned fields ignored", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnvWith(t, emulator.Options{IgnoreOutputOnly: tt.ignore}, "owner", fastOpts...)
			ctx := ctxT(t, 30*time.Second)
			gspec := provision.GroupSpec{Parent: env.root, Name: "team-a", Description: "first", ManagedBy: managedBy}
			g, err := env.p.EnsureGroup(ctx, gspec)
			if err != nil {
				t.Fatalf("EnsureGroup: %v", err)
			}
			ispec := provision.IdentitySpec{Group: g.ID, Name: "aws-auth-identity", Description: "first", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
			id, err := env.p.EnsureIdentity(ctx, ispec)
			if err != nil {
				t.Fatalf("EnsureIdentity: %v", err)
			}
			env.workloadToken(t, id.ID) // the identity is used: last_seen_time is set

			gspec.ID, gspec.Name, gspec.Description = g.ID, "team-b", "second"
			if got, err := env.p.EnsureGroup(ctx, gspec); err != nil || got.ID != g.ID || got.Name != "team-b" {
				t.Fatalf("rename the group = %+v, %v; want %s renamed", got, err, g.ID)
			}
			ispec.ID, ispec.Name, ispec.Description = id.ID, "renamed-identity", "second"
			tr := ispec.Trust.(trust.AWS)
			tr.Session, tr.SessionPattern = "", `[\w+=,.@-]+`
			ispec.Trust = tr
			if got, err := env.p.EnsureIdentity(ctx, ispec); err != nil || got.ID != id.ID || got.Name != "renamed-identity" {
				t.Fatalf("update the identity = %+v, %v; want %s renamed", got, err, id.ID)
			}
			if n := env.e.Calls(groupsUpdate) + env.e.Calls(identitiesUpdate); n != 2 {
				t.Fatalf("%d updates, want 2", n)
			}
			s := env.e.State()
			if got, ok := findGroup(s, g.ID); !ok || got.Name != "team-b" || got.Description != "second"+marked {
				t.Fatalf("group = %+v, want team-b, second%s", got, marked)
			}
			i := slices.IndexFunc(s.Identities, func(i emulator.Identity) bool { return i.ID == id.ID })
			if i < 0 {
				t.Fatalf("identity %s is gone", id.ID)
			}
			got := s.Identities[i]
			if got.Name != "renamed-identity" || got.Description != "second"+marked || !sameAWSIdentity(got.AWS, ispec.Trust.(trust.AWS)) {
				t.Fatalf("identity = %q %q %v, want renamed-identity, second%s, the new trust", got.Name, got.Description, got.AWS, marked)
			}
		})
	}
}

// NewClients dials only http:// and https:// URLs (go-grpc-kit panics on a
// bare host:port), and its Close closes the connection it dialed (the
// SDK's IAM v2 clients leave that to whoever dialed).
func TestNewClients(t *testing.T) {
	for _, bad := range []string{"127.0.0.1:8080", "console-api.enforce.dev", "ftp://example.com", "https://", ""} {
		if c, err := provision.NewClients(t.Context(), bad, "token"); err == nil || !strings.Contains(err.Error(), "is not an http:// or https:// URL") {
			t.Errorf("NewClients(%q) = %v, %v; want a refusal", bad, c, err)
		}
	}
	env := newEnv(t, "owner")
	c, err := provision.NewClients(t.Context(), env.e.APIURL(), env.e.MintToken(env.prov))
	if err != nil {
		t.Fatalf("NewClients: %v", err)
	}
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.ListRolesAll(ctx, &iam.ListRolesRequest{}); err != nil {
		t.Fatalf("ListRolesAll: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.RolesService().ListRoles(ctx, &iam.ListRolesRequest{}); status.Code(err) != codes.Canceled {
		t.Fatalf("ListRoles after Close = %v, want Canceled (the connection is closed)", err)
	}
}
