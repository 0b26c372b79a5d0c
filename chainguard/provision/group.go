package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// GroupSpec is the desired state of a group.
type GroupSpec struct {
	// ID is the group's current UIDP (a CloudFormation physical ID), if any.
	// When it is the UIDP of a group directly under Parent that still exists
	// and is the caller's (see ManagedBy), that group is updated in place:
	// renamed to Name if needed (refused if another group under Parent has
	// that name), its description changed, its UIDP kept. Otherwise (empty,
	// not a UIDP, under another parent, gone, or not the caller's and named
	// otherwise) the group is looked up by Name and created if missing.
	ID          string
	Parent      string // UIDP of the parent group (required)
	Name        string
	Description string
	// ManagedBy names the owner uniquely, e.g. the handler's
	// "<account>/<region>/<stack name>/<stack ID>/<logical ID>". When set, the
	// stored description carries its marker (see StoredDescription), and a
	// group without that marker is not the caller's: it is used as it is,
	// never renamed, re-described or stamped, and DeleteGroup leaves it.
	ManagedBy string
}

// Validate reports every invalid field of s.
func (s GroupSpec) Validate() error {
	_, descErr := StoredDescription(s.Description, s.ManagedBy)
	return joinErrors(
		validate.UIDP("parent", s.Parent),
		validate.Name("group name", s.Name),
		descErr,
	)
}

// Group is a group as it exists after EnsureGroup.
type Group struct {
	ID          string
	Name        string
	Description string // as stored, with the ownership marker if any
	Created     bool   // false when an existing group of that name was adopted
	// Foreign is true for a group that does not carry the caller's marker:
	// it was used as it is, and DeleteGroup will leave it in place.
	Foreign bool
}

// EnsureGroup makes sure a group named spec.Name exists directly under
// spec.Parent with spec.Description: it updates the group spec.ID in place
// (see GroupSpec.ID), or adopts an existing group of that name, or creates
// one; a name or description that differs is updated, on the caller's own
// groups only (see GroupSpec.ManagedBy). When a step fails after the group
// is known, the Group returned with the error holds its ID, so the caller can
// clean up.
func (p *Provisioner) EnsureGroup(ctx context.Context, spec GroupSpec) (Group, error) {
	if err := spec.Validate(); err != nil {
		return Group{}, fmt.Errorf("ensure group %q: %w", spec.Name, err)
	}
	stored, _ := StoredDescription(spec.Description, spec.ManagedBy) // valid: checked above
	existing, err := p.locateGroup(ctx, spec)
	if err != nil {
		return Group{}, err
	}
	created := false
	if existing == nil {
		step := fmt.Sprintf("create group %q in group %s", spec.Name, spec.Parent)
		var found bool
		existing, found, err = create(ctx, p, step,
			func(ctx context.Context, c iam.Clients) (*iam.Group, error) {
				return c.GroupsService().CreateGroup(ctx, &iam.CreateGroupRequest{
					Parent: spec.Parent,
					Group:  &iam.Group{Name: spec.Name, Description: stored},
				})
			},
			func(ctx context.Context) (*iam.Group, bool, error) {
				g, err := p.findGroup(ctx, spec.Parent, spec.Name)
				return g, g != nil, err
			})
		switch {
		case status.Code(err) == codes.AlreadyExists:
			// Group names are unique under a parent: made concurrently
			// (a replayed event). Adopt it.
			if existing, err = p.findGroup(ctx, spec.Parent, spec.Name); err == nil && existing == nil {
				err = fmt.Errorf("%s: the service says it exists but it is not listed", step)
			}
			if err != nil {
				return Group{}, err
			}
		case err != nil:
			return Group{}, err
		default:
			created = !found
		}
	}
	p.settled(existing.GetUid())
	got := groupOf(existing, created, spec.ManagedBy)
	if got.Foreign {
		return got, nil // not the caller's: used as it is
	}
	if existing.GetName() != spec.Name || existing.GetDescription() != stored {
		step := fmt.Sprintf("update description of group %q (%s)", spec.Name, existing.GetUid())
		if existing.GetName() != spec.Name {
			step = fmt.Sprintf("rename group %q (%s) to %q", existing.GetName(), existing.GetUid(), spec.Name)
		}
		// Only what this package writes, under an explicit mask: never the
		// listed object back (its server-owned fields, such as kind,
		// status, resource_limits and verified, may be refused), and never
		// the "*" mask, under which every field counts as sent,
		// server-owned ones included.
		req := &iam.UpdateGroupRequest{
			Group:      &iam.Group{Uid: existing.GetUid(), Name: spec.Name, Description: stored},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: groupUpdatePaths},
		}
		updated, err := call(ctx, p, step,
			func(ctx context.Context, c iam.Clients) (*iam.Group, error) {
				return c.GroupsService().UpdateGroup(ctx, req)
			})
		if err != nil {
			return got, nameTakenHint(err, "group", spec.Parent)
		}
		got = groupOf(updated, created, spec.ManagedBy)
	}
	return got, nil
}

// groupUpdatePaths are the fields of a group this package writes: the
// update mask of every group update.
var groupUpdatePaths = []string{"name", "description"}

