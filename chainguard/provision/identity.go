package provision

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// IdentitySpec is the desired state of an assumable identity and its role
// bindings on its group.
type IdentitySpec struct {
	// ID is the identity's current UIDP (a CloudFormation physical ID), if
	// any. When it is the UIDP of an identity directly in Group that still
	// exists, that identity is updated in place: renamed to Name if needed
	// (refused if another identity in Group has that name), its description,
	// trust and bindings changed, its UIDP kept. Otherwise (empty, not a
	// UIDP, in another group, or gone) the identity is looked up by Name and
	// created if missing.
	ID          string
	Group       string // UIDP of the group the identity lives in (and is bound on)
	Name        string
	Description string
	Trust       trust.AWS
	Roles       []string // role names bound on Group, e.g. "viewer"; duplicates are ignored
	// ManagedBy names the owner uniquely, e.g. the handler's
	// "<account>/<region>/<stack name>/<stack ID>/<logical ID>". When set, the
	// stored description carries its marker (see StoredDescription), and an
	// identity found by Name without that marker is not taken over: Ensure
	// refuses it. (The identity ID names is the caller's: it gets the marker.)
	ManagedBy string
}

// Validate reports every invalid field of s.
func (s IdentitySpec) Validate() error {
	_, descErr := StoredDescription(s.Description, s.ManagedBy)
	errs := []error{
		validate.UIDP("group", s.Group),
		validate.Name("identity name", s.Name),
		descErr,
		s.Trust.Validate(),
	}
	for _, r := range s.Roles {
		errs = append(errs, validate.RoleName(r))
	}
	return joinErrors(errs...)
}

// Identity is an identity as it exists after EnsureIdentity.
type Identity struct {
	ID      string
	Name    string
	Roles   []string // role names bound on the group, sorted
	Created bool     // false when an existing identity was updated or replayed
}

// EnsureIdentity makes sure an identity named spec.Name exists in spec.Group
// with spec.Description and spec.Trust, and that its role bindings on the
// group are exactly spec.Roles. It finds the identity by spec.ID (see
// IdentitySpec.ID) or else by name (so a replay never makes a duplicate;
// with spec.ManagedBy, only an identity carrying its marker is adopted),
// creates it if missing, and updates it in place when the name, description
// or trust differ. Missing bindings are created and bindings of this identity
// on the group with other roles are deleted. When a step fails after the
// identity is known (for example a binding after the create), the Identity
// returned with the error holds its ID and Name, so the caller can clean up.
func (p *Provisioner) EnsureIdentity(ctx context.Context, spec IdentitySpec) (Identity, error) {
	if err := spec.Validate(); err != nil {
		return Identity{}, fmt.Errorf("ensure identity %q: %w", spec.Name, err)
	}
	stored, _ := StoredDescription(spec.Description, spec.ManagedBy) // valid: checked above
	roleNames := slices.Clone(spec.Roles)
	slices.Sort(roleNames)
	roleNames = slices.Compact(roleNames)
	// Resolve roles first: an unknown role name fails before anything changes.
	wanted := make(map[string]string, len(roleNames)) // role ID -> name
	for _, name := range roleNames {
		id, err := p.roleID(ctx, name)
		if err != nil {
			return Identity{}, err
		}
		wanted[id] = name
	}

	want := &iam.Identity{Name: spec.Name, Description: stored, Relationship: spec.Trust.Proto()}
	existing, err := p.locateIdentity(ctx, spec)
	if err != nil {
		return Identity{}, err
	}
	created := false
	if existing == nil {
		existing, err = call(ctx, p, fmt.Sprintf("create identity %q in group %s", spec.Name, spec.Group),
			func(ctx context.Context) (*iam.Identity, error) {
				return p.clients.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: spec.Group, Identity: want})
			})
		switch {
		case status.Code(err) == codes.AlreadyExists:
			// Created concurrently (a replayed event): adopt it if it is ours.
			if existing, err = p.findIdentity(ctx, spec); err == nil && existing == nil {
				err = fmt.Errorf("create identity %q in group %s: the service says it exists but it is not listed", spec.Name, spec.Group)
			}
			if err != nil {
				return Identity{}, err
			}
		case err != nil:
			return Identity{}, err
		default:
			created = true
		}
	}
	p.settled(existing.GetId())
	partial := Identity{ID: existing.GetId(), Name: existing.GetName(), Created: created}
	if existing.GetName() != want.GetName() || existing.GetDescription() != want.GetDescription() ||
		!proto.Equal(existing.GetAwsIdentity(), want.GetAwsIdentity()) {
		step := "update identity " + label(existing)
		if existing.GetName() != want.GetName() {
			step = fmt.Sprintf("rename identity %s to %q", label(existing), want.GetName())
		}
		upd := proto.CloneOf(existing)
		upd.Name = want.GetName()
		upd.Description = want.GetDescription()
		upd.Relationship = want.GetRelationship()
		existing, err = call(ctx, p, step,
			func(ctx context.Context) (*iam.Identity, error) { return p.clients.Identities().Update(ctx, upd) })
		if err != nil {
			return partial, nameTakenHint(err, "identity", spec.Group)
		}
		partial.Name = existing.GetName()
	}

	if err := p.reconcileBindings(ctx, spec.Group, existing, wanted, created); err != nil {
		return partial, err
	}
	return Identity{ID: existing.GetId(), Name: existing.GetName(), Roles: roleNames, Created: created}, nil
}

