package provision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

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
	// Trust is whom the identity trusts: trust.AWS (caller identity) or
	// trust.WebIdentity. An identity of the other kind is never changed
	// into this one (Chainguard's Terraform provider replaces an identity
	// whose kind of trust changes): it is left alone and a new one made,
	// which is how a CloudFormation replacement goes.
	Trust trust.Relationship
	Roles []string // role names bound on Group, e.g. "viewer"; duplicates are ignored
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
	trustErr := errors.New("no trust: set Trust to a trust.AWS or a trust.WebIdentity")
	if s.Trust != nil {
		trustErr = s.Trust.Validate()
	}
	errs := []error{
		validate.UIDP("group", s.Group),
		validate.Name("identity name", s.Name),
		descErr,
		trustErr,
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
// IdentitySpec.ID) or else by name (so a replay finds what an earlier
// delivery made; with spec.ManagedBy, only an identity carrying its marker
// is adopted), creates it if missing, and updates it in place when the name,
// description or trust differ. With spec.ManagedBy, several identities of
// the caller's of that name (two deliveries of one event creating at once)
// end as one: the oldest is kept and the others deleted with their
// bindings. Missing bindings are created and bindings of this identity on
// the group with other roles are deleted. When a step fails after the
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
	wanted, err := p.roleIDs(ctx, roleNames)
	if err != nil {
		return Identity{}, err
	}

	want := &iam.Identity{Name: spec.Name, Description: stored}
	spec.Trust.Apply(want)
	existing, err := p.locateIdentity(ctx, spec)
	if err != nil {
		return Identity{}, err
	}
	created := false
	if existing == nil {
		// Reports what it settles on to the ID hook itself.
		if existing, created, err = p.createIdentity(ctx, spec, want); err != nil {
			return Identity{ID: existing.GetUid(), Name: existing.GetName(), Created: created}, err
		}
	} else {
		p.settled(existing.GetUid())
	}
	partial := Identity{ID: existing.GetUid(), Name: existing.GetName(), Created: created}
	if existing.GetName() != want.GetName() || existing.GetDescription() != want.GetDescription() ||
		!proto.Equal(existing.GetAwsIdentity(), want.GetAwsIdentity()) || !proto.Equal(existing.GetClaimMatch(), want.GetClaimMatch()) {
		step := "update identity " + label(existing)
		if existing.GetName() != want.GetName() {
			step = fmt.Sprintf("rename identity %s to %q", label(existing), want.GetName())
		}
		// Only what this package writes, under an explicit mask: never the
		// listed object back (its server-owned fields, such as
		// create_time, update_time and last_seen_time, may be refused),
		// and never the "*" mask, under which every field counts as sent,
		// server-owned ones included.
		req := &iam.UpdateIdentityRequest{
			Identity:   &iam.Identity{Uid: existing.GetUid(), Name: want.GetName(), Description: want.GetDescription(), Relationship: want.GetRelationship()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: updatePaths(want)},
		}
		existing, err = call(ctx, p, step,
			func(ctx context.Context, c iam.Clients) (*iam.Identity, error) {
				return c.IdentitiesService().UpdateIdentity(ctx, req)
			})
		if err != nil {
			return partial, nameTakenHint(err, "identity", spec.Group)
		}
		partial.Name = existing.GetName()
	}

	if err := p.reconcileBindings(ctx, spec.Group, existing, wanted, created); err != nil {
		return partial, err
	}
	return Identity{ID: existing.GetUid(), Name: existing.GetName(), Roles: roleNames, Created: created}, nil
}

// updatePaths are the fields of an identity this package writes: the
// update mask of an identity update to want. The trust is the member of
// the relationship oneof want sets, aws_identity or claim_match (a mask
// names fields, not oneofs); want's kind is the existing identity's (see
// sameKind).
func updatePaths(want *iam.Identity) []string {
	if want.GetClaimMatch() != nil {
		return []string{"name", "description", "claim_match"}
	}
	return []string{"name", "description", "aws_identity"}
}

// sameKind reports whether a and b hold the same kind of trust (the same
// member of the relationship oneof).
func sameKind(a, b *iam.Identity) bool {
	return reflect.TypeOf(a.GetRelationship()) == reflect.TypeOf(b.GetRelationship())
}

// kindOf is the spec's kind of trust, as an identity holding it.
func kindOf(spec IdentitySpec) *iam.Identity {
	id := &iam.Identity{}
	spec.Trust.Apply(id)
	return id
}

