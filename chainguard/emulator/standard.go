package emulator

import (
	"crypto/sha1" //nolint:gosec // deterministic IDs, not security
	"encoding/base32"
	"fmt"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"github.com/aws/aws-sdk-go-v2/aws"
)

// AssumedRolePrincipal returns the principal AWS STS reports for a session
// of an assumed role (a Lambda function runs as session = function name):
// ARN arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION and user ID
// ROLEID:SESSION, where ROLEID is a role unique ID ("AROA" + 17 characters)
// derived deterministically from account and role.
func AssumedRolePrincipal(account, roleName, session string) AWSPrincipal {
	return AWSPrincipal{
		Account: account,
		ARN:     fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", account, roleName, session),
		UserID:  RoleUniqueID(account, roleName) + ":" + session,
	}
}

// RolePrincipal returns the principal AWS STS reports for a session of the
// IAM role arn (path included) whose unique ID is roleID, as AWS or a
// CloudFormation engine assigned them (Fn::GetAtt Role.Arn and Role.RoleId):
// ARN arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION, user ID
// ROLEID:SESSION, and RoleARN arn (the subject of its web identity
// tokens). It checks the shape of arn only: callers validate the parts
// (chainguard/validate), and RegisterAWSPrincipal the account.
func RolePrincipal(arn, roleID, session string) (AWSPrincipal, error) {
	m := roleARN.FindStringSubmatch(arn)
	if m == nil {
		return AWSPrincipal{}, fmt.Errorf("emulator: RolePrincipal: %q is not an IAM role ARN (arn:PARTITION:iam::ACCOUNT:role/PATH/NAME)", arn)
	}
	if roleID == "" || session == "" {
		return AWSPrincipal{}, fmt.Errorf("emulator: RolePrincipal: the role unique ID and the session name are required")
	}
	partition, account, role := m[1], m[2], m[3]
	return AWSPrincipal{
		Account: account,
		ARN:     fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", partition, account, role, session),
		UserID:  roleID + ":" + session,
		RoleARN: arn,
	}, nil
}

// RoleUniqueID is the deterministic role unique ID ("AROA" + 17 characters of
// [A-Z2-7]) the emulator uses for role roleName in account.
func RoleUniqueID(account, roleName string) string {
	sum := sha1.Sum([]byte(account + "/" + roleName)) //nolint:gosec // deterministic ID
	return "AROA" + base32.StdEncoding.EncodeToString(sum[:])[:17]
}

// ExactTrust returns the aws_identity that admits exactly p (account, arn
// and user_id equal), the default the product writes.
func (p AWSPrincipal) ExactTrust() *iam.Identity_AWSIdentity {
	return &iam.Identity_AWSIdentity{
		AwsAccount: p.Account,
		AwsArn:     &iam.Identity_AWSIdentity_Arn{Arn: p.ARN},
		AwsUserId:  &iam.Identity_AWSIdentity_UserId{UserId: p.UserID},
	}
}

// WebIdentitySubject is the sub of p's web identity tokens
// (GetWebIdentityToken): its RoleARN, else the role ARN of its assumed-role
// ARN with path "/", else its ARN (see webidentity_token.go).
func (p AWSPrincipal) WebIdentitySubject() string { return principalARN(p) }

// WebIdentityTrust returns the claim_match that admits exactly p's web
// identity tokens from issuer (p's account's, EnableWebIdentityFederation)
// requested for audience (the Chainguard issuer URL, IssuerURL): issuer,
// subject (WebIdentitySubject) and audience exact, the trust the product
// writes.
func (p AWSPrincipal) WebIdentityTrust(issuer, audience string) *iam.Identity_ClaimMatch {
	return &iam.Identity_ClaimMatch{
		Iss: &iam.Identity_ClaimMatch_Issuer{Issuer: issuer},
		Sub: &iam.Identity_ClaimMatch_Subject{Subject: p.WebIdentitySubject()},
		Aud: &iam.Identity_ClaimMatch_Audience{Audience: audience},
	}
}