func groupOf(g *iam.Group, created bool, managedBy string) Group {
	return Group{
		ID: g.GetUid(), Name: g.GetName(), Description: g.GetDescription(), Created: created,
		Foreign: !owns(g.GetDescription(), managedBy),
	}
}

// locateGroup returns the group spec describes, or nil when it has to be
// created: the group spec.ID when that is directly under spec.Parent, still
// exists and is the caller's (refusing a rename onto a name another group
// there has) or has the name spec.Name, else the one named spec.Name. One RPC
// lists the parent's groups for both.
func (p *Provisioner) locateGroup(ctx context.Context, spec GroupSpec) (*iam.Group, error) {
	if !directlyIn(spec.ID, spec.Parent) {
		return p.findGroup(ctx, spec.Parent, spec.Name)
	}
	step := fmt.Sprintf("look up group %s and the name %q in group %s", spec.ID, spec.Name, spec.Parent)
	// No name filter: the same list holds the group and any namesake.
	items, err := p.listGroups(ctx, &iam.ListGroupsRequest{Uidp: &common.UIDPFilter{ChildrenOf: spec.Parent}}, spec.Parent, step)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(items, func(g *iam.Group) bool { return g.GetUid() == spec.ID })
	if i < 0 {
		// Deleted behind the stack's back: ensure by name.
		return oneGroup(fmt.Sprintf("group %s is gone; look up group %q in group %s instead", spec.ID, spec.Name, spec.Parent),
			named(items, spec.Name, ""))
	}
	cur := items[i]
	if !owns(cur.GetDescription(), spec.ManagedBy) && cur.GetName() != spec.Name {
		// Not the caller's: never renamed. Ensure the new name instead.
		return oneGroup(fmt.Sprintf("look up group %q in group %s", spec.Name, spec.Parent), named(items, spec.Name, ""))
	}
	if taken := named(items, spec.Name, cur.GetUid()); len(taken) > 0 {
		return nil, fmt.Errorf("rename group %q (%s) to %q in group %s: refused: another group there already has that name (%s): choose another name, or delete or rename that group first",
			cur.GetName(), cur.GetUid(), spec.Name, spec.Parent, uids(taken))
	}
	return cur, nil
}

// findGroup returns the group named name directly under parent, or nil.
func (p *Provisioner) findGroup(ctx context.Context, parent, name string) (*iam.Group, error) {
	step := fmt.Sprintf("look up group %q in group %s", name, parent)
	items, err := p.listGroups(ctx, &iam.ListGroupsRequest{Uidp: &common.UIDPFilter{ChildrenOf: parent}, Name: name}, parent, step)
	if err != nil {
		return nil, err
	}
	return oneGroup(step, named(items, name, ""))
}

