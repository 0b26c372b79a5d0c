package emulator

import (
	"context"
	"maps"
	"slices"
	"time"

	"chainguard.dev/sdk/proto/capabilities"
	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// IAM v2 (chainguard.platform.iam.v2, SDK v0.1.212 proto/chainguard/
// platform/iam/v2): GroupsService, IdentitiesService, RolesService and
// RoleBindingsService, on the same API server and over the same objects as
// v1, so that an object made through either version is visible through
// both. The evidence that one service answers both: the vendor's Terraform
// provider sends its v1 calls (platform.NewPlatformClients) and its IAM
// v2beta1 calls (clients/v2beta1.NewClients) to one console API URL
// (internal/provider/provider.go at 5085c9f, DefaultConsoleAPI
// "https://console-api.enforce.dev"), and reads through v2beta1 what it
// wrote through v1 and back (resource_group.go polls v1 Groups.List for an
// organization it created through v2beta1).
// Authorization is the interceptor's, from the methods' own
// chainguard.annotations.iam options; unscoped methods check or filter here
// as v1 does. Validation is v1's (names, descriptions, relationships,
// uniqueness, delete preconditions). What v2 adds: OUTPUT_ONLY fields and
// update masks (iamv2_mask.go), pagination (iamv2_page.go), Get methods,
// and idempotent DeleteRoleBinding.

// refuseOutputOnly fails with InvalidArgument when a resource sent to a
// Create method carries an OUTPUT_ONLY field, unless
// Options.IgnoreOutputOnly. It is the strict reading of iamv2_mask.go
// applied to an object that has no stored value yet: any value sent for a
// field the server generates differs from it.
func (e *Emulator) refuseOutputOnly(kind string, m proto.Message) error {
	if e.ignoreOutputOnly {
		return nil
	}
	r := m.ProtoReflect()
	var err error
	r.Range(func(f protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if outputOnly(f) {
			err = status.Errorf(codes.InvalidArgument, "%s field %s is output-only (server-owned): leave it unset", kind, f.Name())
			return false
		}
		return true
	})
	return err
}

// convertByName copies src into dst, two messages whose fields have the same
// names (v1 and v2 Identity.AWSIdentity and Identity.ClaimMatch; their field
// numbers differ).
func convertByName(src, dst proto.Message) error {
	b, err := protojson.Marshal(src)
	if err != nil {
		return status.Errorf(codes.Internal, "emulator: convert %s: %v", src.ProtoReflect().Descriptor().FullName(), err)
	}
	if err := protojson.Unmarshal(b, dst); err != nil {
		return status.Errorf(codes.Internal, "emulator: convert %s to %s: %v", src.ProtoReflect().Descriptor().FullName(), dst.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

func tsOf(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func cloneTS(t *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return proto.Clone(t).(*timestamppb.Timestamp)
}

// ---- Groups ----

type groupsV2Service struct {
	iamv2.UnimplementedGroupsServiceServer
	e *Emulator
}

// groupV2 is the v2 form of stored group g. Callers hold e.mu.
func (e *Emulator) groupV2(g *iam.Group) *iamv2.Group {
	t := e.groupTimes[g.GetId()]
	return &iamv2.Group{
		Uid: g.GetId(), Name: g.GetName(), Description: g.GetDescription(),
		ResourceLimits: maps.Clone(g.GetResourceLimits()), Verified: g.GetVerified(),
		CreateTime: tsOf(t.created), UpdateTime: tsOf(t.updated),
		Kind: iamv2.OrgKind(g.GetKind()), Status: iamv2.OrgStatus(g.GetStatus()),
	}
}

// CreateGroup is v1 Groups.Create: a parent is required (creating an
// organization is refused), kind and verified may only restate what the
// group would get, and OUTPUT_ONLY fields follow refuseOutputOnly.
func (s *groupsV2Service) CreateGroup(ctx context.Context, req *iamv2.CreateGroupRequest) (*iamv2.Group, error) {
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
	if err := e.refuseOutputOnly("group", g); err != nil {
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
	// kind: "For subgroups, kind is inherited from the root group and cannot
	// be set"; verified: "Can only be set by Chainguard staff" (groups.proto).
	if err := checkGroupServerOwned(&iam.Group{Kind: iam.OrgKind(g.GetKind()), Verified: g.GetVerified()}, e.newGroupFields(req.GetParent())); err != nil {
		return nil, err
	}
	id, err := e.addGroup(req.GetParent(), g.GetName(), g.GetDescription())
	if err != nil {
		return nil, err
	}
	return e.groupV2(e.groups[id]), nil
}

// UpdateGroup applies req.update_mask (applyMask). Of the fields a mask may
// name, name and description change; kind and verified may only keep their
// stored values (kind is inherited or set by Chainguard, verified "Can only
// be set by Chainguard staff", groups.proto), so "*" with kind unset fails
// as the Terraform provider reports.
func (s *groupsV2Service) UpdateGroup(ctx context.Context, req *iamv2.UpdateGroupRequest) (*iamv2.Group, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, ok := e.groups[req.GetGroup().GetUid()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %s not found", req.GetGroup().GetUid())
	}
	stored := e.groupV2(cur)
	merged, err := applyMask(stored, req.GetGroup(), req.GetUpdateMask(), "group", "uid", e.ignoreOutputOnly)
	if err != nil {
		return nil, err
	}
	if err := checkIAMName("group", merged.GetName()); err != nil {
		return nil, err
	}
	if err := checkDescription("group", merged.GetDescription()); err != nil {
		return nil, err
	}
	const fix = "leave it out of update_mask (and out of the body when the mask is empty; \"*\" needs the stored value)"
	if merged.GetKind() != stored.GetKind() {
		return nil, status.Errorf(codes.InvalidArgument, "group kind %s differs from the stored %s: subgroups inherit their organization's kind, and only Chainguard sets an organization's: %s", merged.GetKind(), stored.GetKind(), fix)
	}
	if merged.GetVerified() != stored.GetVerified() {
		return nil, status.Errorf(codes.InvalidArgument, "group verified=%t differs from the stored %t: only Chainguard staff verify organizations: %s", merged.GetVerified(), stored.GetVerified(), fix)
	}
	if err := e.groupNameTaken(parentOf(cur.GetId()), merged.GetName(), cur.GetId()); err != nil {
		return nil, err
	}
	cur.Name, cur.Description = merged.GetName(), merged.GetDescription()
	e.touchGroup(cur.GetId())
	return e.groupV2(cur), nil
}

func (s *groupsV2Service) GetGroup(ctx context.Context, req *iamv2.GetGroupRequest) (*iamv2.Group, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	g, ok := e.groups[req.GetUid()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "group %s not found", req.GetUid())
	}
	return e.groupV2(g), nil
}

// ListGroups returns a page of the groups matching req that the caller's
// token may list; order_by: uid, name or create_time.
func (s *groupsV2Service) ListGroups(ctx context.Context, req *iamv2.ListGroupsRequest) (*iamv2.ListGroupsResponse, error) {
	e := s.e
	if err := checkFilter(req.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	var items []pageItem[*iamv2.Group]
	for _, g := range e.groups {
		if (req.GetName() != "" && g.GetName() != req.GetName()) || !matchFilter(req.GetUidp(), g.GetId()) ||
			!e.tokenHas(caller, g.GetId(), capabilities.Capability_CAP_IAM_GROUPS_LIST) {
			continue
		}
		items = append(items, pageItem[*iamv2.Group]{uid: g.GetId(), v: e.groupV2(g), keys: map[string]string{
			"name": g.GetName(), "create_time": timeKey(e.groupTimes[g.GetId()].created),
		}})
	}
	out, next, skipped, err := page(e, iamv2.GroupsService_ListGroups_FullMethodName, req, items, "name", "create_time")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListGroupsResponse{Groups: out, NextPageToken: next, Skipped: skipped}, nil
}

func (s *groupsV2Service) DeleteGroup(ctx context.Context, req *iamv2.DeleteGroupRequest) (*emptypb.Empty, error) {
	if err := s.e.deleteGroup(req.GetUid()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ---- Identities ----

type identitiesV2Service struct {
	iamv2.UnimplementedIdentitiesServiceServer
	e *Emulator
}

// identityV2 is the v2 form of stored identity id. Callers hold e.mu.
func (e *Emulator) identityV2(id *iam.Identity) (*iamv2.Identity, error) {
	out := &iamv2.Identity{
		Uid: id.GetId(), Name: id.GetName(), Description: id.GetDescription(), Company: e.identityCompany[id.GetId()],
		LastSeenTime: cloneTS(id.GetLastSeen()), CreateTime: cloneTS(id.GetCreatedAt()), UpdateTime: cloneTS(id.GetUpdatedAt()),
	}
	switch r := id.GetRelationship().(type) {
	case *iam.Identity_AwsIdentity:
		a := &iamv2.Identity_AWSIdentity{}
		if err := convertByName(r.AwsIdentity, a); err != nil {
			return nil, err
		}
		out.Relationship = &iamv2.Identity_AwsIdentity{AwsIdentity: a}
	case *iam.Identity_ClaimMatch_:
		c := &iamv2.Identity_ClaimMatch{}
		if err := convertByName(r.ClaimMatch, c); err != nil {
			return nil, err
		}
		out.Relationship = &iamv2.Identity_ClaimMatch_{ClaimMatch: c}
	}
	return out, nil
}

// identityV1 is the v1 form of the writable fields of v2 identity id (name,
// description, relationship), checked as v1 checks identities. The
// emulator, like its v1 service, supports aws_identity and claim_match
// relationships only.
func identityV1(id *iamv2.Identity) (*iam.Identity, error) {
	out := &iam.Identity{Name: id.GetName(), Description: id.GetDescription()}
	switch r := id.GetRelationship().(type) {
	case *iamv2.Identity_AwsIdentity:
		if r.AwsIdentity != nil {
			a := &iam.Identity_AWSIdentity{}
			if err := convertByName(r.AwsIdentity, a); err != nil {
				return nil, err
			}
			out.Relationship = &iam.Identity_AwsIdentity{AwsIdentity: a}
		}
	case *iamv2.Identity_ClaimMatch_:
		if r.ClaimMatch != nil {
			c := &iam.Identity_ClaimMatch{}
			if err := convertByName(r.ClaimMatch, c); err != nil {
				return nil, err
			}
			out.Relationship = &iam.Identity_ClaimMatch_{ClaimMatch: c}
		}
	case nil:
	default:
		return nil, status.Errorf(codes.InvalidArgument, "relationship %T is not supported by the emulator: use aws_identity or claim_match", r)
	}
	if err := checkIdentity(out); err != nil {
		return nil, err
	}
	return out, nil
}

// CreateIdentity is v1 Identities.Create; OUTPUT_ONLY fields follow
// refuseOutputOnly, and the new identity reaches the STS after
// Options.PropagationDelay.
func (s *identitiesV2Service) CreateIdentity(ctx context.Context, req *iamv2.CreateIdentityRequest) (*iamv2.Identity, error) {
	e := s.e
	body := req.GetIdentity()
	if body == nil {
		return nil, status.Error(codes.InvalidArgument, "identity is required")
	}
	if err := e.refuseOutputOnly("identity", body); err != nil {
		return nil, err
	}
	v1, err := identityV1(body)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	id, err := e.addIdentity(req.GetParent(), v1, now, now.Add(e.propagationDelay))
	if err != nil {
		return nil, err
	}
	if c := body.GetCompany(); c != "" {
		e.identityCompany[id] = c
	}
	return e.identityV2(e.identities[id])
}

// UpdateIdentity applies req.update_mask (applyMask) to name, description,
// company and the relationship (a oneof: naming aws_identity replaces or
// clears it as a whole), then checks the result as Create does;
// update_time becomes now.
func (s *identitiesV2Service) UpdateIdentity(ctx context.Context, req *iamv2.UpdateIdentityRequest) (*iamv2.Identity, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	uid := req.GetIdentity().GetUid()
	cur, ok := e.identities[uid]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", uid)
	}
	stored, err := e.identityV2(cur)
	if err != nil {
		return nil, err
	}
	merged, err := applyMask(stored, req.GetIdentity(), req.GetUpdateMask(), "identity", "uid", e.ignoreOutputOnly)
	if err != nil {
		return nil, err
	}
	v1, err := identityV1(merged)
	if err != nil {
		return nil, err
	}
	if err := e.identityNameTaken(parentOf(uid), v1.GetName(), uid); err != nil {
		return nil, err
	}
	v1.Id, v1.CreatedAt, v1.LastSeen, v1.UpdatedAt = uid, cur.GetCreatedAt(), cur.GetLastSeen(), timestamppb.New(time.Now())
	e.identities[uid] = v1
	if c := merged.GetCompany(); c != "" {
		e.identityCompany[uid] = c
	} else {
		delete(e.identityCompany, uid)
	}
	return e.identityV2(v1)
}

func (s *identitiesV2Service) GetIdentity(ctx context.Context, req *iamv2.GetIdentityRequest) (*iamv2.Identity, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.identities[req.GetUid()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", req.GetUid())
	}
	return e.identityV2(id)
}

// relationshipType is the v2 RelationshipType of a stored identity.
func relationshipType(id *iam.Identity) iamv2.RelationshipType {
	switch id.GetRelationship().(type) {
	case *iam.Identity_AwsIdentity:
		return iamv2.RelationshipType_RELATIONSHIP_TYPE_AWS_IDENTITY
	case *iam.Identity_ClaimMatch_:
		return iamv2.RelationshipType_RELATIONSHIP_TYPE_CLAIM_MATCH
	case *iam.Identity_Static:
		return iamv2.RelationshipType_RELATIONSHIP_TYPE_STATIC
	case *iam.Identity_ServicePrincipal:
		return iamv2.RelationshipType_RELATIONSHIP_TYPE_SERVICE_PRINCIPAL
	}
	return iamv2.RelationshipType_RELATIONSHIP_TYPE_UNSPECIFIED
}

// ListIdentities returns a page of the identities matching req (uidp, name,
// relationship_type; "Unspecified relationship type (matches all)") that
// the caller's token may list; order_by: uid, name or create_time.
func (s *identitiesV2Service) ListIdentities(ctx context.Context, req *iamv2.ListIdentitiesRequest) (*iamv2.ListIdentitiesResponse, error) {
	e := s.e
	if err := checkFilter(req.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	rt := req.GetRelationshipType()
	e.mu.Lock()
	defer e.mu.Unlock()
	var items []pageItem[*iamv2.Identity]
	for _, id := range e.identities {
		if (req.GetName() != "" && id.GetName() != req.GetName()) || !matchFilter(req.GetUidp(), id.GetId()) ||
			(rt != iamv2.RelationshipType_RELATIONSHIP_TYPE_UNSPECIFIED && relationshipType(id) != rt) ||
			!e.tokenHas(caller, id.GetId(), capabilities.Capability_CAP_IAM_IDENTITY_LIST) {
			continue
		}
		v, err := e.identityV2(id)
		if err != nil {
			return nil, err
		}
		items = append(items, pageItem[*iamv2.Identity]{uid: id.GetId(), v: v, keys: map[string]string{
			"name": id.GetName(), "create_time": timeKey(id.GetCreatedAt().AsTime()),
		}})
	}
	out, next, skipped, err := page(e, iamv2.IdentitiesService_ListIdentities_FullMethodName, req, items, "name", "create_time")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListIdentitiesResponse{Identities: out, NextPageToken: next, Skipped: skipped}, nil
}

func (s *identitiesV2Service) DeleteIdentity(ctx context.Context, req *iamv2.DeleteIdentityRequest) (*emptypb.Empty, error) {
	if err := s.e.deleteIdentity(req.GetUid()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ---- Roles ----

type rolesV2Service struct {
	iamv2.UnimplementedRolesServiceServer
	e *Emulator
}

// v2 is the v2 form of built-in role r (capabilities in enum order; built-in
// roles carry no create_time or update_time).
func (r *role) v2() *iamv2.Role {
	return &iamv2.Role{Uid: r.id, Name: r.name, Description: r.description, Capabilities: slices.Sorted(maps.Keys(r.caps))}
}

// GetRole returns a built-in role. The method is unscoped ("Unscoped to
// allow getting managed roles (at root level)", roles.proto) but still
// names CAP_IAM_ROLES_LIST: a token holding it nowhere is refused with
// PermissionDenied (the stricter reading; ListRoles answers such a token
// with an empty list, as v1 Roles.List does).
func (s *rolesV2Service) GetRole(ctx context.Context, req *iamv2.GetRoleRequest) (*iamv2.Role, error) {
	e := s.e
	if err := checkUIDP("uid", req.GetUid()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.tokenHasAnywhere(caller, capabilities.Capability_CAP_IAM_ROLES_LIST) {
		return nil, status.Error(codes.PermissionDenied, e.deniedMessage(caller, "any group", capabilities.Capability_CAP_IAM_ROLES_LIST))
	}
	r, ok := e.roles[req.GetUid()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role %s not found (the emulator serves the built-in roles only; list them by name)", req.GetUid())
	}
	return r.v2(), nil
}

// ListRoles returns a page of the built-in roles matching req to callers
// whose token may list roles somewhere; order_by: uid or name.
func (s *rolesV2Service) ListRoles(ctx context.Context, req *iamv2.ListRolesRequest) (*iamv2.ListRolesResponse, error) {
	e := s.e
	if err := checkFilter(req.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	var items []pageItem[*iamv2.Role]
	if e.tokenHasAnywhere(caller, capabilities.Capability_CAP_IAM_ROLES_LIST) {
		for _, r := range e.roles {
			if (req.GetName() != "" && r.name != req.GetName()) || !matchFilter(req.GetUidp(), r.id) {
				continue
			}
			items = append(items, pageItem[*iamv2.Role]{uid: r.id, v: r.v2(), keys: map[string]string{"name": r.name}})
		}
	}
	out, next, skipped, err := page(e, iamv2.RolesService_ListRoles_FullMethodName, req, items, "name")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListRolesResponse{Roles: out, NextPageToken: next, Skipped: skipped}, nil
}

// ---- RoleBindings ----

type roleBindingsV2Service struct {
	iamv2.UnimplementedRoleBindingsServiceServer
	e *Emulator
}

// bindingV2 is the v2 form of binding b, hydrated as role_bindings.proto
// describes (identity, group, role: OUTPUT_ONLY). identity_uid and role_uid
// are left unset: the proto describes them as input ("Set this field when
// creating or updating a role binding"), so a client reads identity.uid and
// role.uid (the stricter reading). Callers hold e.mu.
func (e *Emulator) bindingV2(b *binding) *iamv2.RoleBinding {
	out := &iamv2.RoleBinding{Uid: b.id, CreateTime: timestamppb.New(b.created)}
	if id, ok := e.identities[b.identity]; ok {
		ri := &iamv2.RoleBindingIdentity{Uid: id.GetId(), Name: id.GetName(), Description: id.GetDescription()}
		if cm := id.GetClaimMatch(); cm != nil {
			ri.Issuer, ri.Subject = cm.GetIssuer(), cm.GetSubject()
		}
		out.Identity = ri
	}
	if g, ok := e.groups[b.group]; ok {
		out.Group = &iamv2.RoleBindingGroup{Uid: g.GetId(), Name: g.GetName(), Description: g.GetDescription()}
	}
	if r, ok := e.roles[b.role]; ok {
		out.Role = &iamv2.RoleBindingRole{Uid: r.id, Name: r.name, Description: r.description}
	}
	return out
}

// CreateRoleBinding binds identity_uid to role_uid on parent, as v1 does;
// the binding counts for tokens exchanged Options.PropagationDelay later.
// "Set identity_uid and role_uid; other fields are ignored"
// (role_bindings.proto, CreateRoleBindingRequest.role_binding): here the
// proto itself says OUTPUT_ONLY fields are ignored, so they are.
func (s *roleBindingsV2Service) CreateRoleBinding(ctx context.Context, req *iamv2.CreateRoleBindingRequest) (*iamv2.RoleBinding, error) {
	e := s.e
	rb := req.GetRoleBinding()
	if rb == nil {
		return nil, status.Error(codes.InvalidArgument, "role_binding is required")
	}
	if err := checkUIDP("role_binding.identity_uid", rb.GetIdentityUid()); err != nil {
		return nil, err
	}
	if rb.GetRoleUid() == "" {
		return nil, status.Error(codes.InvalidArgument, "role_binding.role_uid is required: a role UID (list roles by name to find it)")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	b, err := e.addBinding(req.GetParent(), rb.GetIdentityUid(), rb.GetRoleUid(), now, now.Add(e.propagationDelay))
	if err != nil {
		return nil, err
	}
	return e.bindingV2(b), nil
}

// UpdateRoleBinding applies req.update_mask (applyMask) to identity_uid and
// role_uid: v2 may move a binding to another identity ("Update an IAM role
// binding's identity or role assignment", role_bindings.proto), which v1
// refuses. The stored binding's identity_uid and role_uid are its current
// ones, so "*" needs both. A changed binding propagates like a new one, and
// stops counting at once for tokens of an identity it left (tokenHas).
func (s *roleBindingsV2Service) UpdateRoleBinding(ctx context.Context, req *iamv2.UpdateRoleBindingRequest) (*iamv2.RoleBinding, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.bindings[req.GetRoleBinding().GetUid()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role binding %s not found", req.GetRoleBinding().GetUid())
	}
	stored := e.bindingV2(b)
	stored.IdentityUid, stored.RoleUid = b.identity, b.role
	merged, err := applyMask(stored, req.GetRoleBinding(), req.GetUpdateMask(), "role binding", "uid", e.ignoreOutputOnly)
	if err != nil {
		return nil, err
	}
	identity, roleID := merged.GetIdentityUid(), merged.GetRoleUid()
	if err := checkUIDP("role_binding.identity_uid", identity); err != nil {
		return nil, err
	}
	if _, ok := e.identities[identity]; !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", identity)
	}
	r, ok := e.roles[roleID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role %q not found: pass a role UID in role_uid", roleID)
	}
	for _, o := range e.bindings {
		if o.id != b.id && o.group == b.group && o.identity == identity && o.role == r.id {
			return nil, status.Errorf(codes.AlreadyExists, "identity %s already has role %s on group %s: %s", identity, r.name, b.group, o.id)
		}
	}
	if b.identity != identity || b.role != r.id {
		b.identity, b.role = identity, r.id
		b.visibleAt = time.Now().Add(e.propagationDelay)
	}
	return e.bindingV2(b), nil
}

func (s *roleBindingsV2Service) GetRoleBinding(ctx context.Context, req *iamv2.GetRoleBindingRequest) (*iamv2.RoleBinding, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	b, ok := e.bindings[req.GetUid()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "role binding %s not found", req.GetUid())
	}
	return e.bindingV2(b), nil
}

// ListRoleBindings returns a page of the role bindings matching req (uidp,
// identity, group, role) that the caller's token may list; order_by: uid or
// create_time.
func (s *roleBindingsV2Service) ListRoleBindings(ctx context.Context, req *iamv2.ListRoleBindingsRequest) (*iamv2.ListRoleBindingsResponse, error) {
	e := s.e
	if err := checkFilter(req.GetUidp()); err != nil {
		return nil, err
	}
	for field, v := range map[string]string{"identity": req.GetIdentity(), "group": req.GetGroup()} {
		if v != "" {
			if err := checkUIDP(field, v); err != nil {
				return nil, err
			}
		}
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	var items []pageItem[*iamv2.RoleBinding]
	for _, b := range e.bindings {
		if (req.GetIdentity() != "" && b.identity != req.GetIdentity()) || (req.GetGroup() != "" && b.group != req.GetGroup()) ||
			(req.GetRole() != "" && b.role != req.GetRole()) || !matchFilter(req.GetUidp(), b.id) ||
			!e.tokenHas(caller, b.id, capabilities.Capability_CAP_IAM_ROLE_BINDINGS_LIST) {
			continue
		}
		items = append(items, pageItem[*iamv2.RoleBinding]{uid: b.id, v: e.bindingV2(b), keys: map[string]string{"create_time": timeKey(b.created)}})
	}
	out, next, skipped, err := page(e, iamv2.RoleBindingsService_ListRoleBindings_FullMethodName, req, items, "create_time")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListRoleBindingsResponse{RoleBindings: out, NextPageToken: next, Skipped: skipped}, nil
}

// DeleteRoleBinding deletes a role binding; one that does not exist is
// success: "Idempotent: returns success if the role binding does not exist
// (AIP-135)" (role_bindings.proto). The caller still needs
// CAP_IAM_ROLE_BINDINGS_DELETE on the UID's scope (the interceptor).
func (s *roleBindingsV2Service) DeleteRoleBinding(ctx context.Context, req *iamv2.DeleteRoleBindingRequest) (*emptypb.Empty, error) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.bindings, req.GetUid())
	return &emptypb.Empty{}, nil
}
