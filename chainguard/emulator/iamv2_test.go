package emulator_test

import (
	"strings"
	"testing"
	"time"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// awsV2 is the v2 aws_identity relationship admitting exactly p.
func awsV2(p emulator.AWSPrincipal) *iamv2.Identity_AwsIdentity {
	return &iamv2.Identity_AwsIdentity{AwsIdentity: &iamv2.Identity_AWSIdentity{
		AwsAccount: p.Account,
		AwsArn:     &iamv2.Identity_AWSIdentity_Arn{Arn: p.ARN},
		AwsUserId:  &iamv2.Identity_AWSIdentity_UserId{UserId: p.UserID},
	}}
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// TestV2SharedState checks that IAM v1 and v2 serve the same objects: what
// one version creates or changes, the other reads, and State reports.
func TestV2SharedState(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	tok := env.MintToken(env.Provisioner)
	v1, v2 := iamClients(t, env.Emulator, tok), emulatortest.IAMv2(t, env.Emulator, tok)

	// v1 -> v2: a group, an identity and a binding made through v1.
	g1, err := v1.Groups().Create(ctx, &iam.CreateGroupRequest{Parent: env.Root, Group: &iam.Group{Name: "made-by-v1", Description: "one"}})
	checkErr(t, err, codes.OK)
	id1, err := v1.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: g1.GetId(), Identity: &iam.Identity{
		Name: "v1-identity", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()},
	}})
	checkErr(t, err, codes.OK)
	rb1, err := v1.RoleBindings().Create(ctx, &iam.CreateRoleBindingRequest{Parent: g1.GetId(), RoleBinding: &iam.RoleBinding{Identity: id1.GetId(), Role: env.RoleID("viewer")}})
	checkErr(t, err, codes.OK)

	g, err := v2.GroupsService().GetGroup(ctx, &iamv2.GetGroupRequest{Uid: g1.GetId()})
	checkErr(t, err, codes.OK)
	if g.GetName() != "made-by-v1" || g.GetDescription() != "one" || g.GetKind() != iamv2.OrgKind_ORG_KIND_CUSTOMER ||
		g.GetStatus() != iamv2.OrgStatus_ORG_STATUS_READY || g.GetCreateTime() == nil || g.GetUpdateTime() == nil {
		t.Errorf("v2 GetGroup of a v1 group: %v", g)
	}
	id, err := v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: id1.GetId()})
	checkErr(t, err, codes.OK)
	if id.GetName() != "v1-identity" || id.GetAwsIdentity().GetArn() != env.WorkloadPrincipal.ARN || id.GetAwsIdentity().GetUserId() != env.WorkloadPrincipal.UserID ||
		!id.GetCreateTime().AsTime().Equal(id1.GetCreatedAt().AsTime()) {
		t.Errorf("v2 GetIdentity of a v1 identity: %v", id)
	}
	rb, err := v2.RoleBindingsService().GetRoleBinding(ctx, &iamv2.GetRoleBindingRequest{Uid: rb1.GetId()})
	checkErr(t, err, codes.OK)
	if rb.GetIdentity().GetUid() != id1.GetId() || rb.GetGroup().GetUid() != g1.GetId() || rb.GetRole().GetName() != "viewer" ||
		rb.GetRole().GetUid() != env.RoleID("viewer") || rb.GetCreateTime() == nil || rb.GetIdentityUid() != "" || rb.GetRoleUid() != "" {
		t.Errorf("v2 GetRoleBinding of a v1 binding: %v (identity_uid and role_uid are input-only)", rb)
	}

	// v2 -> v1: an identity and a binding made through v2, an update of the
	// v1 group.
	id2, err := v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: g1.GetId(), Identity: &iamv2.Identity{
		Name: "v2-identity", Description: "two", Company: "acme inc", Relationship: awsV2(env.WorkloadPrincipal),
	}})
	checkErr(t, err, codes.OK)
	if uidp.Parent(id2.GetUid()) != g1.GetId() || id2.GetCreateTime() == nil || id2.GetCompany() != "acme inc" {
		t.Errorf("v2 CreateIdentity returned %v", id2)
	}
	rb2, err := v2.RoleBindingsService().CreateRoleBinding(ctx, &iamv2.CreateRoleBindingRequest{Parent: g1.GetId(), RoleBinding: &iamv2.RoleBinding{IdentityUid: id2.GetUid(), RoleUid: env.RoleID("registry.pull")}})
	checkErr(t, err, codes.OK)
	if rb2.GetRole().GetName() != "registry.pull" || rb2.GetIdentity().GetName() != "v2-identity" || rb2.GetGroup().GetName() != "made-by-v1" {
		t.Errorf("v2 CreateRoleBinding returned %v", rb2)
	}
	ids, err := v1.Identities().List(ctx, &iam.IdentityFilter{Id: id2.GetUid()})
	checkErr(t, err, codes.OK)
	if len(ids.GetItems()) != 1 || ids.GetItems()[0].GetDescription() != "two" || ids.GetItems()[0].GetAwsIdentity().GetArn() != env.WorkloadPrincipal.ARN {
		t.Errorf("v1 List of a v2 identity: %v", ids.GetItems())
	}
	bs, err := v1.RoleBindings().List(ctx, &iam.RoleBindingFilter{Id: rb2.GetUid()})
	checkErr(t, err, codes.OK)
	if len(bs.GetItems()) != 1 || bs.GetItems()[0].GetRole().GetName() != "registry.pull" || bs.GetItems()[0].GetIdentity() != id2.GetUid() {
		t.Errorf("v1 List of a v2 binding: %v", bs.GetItems())
	}

	before := g.GetUpdateTime().AsTime()
	time.Sleep(time.Millisecond)
	_, err = v2.GroupsService().UpdateGroup(ctx, &iamv2.UpdateGroupRequest{Group: &iamv2.Group{Uid: g1.GetId(), Description: "changed by v2"}, UpdateMask: mask("description")})
	checkErr(t, err, codes.OK)
	gs, err := v1.Groups().List(ctx, &iam.GroupFilter{Id: g1.GetId()})
	checkErr(t, err, codes.OK)
	if len(gs.GetItems()) != 1 || gs.GetItems()[0].GetName() != "made-by-v1" || gs.GetItems()[0].GetDescription() != "changed by v2" {
		t.Errorf("v1 List after a v2 description update: %v", gs.GetItems())
	}
	// A v1 update (no mask: every writable field) is seen by v2, and moves
	// update_time; company, which v1 does not know, is kept.
	_, err = v1.Groups().Update(ctx, &iam.Group{Id: g1.GetId(), Name: "renamed-by-v1"})
	checkErr(t, err, codes.OK)
	g, err = v2.GroupsService().GetGroup(ctx, &iamv2.GetGroupRequest{Uid: g1.GetId()})
	checkErr(t, err, codes.OK)
	if g.GetName() != "renamed-by-v1" || g.GetDescription() != "" || !g.GetUpdateTime().AsTime().After(before) {
		t.Errorf("v2 GetGroup after a v1 update: %v (update_time was %s)", g, before)
	}
	upd := proto.Clone(ids.GetItems()[0]).(*iam.Identity)
	upd.Name = "v2-identity-renamed"
	_, err = v1.Identities().Update(ctx, upd)
	checkErr(t, err, codes.OK)
	id, err = v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: id2.GetUid()})
	checkErr(t, err, codes.OK)
	if id.GetName() != "v2-identity-renamed" || id.GetCompany() != "acme inc" || id.GetDescription() != "two" {
		t.Errorf("v2 GetIdentity after a v1 update: %v", id)
	}

	// Deletes through either version; State follows.
	_, err = v2.RoleBindingsService().DeleteRoleBinding(ctx, &iamv2.DeleteRoleBindingRequest{Uid: rb1.GetId()})
	checkErr(t, err, codes.OK)
	_, err = v1.RoleBindings().Delete(ctx, &iam.DeleteRoleBindingRequest{Id: rb2.GetUid()})
	checkErr(t, err, codes.OK)
	_, err = v1.Identities().Delete(ctx, &iam.DeleteIdentityRequest{Id: id2.GetUid()})
	checkErr(t, err, codes.OK)
	_, err = v2.IdentitiesService().DeleteIdentity(ctx, &iamv2.DeleteIdentityRequest{Uid: id1.GetId()})
	checkErr(t, err, codes.OK)
	st := env.State()
	if len(st.Identities) != 1 || len(st.RoleBindings) != 1 { // the seeded provisioner and its owner binding
		t.Errorf("state after deletes: %v", st.IDs())
	}
	_, err = v2.GroupsService().DeleteGroup(ctx, &iamv2.DeleteGroupRequest{Uid: g1.GetId()})
	checkErr(t, err, codes.OK)
	_, err = v2.GroupsService().GetGroup(ctx, &iamv2.GetGroupRequest{Uid: g1.GetId()})
	checkErr(t, err, codes.NotFound, g1.GetId())
	if got := len(env.State().Groups); got != 2 {
		t.Errorf("%d groups left, want the 2 seeded", got)
	}
}

