package emulator_test

import (
	"testing"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// awsIssuer is an issuer URL of the form AWS gives an account's outbound
// federation (Chainguard's AWS guide).
const awsIssuer = "https://00000000-0000-0000-0000-000000000000.tokens.sts.global.api.aws"

// claimMatchV2 is c as the IAM v2 message (the fields have the same names).
func claimMatchV2(t *testing.T, c *iam.Identity_ClaimMatch) *iamv2.Identity_ClaimMatch {
	t.Helper()
	b, err := protojson.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out := &iamv2.Identity_ClaimMatch{}
	if err := protojson.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// cmV2 is the v2 claim_match relationship c.
func cmV2(t *testing.T, c *iam.Identity_ClaimMatch) *iamv2.Identity_ClaimMatch_ {
	t.Helper()
	return &iamv2.Identity_ClaimMatch_{ClaimMatch: claimMatchV2(t, c)}
}

// cmV1 is the v1 claim_match relationship c.
func cmV1(c *iam.Identity_ClaimMatch) *iam.Identity_ClaimMatch_ {
	return &iam.Identity_ClaimMatch_{ClaimMatch: c}
}

// TestClaimMatchSharedState checks that a claim_match made through either
// IAM version is stored once, whole (issuer, subject, audience, claims,
// claim_patterns), and read back through both versions' Create, Get and
// List (and the v2 relationship_type filter) and State.
func TestClaimMatchSharedState(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	tok := env.MintToken(env.Provisioner)
	v1, v2 := iamClients(t, env.Emulator, tok), emulatortest.IAMv2(t, env.Emulator, tok)

	full := withAudience(claimMatch(awsIssuer, roleARN("aws-auth")), "https://issuer.enforce.dev")
	full.Claims = map[string]string{"team": "payments"}
	full.ClaimPatterns = map[string]string{"env": `^(dev|prod)$`, "team": `^pay`}
	made1, err := v1.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "by-v1", Relationship: cmV1(full)}})
	checkErr(t, err, codes.OK)
	pat := withAudience(claimMatch(`^https://[0-9a-f-]+\.tokens\.sts\.global\.api\.aws$`, `^arn:aws:iam::111122223333:role/ci-.*$`), `^https://issuer\.enforce\.dev$`)
	made2, err := v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{Name: "by-v2", Relationship: cmV2(t, pat)}})
	checkErr(t, err, codes.OK)
	if !proto.Equal(made1.GetClaimMatch(), full) || !proto.Equal(made2.GetClaimMatch(), claimMatchV2(t, pat)) {
		t.Errorf("Create returned %v and %v", made1, made2)
	}

	for _, c := range []struct {
		id   string
		want *iam.Identity_ClaimMatch
	}{{made1.GetId(), full}, {made2.GetUid(), pat}} {
		got2, err := v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: c.id})
		checkErr(t, err, codes.OK)
		if !proto.Equal(got2.GetClaimMatch(), claimMatchV2(t, c.want)) {
			t.Errorf("v2 GetIdentity %s: %v, want claim_match %v", c.id, got2, c.want)
		}
		l1, err := v1.Identities().List(ctx, &iam.IdentityFilter{Id: c.id})
		checkErr(t, err, codes.OK)
		if len(l1.GetItems()) != 1 || !proto.Equal(l1.GetItems()[0].GetClaimMatch(), c.want) {
			t.Errorf("v1 List %s: %v, want claim_match %v", c.id, l1.GetItems(), c.want)
		}
		var inState *iam.Identity_ClaimMatch
		for _, id := range env.State().Identities {
			if id.ID == c.id {
				inState = id.ClaimMatch
			}
		}
		if !proto.Equal(inState, c.want) {
			t.Errorf("State of %s: claim_match %v, want %v", c.id, inState, c.want)
		}
	}

	list := func(rt iamv2.RelationshipType) []string {
		l, err := v2.IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}, RelationshipType: rt})
		checkErr(t, err, codes.OK)
		var ids []string
		for _, i := range l.GetIdentities() {
			ids = append(ids, i.GetUid())
		}
		return ids
	}
	if got := list(iamv2.RelationshipType_RELATIONSHIP_TYPE_CLAIM_MATCH); len(got) != 2 {
		t.Errorf("claim_match identities of the group: %v, want %s and %s", got, made1.GetId(), made2.GetUid())
	}
	if got := list(iamv2.RelationshipType_RELATIONSHIP_TYPE_AWS_IDENTITY); len(got) != 0 {
		t.Errorf("aws_identity identities of the group: %v, want none", got)
	}
}

