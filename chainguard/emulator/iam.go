package emulator

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"chainguard.dev/sdk/proto/capabilities"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"chainguard.dev/sdk/validation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Scoped methods are authorized by the interceptor (capabilities of the
// method's iam annotation on its iam_scope field, held by the caller's token)
// before they get here; unscoped ones (Create of groups, the Lists) check or
// filter here, by the same token: a List leaves out what the token may not
// list instead of failing.

// checkFilter fails with InvalidArgument unless every UIDP in f is valid.
func checkFilter(f *common.UIDPFilter) error {
	for field, v := range map[string]string{
		"uidp.ancestors_of": f.GetAncestorsOf(), "uidp.descendants_of": f.GetDescendantsOf(), "uidp.children_of": f.GetChildrenOf(),
	} {
		if v != "" {
			if err := checkUIDP(field, v); err != nil {
				return err
			}
		}
	}
	for _, v := range f.GetIds() {
		if err := checkUIDP("uidp.ids", v); err != nil {
			return err
		}
	}
	return nil
}

// matchFilter reports whether id passes every condition set in f.
func matchFilter(f *common.UIDPFilter, id string) bool {
	if a := f.GetAncestorsOf(); a != "" && !uidp.IsAncestor(id, a) {
		return false
	}
	if d := f.GetDescendantsOf(); d != "" && !uidp.IsAncestor(d, id) {
		return false
	}
	if c := f.GetChildrenOf(); c != "" && uidp.Parent(id) != c {
		return false
	}
	if f.GetInRoot() && !uidp.InRoot(id) {
		return false
	}
	if ids := f.GetIds(); len(ids) > 0 && !slices.Contains(ids, id) {
		return false
	}
	return true
}

// checkName applies the SDK's character rule (validation.ValidateName) to
// the name of an object of kind.
func checkName(kind, name string) error {
	if err := validation.ValidateName(name); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s name %q is invalid: %v (lower-case letters, digits, space, '.', '_', '-')", kind, name, err)
	}
	return nil
}

// Name lengths of groups and identities: "Must be 3-63 characters"
// (proto/chainguard/platform/iam/v2/groups.proto, Group.name, and
// identities.proto, Identity.name, SDK v0.1.212). The v1 protos the emulator
// serves say nothing; the service behind both versions is one, so the
// stricter v2 rule applies to v1 too.
const minNameLen, maxNameLen = 3, 63

// checkIAMName is checkName plus the 3-63 character rule, for groups and
// identities.
func checkIAMName(kind, name string) error {
	if err := checkName(kind, name); err != nil {
		return err
	}
	if n := len(name); n < minNameLen || n > maxNameLen { // ValidateName admits ASCII only: bytes are characters
		return status.Errorf(codes.InvalidArgument, "%s name %q has %d characters: it must have %d to %d", kind, name, n, minNameLen, maxNameLen)
	}
	return nil
}

func checkDescription(kind, d string) error {
	if err := validation.ValidateDescription(d); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s description is invalid: %v (at most 512 characters, no tabs or newlines)", kind, err)
	}
	return nil
}

// ---- Groups ----

type groupsService struct {
	iam.UnimplementedGroupsServer
	e *Emulator
}

func (s *groupsService) Create(ctx context.Context, req *iam.CreateGroupRequest) (*iam.Group, error) {
	e := s.e
	g := req.GetGroup()
	if g == nil {
		return nil, status.Error(codes.InvalidArgument, "group is required")
	}
	if req.GetParent() == "" {
		return nil, status.Error(codes.PermissionDenied, "creating a root group (organization) is not allowed: create the group under an existing group (set parent)")
	}
	if err := checkUIDP("parent", req.GetParent()); err != nil {
		return nil, err
	}
	if err := e.authorize(callerOf(ctx), req.GetParent(), capabilities.Capability_CAP_IAM_GROUPS_CREATE); err != nil {
		return nil, err
	}
	if err := checkIAMName("group", g.GetName()); err != nil {
		return nil, err
	}
	if err := checkDescription("group", g.GetDescription()); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := checkGroupServerOwned(g, e.newGroupFields(req.GetParent())); err != nil {
		return nil, err
	}
	id, err := e.addGroup(req.GetParent(), g.GetName(), g.GetDescription())
	if err != nil {
		return nil, err
	}
	return proto.Clone(e.groups[id]).(*iam.Group), nil
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
		if root, ok := e.groups[rootOf(parent)]; ok {
			kind = root.GetKind()
		}
	}
	return &iam.Group{Kind: kind, Status: groupStatus}
}