// reconcileBindings makes the bindings of ident on group exactly the roles in
// wanted (role ID -> name). A just-created identity has no bindings, so the
// list is skipped for it.
func (p *Provisioner) reconcileBindings(ctx context.Context, group string, ident *iam.Identity, wanted map[string]string, justCreated bool) error {
	var have []*iam.RoleBindingList_Binding
	if !justCreated {
		var err error
		if have, err = p.bindingsOf(ctx, group, ident); err != nil {
			return err
		}
	}
	bound := make(map[string]bool, len(wanted))
	for _, b := range have {
		roleID := b.GetRole().GetId()
		if _, ok := wanted[roleID]; ok && !bound[roleID] {
			bound[roleID] = true
			continue
		}
		// An unwanted role, or a duplicate of a wanted one.
		if err := p.deleteBinding(ctx, ident, b); err != nil {
			return err
		}
	}
	for _, roleID := range slices.SortedFunc(maps.Keys(wanted), func(a, b string) int { return strings.Compare(wanted[a], wanted[b]) }) {
		if bound[roleID] {
			continue
		}
		step := fmt.Sprintf("bind identity %s to role %q on group %s", label(ident), wanted[roleID], group)
		_, err := call(ctx, p, step, func(ctx context.Context) (*iam.RoleBinding, error) {
			return p.clients.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{
				Parent:      group,
				RoleBinding: &iam.RoleBinding{Identity: ident.GetId(), Role: roleID},
			})
		})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return err
		}
	}
	return nil
}

// bindingsOf lists the role bindings of ident on group.
func (p *Provisioner) bindingsOf(ctx context.Context, group string, ident *iam.Identity) ([]*iam.RoleBindingList_Binding, error) {
	step := fmt.Sprintf("list role bindings of identity %s on group %s", label(ident), group)
	list, err := call(ctx, p, step, func(ctx context.Context) (*iam.RoleBindingList, error) {
		return p.clients.RoleBindings().List(ctx, &iam.RoleBindingFilter{Uidp: &v1.UIDPFilter{ChildrenOf: group}})
	})
	if err != nil {
		return nil, err
	}
	var out []*iam.RoleBindingList_Binding
	for _, b := range list.GetItems() {
		if b.GetIdentity() == ident.GetId() {
			out = append(out, b)
		}
	}
	return out, nil
}

func (p *Provisioner) deleteBinding(ctx context.Context, ident *iam.Identity, b *iam.RoleBindingList_Binding) error {
	step := fmt.Sprintf("delete role binding %s (role %q) of identity %s", b.GetId(), b.GetRole().GetName(), label(ident))
	_, err := call(ctx, p, step, func(ctx context.Context) (*emptypb.Empty, error) {
		return p.clients.RoleBindings().Delete(ctx, &iam.DeleteRoleBindingRequest{Id: b.GetId()})
	})
	return notFoundIsGone(err)
}

// locateIdentity returns the identity spec describes, or nil when it has to
// be created: the identity spec.ID when that is directly in spec.Group and
// still exists (refusing a rename onto a name another identity there has),
// else the one named spec.Name (refused unless it carries spec.ManagedBy's
// marker). One RPC lists the group's identities for both.
func (p *Provisioner) locateIdentity(ctx context.Context, spec IdentitySpec) (*iam.Identity, error) {
	if !directlyIn(spec.ID, spec.Group) {
		return p.findIdentity(ctx, spec)
	}
	step := fmt.Sprintf("look up identity %s and the name %q in group %s", spec.ID, spec.Name, spec.Group)
	items, err := p.listIdentities(ctx, spec.Group, step)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(items, func(id *iam.Identity) bool { return id.GetId() == spec.ID })
	if i < 0 {
		// Deleted behind the stack's back: ensure by name.
		return ownIdentity(spec, fmt.Sprintf("identity %s is gone; look up identity %q in group %s instead", spec.ID, spec.Name, spec.Group),
			namedIdentities(items, spec.Name, ""))
	}
	cur := items[i]
	if taken := namedIdentities(items, spec.Name, cur.GetId()); len(taken) > 0 {
		return nil, fmt.Errorf("rename identity %s to %q in group %s: refused: another identity there already has that name (%s): choose another name, or delete or rename that identity first",
			label(cur), spec.Name, spec.Group, identityIDs(taken))
	}
	return cur, nil
}

