package emulator

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"chainguard.dev/sdk/validation"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The AWS STS stand-in.
//
// auth/aws.VerifyToken forwards the decoded GetCallerIdentity request to
// https://sts.amazonaws.com through http.DefaultClient, with no way to point it
// elsewhere. To keep every byte on 127.0.0.1, Start installs (once per
// process) a RoundTripper on http.DefaultClient that sends requests for host
// sts.amazonaws.com to the stand-in of the emulator whose issuer URL equals
// the request's Chainguard-Audience header. Requests for that host whose
// audience no running emulator serves fail: an AWS token is never sent to the
// real AWS STS from a process that runs an emulator. Requests for any other
// host go to the transport http.DefaultClient had before.
//
// The same server answers AWS Query API calls sent straight to it by the SDK
// clients (awsquery.go) and serves the account issuers (oidc_issuer.go); both
// kinds of signed request are checked by verifySignature.

const (
	// awsSTSHost is the host the SDK signs tokens for and VerifyToken accepts.
	awsSTSHost = "sts.amazonaws.com"
	// maxSigningSkew is how far X-Amz-Date may be from the stand-in's clock,
	// as AWS allows for signed requests.
	maxSigningSkew = 15 * time.Minute
	amzDateFormat  = "20060102T150405Z"
	sigV4Algorithm = "AWS4-HMAC-SHA256"
)

// requiredSignedHeaders are the Chainguard headers a token must sign (lower case, as
// in SignedHeaders), together with the SigV4-intrinsic host and date.
var requiredSignedHeaders = []string{"host", "x-amz-date", "chainguard-audience", "chainguard-identity"}

// AWSPrincipal is an AWS identity known to the AWS STS stand-in: what
// GetCallerIdentity answers for credentials registered with
// RegisterAWSPrincipal.
type AWSPrincipal struct {
	Account string `json:"account"` // 12-digit account ID
	ARN     string `json:"arn"`     // e.g. arn:aws:sts::111122223333:assumed-role/ROLE/SESSION
	UserID  string `json:"user_id"` // e.g. AROAEXAMPLEEXAMPLE12:SESSION
	// RoleARN is the IAM role ARN, with its path, of an assumed-role
	// principal (e.g. arn:aws:iam::111122223333:role/service-role/ROLE):
	// the sub and principal_id of its web identity tokens (see
	// webidentity_token.go). Optional: when empty it is derived from an
	// assumed-role ARN with path "/". It must name the role of ARN.
	RoleARN string `json:"role_arn,omitempty"`
	// SessionExpiry is when the principal's session (and so the returned
	// credentials) expires. Optional: when set, requests signed after it
	// fail with ExpiredToken, web identity tokens carry it as
	// original_session_exp, and GetWebIdentityToken refuses a duration
	// that would outlive it (SessionDurationEscalationException).
	SessionExpiry time.Time `json:"session_expiry,omitzero"`
}

// awsCredential is what the stand-in knows about one access key.
type awsCredential struct {
	secret       string
	sessionToken string
	principal    AWSPrincipal
}

