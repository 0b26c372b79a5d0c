package emulator

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// STS GetWebIdentityToken.
//
// Evidence: the STS API reference (API_GetWebIdentityToken), aws-sdk-go-v2
// service/sts v1.52.0 (api_op_GetWebIdentityToken.go, types/errors.go,
// schemas/schemas.go), the IAM user guide's "Understanding token claims"
// (id_roles_providers_outbound_token_claims) and the sample token in
// Chainguard's guide (chainguard-dev/edu, content/chainguard/administration/
// assumable-ids/identity-examples/aws-identity-oidc.md, 2026-01-05).
//
// A call is checked in this order (the evidence gives none; authentication,
// then the request, then the account's state, is how AWS's common errors
// read):
//  1. A well-formed Query call (action, version, known parameters) from a
//     SigV4-verified caller (awsquery.go, verifySignature), or the common
//     errors.
//  2. Not on the STS global endpoint: "The GetWebIdentityToken API is not
//     available on the STS Global endpoint" (API reference, SDK doc comment).
//     The documents give no error for it; the emulator answers InvalidAction
//     (400), quoting that sentence. How the emulator tells: the SDK addresses
//     https://sts.amazonaws.com only for the global endpoint (a regional
//     client uses sts.<region>.amazonaws.com; an endpoint override, the
//     stand-in's own 127.0.0.1 address). Requests reach the stand-in with
//     Host sts.amazonaws.com only through the http.DefaultClient router of
//     awssts.go (which forwards that host here) or from a test that sets the
//     Host so: so Host sts.amazonaws.com means the global endpoint.
//  3. Parameters (ValidationError, 400): Audience 1-10 members of 1-1000
//     characters, required; SigningAlgorithm RS256 or ES384, required;
//     DurationSeconds 60-3600, default 300; Tags at most 50, keys 1-128 and
//     values 0-256 characters of [\p{L}\p{Z}\p{N}_.:/=+\-@] (the STS Tag data
//     type, shared with AssumeRole), keys unique ignoring case (STS session
//     tags: "Duplicate tag keys found. Please note that Tag keys are case
//     insensitive.", InvalidParameterValue).
//  4. Federation enabled for the caller's account, else
//     OutboundWebIdentityFederationDisabledException (403, the SDK's
//     awsQueryError trait), with the SDK's description as message.
//  5. With a known session expiry (AWSPrincipal.SessionExpiry), a token
//     that would outlive the session is SessionDurationEscalationException
//     (403): "The requested token duration would extend the session beyond
//     its original expiration time."
//
// The token is a JWT signed with the account's key for the algorithm, header
// {"typ":"JWT","alg":ALG,"kid":KID} (Chainguard's sample: "EC384_0" for
// ES384; the RS256 kid "RSA2048_0" is the emulator's, following that
// pattern), with claims:
//
//	iss  the account's issuer
//	aud  the audience: a string when one was requested (the samples), else
//	     an array
//	sub  the IAM role ARN of a role session (not the assumed-role ARN),
//	     else the principal's ARN (principalARN)
//	iat, exp  now and now + DurationSeconds (the sample: exp - iat = 300)
//	jti  a random UUID (the sample's shape)
//	"https://sts.amazonaws.com/": {
//	  aws_account           the caller's account
//	  source_region         the region of the call (the credential scope's)
//	  principal_id          the same ARN as sub ("For a role session, this
//	                        is the ARN of the role", API reference)
//	  original_session_exp  the session expiry, RFC 3339 UTC, when known
//	  request_tags          the Tags, as {key: value}, when given
//	}
//
// org_id, ou_path, principal_tags and the compute context claims
// (lambda_source_function_arn, ...) are absent: the emulated accounts belong
// to no organization and the principals carry no tags or context. The answer
// carries WebIdentityToken and Expiration (= exp).

const (
	// kidES384 and kidRS256 are the key IDs of an account's two keys.
	kidES384 = "EC384_0"
	kidRS256 = "RSA2048_0"
	// stsClaimsNamespace is the claim holding AWS's own claims.
	stsClaimsNamespace = "https://sts.amazonaws.com/"

	minTokenDuration     = 60
	maxTokenDuration     = 3600
	defaultTokenDuration = 300
	maxAudiences         = 10
	maxAudienceLen       = 1000
	maxTags              = 50
	maxTagKeyLen         = 128
	maxTagValueLen       = 256

	msgFederationDisabled   = "The outbound web identity federation feature is not enabled for this account. To use this feature, you must first enable it through the Amazon Web Services Management Console or API."
	msgDurationEscalation   = "The requested token duration would extend the session beyond its original expiration time."
	msgNotOnGlobalEndpoint  = "The GetWebIdentityToken API is not available on the STS Global endpoint: call a regional endpoint, such as https://sts.us-east-1.amazonaws.com."
	signingAlgorithmsString = "[RS256, ES384]"
)