// TestClaimMatchValidation checks the claim_match rules (checkClaimMatch)
// on every way in: v1 and v2 Create, v1 Update and v2 Update.
func TestClaimMatchValidation(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	tok := env.MintToken(env.Provisioner)
	v1, v2 := iamClients(t, env.Emulator, tok), emulatortest.IAMv2(t, env.Emulator, tok)
	existing, err := v1.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "ci-1", Relationship: cmV1(claimMatch(awsIssuer, roleARN("ci")))}})
	checkErr(t, err, codes.OK)

	good := func() *iam.Identity_ClaimMatch { return claimMatch(awsIssuer, roleARN("ci")) }
	edit := func(f func(c *iam.Identity_ClaimMatch)) *iam.Identity_ClaimMatch { c := good(); f(c); return c }
	tests := []struct {
		name string
		cm   *iam.Identity_ClaimMatch
		code codes.Code
		msg  string
	}{
		{"exact issuer and subject", good(), codes.OK, ""},
		{"patterns, audience, claims and claim_patterns on one claim", edit(func(c *iam.Identity_ClaimMatch) {
			c.Iss = &iam.Identity_ClaimMatch_IssuerPattern{IssuerPattern: `^https://.*\.tokens\.sts\.global\.api\.aws$`}
			c.Sub = &iam.Identity_ClaimMatch_SubjectPattern{SubjectPattern: `^arn:aws:iam::111122223333:role/.*$`}
			c.Aud = &iam.Identity_ClaimMatch_AudiencePattern{AudiencePattern: `^https://issuer\.enforce\.dev$`}
			c.Claims, c.ClaimPatterns = map[string]string{"team": "payments"}, map[string]string{"team": `^pay`}
		}), codes.OK, ""},
		{"http issuer on a loopback host", claimMatch("http://127.0.0.1:8080/federation/abc", roleARN("ci")), codes.OK, ""},
		{"http issuer on localhost", claimMatch("http://localhost:8080", roleARN("ci")), codes.OK, ""},
		{"empty claim_match", &iam.Identity_ClaimMatch{}, codes.InvalidArgument, "claim_match.issuer or claim_match.issuer_pattern is required"},
		{"no issuer", edit(func(c *iam.Identity_ClaimMatch) { c.Iss = nil }), codes.InvalidArgument, "claim_match.issuer or claim_match.issuer_pattern is required"},
		{"no subject", edit(func(c *iam.Identity_ClaimMatch) { c.Sub = nil }), codes.InvalidArgument, "claim_match.subject or claim_match.subject_pattern is required"},
		{"issuer without a scheme", claimMatch("issuer.example.com", roleARN("ci")), codes.InvalidArgument, "claim_match.issuer"},
		{"http issuer on another host", claimMatch("http://issuer.example.com", roleARN("ci")), codes.InvalidArgument, "loopback"},
		{"issuer with a query", claimMatch(awsIssuer+"?a=b", roleARN("ci")), codes.InvalidArgument, "no query"},
		{"issuer with user information", claimMatch("https://me@issuer.example.com", roleARN("ci")), codes.InvalidArgument, "user information"},
		{"issuer of another scheme", claimMatch("ftp://issuer.example.com", roleARN("ci")), codes.InvalidArgument, "not https"},
		{"issuer_pattern does not compile", claimMatch("^(", roleARN("ci")), codes.InvalidArgument, "claim_match.issuer_pattern"},
		{"subject_pattern does not compile", claimMatch(awsIssuer, "^["), codes.InvalidArgument, "claim_match.subject_pattern"},
		{"audience_pattern does not compile", withAudience(good(), "^a{2,1}"), codes.InvalidArgument, "claim_match.audience_pattern"},
		{"claim_patterns value does not compile", edit(func(c *iam.Identity_ClaimMatch) { c.ClaimPatterns = map[string]string{"env": "(dev"} }), codes.InvalidArgument, `claim_match.claim_patterns["env"]`},
	}
	ways := []struct {
		name string
		call func(c *iam.Identity_ClaimMatch) error
	}{
		{"v1 Create", func(c *iam.Identity_ClaimMatch) error {
			_, err := v1.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "ci-2", Relationship: cmV1(c)}})
			return err
		}},
		{"v2 Create", func(c *iam.Identity_ClaimMatch) error {
			_, err := v2.IdentitiesService().CreateIdentity(ctx, &iamv2.CreateIdentityRequest{Parent: env.Group, Identity: &iamv2.Identity{Name: "ci-2", Relationship: cmV2(t, c)}})
			return err
		}},
		{"v1 Update", func(c *iam.Identity_ClaimMatch) error {
			_, err := v1.Identities().Update(ctx, &iam.Identity{Id: existing.GetId(), Name: "ci-1", Relationship: cmV1(c)})
			return err
		}},
		{"v2 Update", func(c *iam.Identity_ClaimMatch) error {
			_, err := v2.IdentitiesService().UpdateIdentity(ctx, &iamv2.UpdateIdentityRequest{Identity: &iamv2.Identity{Uid: existing.GetId(), Relationship: cmV2(t, c)}, UpdateMask: mask("claim_match")})
			return err
		}},
	}
	for _, w := range ways {
		for _, tt := range tests {
			t.Run(w.name+"/"+tt.name, func(t *testing.T) {
				if tt.msg == "" {
					checkErr(t, w.call(tt.cm), tt.code)
				} else {
					checkErr(t, w.call(tt.cm), tt.code, tt.msg)
				}
			})
		}
	}
}

