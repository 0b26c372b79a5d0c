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

	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

const marked = " [managed by CloudFormation: " + managedBy + "]"

func TestStoredDescription(t *testing.T) {
	tests := []struct {
		name        string
		description string
		managedBy   string
		want        string
		wantErr     string
	}{
		{name: "no owner", description: "d", want: "d"},
		{name: "owner", description: "the group", managedBy: "s/L", want: "the group [managed by CloudFormation: s/L]"},
		{name: "owner, no description", managedBy: "s/L", want: "[managed by CloudFormation: s/L]"},
		{name: "exactly 512", description: strings.Repeat("x", 512-len(" [managed by CloudFormation: s/L]")), managedBy: "s/L",
			want: strings.Repeat("x", 512-len(" [managed by CloudFormation: s/L]")) + " [managed by CloudFormation: s/L]"},
		{name: "too long with the marker", description: strings.Repeat("x", 500), managedBy: "s/L",
			wantErr: `description is 500 characters long and the ownership marker " [managed by CloudFormation: s/L]" adds 33: at most 512 are allowed in all: shorten the description to at most 479 characters`},
		{name: "invalid description", description: "a\tb", managedBy: "s/L", wantErr: `description "a\tb" is not valid`},
		{name: "owner with a line break", description: "d", managedBy: "s/\nL", wantErr: "the ownership marker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := provision.StoredDescription(tt.description, tt.managedBy)
			if (err != nil) != (tt.wantErr != "") {
				t.Fatalf("StoredDescription error = %v, wantErr %q", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, validate.ErrInvalid) {
					t.Fatalf("error = %v, want it to contain %q and match validate.ErrInvalid", err, tt.wantErr)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("StoredDescription = %q, want %q", got, tt.want)
			}
		})
	}
}

// A group of the same name the stack did not create is used as it is: never
// stamped, re-described or deleted, even by its owner-marked DeleteGroup.
func TestForeignGroupAdoptedNeverDeleted(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	seeded := env.e.SeedGroup(env.root, "team", "theirs")
	spec := provision.GroupSpec{Parent: env.root, Name: "team", Description: "ours", ManagedBy: managedBy}
	before := env.e.State()
	for i := range 3 {
		g, err := env.p.EnsureGroup(ctx, spec)
		if err != nil {
			t.Fatalf("EnsureGroup #%d: %v", i+1, err)
		}
		if g.ID != seeded || g.Created || !g.Foreign || g.Description != "theirs" {
			t.Fatalf("EnsureGroup #%d = %+v, want the seeded %s adopted as it is (Foreign)", i+1, g, seeded)
		}
	}
	// Even by its ID (a later Update) it is not renamed: the new name is ensured instead.
	renamed := spec
	renamed.ID, renamed.Name = seeded, "team-renamed"
	g, err := env.p.EnsureGroup(ctx, renamed)
	if err != nil || g.ID == seeded || !g.Created || g.Foreign || g.Description != "ours"+marked {
		t.Fatalf("EnsureGroup(rename of a foreign group) = %+v, %v; want a new group of ours", g, err)
	}
	if left, err := env.p.DeleteGroup(ctx, g.ID, managedBy); err != nil || left {
		t.Fatalf("DeleteGroup(ours) = left %v, %v; want it deleted", left, err)
	}
	left, err := env.p.DeleteGroup(ctx, seeded, managedBy)
	if err != nil || !left {
		t.Fatalf("DeleteGroup(foreign) = left %v, %v; want it left in place", left, err)
	}
	if n := env.e.Calls(groupsUpdate); n != 0 {
		t.Fatalf("Groups/Update was called %d times on a foreign group", n)
	}
	if after := env.e.State(); !reflect.DeepEqual(after.Groups, before.Groups) {
		t.Fatalf("groups changed:\nbefore %+v\nafter  %+v", before.Groups, after.Groups)
	}
}

