package emulator

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"chainguard.dev/sdk/proto/capabilities"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The core of groups (see core.go).

// groupView is a copy of a stored group and its times.
type groupView struct {
	g     *iam.Group
	times objectTimes
}

// objectTimes are the creation and last update times of a group, which v1
// Group does not carry and v2 Group returns (create_time, update_time).
type objectTimes struct{ created, updated time.Time }

// viewGroup copies stored group g. Callers hold e.mu.
func (e *Emulator) viewGroup(g *iam.Group) groupView {
	return groupView{g: proto.Clone(g).(*iam.Group), times: e.groupTimes[g.GetId()]}
}

// createGroup creates group sent (its name and description; its
// server-owned fields may only restate what the group gets, see
// checkGroupServerOwned) under parent. The method is unscoped, so the
// authorization is here: a parent is required (creating an organization is
// refused) and caller needs CAP_IAM_GROUPS_CREATE on it. checkBody, if not
// nil, then judges the request's resource as its version requires.
func (e *Emulator) createGroup(caller *token, parent string, sent *iam.Group, checkBody func() error) (groupView, error) {
	if sent == nil {
		return groupView{}, status.Error(codes.InvalidArgument, "group is required")
	}
	if parent == "" {
		// IAM v2's CreateGroupRequest allows an empty parent "for creating
		// root organizations" (proto/chainguard/platform/iam/v2/
		// groups.proto), and says nothing about who may. Every capability
		// a token carries comes from a role binding on some group, so no
		// scope it holds covers a new organization: the stricter reading
		// refuses it. The product never creates a root group.
		return groupView{}, status.Error(codes.PermissionDenied, "creating a root group (organization) is not allowed: create the group under an existing group (set parent)")
	}
	if err := checkUIDP("parent", parent); err != nil {
		return groupView{}, err
	}
	if err := e.authorize(caller, parent, capabilities.Capability_CAP_IAM_GROUPS_CREATE); err != nil {
		return groupView{}, err
	}
	if checkBody != nil {
		if err := checkBody(); err != nil {
			return groupView{}, err
		}
	}
	if err := checkNameAndDescription("group", sent.GetName(), sent.GetDescription()); err != nil {
		return groupView{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := checkGroupServerOwned(sent, e.newGroupFields(parent)); err != nil {
		return groupView{}, err
	}
	id, err := e.addGroup(parent, sent.GetName(), sent.GetDescription())
	if err != nil {
		return groupView{}, err
	}
	return e.viewGroup(e.groups[id]), nil
}

// addGroup creates a group (parent "" makes a root group). Callers hold e.mu
// and have validated name and description.
func (e *Emulator) addGroup(parent, name, description string) (string, error) {
	if parent != "" {
		if _, ok := e.groups[parent]; !ok {
			return "", status.Errorf(codes.NotFound, "parent group %s not found", parent)
		}
	}
	if err := e.groupNameTaken(parent, name, ""); err != nil {
		return "", err
	}
	id := string(uidp.NewUIDP(uidp.UIDP(parent)))
	g := e.newGroupFields(parent)
	g.Id, g.Name, g.Description = id, name, description
	e.groups[id] = g
	now := time.Now()
	e.groupTimes[id] = objectTimes{created: now, updated: now}
	return id, nil
}

// Server-owned group fields. v1 Group (proto/platform/iam/v1/
// group.platform.proto) carries, besides the writable id, name and
// description: resource_limits, verified ("can only be set manually by
// Chainguardians"), kind ("For root groups this is their own kind; for
// subgroups it is inherited from the root group") and status ("the
// provisioning status of the organization"). The emulator stores and returns
// them: a root group is a ready customer organization, a subgroup inherits
// its kind; resource_limits stay empty and verified false.
const (
	rootGroupKind = iam.OrgKind_ORG_KIND_CUSTOMER
	groupStatus   = iam.OrgStatus_ORG_STATUS_READY
)

// newGroupFields returns a group holding the server-owned fields of a new
// group under parent ("" for a root group). Callers hold e.mu.
func (e *Emulator) newGroupFields(parent string) *iam.Group {
	kind := rootGroupKind
	if parent != "" {
		if root, ok := e.groups[uidp.Root(parent)]; ok {
			kind = root.GetKind()
		}
	}
	return &iam.Group{Kind: kind, Status: groupStatus}
}

// checkGroupServerOwned fails with InvalidArgument when sent carries a
// server-owned field (non-zero) that differs from stored; unset fields keep
// the stored value. The evidence: the vendor's Terraform provider stopped
// sending kind and status in group updates because "the API ... can reject
// such updates once those fields hold values" (chainguard-dev/
// terraform-provider-chainguard commit 74ae4e4, internal/provider/
// resource_group.go update). The emulator rejects any differing value, the
// stricter reading.
func checkGroupServerOwned(sent, stored *iam.Group) error {
	const fix = "it is server-owned: send only id, name and description"
	switch {
	case sent.GetKind() != iam.OrgKind_ORG_KIND_UNSPECIFIED && sent.GetKind() != stored.GetKind():
		return status.Errorf(codes.InvalidArgument, "group kind %s differs from the stored %s: %s", sent.GetKind(), stored.GetKind(), fix)
	case sent.GetStatus() != iam.OrgStatus_ORG_STATUS_UNSPECIFIED && sent.GetStatus() != stored.GetStatus():
		return status.Errorf(codes.InvalidArgument, "group status %s differs from the stored %s: %s", sent.GetStatus(), stored.GetStatus(), fix)
	case sent.GetVerified() && !stored.GetVerified():
		return status.Errorf(codes.InvalidArgument, "group verified=true differs from the stored false: %s (only Chainguard staff verify organizations)", fix)
	case len(sent.GetResourceLimits()) > 0 && !maps.Equal(sent.GetResourceLimits(), stored.GetResourceLimits()):
		return status.Errorf(codes.InvalidArgument, "group resource_limits %v differ from the stored %v: %s", sent.GetResourceLimits(), stored.GetResourceLimits(), fix)
	}
	return nil
}

// groupNameTaken fails with AlreadyExists when a group other than self is
// named name under parent ("" for the root): sibling names are unique. The
// evidence is indirect (CreateGroupRequest.parent "is allowed to be ... the
// name of a Group in scope", proto/platform/iam/v1/group.platform.proto, and
// chainctl takes group names wherever it takes a group, which a duplicate
// would make ambiguous); nothing says the service allows duplicates, so the
// emulator keeps the stricter reading. Callers hold e.mu.
func (e *Emulator) groupNameTaken(parent, name, self string) error {
	for _, o := range e.groups {
		if o.GetId() != self && o.GetName() == name && parentOf(o.GetId()) == parent {
			where := "the root"
			if parent != "" {
				where = "group " + parent
			}
			return status.Errorf(codes.AlreadyExists, "a group named %q already exists under %s: %s", name, where, o.GetId())
		}
	}
	return nil
}

// updateGroup sets the name and description of group id to those edit
// returns for the stored group; edit validates the request against it, by
// the rules of its version. Sibling names stay unique and the update time
// becomes now.
func (e *Emulator) updateGroup(id string, edit func(stored groupView) (name, description string, err error)) (groupView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := lookup(e.groups, "group", id)
	if err != nil {
		return groupView{}, err
	}
	name, description, err := edit(e.viewGroup(cur))
	if err != nil {
		return groupView{}, err
	}
	if err := e.groupNameTaken(parentOf(id), name, id); err != nil {
		return groupView{}, err
	}
	cur.Name, cur.Description = name, description
	t := e.groupTimes[id]
	t.updated = time.Now()
	e.groupTimes[id] = t
	return e.viewGroup(cur), nil
}

// listGroups returns the groups matching q that caller's token may list.
func (e *Emulator) listGroups(caller *token, q listQuery) ([]groupView, error) {
	return list(e, q, e.groups, func(id string, g *iam.Group) bool {
		return q.matches(id, g.GetName()) && e.tokenHas(caller, id, capabilities.Capability_CAP_IAM_GROUPS_LIST)
	}, e.viewGroup)
}

// deleteGroup deletes group id: NotFound if there is none, FailedPrecondition
// while it holds objects (IAM v2 DeleteGroup: "Fails if the group has child
// repos, child groups, or other child IAM resources", proto/chainguard/
// platform/iam/v2/groups.proto; v1 says nothing and is served the same).
func (e *Emulator) deleteGroup(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := lookup(e.groups, "group", id); err != nil {
		return err
	}
	if left := e.heldBy(id); len(left) > 0 {
		return status.Errorf(codes.FailedPrecondition, "group %s still holds %s: delete them first (the emulator does not cascade deletes)", id, strings.Join(left, ", "))
	}
	delete(e.groups, id)
	delete(e.groupTimes, id)
	return nil
}

// heldBy lists what group id still holds. Callers hold e.mu.
func (e *Emulator) heldBy(id string) []string {
	var left []string
	for _, k := range []struct {
		what string
		ids  []string
	}{
		{"groups", childrenOf(id, e.groups)},
		{"identities", childrenOf(id, e.identities)},
		{"role bindings", childrenOf(id, e.bindings)},
		{"repos", childrenOf(id, e.repos)},
	} {
		if len(k.ids) > 0 {
			left = append(left, fmt.Sprintf("%d %s (%s)", len(k.ids), k.what, strings.Join(k.ids, " ")))
		}
	}
	return left
}

// childrenOf returns the sorted IDs of objs (stored by ID) whose parent is
// group.
func childrenOf[O any](group string, objs map[string]O) []string {
	var out []string
	for id := range objs {
		if uidp.Parent(id) == group {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