// RegisterAWSPrincipal makes the AWS STS stand-in answer GetCallerIdentity
// with p for requests signed by the returned (fresh, random, temporary)
// credentials. It panics if p is incomplete, or its RoleARN does not name the
// role of its session, like any invalid test fixture.
func (e *Emulator) RegisterAWSPrincipal(p AWSPrincipal) aws.Credentials {
	if err := validation.ValidateAWSAccount(p.Account); err != nil {
		panic(fmt.Sprintf("emulator: RegisterAWSPrincipal: account %q: %v", p.Account, err))
	}
	if p.ARN == "" || p.UserID == "" {
		panic("emulator: RegisterAWSPrincipal: ARN and UserID are required")
	}
	if err := checkRoleARN(p); err != nil {
		panic("emulator: RegisterAWSPrincipal: " + err.Error())
	}
	creds := aws.Credentials{
		AccessKeyID:     "ASIA" + randomString(16, upperAlnum),
		SecretAccessKey: randomString(40, base64ish),
		SessionToken:    randomString(64, base64ish),
		Source:          "chainguard-emulator",
	}
	if !p.SessionExpiry.IsZero() {
		creds.CanExpire, creds.Expires = true, p.SessionExpiry
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.awsCreds[creds.AccessKeyID] = awsCredential{secret: creds.SecretAccessKey, sessionToken: creds.SessionToken, principal: p}
	return creds
}

const (
	upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	base64ish  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	// tokenAlphabet is URL- and metadata-safe.
	tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

// randomString returns n characters drawn uniformly from alphabet (whose
// length must divide 256).
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// awsError is an AWS error (STS or IAM): the legacy GetCallerIdentity path
// serializes it like the real service's JSON error body, the AWS Query API
// (awsquery.go) as its XML ErrorResponse.
type awsError struct {
	status  int
	code    string
	message string
}

func (e *awsError) Error() string { return e.code + ": " + e.message }

// senderError is a client-side (HTTP 4xx) AWS error.
func senderError(status int, code, format string, args ...any) *awsError {
	return &awsError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// serveAWSSTS is the stand-in's HTTP handler. A POST whose URL carries the
// Action is a GetCallerIdentity token forwarded by auth/aws.VerifyToken (the
// request shape auth/aws.GenerateToken signs: parameters in the URL, no body,
// JSON answer); every other request is an AWS Query API call, parameters in a
// form-encoded body, as the aws-sdk-go-v2 clients send it (awsquery.go).
func (e *Emulator) serveAWSSTS(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("Action") == "" {
		e.serveAWSQuery(w, r)
		return
	}
	p, err := e.verifySigV4(r)
	if err == nil {
		err = e.beforeAWSCall(r.Context(), "sts:GetCallerIdentity")
	}
	w.Header().Set("Content-Type", "application/json")
	reqID := randomString(16, upperAlnum)
	if err != nil {
		var se *awsError
		if !errors.As(err, &se) {
			se = &awsError{status: http.StatusInternalServerError, code: "InternalFailure", message: err.Error()}
		}
		e.log.Info("AWS STS stand-in rejected a request", "code", se.code, "reason", se.message)
		w.WriteHeader(se.status)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"Error":     map[string]string{"Type": "Sender", "Code": se.code, "Message": se.message},
			"RequestId": reqID,
		})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"GetCallerIdentityResponse": map[string]any{
			"GetCallerIdentityResult": map[string]string{"Account": p.Account, "Arn": p.ARN, "UserId": p.UserID},
			"ResponseMetadata":        map[string]string{"RequestId": reqID},
		},
	})
}

// verifySigV4 checks r as AWS STS would (for the shape auth/aws.GenerateToken
// produces) and returns the principal of the signing credentials.
func (e *Emulator) verifySigV4(r *http.Request) (AWSPrincipal, error) {
	bad := func(code, format string, args ...any) (AWSPrincipal, error) {
		return AWSPrincipal{}, senderError(http.StatusBadRequest, code, format, args...)
	}
	if r.Method != http.MethodPost {
		return bad("InvalidAction", "GetCallerIdentity must be a POST, got %s", r.Method)
	}
	if r.Host != awsSTSHost {
		return bad("InvalidRequest", "the request is for host %q; the stand-in serves %s only", r.Host, awsSTSHost)
	}
	q := r.URL.Query()
	if q.Get("Action") != "GetCallerIdentity" || q.Get("Version") != "2011-06-15" {
		return bad("InvalidAction", "only Action=GetCallerIdentity&Version=2011-06-15 is served")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return bad("InvalidRequest", "read the request body: %v", err)
	}
	if len(body) != 0 {
		return bad("InvalidRequest", "GetCallerIdentity tokens carry no body")
	}
	caller, err := e.verifySignature(r, sigV4Check{service: "sts", requiredHeaders: requiredSignedHeaders})
	return caller.principal, err
}

// sigV4Check is what verifySignature requires of a request beyond a valid
// signature.
type sigV4Check struct {
	// service is the service the credential scope must name ("sts", "iam").
	service string
	// requiredHeaders are the headers (lower case) SignedHeaders must list.
	requiredHeaders []string
	// body is the request payload (nil: none), whose SHA-256 the canonical
	// request carries.
	body []byte
}

// sigV4Caller is the verified signer of a request.
type sigV4Caller struct {
	principal AWSPrincipal
	region    string // the credential scope's region
}

