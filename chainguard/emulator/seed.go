package emulator

import (
	"fmt"
	"sort"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/status"
)

// Seeding bypasses authorization but not validation: like any test fixture,
// the Seed methods panic on input the service would reject, with the reason.
// Seeded objects stand for what existed before the test: they are known to
// the STS at once (Options.PropagationDelay applies to objects created
// through the API only).

// SeedGroup creates a group named name under parent ("" for a root group, an
// organization) and returns its UIDP.
func (e *Emulator) SeedGroup(parent, name, description string) string {
	if parent != "" {
		must("SeedGroup", checkUIDP("parent", parent))
	}
	must("SeedGroup", checkNameAndDescription("group", name, description))
	e.mu.Lock()
	defer e.mu.Unlock()
	id, err := e.addGroup(parent, name, description)
	must("SeedGroup", err)
	return id
}

// SeedRepo creates a registry repo named name in group and returns its UIDP.
func (e *Emulator) SeedRepo(group, name string) string {
	must("SeedRepo", checkUIDP("group", group))
	must("SeedRepo", checkName("repo", name))
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.groups[group]; !ok {
		panic(fmt.Sprintf("emulator: SeedRepo: group %s not found", group))
	}
	for _, r := range e.repos {
		if r.name == name && uidp.Parent(r.id) == group {
			panic(fmt.Sprintf("emulator: SeedRepo: repo %q already exists in group %s", name, group))
		}
	}
	r := &repo{id: string(uidp.UIDP(group).NewChild()), name: name, created: time.Now()}
	e.repos[r.id] = r
	return r.id
}

// DeleteRepo removes the registry repo id, as a user deleting their image
// does (the emulator serves no registry write RPCs). It panics if there is
// no such repo.
func (e *Emulator) DeleteRepo(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.repos[id]; !ok {
		panic(fmt.Sprintf("emulator: DeleteRepo: repo %s not found", id))
	}
	delete(e.repos, id)
}

// SeedIdentity creates an identity named name in group, assumable by the AWS
// principals trust admits, with the given role bindings (scope group UIDP ->
// built-in role names, e.g. {root: {"owner"}}), and returns its UIDP.
func (e *Emulator) SeedIdentity(group, name, description string, trust *iam.Identity_AWSIdentity, roleBindings map[string][]string) string {
	id := &iam.Identity{Name: name, Description: description, Relationship: &iam.Identity_AwsIdentity{AwsIdentity: trust}}
	return e.seedIdentity("SeedIdentity", group, id, roleBindings)
}

// SeedClaimMatchIdentity creates an identity named name in group, assumable
// by the OIDC tokens trust admits (see exchange_jwt.go), with the given role
// bindings (as SeedIdentity), and returns its UIDP.
func (e *Emulator) SeedClaimMatchIdentity(group, name, description string, trust *iam.Identity_ClaimMatch, roleBindings map[string][]string) string {
	id := &iam.Identity{Name: name, Description: description, Relationship: &iam.Identity_ClaimMatch_{ClaimMatch: trust}}
	return e.seedIdentity("SeedClaimMatchIdentity", group, id, roleBindings)
}

// seedIdentity stores id in group with roleBindings, for Seed method fn.
func (e *Emulator) seedIdentity(fn, group string, id *iam.Identity, roleBindings map[string][]string) string {
	must(fn, checkUIDP("group", group))
	must(fn, checkIdentity(id))
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	newID, err := e.addIdentity(group, id, now, now)
	must(fn, err)
	scopes := make([]string, 0, len(roleBindings))
	for s := range roleBindings {
		scopes = append(scopes, s)
	}
	sort.Strings(scopes)
	for _, scope := range scopes {
		for _, roleName := range roleBindings[scope] {
			_, err := e.bindByName(scope, newID, roleName)
			must(fn, err)
		}
	}
	return newID
}

// SeedRoleBinding gives identity the built-in role roleName (e.g. "viewer")
// on group scope and returns the binding's UIDP.
func (e *Emulator) SeedRoleBinding(scope, identity, roleName string) string {
	must("SeedRoleBinding", checkUIDP("scope", scope))
	e.mu.Lock()
	defer e.mu.Unlock()
	id, err := e.bindByName(scope, identity, roleName)
	must("SeedRoleBinding", err)
	return id
}

// bindByName binds identity to the built-in role roleName on scope. Callers
// hold e.mu.
func (e *Emulator) bindByName(scope, identity, roleName string) (string, error) {
	r := e.roleByName(roleName)
	if r == nil {
		names := make([]string, 0, len(builtinRoleDefs))
		for _, d := range builtinRoleDefs {
			names = append(names, d.name)
		}
		return "", fmt.Errorf("role %q is not a built-in role (%s)", roleName, strings.Join(names, ", "))
	}
	now := time.Now()
	b, err := e.addBinding(scope, identity, r.id, now, now)
	if err != nil {
		return "", err
	}
	return b.id, nil
}

// RoleID returns the ID of the built-in role roleName, or "" if there is none.
func (e *Emulator) RoleID(roleName string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if r := e.roleByName(roleName); r != nil {
		return r.id
	}
	return ""
}

// MintToken returns a valid API token for identity without an AWS exchange,
// for tests whose subject is not the exchange: the same JWT an exchange
// would issue now (no scopes or capabilities requested), carrying the role
// bindings in effect now, but without waiting for the identity to propagate.
// It panics if the identity does not exist.
func (e *Emulator) MintToken(identity string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.identities[identity]; !ok {
		panic(fmt.Sprintf("emulator: MintToken: identity %s not found", identity))
	}
	raw, _, err := e.issueToken(identity, time.Now(), nil, nil)
	must("MintToken", err)
	return raw
}

func must(fn string, err error) {
	if err != nil {
		if s, ok := status.FromError(err); ok {
			panic(fmt.Sprintf("emulator: %s: %s", fn, s.Message()))
		}
		panic(fmt.Sprintf("emulator: %s: %v", fn, err))
	}
}