// createIdentity creates the identity spec describes (want). A transient
// failure is retried only when a re-list shows no identity of the caller's
// of that name (one it shows is adopted). With spec.ManagedBy it then lists
// the group again: when another delivery of the event created one at the
// same time, the oldest is kept (see keepOldest) and created is false if it
// is not this one. A failure after the create returns the identity made.
func (p *Provisioner) createIdentity(ctx context.Context, spec IdentitySpec, want *iam.Identity) (ident *iam.Identity, created bool, err error) {
	step := fmt.Sprintf("create identity %q in group %s", spec.Name, spec.Group)
	made, found, err := create(ctx, p, step,
		func(ctx context.Context, c iam.Clients) (*iam.Identity, error) {
			return c.IdentitiesService().CreateIdentity(ctx, &iam.CreateIdentityRequest{Parent: spec.Group, Identity: want})
		},
		func(ctx context.Context) (*iam.Identity, bool, error) {
			id, err := p.findIdentity(ctx, spec)
			return id, id != nil, err
		})
	p.settled(made.GetUid())
	if err != nil || found {
		return made, false, err
	}
	if spec.ManagedBy == "" {
		return made, true, nil // nothing tells another caller's identity from a duplicate
	}
	items, err := p.listIdentities(ctx, spec.Group, spec.Name, fmt.Sprintf("look up identity %q in group %s for duplicates", spec.Name, spec.Group))
	if err != nil {
		return made, true, err
	}
	mine := ours(spec, items)
	if !slices.ContainsFunc(mine, func(i *iam.Identity) bool { return i.GetUid() == made.GetUid() }) {
		mine = append(mine, made) // not listed yet
	}
	keep, err := p.keepOldest(ctx, mine)
	if keep.GetUid() != made.GetUid() {
		p.settled(keep.GetUid())
	}
	return keep, keep.GetUid() == made.GetUid(), err
}

// ours returns the identities in items named spec.Name that carry
// spec.ManagedBy's marker and spec's kind of trust. One of the other kind
// is the one a change of kind replaces: CloudFormation deletes it.
func ours(spec IdentitySpec, items []*iam.Identity) []*iam.Identity {
	var out []*iam.Identity
	kind := kindOf(spec)
	for _, id := range named(items, spec.Name, "") {
		if owns(id.GetDescription(), spec.ManagedBy) && sameKind(id, kind) {
			out = append(out, id)
		}
	}
	return out
}

// keepOldest returns the oldest of idents, the caller's identities of one
// name, and deletes the others with their role bindings. Oldest is by
// creation time, then by lowest UIDP: every caller that lists the same
// identities keeps the same one, and one that created its identity after
// another was listed keeps the earlier one.
func (p *Provisioner) keepOldest(ctx context.Context, idents []*iam.Identity) (*iam.Identity, error) {
	sorted := slices.SortedFunc(slices.Values(idents), func(a, b *iam.Identity) int {
		if c := a.GetCreateTime().AsTime().Compare(b.GetCreateTime().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetUid(), b.GetUid())
	})
	keep := sorted[0]
	for _, extra := range sorted[1:] {
		if err := p.DeleteIdentity(ctx, extra.GetUid()); err != nil {
			return keep, fmt.Errorf("delete identity %s, a duplicate of %s (the oldest, kept): %w", label(extra), keep.GetUid(), err)
		}
	}
	return keep, nil
}

// reconcileBindings makes the bindings of ident on group exactly the roles in
// wanted (role ID -> name). A just-created identity has no bindings, so the
// list is skipped for it.
func (p *Provisioner) reconcileBindings(ctx context.Context, group string, ident *iam.Identity, wanted map[string]string, justCreated bool) error {
	var have []*iam.RoleBinding
	if !justCreated {
		var err error
		if have, err = p.bindingsOf(ctx, group, ident); err != nil {
			return err
		}
	}
	bound := make(map[string]bool, len(wanted))
	for _, b := range have {
		roleID := boundRole(b)
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
		_, _, err := create(ctx, p, step,
			func(ctx context.Context, c iam.Clients) (*iam.RoleBinding, error) {
				return c.RoleBindingsService().CreateRoleBinding(ctx, &iam.CreateRoleBindingRequest{
					Parent:      group,
					RoleBinding: &iam.RoleBinding{IdentityUid: ident.GetUid(), RoleUid: roleID},
				})
			},
			func(ctx context.Context) (*iam.RoleBinding, bool, error) {
				have, err := p.bindingsOf(ctx, group, ident)
				i := slices.IndexFunc(have, func(b *iam.RoleBinding) bool { return boundRole(b) == roleID })
				if err != nil || i < 0 {
					return nil, false, err
				}
				return have[i], true, nil
			})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return err
		}
	}
	return nil
}

