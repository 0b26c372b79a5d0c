package emulator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	cgauth "chainguard.dev/sdk/auth"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exchange of OIDC tokens (the web-identity trust mode: AWS outbound
// identity federation, whose sts:GetWebIdentityToken issues a JWT signed by
// the account's issuer, https://<uuid>.tokens.sts.global.api.aws; Chainguard
// guide "Create an Assumable Identity to Authenticate from AWS",
// chainguard-dev/edu content/chainguard/administration/assumable-ids/
// identity-examples/aws-identity-oidc.md, 2026-01-05).
//
// Exchange (exchange.go) sends a bearer that has the form of a JWT here.
// The steps, and the status of each refusal, follow Chainguard's own OIDC
// token exchange service, which serves the same SecurityTokenService proto
// (octo-sts/app cb87fc1, pkg/octosts/octosts.go, Exchange, and
// pkg/octosts/trust_policy.go, CheckToken):
//
//  1. read the unverified iss claim with the SDK's auth.ExtractIssuer; a
//     token whose claims cannot be read: InvalidArgument ("invalid bearer
//     token");
//  2. check that iss is an issuer URL: https, or http on a loopback host
//     (checkIssuerURL); otherwise InvalidArgument ("invalid issuer
//     format"). No request is sent to such an issuer;
//  3. discover the issuer with go-oidc (oidc.NewProvider: ISSUER/.well-known/
//     openid-configuration, then its jwks_uri), through an HTTP client with
//     a short timeout; providers are cached per issuer for the emulator's
//     lifetime (octo-sts keeps an LRU of them, pkg/provider/provider.go);
//     a failed discovery is not cached; failure: InvalidArgument ("unable to
//     fetch or create the provider");
//  4. verify the signature (algorithms RS256 and ES384, the two
//     sts:GetWebIdentityToken offers: aws-sdk-go-v2 service/sts v1.52.0,
//     api_op_GetWebIdentityToken.go, SigningAlgorithm), iss against the
//     discovered issuer and exp with the provider's verifier, plus iat here
//     (go-oidc does not check it); failure: Unauthenticated ("unable to
//     verify bearer token"), as the AWS path answers a stale or future-dated
//     AWS token;
//  5. look the identity up, wait out its propagation and issue the token as
//     for an AWS token (exchange), after matching its claim_match
//     (claimMatchTrust); a mismatch: PermissionDenied naming which of
//     issuer, subject, audience or claim did not match (octo-sts:
//     "trust policy: issuer %q did not match %q", ...), as matchAWS names
//     the account, ARN or user ID. Messages never carry the token itself.

const (
	// discoveryTimeout bounds each HTTP request of OIDC discovery and of
	// fetching the issuer's keys.
	discoveryTimeout = 5 * time.Second
	// maxIssuedAtSkew is how far a token's iat may be ahead of the
	// emulator's clock: the allowance the SDK's auth/aws.VerifyToken gives
	// an AWS token's X-Amz-Date (defaultAllowedClockSkew, auth/aws/
	// verify.go), and the one go-oidc gives nbf (verify.go, "Set to 5
	// minutes since this is what other OpenID Connect providers do").
	maxIssuedAtSkew = 5 * time.Minute
)

// jwtSigningAlgs are the algorithms a token may be signed with:
// GetWebIdentityToken's SigningAlgorithm, "RS256" or "ES384".
var jwtSigningAlgs = []string{gooidc.RS256, gooidc.ES384}

// providerCache holds the OIDC providers discovered by Exchange, by issuer
// URL, for the emulator's lifetime. The zero value is ready to use.
type providerCache struct {
	mu       sync.Mutex
	byIssuer map[string]*gooidc.Provider
	client   *http.Client
}

// get returns the provider of issuer, discovering it on first use.
func (c *providerCache) get(ctx context.Context, issuer string) (*gooidc.Provider, error) {
	c.mu.Lock()
	if p, ok := c.byIssuer[issuer]; ok {
		c.mu.Unlock()
		return p, nil
	}
	if c.client == nil {
		c.client = newDiscoveryClient()
	}
	client := c.client
	c.mu.Unlock()

	p, err := gooidc.NewProvider(gooidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.byIssuer[issuer]; ok { // discovered concurrently
		return prev, nil
	}
	if c.byIssuer == nil {
		c.byIssuer = map[string]*gooidc.Provider{}
	}
	c.byIssuer[issuer] = p
	return p, nil
}

// newDiscoveryClient is the HTTP client of discovery and key fetching: every
// request bounded by discoveryTimeout, no keep-alives (test issuers come and
// go, and their ports are reused), and redirects followed only to URLs that
// pass the issuer check (as octo-sts's CheckRedirect does with
// IsValidIssuer, pkg/provider/provider.go).
func newDiscoveryClient() *http.Client {
	dialer := &net.Dialer{Timeout: discoveryTimeout}
	return &http.Client{
		Timeout: discoveryTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			DisableKeepAlives:     true,
			TLSHandshakeTimeout:   discoveryTimeout,
			ResponseHeaderTimeout: discoveryTimeout,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if err := checkIssuerURL(req.URL.String()); err != nil {
				return fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), err)
			}
			return nil
		},
	}
}

