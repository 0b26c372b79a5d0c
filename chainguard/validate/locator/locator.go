// Package locator checks the values that locate a Chainguard object or
// service: UIDPs (groups, identities, ...) and service URLs (issuer, API).
//
// It is the light-weight part of package validate, kept apart so that a
// Lambda function that only needs these checks does not link (and
// initialise, at every cold start) the Chainguard SDK's validation package
// and the HTML sanitiser it depends on. Package validate delegates to it, so
// the two give the same messages, and [ErrInvalid] is validate.ErrInvalid.
//
// Each function returns nil or an error whose message says which value was
// wrong, why, and what a valid value looks like. Messages start with a
// lowercase letter and hold no secrets (a URL's user information is
// removed). Every error matches [ErrInvalid] with errors.Is.
package locator

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"chainguard.dev/sdk/uidp"
)

// ErrInvalid is matched (errors.Is) by every error this package and package
// validate return, so callers can tell a bad input (permanent: fix the
// value) from a failure elsewhere.
var ErrInvalid = errors.New("invalid value")

// invalidError is a validation failure: its message is the whole story.
type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// exampleUIDP is a valid child-group UIDP, shown in messages.
const exampleUIDP = "0123456789abcdef0123456789abcdef01234567/89abcdef01234567"

// UIDP checks that v is a Chainguard UIDP (group, identity, ...) with the
// SDK's rule (uidp.Valid). field names the value in the message, e.g.
// "group" or "parent group".
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
	case strings.ToLower(v) != v && uidp.Valid(strings.ToLower(v)):
		return invalidf("%s %q is not a Chainguard UIDP: it has uppercase letters; UIDPs are lowercase: %q", field, v, strings.ToLower(v))
	case strings.HasSuffix(v, "/"):
		return invalidf("%s %q is not a Chainguard UIDP: remove the trailing \"/\" (%s)", field, v, want)
	}
	return invalidf("%s %q is not a Chainguard UIDP: %s", field, v, want)
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