// The caller's own group is found again on replays (one object), and only a
// DeleteGroup naming the same owner deletes it.
func TestOwnGroupReplayAndDelete(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	spec := provision.GroupSpec{Parent: env.root, Name: "team", Description: "ours", ManagedBy: managedBy}
	var id string
	for i := range 3 {
		rpcs := env.p.RPCs()
		g, err := env.p.EnsureGroup(ctx, spec)
		if err != nil {
			t.Fatalf("EnsureGroup #%d: %v", i+1, err)
		}
		if g.Created != (i == 0) || g.Foreign || g.Description != "ours"+marked {
			t.Fatalf("EnsureGroup #%d = %+v, want ours with the marked description", i+1, g)
		}
		if i == 0 {
			id = g.ID
		} else if g.ID != id {
			t.Fatalf("replay #%d returned %s, want %s", i+1, g.ID, id)
		} else if n := env.p.RPCs() - rpcs; n != 1 {
			t.Errorf("replay #%d made %d RPCs, want 1", i+1, n)
		}
	}
	if n := countNamed(env.e.State(), env.root, "team"); n != 1 {
		t.Fatalf("%d groups named team, want 1", n)
	}
	// Another stack does not delete it.
	if left, err := env.p.DeleteGroup(ctx, id, "other-stack/Group"); err != nil || !left {
		t.Fatalf("DeleteGroup by another owner = left %v, %v; want it left", left, err)
	}
	if left, err := env.p.DeleteGroup(ctx, id, managedBy); err != nil || left {
		t.Fatalf("DeleteGroup = left %v, %v; want it deleted", left, err)
	}
	if n := countNamed(env.e.State(), env.root, "team"); n != 0 {
		t.Fatalf("%d groups named team after the delete, want 0", n)
	}
}

func countNamed(s emulator.State, parent, name string) int {
	n := 0
	for _, g := range s.Groups {
		if g.Name == name && strings.HasPrefix(g.ID, parent+"/") && len(g.ID) == len(parent)+17 {
			n++
		}
	}
	return n
}

// An identity of the same name the stack did not create is refused and left
// untouched; the caller's own is replayed into one object.
func TestIdentityOwnership(t *testing.T) {
	const name = "aws-auth-identity"
	tests := []struct {
		name    string
		seed    string // description of a same-named identity seeded first; "" for none
		wantErr string
	}{
		{name: "foreign identity", seed: "theirs",
			wantErr: `identity "aws-auth-identity" already exists in group GROUP and was not created by this stack (` + managedBy + `): choose another Name, or delete or rename that identity`},
		{name: "another stack's identity", seed: "d [managed by CloudFormation: other-stack/Identity]",
			wantErr: "was not created by this stack"},
		{name: "ours, replayed", seed: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner")
			ctx := ctxT(t, 30*time.Second)
			group := env.e.SeedGroup(env.root, "example-group", "")
			if tt.seed != "" {
				env.e.SeedIdentity(group, name, tt.seed, workloadPrincipal().ExactTrust(), map[string][]string{group: {"editor"}})
			}
			spec := provision.IdentitySpec{Group: group, Name: name, Description: "d", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy}
			before := env.e.State()
			var ids []string
			for i := range 3 {
				got, err := env.p.EnsureIdentity(ctx, spec)
				if tt.wantErr != "" {
					t.Logf("error: %v", err)
					if want := strings.ReplaceAll(tt.wantErr, "GROUP", group); err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("EnsureIdentity error = %v\nwant it to contain %q", err, want)
					}
					if got.ID != "" {
						t.Fatalf("a refused identity was returned: %+v", got)
					}
					if after := env.e.State(); !reflect.DeepEqual(after, before) {
						t.Fatalf("a refused identity changed the emulator:\nbefore %+v\nafter  %+v", before, after)
					}
					return
				}
				if err != nil {
					t.Fatalf("EnsureIdentity #%d: %v", i+1, err)
				}
				ids = append(ids, got.ID)
			}
			stored := identityNamed(env.e, group, name)
			if len(stored) != 1 || stored[0].ID != ids[0] || ids[1] != ids[0] || ids[2] != ids[0] || stored[0].Description != "d"+marked {
				t.Fatalf("after 3 ensures: ids %v, stored %+v; want one identity with description %q", ids, stored, "d"+marked)
			}
		})
	}
}