// bindingsOf lists the role bindings of ident on group (every page). The
// list asks for ident's bindings only, and the answer is checked as well.
func (p *Provisioner) bindingsOf(ctx context.Context, group string, ident *iam.Identity) ([]*iam.RoleBinding, error) {
	step := fmt.Sprintf("list role bindings of identity %s on group %s", label(ident), group)
	list, err := call(ctx, p, step, func(ctx context.Context, c iam.Clients) ([]*iam.RoleBinding, error) {
		return c.ListRoleBindingsAll(ctx, &iam.ListRoleBindingsRequest{Uidp: &common.UIDPFilter{ChildrenOf: group}, Identity: ident.GetUid()})
	})
	if err != nil {
		return nil, err
	}
	var out []*iam.RoleBinding
	for _, b := range list {
		if boundIdentity(b) == ident.GetUid() {
			out = append(out, b)
		}
	}
	return out, nil
}

// boundIdentity is the UIDP of the identity b binds: the hydrated identity
// a read returns, else identity_uid.
func boundIdentity(b *iam.RoleBinding) string {
	if id := b.GetIdentity().GetUid(); id != "" {
		return id
	}
	return b.GetIdentityUid()
}

// boundRole is the UIDP of the role b binds: the hydrated role a read
// returns, else role_uid.
func boundRole(b *iam.RoleBinding) string {
	if id := b.GetRole().GetUid(); id != "" {
		return id
	}
	return b.GetRoleUid()
}

func (p *Provisioner) deleteBinding(ctx context.Context, ident *iam.Identity, b *iam.RoleBinding) error {
	step := fmt.Sprintf("delete role binding %s (role %q) of identity %s", b.GetUid(), b.GetRole().GetName(), label(ident))
	_, err := call(ctx, p, step, func(ctx context.Context, c iam.Clients) (*emptypb.Empty, error) {
		return c.RoleBindingsService().DeleteRoleBinding(ctx, &iam.DeleteRoleBindingRequest{Uid: b.GetUid()})
	})
	return notFoundIsGone(err)
}

// locateIdentity returns the identity spec describes, or nil when it has to
// be created: the identity spec.ID when that is directly in spec.Group and
// still exists (refusing a rename onto a name another identity there has),
// else the caller's one named spec.Name (see findIdentity). One RPC lists
// the group's identities for both. Duplicates of the caller's of the name
// spec.Name (made by two deliveries of a Create at once) are deleted.
func (p *Provisioner) locateIdentity(ctx context.Context, spec IdentitySpec) (*iam.Identity, error) {
	if !directlyIn(spec.ID, spec.Group) {
		return p.findIdentity(ctx, spec)
	}
	step := fmt.Sprintf("look up identity %s and the name %q in group %s", spec.ID, spec.Name, spec.Group)
	// No name filter: the same list holds the identity and any namesake.
	items, err := p.listIdentities(ctx, spec.Group, "", step)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(items, func(id *iam.Identity) bool { return id.GetUid() == spec.ID })
	if i < 0 {
		// Deleted behind the stack's back: ensure by name.
		return p.pickIdentity(ctx, spec, fmt.Sprintf("identity %s is gone; look up identity %q in group %s instead", spec.ID, spec.Name, spec.Group), items)
	}
	cur := items[i]
	kind := kindOf(spec)
	if !sameKind(cur, kind) {
		// The kind of trust changed: a replacement (see IdentitySpec.Trust).
		return p.pickIdentity(ctx, spec, fmt.Sprintf("identity %s holds the other kind of trust; look up identity %q of this kind in group %s instead", spec.ID, spec.Name, spec.Group), items)
	}
	var taken, duplicates []*iam.Identity
	for _, id := range named(items, spec.Name, cur.GetUid()) {
		switch {
		case spec.ManagedBy != "" && owns(id.GetDescription(), spec.ManagedBy) && sameKind(id, kind):
			duplicates = append(duplicates, id)
		case spec.ManagedBy != "" && owns(id.GetDescription(), spec.ManagedBy):
			// The caller's identity of the other kind, which a replacement
			// left for CloudFormation to delete: not a namesake to refuse.
		default:
			taken = append(taken, id)
		}
	}
	if len(taken) > 0 && cur.GetName() != spec.Name {
		return nil, fmt.Errorf("rename identity %s to %q in group %s: refused: another identity there already has that name (%s): choose another name, or delete or rename that identity first",
			label(cur), spec.Name, spec.Group, uids(taken))
	}
	for _, extra := range duplicates {
		// The same stack's same resource: the identity spec.ID names is it.
		if err := p.DeleteIdentity(ctx, extra.GetUid()); err != nil {
			return nil, fmt.Errorf("delete identity %s, a duplicate of %s: %w", label(extra), cur.GetUid(), err)
		}
	}
	return cur, nil
}