// verifiedJWT is an OIDC token whose signature, issuer, exp and iat have
// been verified, with all its claims.
type verifiedJWT struct {
	*gooidc.IDToken
	claims map[string]any
}

// verifyJWT verifies raw by discovery of its issuer (steps 1-4 above).
func (e *Emulator) verifyJWT(ctx context.Context, raw string) (*verifiedJWT, error) {
	iss, err := cgauth.ExtractIssuer(raw)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the bearer token is neither an AWS token nor a JWT whose claims can be read (%v): present a token from auth/aws.GenerateToken or an OIDC token", err)
	}
	if iss == "" {
		return nil, status.Error(codes.InvalidArgument, "the bearer token is a JWT without an iss claim: present an OIDC token from an issuer")
	}
	if err := checkIssuerURL(iss); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "the token's issuer %q is not a valid issuer URL: %v", iss, err)
	}
	p, err := e.providers.get(ctx, iss)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.InvalidArgument, "discover the token's issuer %s (%s): it must serve %s/.well-known/openid-configuration and its jwks_uri", iss, brief(err), iss)
	}
	tok, err := p.Verifier(&gooidc.Config{
		// The audience is claim_match's to check (claimMatchTrust), as
		// octo-sts leaves it to its trust policy.
		SkipClientIDCheck:    true,
		SupportedSigningAlgs: jwtSigningAlgs,
	}).Verify(ctx, raw)
	var expired *gooidc.TokenExpiredError
	switch {
	case errors.As(err, &expired) && expired.Expiry.IsZero():
		return nil, status.Error(codes.Unauthenticated, "the OIDC token has no exp claim: request a token that expires")
	case errors.As(err, &expired):
		return nil, status.Errorf(codes.Unauthenticated, "the OIDC token expired at %s (its exp claim): request a fresh one", expired.Expiry.UTC().Format(time.RFC3339))
	case err != nil:
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Unauthenticated, "the OIDC token does not verify against its issuer %s (%s)", iss, brief(err))
	}
	// iat: "Time at which the JWT was issued" (OpenID Connect Core 1.0 §2,
	// REQUIRED); AWS's tokens carry it (the guide's sample token).
	switch now := time.Now(); {
	case tok.IssuedAt.IsZero():
		return nil, status.Error(codes.Unauthenticated, "the OIDC token has no iat claim")
	case tok.IssuedAt.After(now.Add(maxIssuedAtSkew)):
		return nil, status.Errorf(codes.Unauthenticated, "the OIDC token is dated in the future (iat %s, more than %s ahead): check the clock",
			tok.IssuedAt.UTC().Format(time.RFC3339), maxIssuedAtSkew)
	}
	// sub: REQUIRED (OpenID Connect Core 1.0 §2); octo-sts refuses a token
	// without one with InvalidArgument ("invalid subject in token",
	// oidcvalidate.IsValidSubject).
	if tok.Subject == "" {
		return nil, status.Error(codes.InvalidArgument, "the OIDC token has no sub claim")
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, status.Errorf(codes.Internal, "emulator: read the claims of a verified token: %v", err)
	}
	return &verifiedJWT{IDToken: tok, claims: claims}, nil
}

// claimMatchTrust is the trust check of exchange for a verified OIDC token:
// the identity must have a claim_match that admits the token
// (matchClaimMatch), PermissionDenied otherwise.
func (e *Emulator) claimMatchTrust(tok *verifiedJWT) func(*iam.Identity) error {
	return func(id *iam.Identity) error {
		cm := id.GetClaimMatch()
		if cm == nil {
			return status.Errorf(codes.PermissionDenied, "identity %s is not assumable with OIDC tokens (it has no claim_match)", id.GetId())
		}
		if err := e.matchClaimMatch(cm, tok); err != nil {
			return status.Errorf(codes.PermissionDenied, "the OIDC token of issuer %s and subject %s may not assume identity %s: %v", tok.Issuer, tok.Subject, id.GetId(), err)
		}
		return nil
	}
}

