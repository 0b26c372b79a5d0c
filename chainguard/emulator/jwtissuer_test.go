package emulator_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testOIDCIssuer is a small OIDC issuer on 127.0.0.1 for the tests of the
// emulator's JWT exchange, standing in for an AWS account's outbound
// federation issuer until the emulator's own AWS side serves one. It serves
// what AWS documents for that issuer: ISSUER/.well-known/openid-configuration
// and ISSUER/.well-known/jwks.json (the IAM SDK's doc of IssuerIdentifier),
// with the issuer URL carrying a path (as the emulator's AWS issuers,
// AWSURL()/federation/<uuid>, will); and it signs tokens shaped like
// sts:GetWebIdentityToken's (Chainguard's AWS guide's sample: header
// {"typ":"JWT","alg":"ES384","kid":"EC384_0"}; claims aud, exp, iat, iss,
// jti, sub = the role ARN, and an "https://sts.amazonaws.com/" object).
type testOIDCIssuer struct {
	URL    string
	path   string            // of URL
	ec     *ecdsa.PrivateKey // P-384, kid "EC384_0"
	rsa    *rsa.PrivateKey   // kid "RSA2048_0"
	mu     sync.Mutex
	served map[string]int // requests by path
	down   bool           // discovery answers 404 while set
	// advertised, when set, is the issuer the discovery document names
	// instead of URL (a misconfigured or impostor issuer).
	advertised string
}

const (
	testECKid  = "EC384_0"
	testRSAKid = "RSA2048_0"
)

// startTestOIDCIssuer starts an issuer closed when t ends.
func startTestOIDCIssuer(t *testing.T) *testOIDCIssuer {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	path := "/federation/" + hex.EncodeToString(id)
	i := &testOIDCIssuer{path: path, ec: ec, rsa: rk, served: map[string]int{}}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	i.URL = srv.URL + path
	mux.HandleFunc(path+"/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if i.count(r) {
			http.NotFound(w, r)
			return
		}
		advertised := i.URL
		if i.advertised != "" {
			advertised = i.advertised
		}
		writeJSON(w, map[string]any{
			"issuer":                                advertised,
			"jwks_uri":                              i.URL + "/.well-known/jwks.json",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES384"},
		})
	})
	mux.HandleFunc(path+"/.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		i.count(r)
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &ec.PublicKey, KeyID: testECKid, Algorithm: "ES384", Use: "sig"},
			{Key: &rk.PublicKey, KeyID: testRSAKid, Algorithm: "RS256", Use: "sig"},
		}})
	})
	return i
}

// advertise makes the discovery document name issuer instead of URL.
func (i *testOIDCIssuer) advertise(issuer string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.advertised = issuer
}

// count records a request and reports whether discovery is down.
func (i *testOIDCIssuer) count(r *http.Request) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.served[r.URL.Path]++
	return i.down
}

// setDown makes discovery answer 404 (true) or serve again (false).
func (i *testOIDCIssuer) setDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// discoveries is how many discovery documents were requested.
func (i *testOIDCIssuer) discoveries() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.served[i.path+"/.well-known/openid-configuration"]
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// claims are the claims of a GetWebIdentityToken token of role ARN sub for
// audience aud, issued at iat and valid for 5 minutes (the guide's
// DurationSeconds limit).
func (i *testOIDCIssuer) claims(sub, aud string, iat time.Time) map[string]any {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return map[string]any{
		"iss": i.URL, "sub": sub, "aud": aud,
		"iat": iat.Unix(), "exp": iat.Add(5 * time.Minute).Unix(), "jti": hex.EncodeToString(id),
		"https://sts.amazonaws.com/": map[string]any{
			"aws_account": account, "principal_id": sub, "source_region": "us-east-1",
			"original_session_exp": iat.Add(time.Hour).UTC().Format(time.RFC3339),
		},
	}
}

// sign signs claims with ES384 and the issuer's key.
func (i *testOIDCIssuer) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	return signTestJWT(t, jose.ES384, i.ec, testECKid, claims)
}

// signTestJWT signs claims as a compact JWS with alg, key and kid.
func signTestJWT(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
