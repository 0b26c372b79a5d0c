// Package validate checks every input the product sends to Chainguard or
// AWS: UIDPs, AWS account IDs, names, descriptions, role and session names,
// ARNs, user IDs, service URLs and the regular expressions of a trust
// relationship.
//
// Each function returns nil or an error whose message says which value was
// wrong, why, and what a valid value looks like (with an example). Messages
// start with a lowercase letter, hold no secrets, and are meant to be shown
// as they are at synth time (CDK) and in custom-resource failure reasons.
// Every error matches [ErrInvalid] with errors.Is.
//
// Where the Chainguard SDK already validates (uidp.Valid and the validation
// package), its rule decides and this package only words the message.
package validate

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"chainguard.dev/sdk/uidp"
	"chainguard.dev/sdk/validation"
)

// ErrInvalid is matched (errors.Is) by every error this package returns, so
// callers can tell a bad input (permanent: fix the value) from a failure
// elsewhere.
var ErrInvalid = errors.New("invalid value")

// invalidError is a validation failure: its message is the whole story.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Examples used in messages, so that every message shows the same
// consistent, valid sample values.
const (
	exampleAccount   = "111122223333"
	exampleUIDP      = "0123456789abcdef0123456789abcdef01234567/89abcdef01234567"
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
	uppercaseRE   = regexp.MustCompile(`[A-Z]`)
)

// UIDP checks that v is a Chainguard UIDP (group, identity, ...). field names
// the value in the message, e.g. "group" or "parent group".
func UIDP(field, v string) error {
	if uidp.Valid(v) {
		return nil
	}
	const want = `expected 40 lowercase hex characters, optionally followed by "/" and 16 lowercase hex characters per nested level, e.g. "` + exampleUIDP + `"`
	switch {
	case v == "":
		return invalidf("%s is empty: %s", field, want)
	case strings.TrimSpace(v) != v:
		return invalidf("%s %q has leading or trailing white space: remove it (%s)", field, v, want)
	case uppercaseRE.MatchString(v) && uidp.Valid(strings.ToLower(v)):
		return invalidf("%s %q is not a Chainguard UIDP: it has uppercase letters; UIDPs are lowercase: %q", field, v, strings.ToLower(v))
	case strings.HasSuffix(v, "/"):
		return invalidf("%s %q is not a Chainguard UIDP: remove the trailing \"/\" (%s)", field, v, want)
	}
	return invalidf("%s %q is not a Chainguard UIDP: %s", field, v, want)
}

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

// Name checks a Chainguard object name (group, identity, ...) with the SDK's
// rule. field names the value in the message, e.g. "group name".
func Name(field, v string) error {
	if validation.ValidateName(v) == nil {
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

// Description checks a Chainguard description with the SDK's rule: at most
// 512 characters, no white space other than plain spaces.
func Description(v string) error {
	if validation.ValidateDescription(v) == nil {
		return nil
	}
	if n := len([]rune(v)); n > 512 {
		return invalidf("description is %d characters long: at most 512 are allowed", n)
	}
	return invalidf("description %q is not valid: it may hold letters, digits, punctuation and plain spaces only (no tabs or line breaks), at most 512 characters, e.g. %q", v, "Identity of the aws-auth Lambda function")
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
// value in the message, e.g. "issuer URL".
func ServiceURL(field, v string) error {
	const want = `e.g. "https://issuer.enforce.dev" (or "http://127.0.0.1:8080" for a local emulator)`
	if v == "" {
		return invalidf("%s is empty: %s", field, want)
	}
	u, err := url.Parse(v)
	if err != nil {
		return invalidf("%s %q is not a URL (%v): %s", field, v, err, want)
	}
	switch {
	case u.Scheme == "" || u.Host == "":
		return invalidf("%s %q is not an absolute URL: it needs a scheme and a host, %s", field, v, want)
	case u.User != nil:
		return invalidf("%s %q must not hold a user name or password: remove the part before \"@\", %s", field, redact(u), want)
	case u.Path == "/":
		return invalidf("%s %q ends with \"/\": remove it, Chainguard compares the issuer URL exactly, %s", field, v, want)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return invalidf("%s %q must be only a scheme and a host (with an optional port), without path, query or fragment, %s", field, v, want)
	}
	host := u.Hostname()
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if host == "localhost" || net.ParseIP(host).IsLoopback() {
			return nil
		}
		return invalidf("%s %q uses plain http: use https (plain http is accepted only for 127.0.0.1 or localhost, where a local emulator runs), %s", field, v, want)
	}
	return invalidf("%s %q has scheme %q: use https, %s", field, v, u.Scheme, want)
}

// redact renders u without its user information, which may hold a secret.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