// findIdentity returns the caller's identity named spec.Name directly in
// spec.Group, or nil (see pickIdentity).
func (p *Provisioner) findIdentity(ctx context.Context, spec IdentitySpec) (*iam.Identity, error) {
	step := fmt.Sprintf("look up identity %q in group %s", spec.Name, spec.Group)
	items, err := p.listIdentities(ctx, spec.Group, spec.Name, step)
	if err != nil {
		return nil, err
	}
	return p.pickIdentity(ctx, spec, step, items)
}

// pickIdentity returns the caller's identity among the identities in items
// named spec.Name, or nil for none. With spec.ManagedBy, those carrying its
// marker are the caller's (several: the oldest is kept and the others
// deleted, see keepOldest), and when there are none, an identity of that
// name is refused: one the caller did not create is never taken over.
// Without it, the only identity of that name is adopted, and several are
// refused.
func (p *Provisioner) pickIdentity(ctx context.Context, spec IdentitySpec, step string, items []*iam.Identity) (*iam.Identity, error) {
	found := named(items, spec.Name, "")
	if len(found) == 0 {
		return nil, nil
	}
	if spec.ManagedBy == "" {
		if len(found) > 1 {
			return nil, fmt.Errorf("%s: %d identities have that name (%s): delete all but one", step, len(found), uids(found))
		}
		if !sameKind(found[0], kindOf(spec)) {
			return nil, fmt.Errorf("%s: identity %s holds the other kind of trust, which is never changed in place: delete it, or choose another name", step, label(found[0]))
		}
		return found[0], nil
	}
	if ours := ours(spec, found); len(ours) > 0 {
		return p.keepOldest(ctx, ours)
	}
	if slices.ContainsFunc(found, func(id *iam.Identity) bool { return owns(id.GetDescription(), spec.ManagedBy) }) {
		// Only the caller's identity of the other kind: a replacement makes
		// a new one, and CloudFormation deletes the old.
		return nil, nil
	}
	return nil, fmt.Errorf("identity %q already exists in group %s and was not created by this stack (%s): choose another Name, or delete or rename that identity",
		spec.Name, spec.Group, spec.ManagedBy)
}

// listIdentities lists the identities directly in group (every page), only
// those named name unless it is empty. (Callers still pick by name: the
// filter keeps the list short in a group of many identities.)
func (p *Provisioner) listIdentities(ctx context.Context, group, name, step string) ([]*iam.Identity, error) {
	list, err := call(ctx, p, step, func(ctx context.Context, c iam.Clients) ([]*iam.Identity, error) {
		return c.ListIdentitiesAll(ctx, &iam.ListIdentitiesRequest{Uidp: &common.UIDPFilter{ChildrenOf: group}, Name: name})
	})
	if err != nil {
		return nil, err
	}
	return childrenOf(list, group), nil
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
	ident := &iam.Identity{Uid: id}
	bindings, err := p.bindingsOf(ctx, group, ident)
	if err != nil {
		return notFoundIsGone(err)
	}
	for _, b := range bindings {
		if err := p.deleteBinding(ctx, ident, b); err != nil {
			return err
		}
	}
	_, err = call(ctx, p, "delete identity "+id, func(ctx context.Context, c iam.Clients) (*emptypb.Empty, error) {
		return c.IdentitiesService().DeleteIdentity(ctx, &iam.DeleteIdentityRequest{Uid: id})
	})
	return notFoundIsGone(err)
}

// label names an identity in errors: `"name" (id)`, or just the id.
func label(ident *iam.Identity) string {
	if ident.GetName() == "" {
		return ident.GetUid()
	}
	return fmt.Sprintf("%q (%s)", ident.GetName(), ident.GetUid())
}

// Identity reads the identity id as it is stored (its trust included), for
// a message that says whom it trusts. A PermissionDenied is retried like
// every step's.
func (p *Provisioner) Identity(ctx context.Context, id string) (*iam.Identity, error) {
	return call(ctx, p, "read identity "+id, func(ctx context.Context, c iam.Clients) (*iam.Identity, error) {
		return c.IdentitiesService().GetIdentity(ctx, &iam.GetIdentityRequest{Uid: id})
	})
}