// TestV2StatusCodes checks the codes of v2 calls on missing or busy objects.
func TestV2StatusCodes(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	missingGroup := string(uidp.UIDP(env.Root).NewChild())
	missingChild := string(uidp.UIDP(env.Group).NewChild())
	holder := env.SeedIdentity(env.Group, "holder", "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{env.Group: {"viewer"}})

	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"GetGroup missing", func() error {
			_, err := v2.GroupsService().GetGroup(testCtx(t), &iamv2.GetGroupRequest{Uid: missingGroup})
			return err
		}, codes.NotFound, missingGroup},
		{"DeleteGroup missing", func() error {
			_, err := v2.GroupsService().DeleteGroup(testCtx(t), &iamv2.DeleteGroupRequest{Uid: missingGroup})
			return err
		}, codes.NotFound, missingGroup},
		{"DeleteGroup holding objects", func() error {
			_, err := v2.GroupsService().DeleteGroup(testCtx(t), &iamv2.DeleteGroupRequest{Uid: env.Group})
			return err
		}, codes.FailedPrecondition, "repos"},
		{"UpdateGroup missing", func() error {
			_, err := v2.GroupsService().UpdateGroup(testCtx(t), &iamv2.UpdateGroupRequest{Group: &iamv2.Group{Uid: missingGroup, Name: "abc"}})
			return err
		}, codes.NotFound, missingGroup},
		{"CreateGroup under a missing parent", func() error {
			_, err := v2.GroupsService().CreateGroup(testCtx(t), &iamv2.CreateGroupRequest{Parent: missingGroup, Group: &iamv2.Group{Name: "abc"}})
			return err
		}, codes.NotFound, missingGroup},
		{"CreateGroup without a parent", func() error {
			_, err := v2.GroupsService().CreateGroup(testCtx(t), &iamv2.CreateGroupRequest{Group: &iamv2.Group{Name: "abc"}})
			return err
		}, codes.PermissionDenied, "root group"},
		{"CreateGroup without a group", func() error {
			_, err := v2.GroupsService().CreateGroup(testCtx(t), &iamv2.CreateGroupRequest{Parent: env.Root})
			return err
		}, codes.InvalidArgument, "group is required"},
		{"GetIdentity missing", func() error {
			_, err := v2.IdentitiesService().GetIdentity(testCtx(t), &iamv2.GetIdentityRequest{Uid: missingChild})
			return err
		}, codes.NotFound, missingChild},
		{"DeleteIdentity missing", func() error {
			_, err := v2.IdentitiesService().DeleteIdentity(testCtx(t), &iamv2.DeleteIdentityRequest{Uid: missingChild})
			return err
		}, codes.NotFound, missingChild},
		{"DeleteIdentity with bindings", func() error {
			_, err := v2.IdentitiesService().DeleteIdentity(testCtx(t), &iamv2.DeleteIdentityRequest{Uid: holder})
			return err
		}, codes.FailedPrecondition, "role bindings"},
		{"CreateIdentity in a missing group", func() error {
			_, err := v2.IdentitiesService().CreateIdentity(testCtx(t), &iamv2.CreateIdentityRequest{Parent: missingChild, Identity: &iamv2.Identity{Name: "abc", Relationship: awsV2(env.WorkloadPrincipal)}})
			return err
		}, codes.NotFound, missingChild},
		{"CreateIdentity without a relationship", func() error {
			_, err := v2.IdentitiesService().CreateIdentity(testCtx(t), &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{Name: "abc"}})
			return err
		}, codes.InvalidArgument, "relationship"},
		{"CreateIdentity with static keys", func() error {
			_, err := v2.IdentitiesService().CreateIdentity(testCtx(t), &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{
				Name: "abc", Relationship: &iamv2.Identity_StaticKeys_{StaticKeys: &iamv2.Identity_StaticKeys{Issuer: "https://x", Subject: "y", IssuerKeys: "{}"}},
			}})
			return err
		}, codes.InvalidArgument, "not supported"},
		{"GetRoleBinding missing", func() error {
			_, err := v2.RoleBindingsService().GetRoleBinding(testCtx(t), &iamv2.GetRoleBindingRequest{Uid: missingChild})
			return err
		}, codes.NotFound, missingChild},
		{"DeleteRoleBinding missing is success (AIP-135)", func() error {
			_, err := v2.RoleBindingsService().DeleteRoleBinding(testCtx(t), &iamv2.DeleteRoleBindingRequest{Uid: missingChild})
			return err
		}, codes.OK, ""},
		{"CreateRoleBinding twice", func() error {
			_, err := v2.RoleBindingsService().CreateRoleBinding(testCtx(t), &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{IdentityUid: holder, RoleUid: env.RoleID("viewer")}})
			return err
		}, codes.AlreadyExists, "already has role viewer"},
		{"CreateRoleBinding of an unknown role", func() error {
			_, err := v2.RoleBindingsService().CreateRoleBinding(testCtx(t), &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{IdentityUid: holder, RoleUid: "viewer"}})
			return err
		}, codes.NotFound, "role \"viewer\" not found"},
		{"CreateRoleBinding without identity_uid", func() error {
			_, err := v2.RoleBindingsService().CreateRoleBinding(testCtx(t), &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{RoleUid: env.RoleID("viewer")}})
			return err
		}, codes.InvalidArgument, "role_binding.identity_uid is required"},
		{"CreateRoleBinding without role_uid", func() error {
			_, err := v2.RoleBindingsService().CreateRoleBinding(testCtx(t), &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{IdentityUid: holder}})
			return err
		}, codes.InvalidArgument, "role_binding.role_uid is required"},
		{"GetRole missing", func() error {
			_, err := v2.RolesService().GetRole(testCtx(t), &iamv2.GetRoleRequest{Uid: missingGroup})
			return err
		}, codes.NotFound, missingGroup},
		{"CreateRole is Unimplemented", func() error {
			_, err := v2.RolesService().CreateRole(testCtx(t), &iamv2.CreateRoleRequest{Parent: env.Root, Role: &iamv2.Role{Name: "custom"}})
			return err
		}, codes.Unimplemented, ""},
		{"BatchCreateRoleBindings is Unimplemented", func() error {
			_, err := v2.RoleBindingsService().BatchCreateRoleBindings(testCtx(t), &iamv2.BatchCreateRoleBindingsRequest{Parent: env.Group})
			return err
		}, codes.Unimplemented, ""},
		{"LookupGroup is Unimplemented", func() error {
			_, err := v2.GroupsService().LookupGroup(testCtx(t), &iamv2.LookupGroupRequest{})
			return err
		}, codes.Unimplemented, ""},
		{"UpdateIdentityMetadata is Unimplemented", func() error {
			_, err := v2.IdentitiesService().UpdateIdentityMetadata(testCtx(t), &iamv2.UpdateIdentityMetadataRequest{})
			return err
		}, codes.Unimplemented, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var msgs []string
			if tt.msg != "" {
				msgs = append(msgs, tt.msg)
			}
			checkErr(t, tt.call(), tt.code, msgs...)
		})
	}
}