// An identity named by its ID is the caller's even without the marker (made
// before markers existed): it is updated in place and stamped.
func TestIdentityByIDIsStamped(t *testing.T) {
	env := newEnv(t, "owner")
	ctx := ctxT(t, 30*time.Second)
	group := env.e.SeedGroup(env.root, "example-group", "")
	id := env.e.SeedIdentity(group, "aws-auth-identity", "d", workloadPrincipal().ExactTrust(), nil)
	got, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{ID: id, Group: group, Name: "aws-auth-identity", Description: "d", Trust: workloadTrust(), ManagedBy: managedBy})
	if err != nil || got.ID != id {
		t.Fatalf("EnsureIdentity = %+v, %v; want %s updated in place", got, err, id)
	}
	if stored := identityNamed(env.e, group, "aws-auth-identity"); len(stored) != 1 || stored[0].Description != "d"+marked {
		t.Fatalf("stored = %+v, want the description stamped %q", stored, "d"+marked)
	}
}

// When a step fails after the object exists, Ensure returns its ID with the
// error, and the ID hook has already reported it: the caller can clean up.
func TestPartialResultOnFailure(t *testing.T) {
	var mu sync.Mutex
	var hooked []string
	hook := provision.WithIDHook(func(id string) {
		mu.Lock()
		defer mu.Unlock()
		hooked = append(hooked, id)
	})
	tests := []struct {
		name    string
		inject  func(env *env, group string)
		ensure  func(ctx context.Context, env *env, group string) (string, error)
		wantErr string
	}{{
		name:   "identity: binding refused after the create",
		inject: func(env *env, group string) { env.e.FailNext(bindingsCreate, 1, codes.PermissionDenied) },
		ensure: func(ctx context.Context, env *env, group string) (string, error) {
			id, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), Roles: []string{"viewer"}, ManagedBy: managedBy})
			return id.ID, err
		},
		wantErr: `bind identity "aws-auth-identity" (ID) to role "viewer" on group GROUP: permission denied`,
	}, {
		name: "identity: update refused on a replay",
		inject: func(env *env, group string) {
			if _, err := env.p.EnsureIdentity(context.Background(), provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Trust: workloadTrust(), ManagedBy: managedBy}); err != nil {
				panic(err)
			}
			env.e.FailNext(identitiesUpdate, 1, codes.InvalidArgument)
		},
		ensure: func(ctx context.Context, env *env, group string) (string, error) {
			id, err := env.p.EnsureIdentity(ctx, provision.IdentitySpec{Group: group, Name: "aws-auth-identity", Description: "new", Trust: workloadTrust(), ManagedBy: managedBy})
			return id.ID, err
		},
		wantErr: `update identity "aws-auth-identity" (ID): invalid argument`,
	}, {
		name: "group: update refused after it was found",
		inject: func(env *env, group string) {
			if _, err := env.p.EnsureGroup(context.Background(), provision.GroupSpec{Parent: group, Name: "team", ManagedBy: managedBy}); err != nil {
				panic(err)
			}
			env.e.FailNext(groupsUpdate, 1, codes.InvalidArgument)
		},
		ensure: func(ctx context.Context, env *env, group string) (string, error) {
			g, err := env.p.EnsureGroup(ctx, provision.GroupSpec{Parent: group, Name: "team", Description: "new", ManagedBy: managedBy})
			return g.ID, err
		},
		wantErr: `update description of group "team" (ID): invalid argument`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, "owner", append(slices.Clone(fastOpts), hook)...)
			ctx := ctxT(t, 30*time.Second)
			group := env.e.SeedGroup(env.root, "example-group", "")
			tt.inject(env, group)
			mu.Lock()
			hooked = nil
			mu.Unlock()
			id, err := tt.ensure(ctx, env, group)
			t.Logf("error: %v", err)
			if want := strings.NewReplacer("ID", id, "GROUP", group).Replace(tt.wantErr); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, want)
			}
			if id == "" || !strings.HasPrefix(id, group+"/") {
				t.Fatalf("the ID returned with the error is %q, want the object's UIDP in %s", id, group)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(hooked, []string{id}) {
				t.Fatalf("the ID hook saw %v, want [%s]", hooked, id)
			}
		})
	}
}
