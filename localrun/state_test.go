package localrun

import (
	"testing"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
)

// TestDiffState checks the end-state comparison names every object that
// was left over or went missing, repos included.
func TestDiffState(t *testing.T) {
	before := emulator.State{
		Groups:     []emulator.Group{{ID: "root", Name: "acme"}},
		Identities: []emulator.Identity{{ID: "root/admin", Name: "local-admin"}},
		RoleBindings: []emulator.RoleBinding{
			{ID: "root/b1", Identity: "root/admin", Group: "root", RoleName: "owner"},
		},
		Repos: []emulator.Repo{{ID: "root/r1", Name: "nginx"}},
	}
	tests := []struct {
		name  string
		after func(emulator.State) emulator.State
		want  string
	}{
		{name: "same", after: func(s emulator.State) emulator.State { return s }},
		{
			name: "provisioner identity and binding left over",
			after: func(s emulator.State) emulator.State {
				s.Identities = append(s.Identities, emulator.Identity{ID: "root/prov", Name: "provisioner"})
				s.RoleBindings = append(s.RoleBindings, emulator.RoleBinding{ID: "root/b2", Identity: "root/prov", Group: "root", RoleName: "owner"})
				return s
			},
			want: "left over: binding owner of root/prov on root root/b2; left over: identity provisioner root/prov",
		},
		{
			name: "pushed repo left over",
			after: func(s emulator.State) emulator.State {
				s.Repos = append(s.Repos, emulator.Repo{ID: "root/g/r2", Name: "hello"})
				return s
			},
			want: "left over: repo hello root/g/r2",
		},
		{
			name:  "seeded repo missing",
			after: func(s emulator.State) emulator.State { s.Repos = nil; return s },
			want:  "missing: repo nginx root/r1",
		},
		{
			name:  "pre-existing group missing",
			after: func(s emulator.State) emulator.State { s.Groups = nil; return s },
			want:  "missing: group acme root",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after := tt.after(emulator.State{
				Groups:       append([]emulator.Group(nil), before.Groups...),
				Identities:   append([]emulator.Identity(nil), before.Identities...),
				RoleBindings: append([]emulator.RoleBinding(nil), before.RoleBindings...),
				Repos:        append([]emulator.Repo(nil), before.Repos...),
			})
			if got := diffState(before, after); got != tt.want {
				t.Errorf("diffState = %q, want %q", got, tt.want)
			}
		})
	}
}
