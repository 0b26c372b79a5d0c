package token

import (
	"errors"
	"time"

	"chainguard.dev/sdk/auth"
)

// expiryOf returns when accessToken stops being accepted, given the expiry
// the exchange response carried (zero when the response had none).
//
// The token's own exp claim is what the API checks, so it is the truth; the
// response's expiry field is optional in the proto (oidc.RawToken.expiry) and
// the service may leave it unset. When both are present and differ, the
// earlier one wins: a response expiry later than exp would have a Source
// serve a token the API already rejects, while an earlier one costs at most
// one early refresh, and the issuer may know a reason (a session limit) the
// claim does not show. A token that is not a JWT (an opaque token) relies on
// the response's expiry. When neither says when the token expires, a Source
// could not tell a fresh token from an expired one: that is an error.
//
// The error never contains the token, and deliberately does not wrap the
// SDK's parse error either: a JSON syntax error quotes a byte of the decoded
// claims.
func expiryOf(accessToken string, response time.Time) (time.Time, error) {
	exp, err := auth.ExtractExpiry(accessToken)
	// ExtractExpiry reads a missing exp claim as 0 (time.Unix(0, 0)); a
	// token from before 1970 is no better.
	hasExp := err == nil && exp.Unix() > 0
	switch {
	case hasExp && (response.IsZero() || exp.Before(response)):
		return exp, nil
	case !response.IsZero():
		return response, nil
	case err != nil:
		return time.Time{}, errors.New("the response carries no expiry and the access token is not a JWT whose claims can be read")
	default:
		return time.Time{}, errors.New("the response carries no expiry and the access token's claims have no exp")
	}
}
