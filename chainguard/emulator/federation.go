package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/xml"
	"fmt"
	"net/http"

	"chainguard.dev/sdk/validation"
	"github.com/google/uuid"
)

// AWS outbound identity federation, per AWS account.
//
// An account's federation is off until enabled, through the IAM API
// (EnableOutboundWebIdentityFederation, served by awsquery.go) or, as a
// console click would, EnableWebIdentityFederation. The first enable gives
// the account its issuer, <AWSURL()>/federation/<uuid> (the real one is
// https://<uuid>.tokens.sts.global.api.aws: Chainguard's guide
// aws-identity-oidc.md, 2026-01-05; "This operation also generates a unique
// issuer URL for your AWS account", EnableOutboundWebIdentityFederation in
// the IAM API reference), and its signing keys: one ECDSA P-384 key (ES384)
// and one RSA 2048 key (RS256), the two algorithms GetWebIdentityToken
// offers. The issuer and its keys last for the emulator's lifetime: disabling
// stops GetWebIdentityToken but the issuer keeps serving its discovery
// document and keys ("This operation does not affect tokens that were issued
// before the feature was disabled", DisableOutboundWebIdentityFederation),
// and re-enabling keeps both.

// accountFederation is the outbound identity federation state of one
// account.
type accountFederation struct {
	account string
	id      string // the uuid in the issuer path
	issuer  string
	enabled bool
	ecKey   *ecdsa.PrivateKey // ES384, P-384
	rsaKey  *rsa.PrivateKey   // RS256, 2048 bits
}

// federationPathPrefix is the path of the issuers under AWSURL().
const federationPathPrefix = "/federation/"

// newUUID returns a random (version 4) UUID.
func newUUID() string { return uuid.NewString() }

// newAccountFederation makes the issuer and keys of account (enabled is left
// false). Key generation (RSA takes tens of milliseconds) runs without e.mu.
func (e *Emulator) newAccountFederation(account string) (*accountFederation, error) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("emulator: generate the ES384 key of account %s: %w", account, err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("emulator: generate the RS256 key of account %s: %w", account, err)
	}
	id := newUUID()
	return &accountFederation{
		account: account, id: id, issuer: e.awsSTSURL + federationPathPrefix + id,
		ecKey: ecKey, rsaKey: rsaKey,
	}, nil
}