// verifySignature checks the SigV4 signature of r as AWS does for requests
// signed in the Authorization header (the AWS General Reference, "Signature
// Version 4 signing process", and the Common Errors of the STS and IAM API
// references for the codes): the access key must be registered
// (RegisterAWSPrincipal) and X-Amz-Security-Token must be its session token
// (InvalidClientTokenId, 403); X-Amz-Date within 15 minutes of now and the
// credential scope's date equal to its day; the scope's service equal to
// c.service and its region a region name (SignatureDoesNotMatch, 403, with
// AWS's "Credential should be scoped to correct service" wording); and the
// signature recomputed over the canonical request (method, path, query,
// the signed headers, the SHA-256 of c.body) equal to the one sent
// (SignatureDoesNotMatch). A request without an Authorization header is
// MissingAuthenticationToken (403), a malformed one IncompleteSignature
// (400). A principal whose SessionExpiry has passed gets ExpiredToken (403),
// as AWS answers expired temporary credentials.
func (e *Emulator) verifySignature(r *http.Request, c sigV4Check) (sigV4Caller, error) {
	sender := func(code, format string, args ...any) (sigV4Caller, error) {
		return sigV4Caller{}, senderError(http.StatusForbidden, code, format, args...)
	}
	incomplete := func(format string, args ...any) (sigV4Caller, error) {
		return sigV4Caller{}, senderError(http.StatusBadRequest, "IncompleteSignature", format, args...)
	}
	if len(r.Header.Values("Authorization")) == 0 {
		return sender("MissingAuthenticationToken", "Request is missing Authentication Token")
	}
	auth, err := parseAuthorization(r.Header.Values("Authorization"))
	if err != nil {
		return incomplete("%v", err)
	}
	e.mu.Lock()
	cred, ok := e.awsCreds[auth.accessKeyID]
	e.mu.Unlock()
	if !ok {
		return sender("InvalidClientTokenId", "The security token included in the request is invalid: unknown access key ID %s", auth.accessKeyID)
	}
	if tok := r.Header.Values("X-Amz-Security-Token"); len(tok) != 1 || !hmac.Equal([]byte(tok[0]), []byte(cred.sessionToken)) {
		return sender("InvalidClientTokenId", "The security token included in the request is invalid: the session token does not belong to access key ID %s", auth.accessKeyID)
	}
	for _, h := range c.requiredHeaders {
		if !slices.Contains(auth.signedHeaders, h) {
			return sender("SignatureDoesNotMatch", "header %s is not covered by the signature (SignedHeaders=%s)", h, strings.Join(auth.signedHeaders, ";"))
		}
	}
	dates := r.Header.Values("X-Amz-Date")
	if len(dates) != 1 {
		return incomplete("exactly one X-Amz-Date header is required")
	}
	at, err := time.Parse(amzDateFormat, dates[0])
	if err != nil {
		return incomplete("X-Amz-Date %q is not in the form 20060102T150405Z", dates[0])
	}
	now := time.Now()
	if at.Before(now.Add(-maxSigningSkew)) {
		return sender("SignatureDoesNotMatch", "Signature expired: %s is now earlier than %s (%s - %s)", dates[0],
			now.Add(-maxSigningSkew).UTC().Format(amzDateFormat), now.UTC().Format(amzDateFormat), maxSigningSkew)
	} else if at.After(now.Add(maxSigningSkew)) {
		return sender("SignatureDoesNotMatch", "Signature not yet current: %s is still later than %s (%s + %s)", dates[0],
			now.Add(maxSigningSkew).UTC().Format(amzDateFormat), now.UTC().Format(amzDateFormat), maxSigningSkew)
	}
	if exp := cred.principal.SessionExpiry; !exp.IsZero() && !now.Before(exp) {
		return sender("ExpiredToken", "The security token included in the request is expired")
	}
	switch {
	case auth.date != at.Format("20060102"):
		return sender("SignatureDoesNotMatch", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from 'X-Amz-Date'", auth.date, at.Format("20060102"))
	case auth.service != c.service:
		return sender("SignatureDoesNotMatch", "Credential should be scoped to correct service: '%s'. ", c.service)
	case !regionName.MatchString(auth.region):
		return sender("SignatureDoesNotMatch", "Credential should be scoped to a valid region, not '%s'. ", auth.region)
	case auth.terminator != "aws4_request":
		return sender("SignatureDoesNotMatch", "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'. ", auth.terminator)
	}

	// Recompute the signature over the headers the caller says it signed.
	u := &url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	re, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	if err != nil {
		return sigV4Caller{}, senderError(http.StatusBadRequest, "InvalidRequest", "rebuild the request: %v", err)
	}
	re.Host = r.Host
	for _, h := range auth.signedHeaders {
		switch h {
		case "host":
			continue
		case "content-length":
			// The signer signs the length it is given (and only when
			// non-zero): give it the length of the body received.
			re.ContentLength = int64(len(c.body))
			continue
		}
		vs := r.Header.Values(h)
		if len(vs) == 0 {
			return sender("SignatureDoesNotMatch", "signed header %s is missing from the request", h)
		}
		for _, v := range vs {
			re.Header.Add(h, v)
		}
	}
	sum := sha256.Sum256(c.body)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: auth.accessKeyID, SecretAccessKey: cred.secret, SessionToken: cred.sessionToken}
	if err := signer.SignHTTP(r.Context(), creds, re, hex.EncodeToString(sum[:]), auth.service, auth.region, at); err != nil {
		return sigV4Caller{}, fmt.Errorf("recompute signature: %w", err)
	}
	want, err := parseAuthorization(re.Header.Values("Authorization"))
	if err != nil {
		return sigV4Caller{}, fmt.Errorf("parse recomputed signature: %w", err)
	}
	if strings.Join(want.signedHeaders, ";") != strings.Join(auth.signedHeaders, ";") ||
		!hmac.Equal([]byte(want.signature), []byte(auth.signature)) {
		return sender("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return sigV4Caller{principal: cred.principal, region: auth.region}, nil
}

// regionName is the shape of an AWS region name (us-east-1, eu-west-2,
// us-gov-west-1, cn-north-1, ap-southeast-5, eu-isoe-west-1, ...).
var regionName = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// sigV4Auth is a parsed SigV4 Authorization header.
type sigV4Auth struct {
	accessKeyID, date, region, service, terminator string
	signedHeaders                                  []string
	signature                                      string
}

// parseAuthorization parses
// "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex".
func parseAuthorization(values []string) (sigV4Auth, error) {
	var a sigV4Auth
	if len(values) != 1 {
		return a, errors.New("exactly one Authorization header is required")
	}
	rest, ok := strings.CutPrefix(values[0], sigV4Algorithm+" ")
	if !ok {
		return a, fmt.Errorf("the Authorization header must use %s", sigV4Algorithm)
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || seen[k] {
			return a, fmt.Errorf("malformed Authorization component %q", part)
		}
		seen[k] = true
		switch k {
		case "Credential":
			fields := strings.Split(v, "/")
			if len(fields) != 5 {
				return a, fmt.Errorf("credential %q is not ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request", v)
			}
			a.accessKeyID, a.date, a.region, a.service, a.terminator = fields[0], fields[1], fields[2], fields[3], fields[4]
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		default:
			return a, fmt.Errorf("unexpected Authorization component %q", k)
		}
	}
	if a.accessKeyID == "" || len(a.signedHeaders) == 0 || a.signature == "" {
		return a, errors.New("the Authorization header needs Credential, SignedHeaders and Signature")
	}
	return a, nil
}

// stsRouter is the RoundTripper installed on http.DefaultClient.
type stsRouter struct {
	next      http.RoundTripper // the transport http.DefaultClient had before
	direct    http.RoundTripper // to the stand-ins on 127.0.0.1, never through a proxy
	mu        sync.Mutex
	byIssuer  map[string]*url.URL // issuer URL -> stand-in base URL
	installed bool
}

// router is the process-wide hook the SDK forces on the emulator (see the
// comment at the top of this file). It is the package's only global state.
var router = &stsRouter{
	byIssuer: map[string]*url.URL{},
	// No keep-alives: a closed emulator's port may be reused by the next one.
	direct: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext},
}

// register routes tokens for issuer to the stand-in at stsURL, installing the
// hook on http.DefaultClient on first use.
func (r *stsRouter) register(issuer string, stsURL *url.URL) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.installed {
		r.next = http.DefaultClient.Transport
		if r.next == nil {
			r.next = http.DefaultTransport
		}
		http.DefaultClient.Transport = r
		r.installed = true
	}
	r.byIssuer[issuer] = stsURL
}

