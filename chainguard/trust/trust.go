// Package trust describes whom a Chainguard assumable identity trusts: today an
// AWS principal (account + ARN or ARN pattern + user ID or user ID pattern).
// The type is shared by the provisioner (it becomes the identity's
// aws_identity), the CDK constructs (validated at synth time) and tests.
package trust

import (
	"fmt"
	"strings"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// AWS is the trust relationship of an identity assumable by an AWS principal.
// Exactly one of ARN / ARNPattern and exactly one of UserID / UserIDPattern
// must be set.
type AWS struct {
	Account       string // 12-digit AWS account ID
	ARN           string // exact principal ARN, e.g. arn:aws:sts::111122223333:assumed-role/ROLE/SESSION
	ARNPattern    string // anchored regexp; every match must start with the literal arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/
	UserID        string // exact user ID, e.g. AROA1234567890ABCDEFG:SESSION
	UserIDPattern string // anchored regexp; every match must start with one literal role unique ID and ":" unless AllowUnpinnedUserID
	// AllowUnpinnedUserID opts in to a UserIDPattern that does not pin a role
	// unique ID (AROA + 17 characters). Off by default. It is a validation
	// opt-in only: the service does not store it.
	AllowUnpinnedUserID bool
}

const (
	exampleARN        = "arn:aws:sts::111122223333:assumed-role/my-role/my-function"
	exampleARNPattern = "^arn:aws:sts::111122223333:assumed-role/my-role/.*$"
	exampleUserID     = "AROA1234567890ABCDEFG:my-function"
	exampleUserIDPat  = "^AROA1234567890ABCDEFG:.*$"
)

// Validate reports the first problem with t, in words that say which field
// was wrong, why, and what a valid value looks like. The error matches
// validate.ErrInvalid (errors.Is).
func (t AWS) Validate() error {
	if err := validate.AWSAccount(t.Account); err != nil {
		return fmt.Errorf("Account: %w", err)
	}
	if err := t.validateARN(); err != nil {
		return err
	}
	return t.validateUserID()
}

func (t AWS) validateARN() error {
	switch {
	case t.ARN == "" && t.ARNPattern == "":
		return exactlyOne("ARN", "ARNPattern", "neither is set", exampleARN, exampleARNPattern)
	case t.ARN != "" && t.ARNPattern != "":
		return exactlyOne("ARN", "ARNPattern", "both are set", exampleARN, exampleARNPattern)
	case t.ARNPattern != "":
		if _, err := validate.ARNPatternRole(t.ARNPattern, t.Account); err != nil {
			return fmt.Errorf("ARNPattern: %w", err)
		}
		return nil
	}
	a, err := validate.AssumedRoleARN(t.ARN)
	if err != nil {
		return fmt.Errorf("ARN: %w", err)
	}
	if a.Account != t.Account {
		return fmt.Errorf("ARN: %q is in account %s but Account is %s: a principal is trusted only in its own account; use the ARN of the role session in account %s, or set Account to %s: %w",
			t.ARN, a.Account, t.Account, t.Account, a.Account, validate.ErrInvalid)
	}
	return nil
}

func (t AWS) validateUserID() error {
	switch {
	case t.UserID == "" && t.UserIDPattern == "":
		return exactlyOne("UserID", "UserIDPattern", "neither is set", exampleUserID, exampleUserIDPat)
	case t.UserID != "" && t.UserIDPattern != "":
		return exactlyOne("UserID", "UserIDPattern", "both are set", exampleUserID, exampleUserIDPat)
	case t.UserIDPattern != "":
		if err := validate.UserIDPattern(t.UserIDPattern, t.AllowUnpinnedUserID); err != nil {
			return fmt.Errorf("UserIDPattern: %w", err)
		}
		return nil
	}
	if err := validate.UserID(t.UserID); err != nil {
		return fmt.Errorf("UserID: %w", err)
	}
	if t.ARN == "" {
		return nil
	}
	// Both exact: AWS reports the same session name in both, so a mismatch
	// means the identity could never be assumed. (The ARN is valid here.)
	a, _ := validate.AssumedRoleARN(t.ARN)
	if _, session, _ := strings.Cut(t.UserID, ":"); session != a.Session {
		return fmt.Errorf("UserID: %q has session name %q but ARN %q has session name %q: AWS reports the same session in both, so no caller could match; use the same session name in both: %w",
			t.UserID, session, t.ARN, a.Session, validate.ErrInvalid)
	}
	return nil
}

func exactlyOne(exact, pattern, problem, exampleExact, examplePattern string) error {
	return fmt.Errorf("%s or %s: %s, set exactly one: %s for one principal, e.g. %q, or %s for an anchored regular expression, e.g. %q: %w",
		exact, pattern, problem, exact, exampleExact, pattern, examplePattern, validate.ErrInvalid)
}

// Proto converts t to the SDK's aws_identity relationship, ready for
// iam.Identity.Relationship. It does not validate: call Validate first. Of
// two alternatives both set (which Validate rejects), the exact one wins.
func (t AWS) Proto() *iam.Identity_AwsIdentity {
	p := &iam.Identity_AWSIdentity{AwsAccount: t.Account}
	switch {
	case t.ARN != "":
		p.AwsArn = &iam.Identity_AWSIdentity_Arn{Arn: t.ARN}
	case t.ARNPattern != "":
		p.AwsArn = &iam.Identity_AWSIdentity_ArnPattern{ArnPattern: t.ARNPattern}
	}
	switch {
	case t.UserID != "":
		p.AwsUserId = &iam.Identity_AWSIdentity_UserId{UserId: t.UserID}
	case t.UserIDPattern != "":
		p.AwsUserId = &iam.Identity_AWSIdentity_UserIdPattern{UserIdPattern: t.UserIDPattern}
	}
	return &iam.Identity_AwsIdentity{AwsIdentity: p}
}

// FromProto reads the SDK's aws_identity back (nil-safe: nil gives the zero
// AWS). AllowUnpinnedUserID is not stored by the service and comes back false.
func FromProto(p *iam.Identity_AWSIdentity) AWS {
	return AWS{
		Account:       p.GetAwsAccount(),
		ARN:           p.GetArn(),
		ARNPattern:    p.GetArnPattern(),
		UserID:        p.GetUserId(),
		UserIDPattern: p.GetUserIdPattern(),
	}
}

// Equal reports whether t and o describe the same trust as the service
// stores it: AllowUnpinnedUserID, a validation opt-in the service does not
// keep, is ignored, so Equal(desired, FromProto(stored)) tells whether an
// identity's trust needs an update.
func (t AWS) Equal(o AWS) bool {
	t.AllowUnpinnedUserID, o.AllowUnpinnedUserID = false, false
	return t == o
}