// tagChars is the character rule of STS tag keys and values.
var tagChars = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// webIdentityTokenResult is the GetWebIdentityToken result.
type webIdentityTokenResult struct {
	XMLName          xml.Name `xml:"GetWebIdentityTokenResult"`
	WebIdentityToken string
	Expiration       string
}

// webIdentityTokenRequest is a validated GetWebIdentityToken request.
type webIdentityTokenRequest struct {
	audience  []string
	algorithm jose.SignatureAlgorithm
	duration  time.Duration
	tags      []queryTag
}

// queryGetWebIdentityToken serves GetWebIdentityToken (see the top of this
// file).
func (e *Emulator) queryGetWebIdentityToken(call *awsQueryCall) (any, error) {
	host := strings.ToLower(call.host)
	if host == awsSTSHost {
		return nil, senderError(http.StatusBadRequest, "InvalidAction", msgNotOnGlobalEndpoint)
	}
	req, err := parseWebIdentityTokenRequest(call)
	if err != nil {
		return nil, err
	}
	p := call.caller.principal
	e.mu.Lock()
	f := e.federations[p.Account]
	enabled := f != nil && f.enabled
	e.mu.Unlock()
	if !enabled {
		return nil, senderError(http.StatusForbidden, "OutboundWebIdentityFederationDisabledException", msgFederationDisabled)
	}
	now := time.Now()
	iat := now.Unix()
	exp := time.Unix(iat, 0).Add(req.duration)
	if !p.SessionExpiry.IsZero() && exp.After(p.SessionExpiry) {
		return nil, senderError(http.StatusForbidden, "SessionDurationEscalationException", msgDurationEscalation)
	}

	sts := map[string]any{
		"aws_account":   p.Account,
		"source_region": call.caller.region,
		"principal_id":  principalARN(p),
	}
	if !p.SessionExpiry.IsZero() {
		sts["original_session_exp"] = p.SessionExpiry.UTC().Format(time.RFC3339)
	}
	if len(req.tags) > 0 {
		tags := map[string]string{}
		for _, t := range req.tags {
			tags[t.Key] = t.Value
		}
		sts["request_tags"] = tags
	}
	claims := map[string]any{
		"iss":              f.issuer,
		"sub":              principalARN(p),
		"iat":              iat,
		"exp":              exp.Unix(),
		"jti":              newUUID(),
		stsClaimsNamespace: sts,
	}
	if len(req.audience) == 1 {
		claims["aud"] = req.audience[0]
	} else {
		claims["aud"] = req.audience
	}
	raw, err := f.sign(req.algorithm, claims)
	if err != nil {
		return nil, err
	}
	e.log.Info("web identity token issued", "account", p.Account, "sub", principalARN(p), "alg", req.algorithm,
		"aud", strings.Join(req.audience, ","), "exp", exp.UTC().Format(time.RFC3339))
	return &webIdentityTokenResult{WebIdentityToken: raw, Expiration: exp.UTC().Format(time.RFC3339)}, nil
}