func (r *stsRouter) unregister(issuer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byIssuer, issuer)
}

// rejectionKey is the context key under which Exchange passes a *string that
// receives the stand-in's reason when it rejects a token, so that the
// Exchange error can say why (VerifyToken only reports "rejected").
type rejectionKey struct{}

// RoundTrip implements http.RoundTripper.
func (r *stsRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Hostname() != awsSTSHost {
		return r.next.RoundTrip(req)
	}
	aud := canonicalHeaderValue(req.Header.Get("Chainguard-Audience"))
	r.mu.Lock()
	target, ok := r.byIssuer[aud]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("chainguard emulator: no running emulator has issuer %q: refusing to send an AWS token to the real %s", aud, awsSTSHost)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme = target.Scheme
	out.URL.Host = target.Host
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	resp, err := r.direct.RoundTrip(out)
	if err != nil || resp.StatusCode == http.StatusOK {
		return resp, err
	}
	if sink, ok := req.Context().Value(rejectionKey{}).(*string); ok {
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		_ = resp.Body.Close()
		if rerr != nil {
			return nil, fmt.Errorf("read AWS STS stand-in response: %w", rerr)
		}
		var msg struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(body, &msg) == nil && msg.Error.Code != "" {
			*sink = msg.Error.Code + ": " + msg.Error.Message
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	return resp, nil
}

// canonicalHeaderValue trims and collapses runs of spaces like the SigV4
// signer (and auth/aws) do.
func canonicalHeaderValue(v string) string {
	return strings.TrimSpace(strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' }), " "))
}

// verifyWithReason runs f with a context that collects the stand-in's
// rejection reason.
func verifyWithReason(ctx context.Context, f func(context.Context) error) (reason string, err error) {
	var sink string
	err = f(context.WithValue(ctx, rejectionKey{}, &sink))
	return sink, err
}