// StandardOptions configures SeedStandard; zero fields take the defaults in
// brackets.
type StandardOptions struct {
	RootName           string   // root group (organization) name ["acme"]
	GroupName          string   // child group holding the repos ["example-group"]
	GroupDescription   string   // ["Example group seeded by the Chainguard emulator"]
	Repos              []string // repo names in the group [nginx, python, static]
	Account            string   // AWS account of both principals ["111122223333"]
	ProvisionerRole    string   // IAM role of the provisioner ["chainguard-provisioner"]
	ProvisionerSession string   // its session name ["chainguard-provisioner"]
	WorkloadRole       string   // IAM role of the workload ["aws-auth"]
	WorkloadSession    string   // its session name (a Lambda's function name) ["aws-auth"]
	// ProvisionerPrincipal and WorkloadPrincipal, when set, are the two
	// principals themselves (for example the real principals of functions
	// a CloudFormation engine deployed: RolePrincipal), in place of the
	// ones AssumedRolePrincipal derives from the role and session names
	// above (which are then ignored). They must be in Account.
	ProvisionerPrincipal, WorkloadPrincipal *AWSPrincipal
	// WebIdentity enables Account's outbound identity federation and gives
	// the provisioner identity the claim_match trust of the web-identity
	// mode (WebIdentityTrust, audience IssuerURL) instead of ExactTrust.
	WebIdentity bool
}

// Standard is what SeedStandard created.
type Standard struct {
	Root      string // root group UIDP
	Group     string // child group UIDP
	GroupName string
	Repos     []Repo // in Group, in the order of StandardOptions.Repos
	// Provisioner is an identity in Root with the owner role on Root,
	// assumable (exact trust) by ProvisionerPrincipal.
	Provisioner            string
	ProvisionerPrincipal   AWSPrincipal
	ProvisionerCredentials aws.Credentials
	// WorkloadPrincipal is registered with the AWS STS stand-in, but no
	// identity trusts it yet: that is the product's job.
	WorkloadPrincipal   AWSPrincipal
	WorkloadCredentials aws.Credentials
}

// SeedStandard seeds the layout used by the chainguard-emulator command and
// by tests: a root group, a child group with repos, an owner "provisioner"
// identity trusting an assumed-role principal (by its aws_identity, or with
// WebIdentity by its role's web identity tokens), and a registered workload
// principal. It panics on invalid options, like every Seed method.
func (e *Emulator) SeedStandard(o StandardOptions) Standard {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&o.RootName, "acme")
	def(&o.GroupName, "example-group")
	def(&o.GroupDescription, "Example group seeded by the Chainguard emulator")
	def(&o.Account, "111122223333")
	def(&o.ProvisionerRole, "chainguard-provisioner")
	def(&o.ProvisionerSession, "chainguard-provisioner")
	def(&o.WorkloadRole, "aws-auth")
	def(&o.WorkloadSession, "aws-auth")
	if o.Repos == nil {
		o.Repos = []string{"nginx", "python", "static"}
	}

	s := Standard{GroupName: o.GroupName}
	s.Root = e.SeedGroup("", o.RootName, "Organization seeded by the Chainguard emulator")
	s.Group = e.SeedGroup(s.Root, o.GroupName, o.GroupDescription)
	for _, name := range o.Repos {
		s.Repos = append(s.Repos, Repo{ID: e.SeedRepo(s.Group, name), Name: name})
	}
	principal := func(p *AWSPrincipal, role, session string) AWSPrincipal {
		if p == nil {
			return AssumedRolePrincipal(o.Account, role, session)
		}
		if p.Account != o.Account {
			panic(fmt.Sprintf("emulator: SeedStandard: principal %s is not in account %s", p.ARN, o.Account))
		}
		return *p
	}
	s.ProvisionerPrincipal = principal(o.ProvisionerPrincipal, o.ProvisionerRole, o.ProvisionerSession)
	s.ProvisionerCredentials = e.RegisterAWSPrincipal(s.ProvisionerPrincipal)
	owner := map[string][]string{s.Root: {"owner"}}
	if o.WebIdentity {
		issuer := e.EnableWebIdentityFederation(o.Account)
		s.Provisioner = e.SeedClaimMatchIdentity(s.Root, "provisioner", "Provisioner identity seeded by the Chainguard emulator",
			s.ProvisionerPrincipal.WebIdentityTrust(issuer, e.IssuerURL()), owner)
	} else {
		s.Provisioner = e.SeedIdentity(s.Root, "provisioner", "Provisioner identity seeded by the Chainguard emulator",
			s.ProvisionerPrincipal.ExactTrust(), owner)
	}
	s.WorkloadPrincipal = principal(o.WorkloadPrincipal, o.WorkloadRole, o.WorkloadSession)
	s.WorkloadCredentials = e.RegisterAWSPrincipal(s.WorkloadPrincipal)
	return s
}