// matchClaimMatch matches a verified token against a claim_match (fields:
// SDK proto/chainguard/platform/iam/v2/identities.proto and platform/iam/v1/
// identity.platform.proto, ClaimMatch): issuer equal or issuer_pattern
// matching, subject equal or subject_pattern matching, the audience
// (matchAudience), then every entry of claims equal and every entry of
// claim_patterns matching (both may name one claim: then both must hold).
// Patterns match as the AWS path's do (patternMatch: Go regexp, a match
// anywhere counts, anchoring is the pattern's own).
//
// Custom claims are top-level string claims: a name is looked up as is (a
// name such as "https://sts.amazonaws.com/" names the top-level claim of
// that name, never a path into it), and a claim that is missing, an object,
// an array, a number or a boolean never matches. The protos type both maps
// as map<string, string> and say no more; octo-sts, whose trust policies
// have the same claim_pattern, also refuses non-string claims except that
// it turns booleans into "true"/"false" (trust_policy.go, CheckToken). The
// emulator takes the stricter reading and does not.
func (e *Emulator) matchClaimMatch(cm *iam.Identity_ClaimMatch, tok *verifiedJWT) error {
	if err := matchOne("issuer", "issuer_pattern", tok.Issuer, cm.GetIssuer(), cm.GetIssuerPattern()); err != nil {
		return err
	}
	if err := matchOne("subject", "subject_pattern", tok.Subject, cm.GetSubject(), cm.GetSubjectPattern()); err != nil {
		return err
	}
	if err := e.matchAudience(cm, tok.Audience); err != nil {
		return err
	}
	exact, patterns := cm.GetClaims(), cm.GetClaimPatterns()
	for _, name := range slices.Sorted(maps.Keys(exact)) {
		v, err := stringClaim(tok.claims, name)
		if err != nil {
			return err
		}
		if v != exact[name] {
			return fmt.Errorf("claim %q value %q is not the trusted value %q", name, v, exact[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(patterns)) {
		v, err := stringClaim(tok.claims, name)
		if err != nil {
			return err
		}
		if ok, err := patternMatch(patterns[name], v); err != nil || !ok {
			return fmt.Errorf("claim %q value %q does not match the trusted claim_patterns[%q] %s", name, v, name, patterns[name])
		}
	}
	return nil
}

// matchAudience requires the token's aud (one string or several) to contain
// the claim_match's audience, or a value its audience_pattern matches. When
// the claim_match sets neither, the protos say the audience "defaults to the
// SaaS environment's issuer hostname" (v2) / "the hostname of the SaaS
// environment's issuer" (v1), and Chainguard's AWS guide has workloads
// request tokens with audience https://issuer.enforce.dev (the issuer URL,
// scheme included) for an identity whose claim_match sets only issuer and
// subject. The emulator takes the stricter reading that both sources admit:
// the default audience is exactly the issuer URL (IssuerURL), and a bare
// hostname is refused.
func (e *Emulator) matchAudience(cm *iam.Identity_ClaimMatch, aud []string) error {
	switch {
	case cm.GetAudience() != "":
		if !slices.Contains(aud, cm.GetAudience()) {
			return fmt.Errorf("audience %q does not contain the trusted audience %s", aud, cm.GetAudience())
		}
	case cm.GetAudiencePattern() != "":
		for _, a := range aud {
			if ok, err := patternMatch(cm.GetAudiencePattern(), a); err == nil && ok {
				return nil
			}
		}
		return fmt.Errorf("audience %q has no value matching the trusted audience_pattern %s", aud, cm.GetAudiencePattern())
	default:
		if !slices.Contains(aud, e.issuerURL) {
			return fmt.Errorf("audience %q does not contain %s, this issuer's URL, which a claim_match without audience or audience_pattern requires", aud, e.issuerURL)
		}
	}
	return nil
}

// stringClaim returns the top-level string claim name of claims.
func stringClaim(claims map[string]any, name string) (string, error) {
	raw, ok := claims[name]
	if !ok {
		return "", fmt.Errorf("claim %q is missing from the token", name)
	}
	s, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("claim %q is not a string (%T): only top-level string claims match", name, raw)
	}
	return s, nil
}

// brief is err's text on one line, at most 300 bytes: go-oidc's errors
// quote what an issuer answered, which the emulator does not control.
func brief(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
