package emulator

import (
	"context"
	"maps"
	"slices"
	"time"

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
// The services are adapters over the core (core.go), as v1's are.
// Authorization is the interceptor's, from the methods' own
// chainguard.annotations.iam options; unscoped methods check or filter in
// the core. Validation is the core's (names, descriptions, relationships,
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

// tsOf is t as a timestamp, nil for the zero time.
func tsOf(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// cloneTS copies t (nil stays nil).
func cloneTS(t *timestamppb.Timestamp) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return proto.Clone(t).(*timestamppb.Timestamp)
}

// ---- Groups ----

// groupsV2Service serves chainguard.platform.iam.v2.GroupsService.
type groupsV2Service struct {
	iamv2.UnimplementedGroupsServiceServer
	e *Emulator
}

// v2 is the v2 form of group view v.
func (v groupView) v2() *iamv2.Group {
	g := v.g
	return &iamv2.Group{
		Uid: g.GetId(), Name: g.GetName(), Description: g.GetDescription(),
		ResourceLimits: maps.Clone(g.GetResourceLimits()), Verified: g.GetVerified(),
		CreateTime: tsOf(v.times.created), UpdateTime: tsOf(v.times.updated),
		Kind: iamv2.OrgKind(g.GetKind()), Status: iamv2.OrgStatus(g.GetStatus()),
	}
}

// CreateGroup is v1 Groups.Create: a parent is required (creating an
// organization is refused), kind and verified may only restate what the
// group would get, and OUTPUT_ONLY fields follow refuseOutputOnly.
func (s *groupsV2Service) CreateGroup(ctx context.Context, req *iamv2.CreateGroupRequest) (*iamv2.Group, error) {
	body := req.GetGroup()
	var sent *iam.Group
	if body != nil {
		// kind: "For subgroups, kind is inherited from the root group and cannot
		// be set"; verified: "Can only be set by Chainguard staff" (groups.proto).
		sent = &iam.Group{Name: body.GetName(), Description: body.GetDescription(), Kind: iam.OrgKind(body.GetKind()), Verified: body.GetVerified()}
	}
	v, err := s.e.createGroup(callerOf(ctx), req.GetParent(), sent, func() error { return s.e.refuseOutputOnly("group", body) })
	return respond(v, err, groupView.v2)
}

// UpdateGroup applies req.update_mask (applyMask). Of the fields a mask may
// name, name and description change; kind and verified may only keep their
// stored values (kind is inherited or set by Chainguard, verified "Can only
// be set by Chainguard staff", groups.proto), so "*" with kind unset fails
// as the Terraform provider reports.
func (s *groupsV2Service) UpdateGroup(ctx context.Context, req *iamv2.UpdateGroupRequest) (*iamv2.Group, error) {
	v, err := s.e.updateGroup(req.GetGroup().GetUid(), func(cur groupView) (string, string, error) {
		stored := cur.v2()
		merged, err := applyMask(stored, req.GetGroup(), req.GetUpdateMask(), "group", "uid", s.e.ignoreOutputOnly)
		if err != nil {
			return "", "", err
		}
		if err := checkNameAndDescription("group", merged.GetName(), merged.GetDescription()); err != nil {
			return "", "", err
		}
		const fix = "leave it out of update_mask (and out of the body when the mask is empty; \"*\" needs the stored value)"
		if merged.GetKind() != stored.GetKind() {
			return "", "", status.Errorf(codes.InvalidArgument, "group kind %s differs from the stored %s: subgroups inherit their organization's kind, and only Chainguard sets an organization's: %s", merged.GetKind(), stored.GetKind(), fix)
		}
		if merged.GetVerified() != stored.GetVerified() {
			return "", "", status.Errorf(codes.InvalidArgument, "group verified=%t differs from the stored %t: only Chainguard staff verify organizations: %s", merged.GetVerified(), stored.GetVerified(), fix)
		}
		return merged.GetName(), merged.GetDescription(), nil
	})
	return respond(v, err, groupView.v2)
}

// GetGroup returns a group, or NotFound.
func (s *groupsV2Service) GetGroup(ctx context.Context, req *iamv2.GetGroupRequest) (*iamv2.Group, error) {
	v, err := get(s.e, s.e.groups, "group", req.GetUid(), s.e.viewGroup)
	return respond(v, err, groupView.v2)
}

// ListGroups returns a page of the groups matching req that the caller's
// token may list; order_by: uid, name or create_time.
func (s *groupsV2Service) ListGroups(ctx context.Context, req *iamv2.ListGroupsRequest) (*iamv2.ListGroupsResponse, error) {
	vs, err := s.e.listGroups(callerOf(ctx), listQuery{uidp: req.GetUidp(), name: req.GetName()})
	if err != nil {
		return nil, err
	}
	out, next, skipped, err := page(s.e, iamv2.GroupsService_ListGroups_FullMethodName, req, vs, func(v groupView) (pageItem[*iamv2.Group], error) {
		return pageItem[*iamv2.Group]{uid: v.g.GetId(), v: v.v2(), keys: map[string]string{"name": v.g.GetName(), "create_time": timeKey(v.times.created)}}, nil
	}, "name", "create_time")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListGroupsResponse{Groups: out, NextPageToken: next, Skipped: skipped}, nil
}

// DeleteGroup deletes an empty group (deleteGroup).
func (s *groupsV2Service) DeleteGroup(ctx context.Context, req *iamv2.DeleteGroupRequest) (*emptypb.Empty, error) {
	return empty(s.e.deleteGroup(req.GetUid()))
}

// ---- Identities ----

// identitiesV2Service serves chainguard.platform.iam.v2.IdentitiesService.
type identitiesV2Service struct {
	iamv2.UnimplementedIdentitiesServiceServer
	e *Emulator
}

// v2 is the v2 form of identity view v.
func (v identityView) v2() (*iamv2.Identity, error) {
	id := v.id
	out := &iamv2.Identity{
		Uid: id.GetId(), Name: id.GetName(), Description: id.GetDescription(), Company: v.company,
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
// description, relationship). The emulator, like its v1 service, supports
// aws_identity and claim_match relationships only.
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
		return nil, unsupportedRelationship(r)
	}
	return out, nil
}

// CreateIdentity is v1 Identities.Create; OUTPUT_ONLY fields follow
// refuseOutputOnly.
func (s *identitiesV2Service) CreateIdentity(ctx context.Context, req *iamv2.CreateIdentityRequest) (*iamv2.Identity, error) {
	body := req.GetIdentity()
	if body == nil {
		return nil, status.Error(codes.InvalidArgument, "identity is required")
	}
	if err := s.e.refuseOutputOnly("identity", body); err != nil {
		return nil, err
	}
	sent, err := identityV1(body)
	if err != nil {
		return nil, err
	}
	v, err := s.e.createIdentity(req.GetParent(), sent, body.GetCompany())
	if err != nil {
		return nil, err
	}
	return v.v2()
}

// UpdateIdentity applies req.update_mask (applyMask) to name, description,
// company and the relationship (a oneof: the path aws_identity or
// claim_match replaces or clears it as a whole), then checks the result as
// Create does; the relationship's kind may not change
// (checkRelationshipKind); update_time becomes now.
func (s *identitiesV2Service) UpdateIdentity(ctx context.Context, req *iamv2.UpdateIdentityRequest) (*iamv2.Identity, error) {
	v, err := s.e.updateIdentity(req.GetIdentity().GetUid(), func(cur identityView) (identityView, error) {
		stored, err := cur.v2()
		if err != nil {
			return identityView{}, err
		}
		merged, err := applyMask(stored, req.GetIdentity(), req.GetUpdateMask(), "identity", "uid", s.e.ignoreOutputOnly)
		if err != nil {
			return identityView{}, err
		}
		id, err := identityV1(merged)
		if err != nil {
			return identityView{}, err
		}
		return identityView{id: id, company: merged.GetCompany()}, checkIdentity(id)
	})
	if err != nil {
		return nil, err
	}
	return v.v2()
}

// GetIdentity returns an identity, or NotFound.
func (s *identitiesV2Service) GetIdentity(ctx context.Context, req *iamv2.GetIdentityRequest) (*iamv2.Identity, error) {
	v, err := get(s.e, s.e.identities, "identity", req.GetUid(), s.e.viewIdentity)
	if err != nil {
		return nil, err
	}
	return v.v2()
}

// ListIdentities returns a page of the identities matching req (uidp, name,
// relationship_type) that the caller's token may list; order_by: uid, name
// or create_time.
func (s *identitiesV2Service) ListIdentities(ctx context.Context, req *iamv2.ListIdentitiesRequest) (*iamv2.ListIdentitiesResponse, error) {
	vs, err := s.e.listIdentities(callerOf(ctx), listQuery{uidp: req.GetUidp(), name: req.GetName()}, req.GetRelationshipType())
	if err != nil {
		return nil, err
	}
	out, next, skipped, err := page(s.e, iamv2.IdentitiesService_ListIdentities_FullMethodName, req, vs, func(v identityView) (pageItem[*iamv2.Identity], error) {
		id, err := v.v2()
		return pageItem[*iamv2.Identity]{uid: v.id.GetId(), v: id, keys: map[string]string{"name": v.id.GetName(), "create_time": timeKey(v.id.GetCreatedAt().AsTime())}}, err
	}, "name", "create_time")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListIdentitiesResponse{Identities: out, NextPageToken: next, Skipped: skipped}, nil
}

// DeleteIdentity deletes an identity without role bindings
// (deleteIdentity).
func (s *identitiesV2Service) DeleteIdentity(ctx context.Context, req *iamv2.DeleteIdentityRequest) (*emptypb.Empty, error) {
	return empty(s.e.deleteIdentity(req.GetUid()))
}

// ---- Roles ----

// rolesV2Service serves chainguard.platform.iam.v2.RolesService.
type rolesV2Service struct {
	iamv2.UnimplementedRolesServiceServer
	e *Emulator
}

// v2 is the v2 form of built-in role r (capabilities in enum order; built-in
// roles carry no create_time or update_time).
func (r *role) v2() *iamv2.Role {
	return &iamv2.Role{Uid: r.id, Name: r.name, Description: r.description, Capabilities: slices.Sorted(maps.Keys(r.caps))}
}

// GetRole returns a built-in role (getRole).
func (s *rolesV2Service) GetRole(ctx context.Context, req *iamv2.GetRoleRequest) (*iamv2.Role, error) {
	r, err := s.e.getRole(callerOf(ctx), req.GetUid())
	return respond(r, err, (*role).v2)
}

// ListRoles returns a page of the built-in roles matching req to callers
// whose token may list roles somewhere; order_by: uid or name.
func (s *rolesV2Service) ListRoles(ctx context.Context, req *iamv2.ListRolesRequest) (*iamv2.ListRolesResponse, error) {
	rs, err := s.e.listRoles(callerOf(ctx), listQuery{uidp: req.GetUidp(), name: req.GetName()})
	if err != nil {
		return nil, err
	}
	out, next, skipped, err := page(s.e, iamv2.RolesService_ListRoles_FullMethodName, req, rs, func(r *role) (pageItem[*iamv2.Role], error) {
		return pageItem[*iamv2.Role]{uid: r.id, v: r.v2(), keys: map[string]string{"name": r.name}}, nil
	}, "name")
	if err != nil {
		return nil, err
	}
	return &iamv2.ListRolesResponse{Roles: out, NextPageToken: next, Skipped: skipped}, nil
}

// ---- RoleBindings ----

// roleBindingsV2Service serves
// chainguard.platform.iam.v2.RoleBindingsService.
type roleBindingsV2Service struct {
	iamv2.UnimplementedRoleBindingsServiceServer
	e *Emulator
}

// v2 is the v2 form of binding view v, hydrated as role_bindings.proto
// describes (identity, group, role: OUTPUT_ONLY). identity_uid and role_uid
// are left unset: the proto describes them as input ("Set this field when
// creating or updating a role binding"), so a client reads identity.uid and
// role.uid (the stricter reading).
func (v bindingView) v2() *iamv2.RoleBinding {
	out := &iamv2.RoleBinding{Uid: v.b.id, CreateTime: timestamppb.New(v.b.created)}
	if id := v.identity; id != nil {
		ri := &iamv2.RoleBindingIdentity{Uid: id.GetId(), Name: id.GetName(), Description: id.GetDescription()}
		if cm := id.GetClaimMatch(); cm != nil {
			ri.Issuer, ri.Subject = cm.GetIssuer(), cm.GetSubject()
		}
		out.Identity = ri
	}
	if g := v.group; g != nil {
		out.Group = &iamv2.RoleBindingGroup{Uid: g.GetId(), Name: g.GetName(), Description: g.GetDescription()}
	}
	if r := v.role; r != nil {
		out.Role = &iamv2.RoleBindingRole{Uid: r.id, Name: r.name, Description: r.description}
	}
	return out
}

// CreateRoleBinding binds identity_uid to role_uid on parent, as v1 does.
// "Set identity_uid and role_uid; other fields are ignored"
// (role_bindings.proto, CreateRoleBindingRequest.role_binding): here the
// proto itself says OUTPUT_ONLY fields are ignored, so they are.
func (s *roleBindingsV2Service) CreateRoleBinding(ctx context.Context, req *iamv2.CreateRoleBindingRequest) (*iamv2.RoleBinding, error) {
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
	v, err := s.e.createBinding(req.GetParent(), rb.GetIdentityUid(), rb.GetRoleUid())
	return respond(v, err, bindingView.v2)
}

// UpdateRoleBinding applies req.update_mask (applyMask) to identity_uid and
// role_uid: v2 may move a binding to another identity ("Update an IAM role
// binding's identity or role assignment", role_bindings.proto), which v1
// refuses. The stored binding's identity_uid and role_uid are its current
// ones, so "*" needs both. The change propagates as updateBinding says.
func (s *roleBindingsV2Service) UpdateRoleBinding(ctx context.Context, req *iamv2.UpdateRoleBindingRequest) (*iamv2.RoleBinding, error) {
	e := s.e
	v, err := e.updateBinding(req.GetRoleBinding().GetUid(), func(cur bindingView) (string, *role, error) {
		stored := cur.v2()
		stored.IdentityUid, stored.RoleUid = cur.b.identity, cur.b.role
		merged, err := applyMask(stored, req.GetRoleBinding(), req.GetUpdateMask(), "role binding", "uid", e.ignoreOutputOnly)
		if err != nil {
			return "", nil, err
		}
		identity := merged.GetIdentityUid()
		if err := checkUIDP("role_binding.identity_uid", identity); err != nil {
			return "", nil, err
		}
		if _, err := lookup(e.identities, "identity", identity); err != nil {
			return "", nil, err
		}
		r, err := e.lookupRole(merged.GetRoleUid(), "pass a role UID in role_uid")
		return identity, r, err
	})
	return respond(v, err, bindingView.v2)
}

// GetRoleBinding returns a role binding, or NotFound.
func (s *roleBindingsV2Service) GetRoleBinding(ctx context.Context, req *iamv2.GetRoleBindingRequest) (*iamv2.RoleBinding, error) {
	v, err := get(s.e, s.e.bindings, "role binding", req.GetUid(), s.e.viewBinding)
	return respond(v, err, bindingView.v2)
}

// ListRoleBindings returns a page of the role bindings matching req (uidp,
// identity, group, role) that the caller's token may list; order_by: uid or
// create_time.
func (s *roleBindingsV2Service) ListRoleBindings(ctx context.Context, req *iamv2.ListRoleBindingsRequest) (*iamv2.ListRoleBindingsResponse, error) {
	q := listQuery{uidp: req.GetUidp(), refs: map[string]string{"identity": req.GetIdentity(), "group": req.GetGroup()}}
	vs, err := s.e.listBindings(callerOf(ctx), q, bindingFilter{identity: req.GetIdentity(), group: req.GetGroup(), role: req.GetRole()})
	if err != nil {
		return nil, err
	}
	out, next, skipped, err := page(s.e, iamv2.RoleBindingsService_ListRoleBindings_FullMethodName, req, vs, func(v bindingView) (pageItem[*iamv2.RoleBinding], error) {
		return pageItem[*iamv2.RoleBinding]{uid: v.b.id, v: v.v2(), keys: map[string]string{"create_time": timeKey(v.b.created)}}, nil
	}, "create_time")
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
	s.e.deleteBinding(req.GetUid())
	return &emptypb.Empty{}, nil
}