// findIdentity returns the identity named spec.Name directly in spec.Group,
// or nil; one that is not the caller's is refused.
func (p *Provisioner) findIdentity(ctx context.Context, spec IdentitySpec) (*iam.Identity, error) {
	step := fmt.Sprintf("look up identity %q in group %s", spec.Name, spec.Group)
	items, err := p.listIdentities(ctx, spec.Group, step)
	if err != nil {
		return nil, err
	}
	return ownIdentity(spec, step, namedIdentities(items, spec.Name, ""))
}

// ownIdentity returns the only identity found, nil for none, and an error
// for several or for one that does not carry spec.ManagedBy's marker: an
// identity the caller did not create is never taken over.
func ownIdentity(spec IdentitySpec, step string, found []*iam.Identity) (*iam.Identity, error) {
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		if !owns(found[0].GetDescription(), spec.ManagedBy) {
			return nil, fmt.Errorf("identity %q already exists in group %s and was not created by this stack (%s): choose another Name, or delete or rename that identity",
				spec.Name, spec.Group, spec.ManagedBy)
		}
		return found[0], nil
	}
	return nil, fmt.Errorf("%s: %d identities have that name (%s): delete all but one", step, len(found), identityIDs(found))
}

// listIdentities lists the identities directly in group.
func (p *Provisioner) listIdentities(ctx context.Context, group, step string) ([]*iam.Identity, error) {
	list, err := call(ctx, p, step, func(ctx context.Context) (*iam.IdentityList, error) {
		return p.clients.Identities().List(ctx, &iam.IdentityFilter{Uidp: &v1.UIDPFilter{ChildrenOf: group}})
	})
	if err != nil {
		return nil, err
	}
	var out []*iam.Identity
	for _, id := range list.GetItems() {
		if uidp.Parent(id.GetId()) == group {
			out = append(out, id)
		}
	}
	return out, nil
}

// namedIdentities returns the identities in items named name, except the one
// whose ID is except.
func namedIdentities(items []*iam.Identity, name, except string) []*iam.Identity {
	var out []*iam.Identity
	for _, id := range items {
		if id.GetName() == name && id.GetId() != except {
			out = append(out, id)
		}
	}
	return out
}

// identityIDs joins the identities' UIDPs for errors.
func identityIDs(ids []*iam.Identity) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.GetId()
	}
	return strings.Join(out, ", ")
}

// roleID resolves a role name to its ID, once per Provisioner. When several
// roles share the name, the built-in one (an ID outside any group) wins.
func (p *Provisioner) roleID(ctx context.Context, name string) (string, error) {
	p.mu.Lock()
	id, ok := p.roles[name]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	step := fmt.Sprintf("look up role %q", name)
	list, err := call(ctx, p, step, func(ctx context.Context) (*iam.RoleList, error) {
		return p.clients.Roles().List(ctx, &iam.RoleFilter{Name: name})
	})
	if err != nil {
		return "", err
	}
	var all, builtin []string
	for _, r := range list.GetItems() {
		if r.GetName() != name {
			continue
		}
		all = append(all, r.GetId())
		if uidp.InRoot(r.GetId()) {
			builtin = append(builtin, r.GetId())
		}
	}
	switch {
	case len(builtin) == 1:
		id = builtin[0]
	case len(all) == 1:
		id = all[0]
	case len(all) == 0:
		return "", fmt.Errorf("%s: no role has that name: use a built-in role such as viewer, editor, owner, registry.pull or registry.push, or a custom role visible to the provisioner", step)
	default:
		return "", fmt.Errorf("%s: %d roles have that name (%s): it is ambiguous", step, len(all), strings.Join(all, ", "))
	}
	p.mu.Lock()
	p.roles[name] = id
	p.mu.Unlock()
	return id, nil
}

// DeleteIdentity deletes the identity id after its role bindings on its
// group. An identity that no longer exists counts as deleted; an id that is
// not the UIDP of an object inside a group is a no-op without any RPC
// (CloudFormation sends Delete with the request ID after a failed Create).
func (p *Provisioner) DeleteIdentity(ctx context.Context, id string) error {
	if !uidp.Valid(id) || uidp.InRoot(id) {
		return nil
	}
	group := uidp.Parent(id)
	ident := &iam.Identity{Id: id}
	bindings, err := p.bindingsOf(ctx, group, ident)
	if err != nil {
		return notFoundIsGone(err)
	}
	for _, b := range bindings {
		if err := p.deleteBinding(ctx, ident, b); err != nil {
			return err
		}
	}
	_, err = call(ctx, p, "delete identity "+id, func(ctx context.Context) (*emptypb.Empty, error) {
		return p.clients.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: id})
	})
	return notFoundIsGone(err)
}

// label names an identity in errors: `"name" (id)`, or just the id.
func label(ident *iam.Identity) string {
	if ident.GetName() == "" {
		return ident.GetId()
	}
	return fmt.Sprintf("%q (%s)", ident.GetName(), ident.GetId())
}
