// Package trust describes whom a Chainguard assumable identity trusts, as a
// structure rather than as patterns: one AWS IAM role of one account, and
// which of its sessions. The anchored aws_identity (arn or arn_pattern,
// user_id or user_id_pattern) is built here from that structure, with the
// account, the role name and the role's unique ID written literally and only
// the session left to a pattern, so a trust wider than one role of one
// account cannot be expressed. The provisioner's handler reads it from a
// custom resource's properties and chainguard/provision stores it; the CDK
// constructs check the same inputs at synth time with package validate.
//
// Two kinds of trust name the same account, partition and role:
//   - AWS, the caller-identity kind: the workload signs an STS
//     GetCallerIdentity request, and the identity's aws_identity pins the
//     role's unique ID and a session;
//   - WebIdentity, AWS outbound identity federation: the workload presents
//     a JWT from sts:GetWebIdentityToken, and the identity's claim_match
//     trusts issuer = the account's federation issuer, subject = the role's
//     ARN exactly. AWS's token carries no unique ID and no session, so this
//     kind pins neither (README, "Choosing a trust mode").
package trust

import (
	"fmt"
	"regexp"
	"strings"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Relationship is a trust of either kind, AWS or WebIdentity: what an
// identity's relationship oneof holds.
type Relationship interface {
	// Validate reports the first problem as a *FieldError.
	Validate() error
	// Apply sets id's relationship to the trust (it does not validate).
	Apply(id *iam.Identity)
}

var (
	_ Relationship = AWS{}
	_ Relationship = WebIdentity{}
)

// AWS trusts the sessions of one IAM role that prove themselves with a
// signed GetCallerIdentity request, pinned to the role's unique ID: a role
// deleted and re-created under the same name gets a new ID and can no longer
// assume the identity. Exactly one of Session and SessionPattern is set.
type AWS struct {
	Account   string // 12-digit AWS account ID
	Partition string // AWS partition; only "aws" works with Chainguard
	RoleName  string // IAM role name (assumed-role ARNs carry no path)
	RoleID    string // the role's unique ID, AROA + 17 characters
	// Session trusts one session, e.g. a Lambda function's name.
	Session string
	// SessionPattern trusts the sessions whose name matches it: a regular
	// expression for the session name alone, without anchors (see
	// validate.SessionPattern), e.g. `[0-9a-f]{32}` for ECS task IDs.
	SessionPattern string
}

// FieldError is a Validate failure. Fields names the offending fields of
// AWS (two when they exclude each other), so that a caller can name its own
// inputs instead, e.g. a custom resource's properties; Err says what is
// wrong without naming them and matches validate.ErrInvalid.
type FieldError struct {
	Fields []string
	Err    error
}

func (e *FieldError) Error() string { return strings.Join(e.Fields, " or ") + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// partitionReason says why only the aws partition works.
const partitionReason = "Chainguard verifies AWS callers only in the aws partition: the Chainguard SDK signs the GetCallerIdentity request for sts.amazonaws.com, which does not accept the credentials of another partition (aws-cn, aws-us-gov, ...)"

// Validate reports the first problem with t as a *FieldError.
func (t AWS) Validate() error {
	fail := func(err error, fields ...string) error { return &FieldError{Fields: fields, Err: err} }
	if err := validate.AWSAccount(t.Account); err != nil {
		return fail(err, "Account")
	}
	if t.Partition != "aws" {
		return fail(fmt.Errorf("partition %q: %s: %w", t.Partition, partitionReason, validate.ErrInvalid), "Partition")
	}
	if err := validate.IAMRoleName(t.RoleName); err != nil {
		return fail(err, "RoleName")
	}
	if err := validate.RoleID(t.RoleID); err != nil {
		return fail(err, "RoleID")
	}
	const choose = "set exactly one: a session name to trust one session (for a Lambda function, its name), e.g. \"my-function\", or a regular expression for the names of sessions that vary, e.g. `[0-9a-f]{32}` for ECS task IDs"
	switch {
	case t.Session == "" && t.SessionPattern == "":
		return fail(fmt.Errorf("neither is set: %s: %w", choose, validate.ErrInvalid), "Session", "SessionPattern")
	case t.Session != "" && t.SessionPattern != "":
		return fail(fmt.Errorf("both are set: %s: %w", choose, validate.ErrInvalid), "Session", "SessionPattern")
	case t.Session != "":
		if err := validate.SessionName(t.Session); err != nil {
			return fail(err, "Session")
		}
	default:
		if err := validate.SessionPattern(t.SessionPattern); err != nil {
			return fail(err, "SessionPattern")
		}
	}
	return nil
}

// AWSIdentity returns t as IAM v2's aws_identity: for Session, the exact
// arn arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION and user_id
// ROLEID:SESSION; for SessionPattern P, arn_pattern
// ^arn:aws:sts::ACCOUNT:assumed-role/ROLE/(?:P)$ and user_id_pattern
// ^ROLEID:(?:P)$, with everything but P regexp-quoted. It does not
// validate: call Validate first.
func (t AWS) AWSIdentity() *iam.Identity_AWSIdentity {
	arnPrefix := fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/", t.Partition, t.Account, t.RoleName)
	userIDPrefix := t.RoleID + ":"
	a := &iam.Identity_AWSIdentity{AwsAccount: t.Account}
	if t.SessionPattern == "" {
		a.AwsArn = &iam.Identity_AWSIdentity_Arn{Arn: arnPrefix + t.Session}
		a.AwsUserId = &iam.Identity_AWSIdentity_UserId{UserId: userIDPrefix + t.Session}
		return a
	}
	session := "(?:" + t.SessionPattern + ")$"
	a.AwsArn = &iam.Identity_AWSIdentity_ArnPattern{ArnPattern: "^" + regexp.QuoteMeta(arnPrefix) + session}
	a.AwsUserId = &iam.Identity_AWSIdentity_UserIdPattern{UserIdPattern: "^" + regexp.QuoteMeta(userIDPrefix) + session}
	return a
}

// Apply sets id's relationship to t.AWSIdentity().
func (t AWS) Apply(id *iam.Identity) {
	id.Relationship = &iam.Identity_AwsIdentity{AwsIdentity: t.AWSIdentity()}
}

// WebIdentity trusts the role of one account through AWS outbound identity
// federation: the JWTs that sts:GetWebIdentityToken issues to the role's
// sessions, whose iss is the account's federation issuer and whose sub is
// the role's ARN (Chainguard's AWS guide, aws-identity-oidc; AWS IAM user
// guide, "Understanding token claims").
type WebIdentity struct {
	Account   string // 12-digit AWS account ID
	Partition string // AWS partition; only "aws" works with Chainguard
	RoleName  string // IAM role name
	RolePath  string // IAM role path, "/" unless the role was created with one
	// Issuer is the account's federation issuer, e.g.
	// https://<uuid>.tokens.sts.global.api.aws.
	Issuer string
	// Audience is the aud the tokens are requested for: the Chainguard
	// issuer URL the workload exchanges them at.
	Audience string
}

// webPartitionReason says why only the aws partition works in this mode.
const webPartitionReason = "Chainguard's documentation covers outbound identity federation in the aws partition only, and an account's federation issuer belongs to its partition"

// Validate reports the first problem with t as a *FieldError.
func (t WebIdentity) Validate() error {
	fail := func(err error, fields ...string) error { return &FieldError{Fields: fields, Err: err} }
	if err := validate.AWSAccount(t.Account); err != nil {
		return fail(err, "Account")
	}
	if t.Partition != "aws" {
		return fail(fmt.Errorf("partition %q: %s: %w", t.Partition, webPartitionReason, validate.ErrInvalid), "Partition")
	}
	if err := validate.IAMRoleName(t.RoleName); err != nil {
		return fail(err, "RoleName")
	}
	if err := validate.IAMRolePath(t.RolePath); err != nil {
		return fail(err, "RolePath")
	}
	if err := validate.FederationIssuer(t.Issuer); err != nil {
		return fail(err, "Issuer")
	}
	if err := validate.ServiceURL("audience (the Chainguard issuer URL)", t.Audience); err != nil {
		return fail(err, "Audience")
	}
	return nil
}

// Subject returns the role's ARN, arn:PARTITION:iam::ACCOUNT:role/PATH/NAME:
// the sub claim of the role's web identity tokens.
func (t WebIdentity) Subject() string {
	return validate.Role{Partition: t.Partition, Account: t.Account, Path: t.RolePath, Name: t.RoleName}.String()
}

// ClaimMatch returns t as IAM v2's claim_match: exact issuer, subject and
// audience, so nothing is left to a pattern. The audience is set although
// Chainguard defaults it, because the proto's default ("the SaaS
// environment's issuer hostname") and the guide's tokens
// (aud https://issuer.enforce.dev) read differently; naming it works under
// both. It does not validate: call Validate first.
func (t WebIdentity) ClaimMatch() *iam.Identity_ClaimMatch {
	return &iam.Identity_ClaimMatch{
		Iss: &iam.Identity_ClaimMatch_Issuer{Issuer: t.Issuer},
		Sub: &iam.Identity_ClaimMatch_Subject{Subject: t.Subject()},
		Aud: &iam.Identity_ClaimMatch_Audience{Audience: t.Audience},
	}
}

// Apply sets id's relationship to t.ClaimMatch().
func (t WebIdentity) Apply(id *iam.Identity) {
	id.Relationship = &iam.Identity_ClaimMatch_{ClaimMatch: t.ClaimMatch()}
}

// Describe says in words whom a stored identity trusts, for messages that
// compare it with the principal a workload presented, e.g.
// "arn:aws:sts::111122223333:assumed-role/role-a/fn (user ID AROA…:fn)" or
// "web identity tokens with iss https://… , sub arn:aws:iam::…:role/r and
// aud https://issuer.enforce.dev". Patterns are shown as patterns.
func Describe(id *iam.Identity) string {
	either := func(exact, pattern, unset string) string {
		switch {
		case exact != "":
			return exact
		case pattern != "":
			return "matching " + pattern
		}
		return unset
	}
	if a := id.GetAwsIdentity(); a != nil {
		return fmt.Sprintf("%s (user ID %s) of account %s",
			either(a.GetArn(), a.GetArnPattern(), "any ARN"), either(a.GetUserId(), a.GetUserIdPattern(), "any"), a.GetAwsAccount())
	}
	if c := id.GetClaimMatch(); c != nil {
		return fmt.Sprintf("web identity tokens with iss %s, sub %s and aud %s",
			either(c.GetIssuer(), c.GetIssuerPattern(), "(any)"), either(c.GetSubject(), c.GetSubjectPattern(), "(any)"),
			either(c.GetAudience(), c.GetAudiencePattern(), "(the default: the Chainguard issuer)"))
	}
	return "no AWS principal (its trust is of another kind)"
}
