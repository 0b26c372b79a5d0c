package validate

import (
	"net"
	"net/url"
	"regexp"
	"strings"
)

// exampleFederationIssuer is the form of an account's issuer for AWS
// outbound identity federation, as the IAM console (IAM > Account settings >
// STS) and EnableOutboundWebIdentityFederation report it.
const exampleFederationIssuer = "https://00000000-0000-0000-0000-000000000000.tokens.sts.global.api.aws"

// iamRolePathRE is an IAM path: "/" alone, or "/" followed by segments each
// ending in "/", of printable ASCII except space (IAM API reference, Role
// Path: pattern (\u002F)|(\u002F[\u0021-\u007E]+\u002F), 1 to 512 characters).
var iamRolePathRE = regexp.MustCompile(`^/(?:[\x21-\x7E]*/)?$`)

// IAMRolePath checks an IAM role path, e.g. "/" or "/service-role/".
func IAMRolePath(v string) error {
	if len(v) <= 512 && iamRolePathRE.MatchString(v) {
		return nil
	}
	const want = `expected "/" or a path that starts and ends with "/" (printable ASCII, no spaces, at most 512 characters), e.g. "/service-role/", as "aws iam get-role --role-name ROLE --query Role.Path" prints it`
	switch {
	case v == "":
		return invalidf("IAM role path is empty: %s", want)
	case len(v) > 512:
		return invalidf("IAM role path is %d characters long: %s", len(v), want)
	}
	return invalidf("IAM role path %q is not valid: %s", v, want)
}

// FederationIssuer checks the issuer URL of an account's AWS outbound
// identity federation, e.g. https://<uuid>.tokens.sts.global.api.aws: https
// with a host, an optional path (the local emulator serves each account's
// issuer under a path) and nothing else; plain http only for 127.0.0.1 or
// localhost. Chainguard discovers the issuer's keys at
// <issuer>/.well-known/openid-configuration and compares the token's iss
// claim with it exactly, so a trailing "/" is refused.
func FederationIssuer(v string) error {
	const want = `expected the issuer URL of the account's outbound identity federation (IAM > Account settings > STS, or "aws iam get-outbound-web-identity-federation-info --query IssuerIdentifier"), e.g. "` + exampleFederationIssuer + `"`
	if v == "" {
		return invalidf("web identity issuer is empty: %s", want)
	}
	u, err := url.Parse(v)
	if err != nil {
		return invalidf("web identity issuer %q is not a URL (%v): %s", v, err, want)
	}
	switch {
	case u.Scheme == "" || u.Host == "":
		return invalidf("web identity issuer %q is not an absolute URL: %s", v, want)
	case u.User != nil:
		// The user information may hold a secret: do not repeat the URL.
		return invalidf("web identity issuer must not hold a user name or password: remove the part before \"@\", %s", want)
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return invalidf("web identity issuer %q must be a scheme, a host and an optional path, without query or fragment: %s", v, want)
	case strings.HasSuffix(u.Path, "/"):
		return invalidf("web identity issuer %q ends with \"/\": remove it, Chainguard compares the token's iss claim with the issuer exactly: %s", v, want)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if host := u.Hostname(); host == "localhost" || net.ParseIP(host).IsLoopback() {
			return nil
		}
		return invalidf("web identity issuer %q uses plain http: Chainguard discovers issuers over https only (plain http is accepted only for 127.0.0.1 or localhost, where a local emulator runs): %s", v, want)
	}
	return invalidf("web identity issuer %q has scheme %q: use https: %s", v, u.Scheme, want)
}
