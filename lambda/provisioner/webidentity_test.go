package main_test

import (
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-lambda-go/cfn"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
	"github.com/assumable-identity/cdk-chainguard/lambda/internal/functest"
)

// The real bootstrap in the web-identity mode (CHAINGUARD_TRUST=web-identity),
// its AWS SDK clients pointed at the emulator's AWS stand-in by the SDK's own
// endpoint variables: the federation resource enables the account's outbound
// identity federation, and then, after the trust step (a claim_match
// identity for the provisioner's role), the provisioner authenticates by web
// identity and makes a claim_match identity the workload's web identity
// token can use.
func TestWebIdentityMode(t *testing.T) {
	e := newEnv(t)
	fn := functest.Start(t, bin, rie.Options{
		FunctionName: "chainguard-provisioner",
		Timeout:      functionTimeout,
		Env: append(functest.AWSEnv(e.ProvisionerCredentials),
			"PROVISIONER_DEADLINE_MARGIN="+margin.String(),
			"CHAINGUARD_TRUST=web-identity",
			"AWS_ENDPOINT_URL_STS="+e.AWSURL(),
			"AWS_ENDPOINT_URL_IAM="+e.AWSURL(),
		),
	}, secretsOf(e.ProvisionerCredentials)...)
	account := e.ProvisionerPrincipal.Account

	// The provisioner stack: federation enabled, its issuer answered.
	const fedType = "Custom::AwsOutboundWebIdentityFederation"
	fedProps := map[string]any{"ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:chainguard-provisioner"}
	r := e.send(t, fn, e.event(cfn.RequestCreate, fedType, "", fedProps, nil))
	issuer, on := e.WebIdentityFederation(account)
	wantSuccess(t, r, map[string]any{"IssuerIdentifier": issuer})
	if !on || r.PhysicalResourceID != "outbound-web-identity-federation" {
		t.Fatalf("federation Create answered %s, enabled %v; want outbound-web-identity-federation, enabled", r.PhysicalResourceID, on)
	}

	// The one-time trust step, as chainctl would make it.
	provisioner := e.SeedClaimMatchIdentity(e.Root, "web-provisioner", "", &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: issuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: "arn:aws:iam::111122223333:role/chainguard-provisioner"},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: e.IssuerURL()},
	}, map[string][]string{e.Root: {"owner"}})
	before := e.State()

	// An identity stack's identity, trusting the workload's role by web
	// identity.
	const typ = "Custom::ChainguardIdentity"
	props := e.common()
	props["ProvisionerIdentity"] = provisioner
	maps.Copy(props, map[string]any{
		"Name": "aws-auth-identity", "Group": e.Group, "Roles": "viewer", "Trust": "WebIdentity",
		"AwsAccount": account, "AwsPartition": "aws", "AwsRoleName": "aws-auth", "AwsIssuer": issuer,
	})
	r = e.send(t, fn, e.event(cfn.RequestCreate, typ, "", props, nil))
	id := r.PhysicalResourceID
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "aws-auth-identity", "Roles": "viewer"})
	got := e.identities("aws-auth-identity")
	if len(got) != 1 || got[0].ID != id || uidp.Parent(id) != e.Group || got[0].AWS != nil ||
		got[0].ClaimMatch.GetIssuer() != issuer || got[0].ClaimMatch.GetSubject() != "arn:aws:iam::111122223333:role/aws-auth" ||
		got[0].ClaimMatch.GetAudience() != e.IssuerURL() {
		t.Fatalf("identities after Create = %+v, want one in %s trusting issuer %s, subject the aws-auth role, audience %s", got, e.Group, issuer, e.IssuerURL())
	}
	if roles := e.State().RolesOf(id); !slices.Equal(roles, []string{"viewer"}) {
		t.Fatalf("role bindings = %v, want [viewer]", roles)
	}
	// The workload's web identity token is exchanged for it (the
	// workload's role is aws-auth, path "/").
	time.Sleep(e.PropagationDelay())
	emulatortest.WebIdentityToken(t, e.Emulator, emulatortest.STSClient(e.Emulator, e.WorkloadCredentials, "eu-west-1"), id)

	// The stack's Delete; then the provisioner stack's Delete leaves the
	// account's federation on.
	r = e.send(t, fn, e.event(cfn.RequestDelete, typ, id, props, nil))
	wantSuccess(t, r, nil)
	r = e.send(t, fn, e.event(cfn.RequestDelete, fedType, "outbound-web-identity-federation", fedProps, nil))
	wantSuccess(t, r, nil)
	if got, on := e.WebIdentityFederation(account); !on || got != issuer {
		t.Fatalf("after the Delete the account's federation is %q, enabled %v; want it left on", got, on)
	}
	if after := e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("the emulator ended with %v, want what it held after the trust step: %v", after.IDs(), before.IDs())
	}
}
