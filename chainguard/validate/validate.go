// Package validate checks every input the product sends to Chainguard or
// AWS: UIDPs, AWS account IDs, names, descriptions, role and session names,
// role unique IDs, ARNs, user IDs, service URLs and the session pattern of a
// trust relationship (the only regular expression a user writes: the
// provisioner builds the anchored trust patterns around it).
//
// Each function returns nil or an error whose message says which value was
// wrong, why, and what a valid value looks like (with an example). Messages
// start with a lowercase letter, hold no secrets, and are meant to be shown
// as they are at synth time (CDK) and in custom-resource failure reasons.
// Every error matches [ErrInvalid] with errors.Is.
//
// Where the Chainguard SDK already validates (uidp.Valid and the validation
// package), its rule decides and this package only words the message.
//
// UIDP and ServiceURL live in the light-weight subpackage [locator] (this
// package delegates to it): code on a Lambda function's path imports that
// one, so as not to link the SDK's validation package and its HTML
// dependencies.
package validate

import (
	"fmt"
	"regexp"
	"strings"

	"chainguard.dev/sdk/validation"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator"
)

// ErrInvalid is matched (errors.Is) by every error this package returns, so
// callers can tell a bad input (permanent: fix the value) from a failure
// elsewhere. It is [locator.ErrInvalid]: errors from either package match it.
var ErrInvalid = locator.ErrInvalid

// invalidError is a validation failure: its message is the whole story.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == locator.ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Examples used in messages, so that every message shows the same
// consistent, valid sample values.
const (
	exampleAccount   = "111122223333"
	exampleRoleID    = "AROA1234567890ABCDEFG"
	exampleRole      = "my-role"
	exampleSession   = "my-function"
	exampleGetRoleID = "aws iam get-role --role-name ROLE --query Role.RoleId"
)

// iamNameChars is the character set of IAM role names and role session names.
const iamNameChars = `[\w+=,.@-]`

var (
	iamRoleNameRE = regexp.MustCompile(`^` + iamNameChars + `{1,64}$`)
	sessionNameRE = regexp.MustCompile(`^` + iamNameChars + `{2,64}$`)
	badIAMCharRE  = regexp.MustCompile(`[^\w+=,.@-]`)
)

// UIDP checks that v is a Chainguard UIDP (group, identity, ...). field names
// the value in the message, e.g. "group" or "parent group". It is
// [locator.UIDP], which code that must stay light imports directly.
func UIDP(field, v string) error { return locator.UIDP(field, v) }

// AWSAccount checks that v is an AWS account ID (12 digits).
func AWSAccount(v string) error {
	if validation.ValidateAWSAccount(v) == nil {
		return nil
	}
	const want = `expected exactly 12 digits, e.g. "` + exampleAccount + `"`
	if v == "" {
		return invalidf("AWS account ID is empty: %s", want)
	}
	if d := strings.ReplaceAll(v, "-", ""); d != v && validation.ValidateAWSAccount(d) == nil {
		return invalidf("AWS account ID %q is not valid: write it without dashes: %q", v, d)
	}
	return invalidf("AWS account ID %q is not valid: %s (%d characters given)", v, want, len(v))
}

// Name lengths of Chainguard groups and identities: "Must be 3-63
// characters" (chainguard.dev/sdk proto/chainguard/platform/iam/v2
// groups.proto and identities.proto, field name).
const (
	MinNameLen = 3
	MaxNameLen = 63
)

// Name checks a Chainguard object name (group, identity, ...): the SDK's
// character rule (validation.ValidateName) and 3 to 63 characters
// ([MinNameLen], [MaxNameLen]). field names the value in the message, e.g.
// "group name".
func Name(field, v string) error {
	if validation.ValidateName(v) == nil {
		const want = "Chainguard names are %d to %d characters, e.g. %q"
		switch n := len(v); { // the SDK's characters are all ASCII
		case n < MinNameLen:
			return invalidf("%s %q is too short: "+want, field, v, MinNameLen, MaxNameLen, "example-group")
		case n > MaxNameLen:
			return invalidf("%s %q is %d characters long: "+want, field, v, n, MinNameLen, MaxNameLen, "example-group")
		}
		return nil
	}
	const want = `use lowercase letters, digits, spaces, ".", "_" and "-", e.g. "example-group"`
	if v == "" {
		return invalidf("%s is empty: %s", field, want)
	}
	if validation.ValidateName(strings.ToLower(v)) == nil {
		return invalidf("%s %q is not valid: Chainguard names are lowercase, e.g. %q", field, v, strings.ToLower(v))
	}
	return invalidf("%s %q is not valid: %s", field, v, want)
}