// rootOf returns the root group UIDP of id.
func rootOf(id string) string {
	root, _, _ := strings.Cut(id, "/")
	return root
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
			return status.Errorf(codes.AlreadyExists, "a group named %q already exists under %s: %s", name, describeParent(parent), o.GetId())
		}
	}
	return nil
}

// parentOf is uidp.Parent with "" for root-level UIDPs.
func parentOf(id string) string {
	if uidp.InRoot(id) {
		return ""
	}
	return uidp.Parent(id)
}

func describeParent(parent string) string {
	if parent == "" {
		return "the root"
	}
	return "group " + parent
}

// Update replaces the writable fields of a group (name and description) with
// those sent. v1 Update (PUT /iam/v1/groups/{id}, body "*") has no update
// mask and proto3 cannot tell an unset string from an empty one, so an
// omitted description clears it: the emulator takes that literal reading
// (a client must send every writable field it wants to keep). Server-owned
// fields follow checkGroupServerOwned.
func (s *groupsService) Update(ctx context.Context, g *iam.Group) (*iam.Group, error) {
	e := s.e
	if err := checkIAMName("group", g.GetName()); err != nil {
		return nil, err
	}
	if err := checkDescription("group", g.GetDescription()); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, ok := e.groups[g.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %s not found", g.GetId())
	}
	if err := checkGroupServerOwned(g, cur); err != nil {
		return nil, err
	}
	if err := e.groupNameTaken(parentOf(cur.GetId()), g.GetName(), cur.GetId()); err != nil {
		return nil, err
	}
	cur.Name, cur.Description = g.GetName(), g.GetDescription()
	e.touchGroup(cur.GetId())
	return proto.Clone(cur).(*iam.Group), nil
}

func (s *groupsService) List(ctx context.Context, f *iam.GroupFilter) (*iam.GroupList, error) {
	e := s.e
	if err := checkFilter(f.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	out := &iam.GroupList{}
	for _, g := range e.groups {
		if (f.GetId() != "" && g.GetId() != f.GetId()) || (f.GetName() != "" && g.GetName() != f.GetName()) ||
			!matchFilter(f.GetUidp(), g.GetId()) || !e.tokenHas(caller, g.GetId(), capabilities.Capability_CAP_IAM_GROUPS_LIST) {
			continue
		}
		out.Items = append(out.Items, proto.Clone(g).(*iam.Group))
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].GetId() < out.Items[j].GetId() })
	return out, nil
}