// TestV2NameRules checks that v2 validates names and descriptions as v1
// does: 3-63 characters of validation.ValidateName, descriptions of
// validation.ValidateDescription, unique group siblings, identity names
// unique only with Options.UniqueIdentityNames.
func TestV2NameRules(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	env.SeedGroup(env.Root, "taken", "")
	ident := env.SeedIdentity(env.Group, "ident", "", env.WorkloadPrincipal.ExactTrust(), nil)

	createGroup := func(name, desc string) error {
		_, err := v2.GroupsService().CreateGroup(ctx, &iamv2.CreateGroupRequest{Parent: env.Root, Group: &iamv2.Group{Name: name, Description: desc}})
		return err
	}
	updateGroup := func(name, desc string) error {
		_, err := v2.GroupsService().UpdateGroup(ctx, &iamv2.UpdateGroupRequest{Group: &iamv2.Group{Uid: env.Group, Name: name, Description: desc}, UpdateMask: mask("name", "description")})
		return err
	}
	createIdentity := func(name, desc string) error {
		_, err := v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{Name: name, Description: desc, Relationship: awsV2(env.WorkloadPrincipal)}})
		return err
	}
	updateIdentity := func(name, desc string) error {
		_, err := v2.IdentitiesService().UpdateIdentity(ctx, &iamv2.UpdateIdentityRequest{Identity: &iamv2.Identity{Uid: ident, Name: name, Description: desc}, UpdateMask: mask("name", "description")})
		return err
	}
	calls := map[string]func(name, desc string) error{"CreateGroup": createGroup, "UpdateGroup": updateGroup, "CreateIdentity": createIdentity, "UpdateIdentity": updateIdentity}
	tests := []struct {
		name, desc string
		code       codes.Code
		msg        string
	}{
		{"ab", "", codes.InvalidArgument, "3 to 63"},
		{strings.Repeat("a", 64), "", codes.InvalidArgument, "3 to 63"},
		{"Upper-Case", "", codes.InvalidArgument, "invalid"},
		{"", "", codes.InvalidArgument, "invalid"},
		{"fine-name", strings.Repeat("d", 513), codes.InvalidArgument, "description"},
		{"fine-name", "tab\there", codes.InvalidArgument, "description"},
	}
	for call, f := range calls {
		for _, tt := range tests {
			t.Run(call+"/"+tt.name[:min(len(tt.name), 10)]+"/"+tt.desc[:min(len(tt.desc), 5)], func(t *testing.T) {
				checkErr(t, f(tt.name, tt.desc), tt.code, tt.msg)
			})
		}
	}
	t.Run("63 characters", func(t *testing.T) {
		checkErr(t, createGroup(strings.Repeat("a", 63), ""), codes.OK)
	})
	t.Run("group siblings are unique", func(t *testing.T) {
		checkErr(t, createGroup("taken", ""), codes.AlreadyExists, "taken")
		checkErr(t, updateGroup("taken", ""), codes.AlreadyExists, "taken") // env.Group is a sibling of "taken"
	})
	t.Run("identity names repeat by default", func(t *testing.T) {
		checkErr(t, createIdentity("ident", ""), codes.OK)
	})
	t.Run("UniqueIdentityNames", func(t *testing.T) {
		strict := emulatortest.NewEnv(t, emulator.Options{UniqueIdentityNames: true})
		c := emulatortest.IAMv2(t, strict.Emulator, strict.MintToken(strict.Provisioner))
		mk := func(name string) (*iamv2.Identity, error) {
			return c.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: strict.Group, Identity: &iamv2.Identity{Name: name, Relationship: awsV2(strict.WorkloadPrincipal)}})
		}
		_, err := mk("same")
		checkErr(t, err, codes.OK)
		_, err = mk("same")
		checkErr(t, err, codes.AlreadyExists, "same")
		other, err := mk("other")
		checkErr(t, err, codes.OK)
		_, err = c.IdentitiesService().UpdateIdentity(ctx, &iamv2.UpdateIdentityRequest{Identity: &iamv2.Identity{Uid: other.GetUid(), Name: "same"}, UpdateMask: mask("name")})
		checkErr(t, err, codes.AlreadyExists, "same")
	})
}