// MaxDescriptionLen is the longest description Chainguard stores, in
// characters (the SDK's validation.ValidateDescription).
const MaxDescriptionLen = 512

// Description checks a Chainguard description with the SDK's rule: at most
// MaxDescriptionLen characters, no white space other than plain spaces.
func Description(v string) error {
	if validation.ValidateDescription(v) == nil {
		return nil
	}
	if n := len([]rune(v)); n > MaxDescriptionLen {
		return invalidf("description is %d characters long: at most %d are allowed", n, MaxDescriptionLen)
	}
	return invalidf("description %q is not valid: it may hold letters, digits, punctuation and plain spaces only (no tabs or line breaks), at most %d characters, e.g. %q", v, MaxDescriptionLen, "Identity of the aws-auth Lambda function")
}

// OwnershipMarker is what the provisioner appends to the description of an
// object it makes for the owner managedBy (after a space when the
// description is not empty); the CDK constructs check at synth time that a
// description leaves room for it.
func OwnershipMarker(managedBy string) string {
	return "[managed by CloudFormation: " + managedBy + "]"
}

// RoleName checks the name of a Chainguard role to bind, e.g. "viewer".
func RoleName(v string) error {
	if strings.TrimSpace(v) == v && v != "" && validation.ValidateName(v) == nil {
		return nil
	}
	const want = `expected the name of a Chainguard role, e.g. "viewer", "editor", "owner" or "registry.pull"`
	if strings.TrimSpace(v) == "" {
		return invalidf("role name is empty: %s", want)
	}
	if strings.Contains(v, ",") {
		return invalidf("role name %q is not valid: it holds a comma; give each role separately, e.g. \"viewer\" and \"registry.pull\"", v)
	}
	return invalidf("role name %q is not valid: %s (lowercase letters, digits, spaces, \".\", \"_\" and \"-\")", v, want)
}

// IAMRoleName checks an AWS IAM role name: 1 to 64 characters from letters,
// digits and "+=,.@_-".
func IAMRoleName(v string) error {
	return iamName("IAM role name", v, 1, iamRoleNameRE, exampleRole)
}

// SessionName checks an AWS role session name (for a Lambda function, the
// function name): 2 to 64 characters from letters, digits and "+=,.@_-".
func SessionName(v string) error {
	return iamName("role session name", v, 2, sessionNameRE, exampleSession)
}

func iamName(what, v string, minLen int, re *regexp.Regexp, example string) error {
	if re.MatchString(v) {
		return nil
	}
	want := fmt.Sprintf(`expected %d to 64 characters from letters, digits and "+=,.@_-", e.g. %q`, minLen, example)
	switch {
	case v == "":
		return invalidf("%s is empty: %s", what, want)
	case len(v) > 64:
		return invalidf("%s %q is %d characters long: %s", what, v, len(v), want)
	case len(v) < minLen:
		return invalidf("%s %q is too short: %s", what, v, want)
	}
	return invalidf("%s %q has the character %q, which is not allowed: %s", what, v, badIAMCharRE.FindString(v), want)
}

// ServiceURL checks the URL of a Chainguard service (issuer or API): https
// with a host and nothing else (an optional port is fine); plain http only
// for 127.0.0.1 or localhost, where the local emulator runs. field names the
// value in the message, e.g. "issuer URL". It is [locator.ServiceURL], which
// code that must stay light imports directly.
func ServiceURL(field, v string) error { return locator.ServiceURL(field, v) }