func (s *groupsService) Delete(ctx context.Context, req *iam.DeleteGroupRequest) (*emptypb.Empty, error) {
	if err := s.e.deleteGroup(req.GetId()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// deleteGroup deletes group id: NotFound if there is none, FailedPrecondition
// while it holds objects (IAM v2 DeleteGroup: "Fails if the group has child
// repos, child groups, or other child IAM resources", proto/chainguard/
// platform/iam/v2/groups.proto; v1 says nothing and is served the same).
func (e *Emulator) deleteGroup(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.groups[id]; !ok {
		return status.Errorf(codes.NotFound, "group %s not found", id)
	}
	if left := e.heldBy(id); len(left) > 0 {
		return status.Errorf(codes.FailedPrecondition, "group %s still holds %s: delete them first (the emulator does not cascade deletes)", id, strings.Join(left, ", "))
	}
	delete(e.groups, id)
	delete(e.groupTimes, id)
	return nil
}

// objectTimes are the creation and last update times of a group, which v1
// Group does not carry and v2 Group returns (create_time, update_time).
type objectTimes struct{ created, updated time.Time }

// touchGroup records that group id was updated now. Callers hold e.mu.
func (e *Emulator) touchGroup(id string) {
	t := e.groupTimes[id]
	t.updated = time.Now()
	e.groupTimes[id] = t
}

// heldBy lists what group id still holds. Callers hold e.mu.
func (e *Emulator) heldBy(id string) []string {
	var groups, identities, bindings, repos []string
	for g := range e.groups {
		if uidp.Parent(g) == id {
			groups = append(groups, g)
		}
	}
	for i := range e.identities {
		if uidp.Parent(i) == id {
			identities = append(identities, i)
		}
	}
	for b := range e.bindings {
		if uidp.Parent(b) == id {
			bindings = append(bindings, b)
		}
	}
	for r := range e.repos {
		if uidp.Parent(r) == id {
			repos = append(repos, r)
		}
	}
	var left []string
	for _, k := range []struct {
		what string
		ids  []string
	}{{"groups", groups}, {"identities", identities}, {"role bindings", bindings}, {"repos", repos}} {
		if len(k.ids) > 0 {
			sort.Strings(k.ids)
			left = append(left, fmt.Sprintf("%d %s (%s)", len(k.ids), k.what, strings.Join(k.ids, " ")))
		}
	}
	return left
}

// ---- Identities ----

type identitiesService struct {
	iam.UnimplementedIdentitiesServer
	e *Emulator
}

// checkIdentity validates name, description and relationship.
func checkIdentity(id *iam.Identity) error {
	if err := checkIAMName("identity", id.GetName()); err != nil {
		return err
	}
	if err := checkDescription("identity", id.GetDescription()); err != nil {
		return err
	}
	const need = "identity needs a relationship: set aws_identity (aws_account, arn or arn_pattern, user_id or user_id_pattern)"
	switch r := id.GetRelationship().(type) {
	case nil:
		return status.Error(codes.InvalidArgument, need)
	case *iam.Identity_AwsIdentity:
		if r.AwsIdentity == nil {
			return status.Error(codes.InvalidArgument, need)
		}
		return checkAWSIdentity(r.AwsIdentity)
	case *iam.Identity_ClaimMatch_:
		if r.ClaimMatch == nil {
			return status.Error(codes.InvalidArgument, "claim_match is empty: set issuer and subject (or their patterns)")
		}
		return checkClaimMatch(r.ClaimMatch)
	default:
		return status.Errorf(codes.InvalidArgument, "relationship %T is not supported by the emulator: use aws_identity or claim_match", r)
	}
}

func checkAWSIdentity(a *iam.Identity_AWSIdentity) error {
	if err := validation.ValidateAWSAccount(a.GetAwsAccount()); err != nil {
		return status.Errorf(codes.InvalidArgument, "aws_identity.aws_account %q is invalid: %v (12 digits)", a.GetAwsAccount(), err)
	}
	if err := checkOneOf("aws_identity.arn", a.GetArn(), "aws_identity.arn_pattern", a.GetArnPattern()); err != nil {
		return err
	}
	return checkOneOf("aws_identity.user_id", a.GetUserId(), "aws_identity.user_id_pattern", a.GetUserIdPattern())
}

func checkClaimMatch(c *iam.Identity_ClaimMatch) error {
	if err := checkOneOf("claim_match.issuer", c.GetIssuer(), "claim_match.issuer_pattern", c.GetIssuerPattern()); err != nil {
		return err
	}
	if err := checkOneOf("claim_match.subject", c.GetSubject(), "claim_match.subject_pattern", c.GetSubjectPattern()); err != nil {
		return err
	}
	if p := c.GetAudiencePattern(); p != "" {
		if _, err := regexp.Compile(p); err != nil {
			return status.Errorf(codes.InvalidArgument, "claim_match.audience_pattern %q does not compile: %v", p, err)
		}
	}
	return nil
}

// checkOneOf requires a non-empty exact value or a compiling pattern.
func checkOneOf(exactField, exact, patternField, pattern string) error {
	switch {
	case exact != "":
		return nil
	case pattern != "":
		if _, err := regexp.Compile(pattern); err != nil {
			return status.Errorf(codes.InvalidArgument, "%s %q does not compile: %v", patternField, pattern, err)
		}
		return nil
	default:
		return status.Errorf(codes.InvalidArgument, "%s or %s is required", exactField, patternField)
	}
}

func (s *identitiesService) Create(ctx context.Context, req *iam.CreateIdentityRequest) (*iam.Identity, error) {
	e := s.e
	id := req.GetIdentity()
	if id == nil {
		return nil, status.Error(codes.InvalidArgument, "identity is required")
	}
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	if err := checkIdentityServerOwned(id, &iam.Identity{}); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	newID, err := e.addIdentity(req.GetParentId(), id, now, now.Add(e.propagationDelay))
	if err != nil {
		return nil, err
	}
	return proto.Clone(e.identities[newID]).(*iam.Identity), nil
}

// addIdentity stores a copy of id under group parent, created at now and
// known to the STS from visibleAt. Callers hold e.mu and have validated id.
func (e *Emulator) addIdentity(parent string, id *iam.Identity, now, visibleAt time.Time) (string, error) {
	if _, ok := e.groups[parent]; !ok {
		return "", status.Errorf(codes.NotFound, "group %s not found", parent)
	}
	if err := e.identityNameTaken(parent, id.GetName(), ""); err != nil {
		return "", err
	}
	c := proto.Clone(id).(*iam.Identity)
	c.Id = string(uidp.UIDP(parent).NewChild())
	ts := timestamppb.New(now)
	c.CreatedAt, c.UpdatedAt, c.LastSeen = ts, proto.Clone(ts).(*timestamppb.Timestamp), nil
	e.identities[c.GetId()] = c
	e.visibleAt[c.GetId()] = visibleAt
	return c.GetId(), nil
}

// identityNameTaken fails with AlreadyExists when Options.UniqueIdentityNames
// is set and an identity other than self is named name in group parent.
// By default names may repeat within a group, as the service allows:
// chainctl auth pull-token names every pull token identity "pull-token"
// unless told otherwise (--name, default "pull-token"; chainctl reference,
// chainctl_auth_pull-token_create), and Chainguard's own pull token rotation
// example creates a pull token identity per run in one organization and
// later deletes the expired ones by that shared name
// (chainguard-dev/platform-examples, artifactory-automation/action.yaml at
// dade10a: chainctl iam identities list --name "pull token - registry"
// --expired, then delete each). Callers hold e.mu.
func (e *Emulator) identityNameTaken(parent, name, self string) error {
	if !e.uniqueIdentityNames {
		return nil
	}
	for _, o := range e.identities {
		if o.GetId() != self && o.GetName() == name && uidp.Parent(o.GetId()) == parent {
			return status.Errorf(codes.AlreadyExists, "an identity named %q already exists in group %s: %s", name, parent, o.GetId())
		}
	}
	return nil
}

// checkIdentityServerOwned fails with InvalidArgument when sent carries a
// server-owned timestamp (created_at, updated_at, last_seen) that differs
// from stored; unset ones keep the stored value. Same evidence and reading as
// checkGroupServerOwned: a read-modify-write that echoes a stale updated_at
// or last_seen (an exchange updates it) is refused.
func checkIdentityServerOwned(sent, stored *iam.Identity) error {
	for _, f := range []struct {
		name         string
		sent, stored *timestamppb.Timestamp
	}{
		{"created_at", sent.GetCreatedAt(), stored.GetCreatedAt()},
		{"updated_at", sent.GetUpdatedAt(), stored.GetUpdatedAt()},
		{"last_seen", sent.GetLastSeen(), stored.GetLastSeen()},
	} {
		if f.sent != nil && !proto.Equal(f.sent, f.stored) {
			storedText := "unset"
			if f.stored != nil {
				storedText = f.stored.AsTime().UTC().Format(time.RFC3339Nano)
			}
			return status.Errorf(codes.InvalidArgument, "identity %s %s differs from the stored %s: it is server-owned: send only id, name, description and the relationship",
				f.name, f.sent.AsTime().UTC().Format(time.RFC3339Nano), storedText)
		}
	}
	return nil
}

// Update replaces the writable fields of an identity (name, description,
// relationship) with those sent; like Groups.Update (v1 has no update mask),
// an omitted description clears it. Server-owned timestamps follow
// checkIdentityServerOwned; updated_at becomes now.
func (s *identitiesService) Update(ctx context.Context, id *iam.Identity) (*iam.Identity, error) {
	e := s.e
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, ok := e.identities[id.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", id.GetId())
	}
	if err := checkIdentityServerOwned(id, cur); err != nil {
		return nil, err
	}
	if err := e.identityNameTaken(uidp.Parent(cur.GetId()), id.GetName(), cur.GetId()); err != nil {
		return nil, err
	}
	c := proto.Clone(id).(*iam.Identity)
	c.CreatedAt, c.LastSeen = cur.GetCreatedAt(), cur.GetLastSeen()
	c.UpdatedAt = timestamppb.New(time.Now())
	e.identities[c.GetId()] = c
	return proto.Clone(c).(*iam.Identity), nil
}

func (s *identitiesService) List(ctx context.Context, f *iam.IdentityFilter) (*iam.IdentityList, error) {
	e := s.e
	if err := checkFilter(f.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	out := &iam.IdentityList{}
	for _, id := range e.identities {
		if (f.GetId() != "" && id.GetId() != f.GetId()) || !matchFilter(f.GetUidp(), id.GetId()) ||
			!e.tokenHas(caller, id.GetId(), capabilities.Capability_CAP_IAM_IDENTITY_LIST) {
			continue
		}
		out.Items = append(out.Items, proto.Clone(id).(*iam.Identity))
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].GetId() < out.Items[j].GetId() })
	return out, nil
}

func (s *identitiesService) Delete(ctx context.Context, req *iam.DeleteIdentityRequest) (*emptypb.Empty, error) {
	if err := s.e.deleteIdentity(req.GetId()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// deleteIdentity deletes identity id: NotFound if there is none,
// FailedPrecondition while it has role bindings.
func (e *Emulator) deleteIdentity(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.identities[id]; !ok {
		return status.Errorf(codes.NotFound, "identity %s not found", id)
	}
	var left []string
	for _, b := range e.bindings {
		if b.identity == id {
			left = append(left, b.id)
		}
	}
	if len(left) > 0 {
		sort.Strings(left)
		return status.Errorf(codes.FailedPrecondition, "identity %s still has %d role bindings (%s): delete them first", id, len(left), strings.Join(left, " "))
	}
	delete(e.identities, id)
	delete(e.visibleAt, id)
	delete(e.identityCompany, id)
	return nil
}

// ---- Roles ----

type rolesService struct {
	iam.UnimplementedRolesServer
	e *Emulator
}

func (r *role) proto() *iam.Role {
	return &iam.Role{Id: r.id, Name: r.name, Description: r.description, Capabilities: append([]string(nil), r.capNames...)}
}

// List returns the built-in roles matching f to callers whose token may list
// roles somewhere (built-in roles are global); others get an empty list.
func (s *rolesService) List(ctx context.Context, f *iam.RoleFilter) (*iam.RoleList, error) {
	e := s.e
	if err := checkFilter(f.GetUidp()); err != nil {
		return nil, err
	}
	if f.GetParent() != "" {
		if err := checkUIDP("parent", f.GetParent()); err != nil {
			return nil, err
		}
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	out := &iam.RoleList{}
	if !e.tokenHasAnywhere(caller, capabilities.Capability_CAP_IAM_ROLES_LIST) {
		return out, nil
	}
	for _, r := range e.roles {
		if (f.GetId() != "" && r.id != f.GetId()) || (f.GetName() != "" && r.name != f.GetName()) || !matchFilter(f.GetUidp(), r.id) {
			continue
		}
		out.Items = append(out.Items, r.proto())
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].GetId() < out.Items[j].GetId() })
	return out, nil
}

// ---- RoleBindings ----

type roleBindingsService struct {
	iam.UnimplementedRoleBindingsServer
	e *Emulator
}

func (s *roleBindingsService) Create(ctx context.Context, req *iam.CreateRoleBindingRequest) (*iam.RoleBinding, error) {
	e := s.e
	rb := req.GetRoleBinding()
	if rb == nil {
		return nil, status.Error(codes.InvalidArgument, "role_binding is required")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	b, err := e.addBinding(req.GetParent(), rb.GetIdentity(), rb.GetRole(), now, now.Add(e.propagationDelay))
	if err != nil {
		return nil, err
	}
	return b.proto(), nil
}

func (b *binding) proto() *iam.RoleBinding {
	return &iam.RoleBinding{Id: b.id, Identity: b.identity, Group: b.group, Role: b.role}
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
	if _, ok := e.groups[group]; !ok {
		return nil, status.Errorf(codes.NotFound, "group %s not found", group)
	}
	if _, ok := e.identities[identity]; !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", identity)
	}
	r, ok := e.roles[roleID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role %q not found: pass a role ID, e.g. from Roles.List with name \"viewer\"", roleID)
	}
	for _, o := range e.bindings {
		if o.group == group && o.identity == identity && o.role == roleID {
			return nil, status.Errorf(codes.AlreadyExists, "identity %s already has role %s on group %s: %s", identity, r.name, group, o.id)
		}
	}
	b := &binding{id: string(uidp.UIDP(group).NewChild()), group: group, identity: identity, role: roleID, created: now, visibleAt: visibleAt}
	e.bindings[b.id] = b
	return b, nil
}

// Update changes the role of a binding; its identity and group are fixed. The
// change propagates like a new binding: tokens exchanged within
// Options.PropagationDelay after it leave the binding out, and tokens
// exchanged before it keep only what both roles grant (see tokenHas).
func (s *roleBindingsService) Update(ctx context.Context, rb *iam.RoleBinding) (*iam.RoleBinding, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.bindings[rb.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role binding %s not found", rb.GetId())
	}
	if rb.GetIdentity() != "" && rb.GetIdentity() != b.identity {
		return nil, status.Errorf(codes.InvalidArgument, "the identity of role binding %s cannot change (%s): delete it and create another", b.id, b.identity)
	}
	if g := rb.GetGroup(); g != "" && g != b.group { //nolint:staticcheck // the deprecated field is still sent by clients
		return nil, status.Errorf(codes.InvalidArgument, "the group of role binding %s cannot change (%s): delete it and create another", b.id, b.group)
	}
	r, ok := e.roles[rb.GetRole()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role %q not found: pass a role ID", rb.GetRole())
	}
	for _, o := range e.bindings {
		if o.id != b.id && o.group == b.group && o.identity == b.identity && o.role == r.id {
			return nil, status.Errorf(codes.AlreadyExists, "identity %s already has role %s on group %s: %s", b.identity, r.name, b.group, o.id)
		}
	}
	if b.role != r.id {
		b.role = r.id
		b.visibleAt = time.Now().Add(e.propagationDelay)
	}
	return b.proto(), nil
}

func (s *roleBindingsService) List(ctx context.Context, f *iam.RoleBindingFilter) (*iam.RoleBindingList, error) {
	e := s.e
	if err := checkFilter(f.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	out := &iam.RoleBindingList{}
	for _, b := range e.bindings {
		if (f.GetId() != "" && b.id != f.GetId()) || !matchFilter(f.GetUidp(), b.id) ||
			!e.tokenHas(caller, b.id, capabilities.Capability_CAP_IAM_ROLE_BINDINGS_LIST) {
			continue
		}
		out.Items = append(out.Items, &iam.RoleBindingList_Binding{
			Id:        b.id,
			Group:     proto.Clone(e.groups[b.group]).(*iam.Group),
			Identity:  b.identity,
			Role:      e.roles[b.role].proto(),
			CreatedAt: timestamppb.New(b.created),
		})
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].GetId() < out.Items[j].GetId() })
	return out, nil
}

func (s *roleBindingsService) Delete(ctx context.Context, req *iam.DeleteRoleBindingRequest) (*emptypb.Empty, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.bindings[req.GetId()]; !ok {
		return nil, status.Errorf(codes.NotFound, "role binding %s not found", req.GetId())
	}
	delete(e.bindings, req.GetId())
	return &emptypb.Empty{}, nil
}
