package emulator_test

import (
	"testing"
	"time"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestV2UpdateGroupMask checks UpdateGroup's update_mask under both
// readings of OUTPUT_ONLY fields (strict default, Options.IgnoreOutputOnly).
func TestV2UpdateGroupMask(t *testing.T) {
	old := timestamppb.New(time.Unix(1, 0))
	tests := []struct {
		name string
		// body returns the group to send, given the stored one (from
		// GetGroup) and a fresh copy to change.
		body       func(stored *iamv2.Group) *iamv2.Group
		mask       *fieldmaskpb.FieldMask
		strict     codes.Code // code under the default reading
		lenient    codes.Code // code under IgnoreOutputOnly
		msg        string     // in the strict error
		name2      string     // name after success
		desc2      string     // description after success
		skipVerify bool
	}{
		{"explicit description keeps name", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Description: "new"} },
			mask("description"), codes.OK, codes.OK, "", "team", "new", false},
		{"explicit name and description", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Name: "team-2"} },
			mask("name", "description"), codes.OK, codes.OK, "", "team-2", "", false},
		{"implied mask: populated fields only", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Name: "team-3"} },
			nil, codes.OK, codes.OK, "", "team-3", "old description", false},
		{"implied mask: a read-modify-write echoing output-only values", func(s *iamv2.Group) *iamv2.Group { s.Name = "team-4"; return s },
			nil, codes.OK, codes.OK, "", "team-4", "old description", false},
		{"wildcard with the stored output-only values", func(s *iamv2.Group) *iamv2.Group { s.Description = ""; return s },
			mask("*"), codes.OK, codes.OK, "", "team", "", false},
		{"wildcard without kind and status (the Terraform provider's finding)", func(s *iamv2.Group) *iamv2.Group {
			return &iamv2.Group{Uid: s.Uid, Name: s.Name, Description: s.Description}
		}, mask("*"), codes.InvalidArgument, codes.InvalidArgument, "", "", "", true},
		{"wildcard without output-only fields but with kind", func(s *iamv2.Group) *iamv2.Group {
			return &iamv2.Group{Uid: s.Uid, Name: "team-5", Kind: s.Kind}
		}, mask("*"), codes.InvalidArgument, codes.OK, "is unset under update_mask \"*\"", "team-5", "", false},
		{"path naming an output-only field", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Name: "team-6"} },
			mask("name", "create_time"), codes.InvalidArgument, codes.OK, "output-only", "team-6", "old description", false},
		{"path naming uid", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Name: "team-7"} },
			mask("uid", "name"), codes.InvalidArgument, codes.OK, "output-only", "team-7", "old description", false},
		{"path naming status", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid} },
			mask("status"), codes.InvalidArgument, codes.OK, "output-only", "team", "old description", false},
		{"body carrying a stale create_time", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Name: "team-8", CreateTime: old} },
			mask("name"), codes.InvalidArgument, codes.OK, "create_time differs from the stored value", "team-8", "old description", false},
		{"body carrying a different status", func(s *iamv2.Group) *iamv2.Group {
			return &iamv2.Group{Uid: s.Uid, Name: "team-9", Status: iamv2.OrgStatus_ORG_STATUS_SUSPENDED}
		}, mask("name"), codes.InvalidArgument, codes.OK, "status", "team-9", "old description", false},
		{"unknown path", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid} },
			mask("title"), codes.InvalidArgument, codes.InvalidArgument, "not a field of group", "", "", true},
		{"nested path", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid} },
			mask("resource_limits.repos"), codes.InvalidArgument, codes.InvalidArgument, "nested", "", "", true},
		{"wildcard mixed with paths", func(s *iamv2.Group) *iamv2.Group { return s },
			mask("*", "name"), codes.InvalidArgument, codes.InvalidArgument, "alone", "", "", true},
		{"repeated path", func(s *iamv2.Group) *iamv2.Group { return s },
			mask("name", "name"), codes.InvalidArgument, codes.InvalidArgument, "twice", "", "", true},
		{"kind change", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Kind: iamv2.OrgKind_ORG_KIND_DEV} },
			mask("kind"), codes.InvalidArgument, codes.InvalidArgument, "kind", "", "", true},
		{"kind restated", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Kind: s.Kind} },
			mask("kind"), codes.OK, codes.OK, "", "team", "old description", false},
		{"verified by a customer", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid, Verified: true} },
			mask("verified"), codes.InvalidArgument, codes.InvalidArgument, "verified", "", "", true},
		{"name cleared by the mask", func(s *iamv2.Group) *iamv2.Group { return &iamv2.Group{Uid: s.Uid} },
			mask("name"), codes.InvalidArgument, codes.InvalidArgument, "name", "", "", true},
		{"no group", func(*iamv2.Group) *iamv2.Group { return nil },
			nil, codes.InvalidArgument, codes.InvalidArgument, "group.uid is required", "", "", true},
	}
	for _, ignore := range []bool{false, true} {
		for _, tt := range tests {
			reading := map[bool]string{false: "strict", true: "IgnoreOutputOnly"}[ignore]
			t.Run(reading+"/"+tt.name, func(t *testing.T) {
				env := emulatortest.NewEnv(t, emulator.Options{IgnoreOutputOnly: ignore})
				ctx := testCtx(t)
				v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
				created, err := v2.GroupsService().CreateGroup(ctx, &iamv2.CreateGroupRequest{Parent: env.Root, Group: &iamv2.Group{Name: "team", Description: "old description"}})
				checkErr(t, err, codes.OK)
				time.Sleep(time.Millisecond)
				got, err := v2.GroupsService().UpdateGroup(ctx, &iamv2.UpdateGroupRequest{Group: tt.body(proto.Clone(created).(*iamv2.Group)), UpdateMask: tt.mask})
				want := tt.strict
				if ignore {
					want = tt.lenient
				}
				if want != codes.OK {
					if ignore || tt.msg == "" {
						checkErr(t, err, want)
					} else {
						checkErr(t, err, want, tt.msg)
					}
					after, err := v2.GroupsService().GetGroup(ctx, &iamv2.GetGroupRequest{Uid: created.GetUid()})
					checkErr(t, err, codes.OK)
					if !proto.Equal(after, created) {
						t.Errorf("a refused update changed the group: %v, was %v", after, created)
					}
					return
				}
				checkErr(t, err, codes.OK)
				if tt.skipVerify {
					return
				}
				if got.GetName() != tt.name2 || got.GetDescription() != tt.desc2 || got.GetUid() != created.GetUid() ||
					!got.GetCreateTime().AsTime().Equal(created.GetCreateTime().AsTime()) || !got.GetUpdateTime().AsTime().After(created.GetUpdateTime().AsTime()) ||
					got.GetKind() != created.GetKind() || got.GetStatus() != created.GetStatus() {
					t.Errorf("updated group %v, want name %q, description %q, the same uid, create_time, kind and status, a later update_time (created %v)", got, tt.name2, tt.desc2, created)
				}
			})
		}
	}
}