// TestClaimMatchUpdates checks updates of a claim_match identity: the
// contents change in place through v1 (which replaces the relationship) and
// v2 (whose path claim_match replaces it as a whole), and the relationship's
// kind never changes (checkRelationshipKind). Each case starts from the
// previous one's result; a refused update leaves the identity as it was.
func TestClaimMatchUpdates(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	tok := env.MintToken(env.Provisioner)
	v1, v2 := iamClients(t, env.Emulator, tok), emulatortest.IAMv2(t, env.Emulator, tok)
	start := withAudience(claimMatch(awsIssuer, roleARN("aws-auth")), "https://issuer.enforce.dev")
	start.Claims = map[string]string{"team": "payments"}
	created, err := v1.Identities().Create(ctx, &iam.CreateIdentityRequest{ParentId: env.Group, Identity: &iam.Identity{Name: "fn-1", Description: "d", Relationship: cmV1(start)}})
	checkErr(t, err, codes.OK)
	awsID := env.SeedIdentity(env.Group, "by-aws", "", env.WorkloadPrincipal.ExactTrust(), nil)
	uid := created.GetId()

	newSubject := claimMatch(awsIssuer, roleARN("aws-auth-2"))
	asPattern := claimMatch(`^https://[0-9a-f-]+\.tokens\.sts\.global\.api\.aws$`, roleARN("aws-auth-2"))
	v2Update := func(body *iamv2.Identity, m *fieldmaskpb.FieldMask) func() error {
		return func() error {
			_, err := v2.IdentitiesService().UpdateIdentity(ctx, &iamv2.UpdateIdentityRequest{Identity: body, UpdateMask: m})
			return err
		}
	}
	v1Update := func(body *iam.Identity) func() error {
		return func() error { _, err := v1.Identities().Update(ctx, body); return err }
	}
	tests := []struct {
		name   string
		update func() error
		code   codes.Code
		msg    string
		want   *iam.Identity_ClaimMatch // the stored claim_match after success
	}{
		{"v1: new subject, audience and claims dropped (v1 replaces the relationship)", v1Update(&iam.Identity{Id: uid, Name: "fn-1", Description: "d", Relationship: cmV1(newSubject)}), codes.OK, "", newSubject},
		{"v2 path claim_match: literal issuer to pattern", v2Update(&iamv2.Identity{Uid: uid, Relationship: cmV2(t, asPattern)}, mask("claim_match")), codes.OK, "", asPattern},
		{"v2 path claim_match replaces it as a whole", v2Update(&iamv2.Identity{Uid: uid, Relationship: cmV2(t, start)}, mask("claim_match")), codes.OK, "", start},
		{"v2 implied mask replaces it too", v2Update(&iamv2.Identity{Uid: uid, Relationship: cmV2(t, newSubject)}, nil), codes.OK, "", newSubject},
		{"v2 path name leaves the claim_match in the body alone", v2Update(&iamv2.Identity{Uid: uid, Name: "fn-2", Relationship: cmV2(t, start)}, mask("name")), codes.OK, "", newSubject},
		{"v2 nested path", v2Update(&iamv2.Identity{Uid: uid, Relationship: cmV2(t, start)}, mask("claim_match.subject")), codes.InvalidArgument, "nested", nil},
		{"v2 path claim_match without one clears the relationship", v2Update(&iamv2.Identity{Uid: uid}, mask("claim_match")), codes.InvalidArgument, "needs a relationship", nil},
		{"v1 to aws_identity", v1Update(&iam.Identity{Id: uid, Name: "fn-2", Relationship: &iam.Identity_AwsIdentity{AwsIdentity: env.WorkloadPrincipal.ExactTrust()}}), codes.InvalidArgument, "cannot change it to aws_identity", nil},
		{"v2 path aws_identity", v2Update(&iamv2.Identity{Uid: uid, Relationship: awsV2(env.WorkloadPrincipal)}, mask("aws_identity")), codes.InvalidArgument, "cannot change it to aws_identity", nil},
		{"v2 implied mask to aws_identity", v2Update(&iamv2.Identity{Uid: uid, Relationship: awsV2(env.WorkloadPrincipal)}, nil), codes.InvalidArgument, "cannot change it to aws_identity", nil},
		{"v1 aws_identity identity to claim_match", v1Update(&iam.Identity{Id: awsID, Name: "by-aws", Relationship: cmV1(start)}), codes.InvalidArgument, "cannot change it to claim_match", nil},
		{"v2 aws_identity identity to claim_match", v2Update(&iamv2.Identity{Uid: awsID, Relationship: cmV2(t, start)}, mask("claim_match")), codes.InvalidArgument, "cannot change it to claim_match", nil},
	}
	state := func() map[string]*iam.Identity {
		out := map[string]*iam.Identity{}
		for _, id := range env.State().Identities {
			out[id.ID] = id.Proto
		}
		return out
	}
	for _, tt := range tests {
		before := state()
		err := tt.update()
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, err, tt.code, tt.msg)
			after := state()
			if err != nil {
				for id, b := range before {
					if !proto.Equal(after[id], b) {
						t.Errorf("a refused update changed identity %s: %v, was %v", id, after[id], b)
					}
				}
				return
			}
			if got := after[uid].GetClaimMatch(); !proto.Equal(got, tt.want) {
				t.Errorf("claim_match %v, want %v", got, tt.want)
			}
			got2, err := v2.IdentitiesService().GetIdentity(ctx, &iamv2.GetIdentityRequest{Uid: uid})
			checkErr(t, err, codes.OK)
			if !proto.Equal(got2.GetClaimMatch(), claimMatchV2(t, tt.want)) {
				t.Errorf("v2 GetIdentity: %v, want claim_match %v", got2, tt.want)
			}
		})
	}
}
