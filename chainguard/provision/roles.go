package provision

import (
	"context"
	"fmt"
	"slices"
	"strings"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"chainguard.dev/sdk/uidp"
)

// builtinRoles names some of the service's built-in roles, for errors.
const builtinRoles = "viewer, editor, owner, registry.pull and registry.push"

// roleIDs resolves role names to role IDs (the map is ID -> name). When
// several roles share a name, the built-in one (an ID outside any group)
// wins. A name no role visible to the provisioner has fails at once, naming
// the roles it can see.
func (p *Provisioner) roleIDs(ctx context.Context, names []string) (map[string]string, error) {
	ids := make(map[string]string, len(names))
	if len(names) == 0 {
		return ids, nil
	}
	roles, err := p.visibleRoles(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		var all, builtin []string
		for _, r := range roles {
			if r.GetName() != name {
				continue
			}
			all = append(all, r.GetUid())
			if uidp.InRoot(r.GetUid()) {
				builtin = append(builtin, r.GetUid())
			}
		}
		switch {
		case len(builtin) == 1:
			ids[builtin[0]] = name
		case len(all) == 1:
			ids[all[0]] = name
		case len(all) == 0:
			return nil, fmt.Errorf("look up role %q: no role has that name: use one of the roles visible to the provisioner: %s", name, roleNames(roles))
		default:
			return nil, fmt.Errorf("look up role %q: %d roles have that name (%s): it is ambiguous", name, len(all), strings.Join(all, ", "))
		}
	}
	return ids, nil
}

// visibleRoles lists every role visible to the provisioner, once per
// Provisioner. The list shows only the roles the caller may see, and a
// token carries its identity's rights as of its exchange: an empty list
// means the provisioner's own role binding has not reached its token yet,
// and is retried within the PermissionDenied budget with fresh tokens.
func (p *Provisioner) visibleRoles(ctx context.Context) ([]*iam.Role, error) {
	p.mu.Lock()
	roles := p.roles
	p.mu.Unlock()
	if roles != nil {
		return roles, nil
	}
	const step = "look up roles"
	err := p.untilVisible(ctx, step, func() error {
		list, err := call(ctx, p, "list roles", func(ctx context.Context, c iam.Clients) ([]*iam.Role, error) {
			return c.ListRolesAll(ctx, &iam.ListRolesRequest{})
		})
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return notVisible("no role is visible to the provisioner identity: it needs the owner role on the group or a group above it (the built-in roles include " + builtinRoles + ")")
		}
		roles = list
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.roles = roles
	p.mu.Unlock()
	return roles, nil
}

// roleNames lists the names of roles, sorted and without repeats.
func roleNames(roles []*iam.Role) string {
	names := make([]string, 0, len(roles))
	for _, r := range roles {
		names = append(names, r.GetName())
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ", ")
}
