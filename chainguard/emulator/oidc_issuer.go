package emulator

import (
	"encoding/json"
	"net/http"

	jose "github.com/go-jose/go-jose/v4"
)

// The OIDC discovery endpoints of the account issuers.
//
// Each account whose federation was ever enabled has an issuer,
// ISSUER = <AWSURL()>/federation/<uuid>, serving (on 127.0.0.1, plain HTTP)
// the two documents the IAM API reference names ("hosts the OpenID Connect
// (OIDC) discovery endpoints at /.well-known/openid-configuration and
// /.well-known/jwks.json", IssuerIdentifier of
// EnableOutboundWebIdentityFederation):
//
//	ISSUER/.well-known/openid-configuration  issuer, jwks_uri,
//	    response_types_supported ["id_token"], subject_types_supported
//	    ["public"], id_token_signing_alg_values_supported ["RS256","ES384"]
//	    (the fields OpenID Connect Discovery 1.0 requires; the algorithms are
//	    GetWebIdentityToken's)
//	ISSUER/.well-known/jwks.json  {"keys": [the ES384 and the RS256 public
//	    key, with use "sig", alg and kid]}
//
// They stay served after the account's federation is disabled (tokens issued
// before remain valid, see federation.go). Any other path under
// /federation/, and any method but GET (or HEAD), is 404.

// openIDConfiguration is the discovery document of an issuer.
type openIDConfiguration struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

// federationRoutes adds the issuers' endpoints to mux.
func (e *Emulator) federationRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+federationPathPrefix+"{id}/.well-known/openid-configuration", e.serveOpenIDConfiguration)
	mux.HandleFunc("GET "+federationPathPrefix+"{id}/.well-known/jwks.json", e.serveJWKS)
	mux.HandleFunc(federationPathPrefix, http.NotFound)
}

// issuerOf returns the federation whose issuer path id r names, or nil.
func (e *Emulator) issuerOf(r *http.Request) *accountFederation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.federationIDs[r.PathValue("id")]
}

func (e *Emulator) serveOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	f := e.issuerOf(r)
	if f == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, openIDConfiguration{
		Issuer:                           f.issuer,
		JWKSURI:                          f.issuer + "/.well-known/jwks.json",
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{string(jose.RS256), string(jose.ES384)},
	})
}

func (e *Emulator) serveJWKS(w http.ResponseWriter, r *http.Request) {
	f := e.issuerOf(r)
	if f == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &f.ecKey.PublicKey, KeyID: kidES384, Algorithm: string(jose.ES384), Use: "sig"},
		{Key: &f.rsaKey.PublicKey, KeyID: kidRS256, Algorithm: string(jose.RS256), Use: "sig"},
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "marshal the document: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
