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
// AWS is the caller-identity kind (the workload signs an STS
// GetCallerIdentity request). The web-identity kind (AWS outbound identity
// federation, Chainguard's claim_match: issuer = the account's AWS issuer
// URL, subject = the role's ARN) is meant to be a sibling type naming the
// same account, partition and role, with its own Validate and conversion.
package trust

import (
	"fmt"
	"regexp"
	"strings"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
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