// enableFederation turns account's federation on, making its issuer and
// keys on first use, and reports whether it was off.
func (e *Emulator) enableFederation(account string) (f *accountFederation, wasOff bool, err error) {
	e.mu.Lock()
	f = e.federations[account]
	e.mu.Unlock()
	if f == nil {
		nf, err := e.newAccountFederation(account)
		if err != nil {
			return nil, false, err
		}
		e.mu.Lock()
		if f = e.federations[account]; f == nil { // another enable may have won
			f = nf
			e.federations[account] = f
			e.federationIDs[f.id] = f
		}
		e.mu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	wasOff = !f.enabled
	f.enabled = true
	return f, wasOff, nil
}

// EnableWebIdentityFederation turns on outbound identity federation for the
// AWS account, as a click in the IAM console would, and returns the account's
// issuer URL (<AWSURL()>/federation/<uuid>, the same for the emulator's
// lifetime). Unlike the IAM API's Enable, it is idempotent: enabling an
// enabled account returns its issuer. It panics on an invalid account ID,
// like any invalid test fixture.
func (e *Emulator) EnableWebIdentityFederation(account string) string {
	if err := validation.ValidateAWSAccount(account); err != nil {
		panic(fmt.Sprintf("emulator: EnableWebIdentityFederation: account %q: %v", account, err))
	}
	f, wasOff, err := e.enableFederation(account)
	if err != nil {
		panic(err.Error())
	}
	if wasOff {
		e.log.Info("AWS outbound identity federation enabled", "account", account, "issuer", f.issuer)
	}
	return f.issuer
}

// WebIdentityFederation reports the issuer URL of the AWS account's outbound
// identity federation ("" if it was never enabled) and whether it is enabled
// now.
func (e *Emulator) WebIdentityFederation(account string) (issuer string, enabled bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.federations[account]
	if f == nil {
		return "", false
	}
	return f.issuer, f.enabled
}

// AWSURL is the base URL of the AWS stand-in (the same as AWSSTSURL): point
// the aws-sdk-go-v2 STS and IAM clients at it (Options.BaseEndpoint, or
// AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_IAM) to call the AWS Query API
// actions it serves (see awsquery.go). The account issuers live under it.
func (e *Emulator) AWSURL() string { return e.awsSTSURL }

// The IAM actions. Their errors are those of the IAM API reference, with the
// HTTP status of the awsQueryError trait in aws-sdk-go-v2 service/iam v1.65.0
// (schemas.go): FeatureEnabled 409, FeatureDisabled 404. The messages are the
// reference's descriptions of the errors.
const (
	msgFeatureEnabled  = "The request failed because outbound identity federation is already enabled for your AWS account. You cannot enable the feature multiple times. To fetch the current configuration (including the unique issuer URL), use the GetOutboundWebIdentityFederationInfo operation."
	msgFeatureDisabled = "The request failed because outbound identity federation is already disabled for your AWS account. You cannot disable the feature multiple times"
)

// enableFederationResult is the EnableOutboundWebIdentityFederation result.
type enableFederationResult struct {
	XMLName          xml.Name `xml:"EnableOutboundWebIdentityFederationResult"`
	IssuerIdentifier string
}

// federationInfoResult is the GetOutboundWebIdentityFederationInfo result.
type federationInfoResult struct {
	XMLName           xml.Name `xml:"GetOutboundWebIdentityFederationInfoResult"`
	IssuerIdentifier  string
	JwtVendingEnabled bool
}

// queryEnableFederation serves EnableOutboundWebIdentityFederation for the
// caller's account: the issuer URL, or FeatureEnabled (409) when it is
// already on ("You cannot enable the feature multiple times").
func (e *Emulator) queryEnableFederation(call *awsQueryCall) (any, error) {
	account := call.caller.principal.Account
	f, wasOff, err := e.enableFederation(account)
	if err != nil {
		return nil, err
	}
	if !wasOff {
		return nil, senderError(http.StatusConflict, "FeatureEnabled", msgFeatureEnabled)
	}
	e.log.Info("AWS outbound identity federation enabled", "account", account, "issuer", f.issuer, "by", call.caller.principal.ARN)
	return &enableFederationResult{IssuerIdentifier: f.issuer}, nil
}

// queryGetFederationInfo serves GetOutboundWebIdentityFederationInfo for the
// caller's account.
//
// The IAM API reference lists FeatureDisabled (404) among its errors
// without saying when it applies, and also documents JwtVendingEnabled,
// "the current enabled/disabled status". The emulator answers:
//   - an account whose federation was never enabled: FeatureDisabled (404),
//     the stricter of the two readings (there is no issuer to report yet);
//   - an account enabled, then disabled: its issuer with
//     JwtVendingEnabled=false (the issuer still exists: tokens issued before
//     the disable stay verifiable), the other reading.
//
// So callers are exercised under both readings: code that works here handles
// a 404 and JwtVendingEnabled=false alike.
func (e *Emulator) queryGetFederationInfo(call *awsQueryCall) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.federations[call.caller.principal.Account]
	if f == nil {
		return nil, senderError(http.StatusNotFound, "FeatureDisabled", msgFeatureDisabled)
	}
	return &federationInfoResult{IssuerIdentifier: f.issuer, JwtVendingEnabled: f.enabled}, nil
}

// queryDisableFederation serves DisableOutboundWebIdentityFederation for the
// caller's account: no result, or FeatureDisabled (404) when it is off
// ("You cannot disable the feature multiple times"). The issuer and its
// keys remain (see the top of this file).
func (e *Emulator) queryDisableFederation(call *awsQueryCall) (any, error) {
	account := call.caller.principal.Account
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.federations[account]
	if f == nil || !f.enabled {
		return nil, senderError(http.StatusNotFound, "FeatureDisabled", msgFeatureDisabled)
	}
	f.enabled = false
	e.log.Info("AWS outbound identity federation disabled", "account", account, "by", call.caller.principal.ARN)
	return nil, nil
}