// TestV2UpdateIdentityMask checks UpdateIdentity's update_mask, including
// the relationship oneof, under both readings of OUTPUT_ONLY fields.
func TestV2UpdateIdentityMask(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		t.Run(map[bool]string{false: "strict", true: "IgnoreOutputOnly"}[ignore], func(t *testing.T) {
			env := emulatortest.NewEnv(t, emulator.Options{IgnoreOutputOnly: ignore})
			ctx := testCtx(t)
			v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
			created, err := v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{
				Name: "fn-1", Description: "d", Company: "c", Relationship: awsV2(env.WorkloadPrincipal),
			}})
			checkErr(t, err, codes.OK)
			// Exchanging sets last_seen_time, which a stale copy lacks.
			emulatortest.Token(t, env.Emulator, env.WorkloadCredentials, created.GetUid())
			seen, err := v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: created.GetUid()})
			checkErr(t, err, codes.OK)
			if seen.GetLastSeenTime() == nil {
				t.Fatalf("last_seen_time unset after an exchange: %v", seen)
			}
			claim := &iamv2.Identity_ClaimMatch_{ClaimMatch: &iamv2.Identity_ClaimMatch{
				Iss: &iamv2.Identity_ClaimMatch_Issuer{Issuer: "https://token.actions.githubusercontent.com"},
				Sub: &iamv2.Identity_ClaimMatch_SubjectPattern{SubjectPattern: "^repo:acme/.*$"},
			}}
			strictCode := func(c codes.Code) codes.Code {
				if ignore {
					return codes.OK
				}
				return c
			}
			tests := []struct {
				name  string
				body  *iamv2.Identity
				mask  *fieldmaskpb.FieldMask
				code  codes.Code
				check func(t *testing.T, got *iamv2.Identity)
			}{
				{"description only", &iamv2.Identity{Uid: created.Uid, Description: "new"}, mask("description"), codes.OK, func(t *testing.T, got *iamv2.Identity) {
					if got.GetName() != "fn-1" || got.GetDescription() != "new" || got.GetCompany() != "c" || got.GetAwsIdentity().GetArn() != env.WorkloadPrincipal.ARN {
						t.Errorf("got %v", got)
					}
				}},
				// The relationship's kind is fixed (checkRelationshipKind).
				{"swap the relationship for claim_match", &iamv2.Identity{Uid: created.Uid, Relationship: claim}, mask("claim_match"), codes.InvalidArgument, nil},
				{"swap the relationship by the implied mask", &iamv2.Identity{Uid: created.Uid, Relationship: claim}, nil, codes.InvalidArgument, nil},
				{"clear the relationship", &iamv2.Identity{Uid: created.Uid}, mask("aws_identity"), codes.InvalidArgument, nil},
				{"clearing the unset claim_match changes nothing", &iamv2.Identity{Uid: created.Uid}, mask("claim_match"), codes.OK, func(t *testing.T, got *iamv2.Identity) {
					if got.GetClaimMatch() != nil || got.GetAwsIdentity().GetArn() != env.WorkloadPrincipal.ARN {
						t.Errorf("got %v", got)
					}
				}},
				{"aws_identity by the implied mask", &iamv2.Identity{Uid: created.Uid, Relationship: awsV2(env.WorkloadPrincipal)}, nil, codes.OK, func(t *testing.T, got *iamv2.Identity) {
					if got.GetClaimMatch() != nil || got.GetAwsIdentity().GetUserId() != env.WorkloadPrincipal.UserID || got.GetDescription() != "new" {
						t.Errorf("got %v", got)
					}
				}},
				{"company cleared by its path", &iamv2.Identity{Uid: created.Uid}, mask("company"), codes.OK, func(t *testing.T, got *iamv2.Identity) {
					if got.GetCompany() != "" {
						t.Errorf("got %v", got)
					}
				}},
				{"stale copy without last_seen_time under *", &iamv2.Identity{
					Uid: created.Uid, Name: "fn-1", Relationship: awsV2(env.WorkloadPrincipal), CreateTime: created.CreateTime, UpdateTime: created.UpdateTime,
				}, mask("*"), strictCode(codes.InvalidArgument), nil},
				{"stale update_time with an explicit mask", &iamv2.Identity{Uid: created.Uid, Name: "fn-2", UpdateTime: created.UpdateTime}, mask("name"), strictCode(codes.InvalidArgument), nil},
				{"path naming last_seen_time", &iamv2.Identity{Uid: created.Uid, Name: "fn-3"}, mask("name", "last_seen_time"), strictCode(codes.InvalidArgument), nil},
				{"path naming email", &iamv2.Identity{Uid: created.Uid}, mask("email"), strictCode(codes.InvalidArgument), nil},
				{"nested relationship path", &iamv2.Identity{Uid: created.Uid, Relationship: awsV2(env.WorkloadPrincipal)}, mask("aws_identity.arn"), codes.InvalidArgument, nil},
				{"unknown path", &iamv2.Identity{Uid: created.Uid}, mask("providers"), codes.InvalidArgument, nil},
				{"invalid pattern", &iamv2.Identity{Uid: created.Uid, Relationship: &iamv2.Identity_AwsIdentity{AwsIdentity: &iamv2.Identity_AWSIdentity{
					AwsAccount: account, AwsArn: &iamv2.Identity_AWSIdentity_ArnPattern{ArnPattern: "("}, AwsUserId: &iamv2.Identity_AWSIdentity_UserId{UserId: "x"},
				}}}, mask("aws_identity"), codes.InvalidArgument, nil},
				{"no uid", &iamv2.Identity{Name: "abc"}, mask("name"), codes.InvalidArgument, nil},
			}
			for _, tt := range tests { // in order: each case starts from the previous one's result
				before, err := v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: created.GetUid()})
				checkErr(t, err, codes.OK)
				got, err := v2.IdentitiesService().UpdateIdentity(ctx, &iamv2.UpdateIdentityRequest{Identity: tt.body, UpdateMask: tt.mask})
				t.Run(tt.name, func(t *testing.T) {
					checkErr(t, err, tt.code)
					if err != nil {
						after, err := v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: created.GetUid()})
						checkErr(t, err, codes.OK)
						if !proto.Equal(after, before) {
							t.Errorf("a refused update changed the identity: %v, was %v", after, before)
						}
						return
					}
					if !got.GetCreateTime().AsTime().Equal(created.GetCreateTime().AsTime()) || !got.GetLastSeenTime().AsTime().Equal(seen.GetLastSeenTime().AsTime()) ||
						got.GetUpdateTime().AsTime().Before(before.GetUpdateTime().AsTime()) {
						t.Errorf("server-owned times changed: %v, before %v", got, before)
					}
					if tt.check != nil {
						tt.check(t, got)
					}
				})
			}
		})
	}
}