// parseWebIdentityTokenRequest validates the parameters of call (see the top
// of this file).
func parseWebIdentityTokenRequest(call *awsQueryCall) (*webIdentityTokenRequest, error) {
	form := call.form
	req := &webIdentityTokenRequest{duration: defaultTokenDuration * time.Second}

	aud, present, err := queryList(form, "Audience")
	if err != nil {
		return nil, err
	}
	switch {
	case !present:
		return nil, validationError("Value null at 'audience' failed to satisfy constraint: Member must not be null")
	case len(aud) < 1 || len(aud) > maxAudiences:
		return nil, validationError("Value '[%s]' at 'audience' failed to satisfy constraint: Member must have length less than or equal to %d and greater than or equal to 1", strings.Join(aud, ", "), maxAudiences)
	}
	for i, a := range aud {
		if n := utf8.RuneCountInString(a); n < 1 || n > maxAudienceLen {
			return nil, validationError("Value '%s' at 'audience.%d.member' failed to satisfy constraint: Member must have length less than or equal to %d and greater than or equal to 1", a, i+1, maxAudienceLen)
		}
	}
	req.audience = aud

	alg, ok := form["SigningAlgorithm"]
	switch {
	case !ok:
		return nil, validationError("Value null at 'signingAlgorithm' failed to satisfy constraint: Member must not be null")
	case alg[0] == string(jose.ES384):
		req.algorithm = jose.ES384
	case alg[0] == string(jose.RS256):
		req.algorithm = jose.RS256
	default:
		return nil, validationError("Value '%s' at 'signingAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: %s", alg[0], signingAlgorithmsString)
	}

	if d, ok := form["DurationSeconds"]; ok {
		n, err := strconv.Atoi(d[0])
		if err != nil {
			return nil, validationError("Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must be an integer", d[0])
		}
		if n < minTokenDuration || n > maxTokenDuration {
			return nil, validationError("Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to %d and greater than or equal to %d", n, maxTokenDuration, minTokenDuration)
		}
		req.duration = time.Duration(n) * time.Second
	}

	tags, err := queryTags(form)
	if err != nil {
		return nil, err
	}
	if len(tags) > maxTags {
		return nil, validationError("Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to %d", maxTags)
	}
	seen := map[string]bool{}
	for i, t := range tags {
		if n := utf8.RuneCountInString(t.Key); n < 1 || n > maxTagKeyLen || !tagChars.MatchString(t.Key) {
			return nil, validationError("Value '%s' at 'tags.%d.member.key' failed to satisfy constraint: Member must have length less than or equal to %d and greater than or equal to 1 and must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+", t.Key, i+1, maxTagKeyLen)
		}
		if n := utf8.RuneCountInString(t.Value); n > maxTagValueLen || !tagChars.MatchString(t.Value) {
			return nil, validationError("Value '%s' at 'tags.%d.member.value' failed to satisfy constraint: Member must have length less than or equal to %d and must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*", t.Value, i+1, maxTagValueLen)
		}
		k := strings.ToLower(t.Key)
		if seen[k] {
			return nil, senderError(http.StatusBadRequest, "InvalidParameterValue", "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
		}
		seen[k] = true
	}
	req.tags = tags
	return req, nil
}

// sign signs claims as a JWT with f's key for alg.
func (f *accountFederation) sign(alg jose.SignatureAlgorithm, claims map[string]any) (string, error) {
	key := jose.JSONWebKey{Key: f.ecKey, KeyID: kidES384, Algorithm: string(jose.ES384)}
	if alg == jose.RS256 {
		key = jose.JSONWebKey{Key: f.rsaKey, KeyID: kidRS256, Algorithm: string(jose.RS256)}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("emulator: make the %s signer of account %s: %w", alg, f.account, err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("emulator: sign a web identity token of account %s: %w", f.account, err)
	}
	return raw, nil
}

// principalARN is the sub (and principal_id) of p's web identity tokens: its
// RoleARN; else, for an assumed-role session
// arn:P:sts::A:assumed-role/NAME/SESSION, the role ARN arn:P:iam::A:role/NAME
// (path "/"); else its ARN (an IAM user, say). "For a role session, this is
// the ARN of the role" (API reference, principal_id); Chainguard's sample has
// sub = principal_id = arn:aws:iam::123456789012:role/example.
func principalARN(p AWSPrincipal) string {
	if p.RoleARN != "" {
		return p.RoleARN
	}
	if partition, account, role, ok := assumedRole(p.ARN); ok {
		return "arn:" + partition + ":iam::" + account + ":role/" + role
	}
	return p.ARN
}

// assumedRoleARN is an assumed-role session ARN.
var assumedRoleARN = regexp.MustCompile(`^arn:([a-z-]+):sts::([0-9]{12}):assumed-role/([^/]+)/[^/]+$`)

// roleARN is an IAM role ARN (with its path).
var roleARN = regexp.MustCompile(`^arn:([a-z-]+):iam::([0-9]{12}):role/(?:[^/]+/)*([^/]+)$`)

// assumedRole splits an assumed-role session ARN.
func assumedRole(arn string) (partition, account, role string, ok bool) {
	m := assumedRoleARN.FindStringSubmatch(arn)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// checkRoleARN checks that p.RoleARN, if set, is a role ARN of p's account
// (and partition) naming the role of p's assumed-role ARN.
func checkRoleARN(p AWSPrincipal) error {
	if p.RoleARN == "" {
		return nil
	}
	m := roleARN.FindStringSubmatch(p.RoleARN)
	if m == nil {
		return fmt.Errorf("RoleARN %q is not an IAM role ARN (arn:PARTITION:iam::ACCOUNT:role/PATH/NAME)", p.RoleARN)
	}
	if m[2] != p.Account {
		return fmt.Errorf("RoleARN %q is not in account %s", p.RoleARN, p.Account)
	}
	if partition, _, role, ok := assumedRole(p.ARN); ok && (partition != m[1] || role != m[3]) {
		return fmt.Errorf("RoleARN %q is not the role of the session %s", p.RoleARN, p.ARN)
	}
	return nil
}
