package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"chainguard.dev/sdk/proto/capabilities"
	"chainguard.dev/sdk/uidp"
)

// Tokens.
//
// The API tokens the emulator issues are ES256 JWTs signed with a key made
// for each emulator. Their claims are those of a Chainguard token: iss (the
// issuer URL), sub (the identity UIDP), aud (the API URL), iat, exp and jti.
// The exp claim is the truth: the API refuses a token from its exp second on,
// and chainguard.dev/sdk/auth.ExtractExpiry(token) reads it, which is how a
// client learns the expiry when Exchange leaves RawToken.expiry unset
// (Options.OmitExpiry). JWT times are whole seconds, so exp is the issue time
// plus the TTL, truncated to the second.
//
// A token's capabilities are fixed when it is issued: the role bindings of
// its identity that were in effect then (see grant). The evidence:
// proto/platform/oidc/v1/oidc.platform.proto (SDK v0.1.212), ExchangeRequest
// .scopes: "The returned token will include role bindings for the requested
// scopes"; and the vendor's Terraform provider, which after creating an
// organization force-refreshes its token until the new group is visible
// (internal/provider/resource_group.go, waitForRoleBindingPropagation, at
// commit 5085c9f of chainguard-dev/terraform-provider-chainguard; added in
// d996c0e "exponential backoff polling for root group role binding
// propagation"). So:
//   - a binding created after the exchange does not count for the token;
//   - a binding deleted after the exchange no longer counts either, and a
//     binding whose role changed counts only for the capabilities both roles
//     grant. The evidence is silent on revocation (tokens may well be
//     stateless); the emulator takes the stricter reading, under which a
//     token never grants more than both the exchange-time and the current
//     bindings do, so code that works here also works if the service keeps
//     honouring deleted bindings until the token expires. That other
//     reading, Options.StatelessTokens, has evidence for a neighbouring
//     object: chainctl iam identities delete documents delegate grants as
//     "stateless, so ones already minted for it are not revoked".

// token is what the emulator keeps about a token it issued, by jti.
type token struct {
	identity string
	expiry   time.Time // the exp claim
	issued   time.Time
	// grants are the identity's role bindings in effect at the exchange,
	// restricted to the requested scopes.
	grants []grant
	// scopes are the requested scopes; none requested means the token holds
	// every binding at its own group.
	scopes []string
	// caps are the requested capabilities; nil means no restriction.
	caps map[capabilities.Capability]bool
}

// grant is one role binding as of the exchange.
type grant struct{ binding, group, role string }

// jwtClaims are the claims of an emulator token.
type jwtClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`
}

// jwtSigner signs and verifies ES256 JWTs with one key.
type jwtSigner struct {
	key *ecdsa.PrivateKey
	kid string
}

func newJWTSigner() (*jwtSigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("emulator: generate the token signing key: %w", err)
	}
	return &jwtSigner{key: key, kid: randomString(16, tokenAlphabet)}, nil
}

var b64 = base64.RawURLEncoding

func (s *jwtSigner) sign(c jwtClaims) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": s.kid})
	if err != nil {
		return "", fmt.Errorf("marshal JWT header: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("marshal JWT claims: %w", err)
	}
	signingInput := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign JWT: %w", err)
	}
	sig := make([]byte, 64) // JWS ES256: r and s, 32 bytes each, big-endian
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signingInput + "." + b64.EncodeToString(sig), nil
}

var errNotOurs = errors.New("not a JWT signed by this emulator")

// verify checks the signature of tok and returns its claims.
func (s *jwtSigner) verify(tok string) (jwtClaims, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return jwtClaims{}, errNotOurs
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return jwtClaims{}, errNotOurs
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(&s.key.PublicKey, digest[:], r, sv) {
		return jwtClaims{}, errNotOurs
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return jwtClaims{}, errNotOurs
	}
	var c jwtClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return jwtClaims{}, fmt.Errorf("%w: claims: %w", errNotOurs, err)
	}
	return c, nil
}

// issueToken mints a token for identity holding the role bindings in effect
// at now (those whose propagation delay has passed), restricted to scopes
// and caps. Callers hold e.mu.
func (e *Emulator) issueToken(identity string, now time.Time, scopes []string, caps map[capabilities.Capability]bool) (string, token, error) {
	t := token{identity: identity, issued: now, scopes: scopes, caps: caps}
	for _, b := range e.bindings {
		if b.identity != identity || now.Before(b.visibleAt) {
			continue
		}
		if len(scopes) > 0 && !coversAny(b.group, scopes) {
			continue
		}
		t.grants = append(t.grants, grant{binding: b.id, group: b.group, role: b.role})
	}
	exp := now.Add(e.tokenTTL).Unix()
	t.expiry = time.Unix(exp, 0)
	jti := randomString(22, tokenAlphabet)
	raw, err := e.signer.sign(jwtClaims{
		Issuer: e.issuerURL, Subject: identity, Audience: e.apiURL,
		IssuedAt: now.Unix(), Expiry: exp, ID: jti,
	})
	if err != nil {
		return "", token{}, fmt.Errorf("emulator: issue a token for %s: %w", identity, err)
	}
	e.tokens[jti] = t
	return raw, t, nil
}

// coversAny reports whether a binding on group applies to one of scopes
// (group is the scope or an ancestor of it), as the oidc proto describes.
func coversAny(group string, scopes []string) bool {
	for _, s := range scopes {
		if uidp.IsAncestorOrSelf(group, s) {
			return true
		}
	}
	return false
}

// tokenHas reports whether t grants capability c on scope. A grant counts
// while its binding still exists on the same group for the same identity
// (IAM v2 UpdateRoleBinding can move a binding to another identity), for
// the capabilities
// both its role at the exchange and its current role grant (with
// Options.StatelessTokens: as it was at the exchange). Callers hold e.mu.
func (e *Emulator) tokenHas(t *token, scope string, c capabilities.Capability) bool {
	return e.tokenGrants(t, c, func(group string) bool {
		if len(t.scopes) == 0 {
			return uidp.IsAncestorOrSelf(group, scope)
		}
		for _, s := range t.scopes {
			if uidp.IsAncestorOrSelf(group, s) && uidp.IsAncestorOrSelf(s, scope) {
				return true
			}
		}
		return false
	})
}

// tokenHasAnywhere reports whether t grants c on some scope. Callers hold
// e.mu.
func (e *Emulator) tokenHasAnywhere(t *token, c capabilities.Capability) bool {
	return e.tokenGrants(t, c, func(string) bool { return true })
}

func (e *Emulator) tokenGrants(t *token, c capabilities.Capability, applies func(group string) bool) bool {
	if t == nil || (t.caps != nil && !t.caps[c]) {
		return false
	}
	for _, g := range t.grants {
		if !e.roles[g.role].caps[c] {
			continue
		}
		if !e.statelessTokens {
			if b, ok := e.bindings[g.binding]; !ok || b.group != g.group || b.identity != t.identity || !e.roles[b.role].caps[c] {
				continue
			}
		}
		if applies(g.group) {
			return true
		}
	}
	return false
}