// listGroups lists the groups matching req (every page) that are directly
// under parent.
func (p *Provisioner) listGroups(ctx context.Context, req *iam.ListGroupsRequest, parent, step string) ([]*iam.Group, error) {
	list, err := call(ctx, p, step, func(ctx context.Context, c iam.Clients) ([]*iam.Group, error) {
		return c.ListGroupsAll(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return childrenOf(list, parent), nil
}

// oneGroup returns the only group found, nil for none, and an error naming
// them all for several.
func oneGroup(step string, found []*iam.Group) (*iam.Group, error) {
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%s: %d groups have that name (%s): rename or delete all but one", step, len(found), uids(found))
}

// maxListed bounds how many leftovers of each kind a refusal names, so the
// message stays short (it ends up in a CloudFormation reason).
const maxListed = 5

// DeleteGroup deletes the group id, but only when it is the caller's and
// holds nothing. With managedBy set, a group that does not carry its marker
// (see GroupSpec.ManagedBy) is left in place: DeleteGroup returns left true
// and no error. A group that still holds groups, identities or role bindings
// is refused with an error listing what is left, before any delete: IAM v2's
// DeleteGroup refuses such a group too ("Fails if the group has child repos,
// child groups, or other child IAM resources", groups.proto), but its reason
// need not name them. (Registry repositories cannot be listed through IAM;
// if the service refuses because of them, its reason is passed on.) A group that no longer exists counts as deleted, and an id that is not
// a UIDP is a no-op without any RPC (CloudFormation sends Delete with the
// request ID after a failed Create).
//
// Lists show only what the caller may see, so with managedBy set a group
// that is not listed counts as gone only when a group above it is listed
// (whoever may see a group sees what it holds). Otherwise the provisioner
// cannot see the group at all: that is retried within the PermissionDenied
// budget with fresh tokens (a new role binding), then fails, rather than
// report a group deleted that may still be there.
func (p *Provisioner) DeleteGroup(ctx context.Context, id, managedBy string) (left bool, err error) {
	if !uidp.Valid(id) {
		return false, nil
	}
	if managedBy != "" {
		var g *iam.Group
		err := p.untilVisible(ctx, "delete group "+id, func() (err error) {
			g, err = p.lookUpGroup(ctx, id)
			return err
		})
		switch {
		case err != nil:
			return false, err
		case g == nil:
			return false, nil // already gone
		case !owns(g.GetDescription(), managedBy):
			return true, nil
		}
	}
	return false, p.deleteEmptyGroup(ctx, id)
}

// lookUpGroup returns the group id, nil when it is gone, or notVisible when
// neither it nor any group above it is listed (see DeleteGroup). A group
// in the root has nothing above it: not listed, it counts as gone.
func (p *Provisioner) lookUpGroup(ctx context.Context, id string) (*iam.Group, error) {
	found, err := call(ctx, p, "look up group "+id, func(ctx context.Context, c iam.Clients) ([]*iam.Group, error) {
		return c.ListGroupsAll(ctx, &iam.ListGroupsRequest{Uidp: &common.UIDPFilter{Ids: []string{id}}})
	})
	if err != nil {
		return nil, notFoundIsGone(err)
	}
	if i := slices.IndexFunc(found, func(g *iam.Group) bool { return g.GetUid() == id }); i >= 0 {
		return found[i], nil
	}
	if uidp.InRoot(id) {
		return nil, nil
	}
	above, err := call(ctx, p, "look up the groups above group "+id, func(ctx context.Context, c iam.Clients) ([]*iam.Group, error) {
		return c.ListGroupsAll(ctx, &iam.ListGroupsRequest{Uidp: &common.UIDPFilter{AncestorsOf: id}})
	})
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(above, func(g *iam.Group) bool { return uidp.IsAncestor(g.GetUid(), id) }) {
		return nil, nil // a group above it is visible, so it would be too: gone
	}
	return nil, notVisible("neither the group nor any group above it is visible to the provisioner identity, so whether it is gone cannot be told: " +
		"the provisioner identity needs the owner role on the group or a group above it (if the group and everything above it were deleted by hand, retain this resource when you delete the stack again)")
}

// deleteEmptyGroup deletes the group id unless it holds anything.
func (p *Provisioner) deleteEmptyGroup(ctx context.Context, id string) error {
	filter := &common.UIDPFilter{ChildrenOf: id}
	groups, err := call(ctx, p, "list groups in group "+id, func(ctx context.Context, c iam.Clients) ([]*iam.Group, error) {
		return c.ListGroupsAll(ctx, &iam.ListGroupsRequest{Uidp: filter})
	})
	if err != nil {
		return notFoundIsGone(err)
	}
	idents, err := call(ctx, p, "list identities in group "+id, func(ctx context.Context, c iam.Clients) ([]*iam.Identity, error) {
		return c.ListIdentitiesAll(ctx, &iam.ListIdentitiesRequest{Uidp: filter})
	})
	if err != nil {
		return notFoundIsGone(err)
	}
	bindings, err := call(ctx, p, "list role bindings in group "+id, func(ctx context.Context, c iam.Clients) ([]*iam.RoleBinding, error) {
		return c.ListRoleBindingsAll(ctx, &iam.ListRoleBindingsRequest{Uidp: filter})
	})
	if err != nil {
		return notFoundIsGone(err)
	}
	var left []string
	if len(groups) > 0 {
		left = append(left, listed(len(groups), "group", func(i int) string {
			return fmt.Sprintf("%q %s", groups[i].GetName(), groups[i].GetUid())
		}))
	}
	if len(idents) > 0 {
		left = append(left, listed(len(idents), "identity", func(i int) string {
			return fmt.Sprintf("%q %s", idents[i].GetName(), idents[i].GetUid())
		}))
	}
	if len(bindings) > 0 {
		left = append(left, listed(len(bindings), "role binding", func(i int) string {
			return fmt.Sprintf("%s as %q", boundIdentity(bindings[i]), bindings[i].GetRole().GetName())
		}))
	}
	if len(left) > 0 {
		return fmt.Errorf("delete group %s: refused: it still holds %s; delete those first (the service deletes only an empty group)",
			id, strings.Join(left, "; "))
	}
	_, err = call(ctx, p, "delete group "+id, func(ctx context.Context, c iam.Clients) (*emptypb.Empty, error) {
		return c.GroupsService().DeleteGroup(ctx, &iam.DeleteGroupRequest{Uid: id})
	})
	if status.Code(err) == codes.FailedPrecondition {
		var se *StepError
		if errors.As(err, &se) {
			se.Hint = "the group still holds objects (for example registry repositories); delete them first"
		}
	}
	return notFoundIsGone(err)
}

// listed renders "2 identities: a, b" (at most maxListed names).
func listed(n int, kind string, name func(int) string) string {
	noun := kind
	if n != 1 {
		noun = plural(kind)
	}
	names := make([]string, 0, min(n, maxListed))
	for i := 0; i < n && i < maxListed; i++ {
		names = append(names, name(i))
	}
	s := fmt.Sprintf("%d %s: %s", n, noun, strings.Join(names, ", "))
	if n > maxListed {
		s += fmt.Sprintf(" and %d more", n-maxListed)
	}
	return s
}

func plural(kind string) string {
	if strings.HasSuffix(kind, "y") {
		return strings.TrimSuffix(kind, "y") + "ies"
	}
	return kind + "s"
}

// notFoundIsGone maps NotFound to success for deletions.
func notFoundIsGone(err error) error {
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}