// TestV2CreateOutputOnly checks OUTPUT_ONLY fields sent to Create: refused
// by default, ignored with Options.IgnoreOutputOnly, and always ignored by
// CreateRoleBinding (its proto says "other fields are ignored").
func TestV2CreateOutputOnly(t *testing.T) {
	now := timestamppb.Now()
	for _, ignore := range []bool{false, true} {
		t.Run(map[bool]string{false: "strict", true: "IgnoreOutputOnly"}[ignore], func(t *testing.T) {
			env := emulatortest.NewEnv(t, emulator.Options{IgnoreOutputOnly: ignore})
			ctx := testCtx(t)
			v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
			want := codes.InvalidArgument
			if ignore {
				want = codes.OK
			}
			tests := []struct {
				name, field string
				group       *iamv2.Group
				identity    *iamv2.Identity
			}{
				{"group uid", "uid", &iamv2.Group{Uid: env.Root + "/0123456789abcdef", Name: "g-uid"}, nil},
				{"group create_time", "create_time", &iamv2.Group{Name: "g-ct", CreateTime: now}, nil},
				{"group status", "status", &iamv2.Group{Name: "g-st", Status: iamv2.OrgStatus_ORG_STATUS_READY}, nil},
				{"group resource_limits", "resource_limits", &iamv2.Group{Name: "g-rl", ResourceLimits: map[string]int32{"repos": 1}}, nil},
				{"identity last_seen_time", "last_seen_time", nil, &iamv2.Identity{Name: "i-ls", LastSeenTime: now, Relationship: awsV2(env.WorkloadPrincipal)}},
				{"identity email", "email", nil, &iamv2.Identity{Name: "i-em", Email: "a@b.c", Relationship: awsV2(env.WorkloadPrincipal)}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var err error
					if tt.group != nil {
						var g *iamv2.Group
						g, err = v2.GroupsService().CreateGroup(ctx, &iamv2.CreateGroupRequest{Parent: env.Root, Group: tt.group})
						if err == nil && (g.GetUid() == tt.group.GetUid() || len(g.GetResourceLimits()) > 0 || g.GetCreateTime().AsTime().Equal(now.AsTime())) {
							t.Errorf("the server kept a sent output-only value: %v", g)
						}
					} else {
						var id *iamv2.Identity
						id, err = v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: tt.identity})
						if err == nil && (id.GetLastSeenTime() != nil || id.GetEmail() != "") {
							t.Errorf("the server kept a sent output-only value: %v", id)
						}
					}
					if want == codes.OK {
						checkErr(t, err, want)
					} else {
						checkErr(t, err, want, tt.field, "output-only")
					}
				})
			}
			// Not output-only, so checked under both readings: a subgroup's
			// kind is inherited, verified is staff-only.
			_, err := v2.GroupsService().CreateGroup(ctx, &iamv2.CreateGroupRequest{Parent: env.Root, Group: &iamv2.Group{Name: "g-kind", Kind: iamv2.OrgKind_ORG_KIND_DEV}})
			checkErr(t, err, codes.InvalidArgument, "kind")
			_, err = v2.GroupsService().CreateGroup(ctx, &iamv2.CreateGroupRequest{Parent: env.Root, Group: &iamv2.Group{Name: "g-ver", Verified: true}})
			checkErr(t, err, codes.InvalidArgument, "verified")
			_, err = v2.GroupsService().CreateGroup(ctx, &iamv2.CreateGroupRequest{Parent: env.Root, Group: &iamv2.Group{Name: "g-kind-same", Kind: iamv2.OrgKind_ORG_KIND_CUSTOMER}})
			checkErr(t, err, codes.OK)

			holder := env.SeedIdentity(env.Group, "holder", "", env.WorkloadPrincipal.ExactTrust(), nil)
			rb, err := v2.RoleBindingsService().CreateRoleBinding(ctx, &iamv2.CreateRoleBindingRequest{Parent: env.Group, RoleBinding: &iamv2.RoleBinding{
				Uid: env.Group + "/0123456789abcdef", IdentityUid: holder, RoleUid: env.RoleID("viewer"), CreateTime: now,
				Role: &iamv2.RoleBindingRole{Uid: env.RoleID("owner"), Name: "owner"},
			}})
			checkErr(t, err, codes.OK)
			if rb.GetUid() == env.Group+"/0123456789abcdef" || rb.GetRole().GetName() != "viewer" {
				t.Errorf("CreateRoleBinding kept ignored fields: %v", rb)
			}
		})
	}
}