// fixed returns rb as a lazily evaluated body.
func fixed(rb *iamv2.RoleBinding) func() *iamv2.RoleBinding {
	return func() *iamv2.RoleBinding { return rb }
}

// TestV2UpdateRoleBindingMask checks UpdateRoleBinding: a role or identity
// change by identity_uid and role_uid, the hydrated OUTPUT_ONLY fields.
func TestV2UpdateRoleBindingMask(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	alice := env.SeedIdentity(env.Group, "alice", "", env.WorkloadPrincipal.ExactTrust(), nil)
	bob := env.SeedIdentity(env.Group, "bob", "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{env.Group: {"editor"}})
	rb, err := v2.RoleBindingsService().CreateRoleBinding(ctx, &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{IdentityUid: alice, RoleUid: env.RoleID("viewer")}})
	checkErr(t, err, codes.OK)

	tests := []struct {
		name           string
		body           func() *iamv2.RoleBinding // evaluated when the case runs
		mask           *fieldmaskpb.FieldMask
		code           codes.Code
		identity, role string // after success
	}{
		{"role by role_uid", fixed(&iamv2.RoleBinding{Uid: rb.Uid, RoleUid: env.RoleID("registry.pull")}), mask("role_uid"), codes.OK, alice, "registry.pull"},
		{"role by the implied mask", fixed(&iamv2.RoleBinding{Uid: rb.Uid, RoleUid: env.RoleID("viewer")}), nil, codes.OK, alice, "viewer"},
		{"identity by identity_uid", fixed(&iamv2.RoleBinding{Uid: rb.Uid, IdentityUid: bob}), mask("identity_uid"), codes.OK, bob, "viewer"},
		{"a read-modify-write echoing the hydrated fields", func() *iamv2.RoleBinding {
			cur, err := v2.RoleBindingsService().GetRoleBinding(ctx, &iamv2.GetRoleBindingRequest{Uid: rb.Uid})
			checkErr(t, err, codes.OK)
			cur.IdentityUid = alice
			return cur
		}, nil, codes.OK, alice, "viewer"},
		{"hydrated role differing", fixed(&iamv2.RoleBinding{Uid: rb.Uid, RoleUid: env.RoleID("owner"), Role: &iamv2.RoleBindingRole{Uid: env.RoleID("owner"), Name: "owner"}}), nil, codes.InvalidArgument, "", ""},
		{"path naming role", fixed(&iamv2.RoleBinding{Uid: rb.Uid}), mask("role"), codes.InvalidArgument, "", ""},
		{"wildcard without identity_uid", fixed(&iamv2.RoleBinding{Uid: rb.Uid, RoleUid: env.RoleID("viewer")}), mask("*"), codes.InvalidArgument, "", ""},
		{"unknown role", fixed(&iamv2.RoleBinding{Uid: rb.Uid, RoleUid: "owner"}), mask("role_uid"), codes.NotFound, "", ""},
		{"unknown identity", fixed(&iamv2.RoleBinding{Uid: rb.Uid, IdentityUid: env.Group + "/0123456789abcdef"}), mask("identity_uid"), codes.NotFound, "", ""},
		{"duplicate of bob's editor binding", fixed(&iamv2.RoleBinding{Uid: rb.Uid, IdentityUid: bob, RoleUid: env.RoleID("editor")}), mask("identity_uid", "role_uid"), codes.AlreadyExists, "", ""},
	}
	for _, tt := range tests {
		got, err := v2.RoleBindingsService().UpdateRoleBinding(ctx, &iamv2.UpdateRoleBindingRequest{RoleBinding: tt.body(), UpdateMask: tt.mask})
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, err, tt.code)
			if err == nil && (got.GetIdentity().GetUid() != tt.identity || got.GetRole().GetName() != tt.role || got.GetGroup().GetUid() != env.Group) {
				t.Errorf("got %v, want identity %s role %s on %s", got, tt.identity, tt.role, env.Group)
			}
		})
	}
}
