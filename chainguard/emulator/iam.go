package emulator

import (
	"context"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// IAM v1 (chainguard.platform.iam.Groups, Identities, Roles, RoleBindings):
// adapters from v1 requests to the core operations (core.go) and from their
// views to v1 responses.

// mapSlice turns each view of vs into a response item.
func mapSlice[V, T any](vs []V, item func(V) T) []T {
	out := make([]T, len(vs))
	for i, v := range vs {
		out[i] = item(v)
	}
	return out
}

// respond is the response form(v) to a core operation's view v, or the
// operation's error.
func respond[V, T any](v V, err error, form func(V) T) (T, error) {
	if err != nil {
		var zero T
		return zero, err
	}
	return form(v), nil
}

// empty is the response of a Delete that failed with err, or succeeded.
func empty(err error) (*emptypb.Empty, error) {
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ---- Groups ----

// groupsService serves chainguard.platform.iam.Groups.
type groupsService struct {
	iam.UnimplementedGroupsServer
	e *Emulator
}

// v1 is the v1 form of group view v.
func (v groupView) v1() *iam.Group { return v.g }

// Create creates a group under req.parent (createGroup).
func (s *groupsService) Create(ctx context.Context, req *iam.CreateGroupRequest) (*iam.Group, error) {
	v, err := s.e.createGroup(callerOf(ctx), req.GetParent(), req.GetGroup(), nil)
	return respond(v, err, groupView.v1)
}

// Update replaces the writable fields of a group (name and description) with
// those sent. v1 Update (PUT /iam/v1/groups/{id}, body "*") has no update
// mask and proto3 cannot tell an unset string from an empty one, so an
// omitted description clears it: the emulator takes that literal reading
// (a client must send every writable field it wants to keep). Server-owned
// fields follow checkGroupServerOwned.
func (s *groupsService) Update(ctx context.Context, g *iam.Group) (*iam.Group, error) {
	if err := checkNameAndDescription("group", g.GetName(), g.GetDescription()); err != nil {
		return nil, err
	}
	v, err := s.e.updateGroup(g.GetId(), func(stored groupView) (string, string, error) {
		return g.GetName(), g.GetDescription(), checkGroupServerOwned(g, stored.g)
	})
	return respond(v, err, groupView.v1)
}

// List returns the groups matching f that the caller's token may list.
func (s *groupsService) List(ctx context.Context, f *iam.GroupFilter) (*iam.GroupList, error) {
	vs, err := s.e.listGroups(callerOf(ctx), listQuery{uidp: f.GetUidp(), id: f.GetId(), name: f.GetName()})
	if err != nil {
		return nil, err
	}
	return &iam.GroupList{Items: mapSlice(vs, groupView.v1)}, nil
}

// Delete deletes an empty group (deleteGroup).
func (s *groupsService) Delete(ctx context.Context, req *iam.DeleteGroupRequest) (*emptypb.Empty, error) {
	return empty(s.e.deleteGroup(req.GetId()))
}

// ---- Identities ----

// identitiesService serves chainguard.platform.iam.Identities.
type identitiesService struct {
	iam.UnimplementedIdentitiesServer
	e *Emulator
}

// v1 is the v1 form of identity view v.
func (v identityView) v1() *iam.Identity { return v.id }

// Create creates an identity in group req.parent_id (createIdentity).
func (s *identitiesService) Create(ctx context.Context, req *iam.CreateIdentityRequest) (*iam.Identity, error) {
	if req.GetIdentity() == nil {
		return nil, status.Error(codes.InvalidArgument, "identity is required")
	}
	v, err := s.e.createIdentity(req.GetParentId(), req.GetIdentity(), "")
	return respond(v, err, identityView.v1)
}

// Update replaces the writable fields of an identity (name, description,
// relationship) with those sent; like Groups.Update (v1 has no update mask),
// an omitted description clears it. The relationship's kind may not change
// (checkRelationshipKind). Server-owned timestamps follow
// checkIdentityServerOwned; updated_at becomes now; the company (a v2 field)
// is kept.
func (s *identitiesService) Update(ctx context.Context, id *iam.Identity) (*iam.Identity, error) {
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	v, err := s.e.updateIdentity(id.GetId(), func(stored identityView) (identityView, error) {
		return identityView{id: id, company: stored.company}, nil
	})
	return respond(v, err, identityView.v1)
}

// List returns the identities matching f that the caller's token may list.
func (s *identitiesService) List(ctx context.Context, f *iam.IdentityFilter) (*iam.IdentityList, error) {
	vs, err := s.e.listIdentities(callerOf(ctx), listQuery{uidp: f.GetUidp(), id: f.GetId()}, iamv2.RelationshipType_RELATIONSHIP_TYPE_UNSPECIFIED)
	if err != nil {
		return nil, err
	}
	return &iam.IdentityList{Items: mapSlice(vs, identityView.v1)}, nil
}

// Delete deletes an identity without role bindings (deleteIdentity).
func (s *identitiesService) Delete(ctx context.Context, req *iam.DeleteIdentityRequest) (*emptypb.Empty, error) {
	return empty(s.e.deleteIdentity(req.GetId()))
}

// ---- Roles ----

// rolesService serves chainguard.platform.iam.Roles (List only).
type rolesService struct {
	iam.UnimplementedRolesServer
	e *Emulator
}

// v1 is the v1 form of built-in role r.
func (r *role) v1() *iam.Role {
	return &iam.Role{Id: r.id, Name: r.name, Description: r.description, Capabilities: append([]string(nil), r.capNames...)}
}

// List returns the built-in roles matching f to callers whose token may list
// roles somewhere; others get an empty list.
func (s *rolesService) List(ctx context.Context, f *iam.RoleFilter) (*iam.RoleList, error) {
	rs, err := s.e.listRoles(callerOf(ctx), listQuery{uidp: f.GetUidp(), id: f.GetId(), name: f.GetName(), refs: map[string]string{"parent": f.GetParent()}})
	if err != nil {
		return nil, err
	}
	return &iam.RoleList{Items: mapSlice(rs, (*role).v1)}, nil
}

// ---- RoleBindings ----

// roleBindingsService serves chainguard.platform.iam.RoleBindings.
type roleBindingsService struct {
	iam.UnimplementedRoleBindingsServer
	e *Emulator
}

// v1 is the v1 form of binding view v.
func (v bindingView) v1() *iam.RoleBinding {
	return &iam.RoleBinding{Id: v.b.id, Identity: v.b.identity, Group: v.b.group, Role: v.b.role}
}

// Create binds role_binding.identity to role_binding.role on req.parent
// (createBinding).
func (s *roleBindingsService) Create(ctx context.Context, req *iam.CreateRoleBindingRequest) (*iam.RoleBinding, error) {
	rb := req.GetRoleBinding()
	if rb == nil {
		return nil, status.Error(codes.InvalidArgument, "role_binding is required")
	}
	v, err := s.e.createBinding(req.GetParent(), rb.GetIdentity(), rb.GetRole())
	return respond(v, err, bindingView.v1)
}

// Update changes the role of a binding; v1 refuses to change its identity
// or group. The change propagates as updateBinding says.
func (s *roleBindingsService) Update(ctx context.Context, rb *iam.RoleBinding) (*iam.RoleBinding, error) {
	v, err := s.e.updateBinding(rb.GetId(), func(stored bindingView) (string, *role, error) {
		if rb.GetIdentity() != "" && rb.GetIdentity() != stored.b.identity {
			return "", nil, status.Errorf(codes.InvalidArgument, "the identity of role binding %s cannot change (%s): delete it and create another", stored.b.id, stored.b.identity)
		}
		if g := rb.GetGroup(); g != "" && g != stored.b.group { //nolint:staticcheck // the deprecated field is still sent by clients
			return "", nil, status.Errorf(codes.InvalidArgument, "the group of role binding %s cannot change (%s): delete it and create another", stored.b.id, stored.b.group)
		}
		r, err := s.e.lookupRole(rb.GetRole(), "pass a role ID")
		return stored.b.identity, r, err
	})
	return respond(v, err, bindingView.v1)
}

// List returns the role bindings matching f that the caller's token may
// list, with their group and role hydrated.
func (s *roleBindingsService) List(ctx context.Context, f *iam.RoleBindingFilter) (*iam.RoleBindingList, error) {
	vs, err := s.e.listBindings(callerOf(ctx), listQuery{uidp: f.GetUidp(), id: f.GetId()}, bindingFilter{})
	if err != nil {
		return nil, err
	}
	return &iam.RoleBindingList{Items: mapSlice(vs, func(v bindingView) *iam.RoleBindingList_Binding {
		return &iam.RoleBindingList_Binding{Id: v.b.id, Group: v.group, Identity: v.b.identity, Role: v.role.v1(), CreatedAt: timestamppb.New(v.b.created)}
	})}, nil
}

// Delete deletes a role binding; a missing one is NotFound.
func (s *roleBindingsService) Delete(ctx context.Context, req *iam.DeleteRoleBindingRequest) (*emptypb.Empty, error) {
	if !s.e.deleteBinding(req.GetId()) {
		return nil, status.Errorf(codes.NotFound, "role binding %s not found", req.GetId())
	}
	return &emptypb.Empty{}, nil
}
