package emulator

import (
	"time"

	"chainguard.dev/sdk/proto/capabilities"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The core of role bindings and roles (see core.go).

// binding is a stored role binding.
type binding struct {
	id, group, identity, role string
	created                   time.Time
	visibleAt                 time.Time // when tokens start to carry it
}

// bindingView is a copy of a stored binding b with copies of its identity
// and group (nil if gone) and its role (built-in roles never change).
type bindingView struct {
	b        binding
	identity *iam.Identity
	group    *iam.Group
	role     *role
}

// viewBinding copies stored binding b. Callers hold e.mu.
func (e *Emulator) viewBinding(b *binding) bindingView {
	v := bindingView{b: *b, role: e.roles[b.role]}
	if id, ok := e.identities[b.identity]; ok {
		v.identity = proto.Clone(id).(*iam.Identity)
	}
	if g, ok := e.groups[b.group]; ok {
		v.group = proto.Clone(g).(*iam.Group)
	}
	return v
}

// lookupRole returns built-in role id, or NotFound saying how to fix the
// request.
func (e *Emulator) lookupRole(id, fix string) (*role, error) {
	r, ok := e.roles[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role %q not found: %s", id, fix)
	}
	return r, nil
}

// createBinding binds identity to role roleID on group; the binding counts
// for tokens exchanged Options.PropagationDelay later.
func (e *Emulator) createBinding(group, identity, roleID string) (bindingView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	b, err := e.addBinding(group, identity, roleID, now, now.Add(e.propagationDelay))
	if err != nil {
		return bindingView{}, err
	}
	return e.viewBinding(b), nil
}

// addBinding binds identity to role (an ID) on group, created at now and
// carried by tokens exchanged from visibleAt. Callers hold e.mu.
func (e *Emulator) addBinding(group, identity, roleID string, now, visibleAt time.Time) (*binding, error) {
	if err := checkUIDP("role_binding.identity", identity); err != nil {
		return nil, err
	}
	if roleID == "" {
		return nil, status.Error(codes.InvalidArgument, "role_binding.role is required: a role ID (list roles by name to find it)")
	}
	if _, err := lookup(e.groups, "group", group); err != nil {
		return nil, err
	}
	if _, err := lookup(e.identities, "identity", identity); err != nil {
		return nil, err
	}
	r, err := e.lookupRole(roleID, "pass a role ID, e.g. from Roles.List with name \"viewer\"")
	if err != nil {
		return nil, err
	}
	if err := e.bindingTaken(group, identity, r, ""); err != nil {
		return nil, err
	}
	b := &binding{id: string(uidp.UIDP(group).NewChild()), group: group, identity: identity, role: roleID, created: now, visibleAt: visibleAt}
	e.bindings[b.id] = b
	return b, nil
}

// bindingTaken fails with AlreadyExists when a binding other than self
// gives identity role r on group. Callers hold e.mu. The protos
// (role_bindings.proto, v1 and v2) do not say whether a second identical
// binding is refused or made: the stricter reading refuses it, and the
// provisioner treats AlreadyExists on a binding's Create as done, so it
// works under both.
func (e *Emulator) bindingTaken(group, identity string, r *role, self string) error {
	for _, o := range e.bindings {
		if o.id != self && o.group == group && o.identity == identity && o.role == r.id {
			return status.Errorf(codes.AlreadyExists, "identity %s already has role %s on group %s: %s", identity, r.name, group, o.id)
		}
	}
	return nil
}

// updateBinding gives binding id the identity and role that edit returns
// for the stored binding (its group is fixed); edit validates them by the
// rules of its version. A changed binding propagates like a new one: tokens
// exchanged within Options.PropagationDelay after it leave it out, tokens
// exchanged before it keep only what both roles grant, and it stops counting
// at once for tokens of an identity it left (see tokenHas).
func (e *Emulator) updateBinding(id string, edit func(stored bindingView) (identity string, r *role, err error)) (bindingView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := lookup(e.bindings, "role binding", id)
	if err != nil {
		return bindingView{}, err
	}
	identity, r, err := edit(e.viewBinding(b))
	if err != nil {
		return bindingView{}, err
	}
	if err := e.bindingTaken(b.group, identity, r, b.id); err != nil {
		return bindingView{}, err
	}
	if b.identity != identity || b.role != r.id {
		b.identity, b.role = identity, r.id
		b.visibleAt = time.Now().Add(e.propagationDelay)
	}
	return e.viewBinding(b), nil
}

// bindingFilter narrows a list of role bindings to an identity, a group and
// a role ("" matches any).
type bindingFilter struct{ identity, group, role string }

// listBindings returns the role bindings matching q and f that caller's
// token may list.
func (e *Emulator) listBindings(caller *token, q listQuery, f bindingFilter) ([]bindingView, error) {
	return list(e, q, e.bindings, func(id string, b *binding) bool {
		return q.matches(id, "") && (f.identity == "" || b.identity == f.identity) && (f.group == "" || b.group == f.group) &&
			(f.role == "" || b.role == f.role) && e.tokenHas(caller, id, capabilities.Capability_CAP_IAM_ROLE_BINDINGS_LIST)
	}, e.viewBinding)
}

// deleteBinding deletes role binding id and reports whether there was one.
func (e *Emulator) deleteBinding(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.bindings[id]
	delete(e.bindings, id)
	return ok
}

// listRoles returns the built-in roles matching q to callers whose token
// may list roles somewhere (built-in roles are global); others get none.
func (e *Emulator) listRoles(caller *token, q listQuery) ([]*role, error) {
	return list(e, q, e.roles, func(id string, r *role) bool {
		return q.matches(id, r.name) && e.tokenHasAnywhere(caller, capabilities.Capability_CAP_IAM_ROLES_LIST)
	}, func(r *role) *role { return r })
}

// getRole returns built-in role id. The v2 method is unscoped ("Unscoped to
// allow getting managed roles (at root level)", roles.proto) but still
// names CAP_IAM_ROLES_LIST: a token holding it nowhere is refused with
// PermissionDenied (the stricter reading; listRoles answers such a token
// with no roles, as v1 Roles.List does).
func (e *Emulator) getRole(caller *token, id string) (*role, error) {
	if err := checkUIDP("uid", id); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.tokenHasAnywhere(caller, capabilities.Capability_CAP_IAM_ROLES_LIST) {
		return nil, status.Error(codes.PermissionDenied, e.deniedMessage(caller, "any group", capabilities.Capability_CAP_IAM_ROLES_LIST))
	}
	return e.lookupRole(id, "the emulator serves the built-in roles only; list them by name")
}
