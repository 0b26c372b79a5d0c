package emulator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

const (
	fedAccount      = "111122223333"
	fedOtherAccount = "444455556666"
	chainguard      = "https://issuer.enforce.dev"
)

// checkAWSErr fails t unless err is an AWS API error with code and HTTP
// status (code "" means err must be nil), whose message contains msg.
func checkAWSErr(t *testing.T, err error, code string, status int, msg string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("got %v, want API error %s", err, code)
	}
	if apiErr.ErrorCode() != code {
		t.Fatalf("got error code %s (%v), want %s", apiErr.ErrorCode(), err, code)
	}
	if !strings.Contains(apiErr.ErrorMessage(), msg) {
		t.Errorf("error message %q does not contain %q", apiErr.ErrorMessage(), msg)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("%v carries no HTTP response", err)
	}
	if re.HTTPStatusCode() != status {
		t.Errorf("got HTTP status %d, want %d", re.HTTPStatusCode(), status)
	}
}

// fedPrincipal registers an assumed-role principal of account (role
// roleName, session "fn") with p's optional fields.
func fedPrincipal(e *emulator.Emulator, account, roleName string, with func(*emulator.AWSPrincipal)) (emulator.AWSPrincipal, aws.Credentials) {
	p := emulator.AssumedRolePrincipal(account, roleName, "fn")
	if with != nil {
		with(&p)
	}
	return p, e.RegisterAWSPrincipal(p)
}

func TestOutboundFederationLifecycle(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	_, creds := fedPrincipal(e, fedAccount, "provisioner", nil)
	_, otherCreds := fedPrincipal(e, fedOtherAccount, "provisioner", nil)
	iamc := emulatortest.IAMClient(e, creds)
	ctx := testCtx(t)

	var issuer string // set by the first enable
	type result = fedResult
	steps := []struct {
		name       string
		do         func() (result, error)
		wantCode   string
		wantStatus int
		want       func() result // nil: no result to check
		typed      func(error) bool
	}{
		{name: "get, never enabled: 404 FeatureDisabled", do: get(ctx, iamc), wantCode: "FeatureDisabled", wantStatus: 404,
			typed: isErr[*iamtypes.FeatureDisabledException]},
		{name: "disable, never enabled: 404 FeatureDisabled", do: disable(ctx, iamc), wantCode: "FeatureDisabled", wantStatus: 404,
			typed: isErr[*iamtypes.FeatureDisabledException]},
		{name: "enable", do: func() (result, error) {
			r, err := enable(ctx, iamc)()
			issuer = r.issuer
			return r, err
		}, want: func() result { return result{issuer: issuer, enabled: true} }},
		{name: "enable again: 409 FeatureEnabled", do: enable(ctx, iamc), wantCode: "FeatureEnabled", wantStatus: 409,
			typed: isErr[*iamtypes.FeatureEnabledException]},
		{name: "get, enabled", do: get(ctx, iamc), want: func() result { return result{issuer: issuer, enabled: true} }},
		{name: "Go API agrees", do: goAPI(e, fedAccount), want: func() result { return result{issuer: issuer, enabled: true} }},
		{name: "another account is untouched", do: get(ctx, emulatortest.IAMClient(e, otherCreds)), wantCode: "FeatureDisabled", wantStatus: 404},
		{name: "disable", do: disable(ctx, iamc), want: func() result { return result{} }},
		{name: "get, disabled: the issuer stays, vending off", do: get(ctx, iamc), want: func() result { return result{issuer: issuer} }},
		{name: "disable again: 404 FeatureDisabled", do: disable(ctx, iamc), wantCode: "FeatureDisabled", wantStatus: 404},
		{name: "re-enable keeps the issuer", do: enable(ctx, iamc), want: func() result { return result{issuer: issuer, enabled: true} }},
		{name: "EnableWebIdentityFederation is idempotent", do: func() (result, error) {
			return result{issuer: e.EnableWebIdentityFederation(fedAccount), enabled: true}, nil
		}, want: func() result { return result{issuer: issuer, enabled: true} }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, err := s.do()
			checkAWSErr(t, err, s.wantCode, s.wantStatus, "outbound identity federation is already")
			if s.typed != nil && !s.typed(err) {
				t.Errorf("error %T (%v) is not the SDK's typed error", err, err)
			}
			if s.want != nil && got != s.want() {
				t.Errorf("got %+v, want %+v", got, s.want())
			}
		})
	}
	if !strings.HasPrefix(issuer, e.AWSURL()+"/federation/") {
		t.Fatalf("issuer %q is not under %s/federation/", issuer, e.AWSURL())
	}
	if _, err := uuid.Parse(strings.TrimPrefix(issuer, e.AWSURL()+"/federation/")); err != nil {
		t.Errorf("issuer %q does not end in a UUID: %v", issuer, err)
	}
	if other := e.EnableWebIdentityFederation(fedOtherAccount); other == issuer {
		t.Errorf("accounts %s and %s share the issuer %s", fedAccount, fedOtherAccount, issuer)
	}
}

func isErr[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

type fedResult struct {
	issuer  string
	enabled bool
}

func get(ctx context.Context, c *awsiam.Client) func() (fedResult, error) {
	return func() (fedResult, error) {
		out, err := c.GetOutboundWebIdentityFederationInfo(ctx, &awsiam.GetOutboundWebIdentityFederationInfoInput{})
		if err != nil {
			return fedResult{}, err
		}
		return fedResult{issuer: aws.ToString(out.IssuerIdentifier), enabled: out.JwtVendingEnabled}, nil
	}
}

func enable(ctx context.Context, c *awsiam.Client) func() (fedResult, error) {
	return func() (fedResult, error) {
		out, err := c.EnableOutboundWebIdentityFederation(ctx, &awsiam.EnableOutboundWebIdentityFederationInput{})
		if err != nil {
			return fedResult{}, err
		}
		return fedResult{issuer: aws.ToString(out.IssuerIdentifier), enabled: true}, nil
	}
}

func disable(ctx context.Context, c *awsiam.Client) func() (fedResult, error) {
	return func() (fedResult, error) {
		_, err := c.DisableOutboundWebIdentityFederation(ctx, &awsiam.DisableOutboundWebIdentityFederationInput{})
		return fedResult{}, err
	}
}

func goAPI(e *emulator.Emulator, account string) func() (fedResult, error) {
	return func() (fedResult, error) {
		issuer, enabled := e.WebIdentityFederation(account)
		return fedResult{issuer: issuer, enabled: enabled}, nil
	}
}

func TestGetWebIdentityTokenRefusals(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	ctx := testCtx(t)
	_, disabledCreds := fedPrincipal(e, fedOtherAccount, "workload", nil)
	_, creds := fedPrincipal(e, fedAccount, "workload", nil)
	_, shortCreds := fedPrincipal(e, fedAccount, "short", func(p *emulator.AWSPrincipal) { p.SessionExpiry = time.Now().Add(2 * time.Minute) })
	e.EnableWebIdentityFederation(fedAccount)

	in := func(mod func(*awssts.GetWebIdentityTokenInput)) *awssts.GetWebIdentityTokenInput {
		i := &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384")}
		if mod != nil {
			mod(i)
		}
		return i
	}
	tags := func(n int) []ststypes.Tag {
		var ts []ststypes.Tag
		for i := range n {
			ts = append(ts, ststypes.Tag{Key: aws.String(fmt.Sprintf("k%d", i)), Value: aws.String("v")})
		}
		return ts
	}
	tests := []struct {
		name       string
		creds      aws.Credentials
		in         *awssts.GetWebIdentityTokenInput
		wantCode   string
		wantStatus int
		wantMsg    string
		typed      func(error) bool
	}{
		{name: "federation disabled", creds: disabledCreds, in: in(nil), wantCode: "OutboundWebIdentityFederationDisabledException", wantStatus: 403,
			wantMsg: "The outbound web identity federation feature is not enabled for this account", typed: isErr[*ststypes.OutboundWebIdentityFederationDisabledException]},
		{name: "no audience", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Audience = []string{} }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'audience'"},
		{name: "11 audiences", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Audience = strings.Split("a b c d e f g h i j k", " ") }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'audience'"},
		{name: "empty audience", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Audience = []string{chainguard, ""} }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'audience.2.member'"},
		{name: "audience of 1001 characters", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Audience = []string{strings.Repeat("a", 1001)} }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'audience.1.member'"},
		{name: "10 audiences", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Audience = strings.Split("a b c d e f g h i j", " ") })},
		{name: "duration 59", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.DurationSeconds = aws.Int32(59) }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'durationSeconds'"},
		{name: "duration 3601", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.DurationSeconds = aws.Int32(3601) }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'durationSeconds'"},
		{name: "duration 60", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.DurationSeconds = aws.Int32(60) })},
		{name: "duration 3600", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.DurationSeconds = aws.Int32(3600) })},
		{name: "algorithm HS256", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.SigningAlgorithm = aws.String("HS256") }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "[RS256, ES384]"},
		{name: "algorithm es384 (case matters)", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.SigningAlgorithm = aws.String("es384") }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'signingAlgorithm'"},
		{name: "50 tags", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Tags = tags(50) })},
		{name: "51 tags", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.Tags = tags(51) }), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'tags'"},
		{name: "tag key with *", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) {
			i.Tags = []ststypes.Tag{{Key: aws.String("a*b"), Value: aws.String("v")}}
		}), wantCode: "ValidationError", wantStatus: 400, wantMsg: "'tags.1.member.key'"},
		{name: "tag keys equal but for case", creds: creds, in: in(func(i *awssts.GetWebIdentityTokenInput) {
			i.Tags = []ststypes.Tag{{Key: aws.String("Team"), Value: aws.String("a")}, {Key: aws.String("team"), Value: aws.String("b")}}
		}), wantCode: "InvalidParameterValue", wantStatus: 400, wantMsg: "Duplicate tag keys"},
		{name: "outliving the session", creds: shortCreds, in: in(nil), wantCode: "SessionDurationEscalationException", wantStatus: 403,
			wantMsg: "beyond its original expiration time", typed: isErr[*ststypes.SessionDurationEscalationException]},
		{name: "within the session", creds: shortCreds, in: in(func(i *awssts.GetWebIdentityTokenInput) { i.DurationSeconds = aws.Int32(60) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := emulatortest.STSClient(e, tt.creds, "eu-west-1").GetWebIdentityToken(ctx, tt.in)
			checkAWSErr(t, err, tt.wantCode, tt.wantStatus, tt.wantMsg)
			if tt.typed != nil && !tt.typed(err) {
				t.Errorf("error %T (%v) is not the SDK's typed error", err, err)
			}
			if tt.wantCode == "" && aws.ToString(out.WebIdentityToken) == "" {
				t.Error("no token")
			}
		})
	}
}

// queryRequest is an AWS Query API request signed by hand, for what the SDK
// clients cannot send.
type queryRequest struct {
	creds   aws.Credentials
	service string // credential scope service
	region  string // credential scope region (default us-east-1)
	form    url.Values
	at      time.Time // signing time (default now)
	host    string    // Host header, signed (default the stand-in's address)
	// after changes the request after signing.
	after func(*http.Request)
}

// queryAnswer is the stand-in's answer to a queryRequest.
type queryAnswer struct {
	status        int
	code, message string
	body          string
}

func sendQuery(t *testing.T, e *emulator.Emulator, q queryRequest) queryAnswer {
	t.Helper()
	body := q.form.Encode()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, e.AWSURL()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if q.host != "" {
		req.Host = q.host
	}
	if q.region == "" {
		q.region = "us-east-1"
	}
	if q.at.IsZero() {
		q.at = time.Now()
	}
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(testCtx(t), q.creds, req, hex.EncodeToString(sum[:]), q.service, q.region, q.at); err != nil {
		t.Fatal(err)
	}
	if q.after != nil {
		q.after(req)
	}
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := queryAnswer{status: resp.StatusCode, body: string(raw)}
	if resp.StatusCode != http.StatusOK {
		var er struct {
			XMLName xml.Name `xml:"ErrorResponse"`
			Error   struct{ Type, Code, Message string }
		}
		if err := xml.Unmarshal(raw, &er); err != nil {
			t.Fatalf("error response %q is not an XML ErrorResponse: %v", raw, err)
		}
		a.code, a.message = er.Error.Code, er.Error.Message
	}
	return a
}

func form(action, version string, kv ...string) url.Values {
	f := url.Values{"Action": {action}, "Version": {version}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

// TestAWSQuerySignature checks that the Query API authenticates as AWS does,
// with signed requests sent by the SDK clients and by hand.
func TestAWSQuerySignature(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	ctx := testCtx(t)
	_, creds := fedPrincipal(e, fedAccount, "workload", nil)
	_, expired := fedPrincipal(e, fedAccount, "expired", func(p *emulator.AWSPrincipal) { p.SessionExpiry = time.Now().Add(-time.Minute) })
	e.EnableWebIdentityFederation(fedAccount)
	unknown := aws.Credentials{AccessKeyID: "ASIAUNKNOWNUNKNOWN12", SecretAccessKey: "secret", SessionToken: "token"}
	wrongSecret, wrongToken := creds, creds
	wrongSecret.SecretAccessKey += "x"
	wrongToken.SessionToken += "x"
	getInfo := form("GetOutboundWebIdentityFederationInfo", "2010-05-08")
	token := form("GetWebIdentityToken", "2011-06-15", "Audience.member.1", chainguard, "SigningAlgorithm", "ES384")

	t.Run("SDK clients", func(t *testing.T) {
		tests := []struct {
			name       string
			creds      aws.Credentials
			wantCode   string
			wantStatus int
		}{
			{"registered credentials", creds, "", 0},
			{"unknown access key", unknown, "InvalidClientTokenId", 403},
			{"wrong secret key", wrongSecret, "SignatureDoesNotMatch", 403},
			{"wrong session token", wrongToken, "InvalidClientTokenId", 403},
			{"expired session", expired, "ExpiredToken", 403},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := emulatortest.IAMClient(e, tt.creds).GetOutboundWebIdentityFederationInfo(ctx, &awsiam.GetOutboundWebIdentityFederationInfoInput{})
				checkAWSErr(t, err, tt.wantCode, tt.wantStatus, "")
				_, err = emulatortest.STSClient(e, tt.creds, "us-west-2").GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("RS256")})
				checkAWSErr(t, err, tt.wantCode, tt.wantStatus, "")
			})
		}
	})

	tests := []struct {
		name       string
		q          queryRequest
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{name: "valid IAM call", q: queryRequest{creds: creds, service: "iam", form: getInfo}, wantStatus: 200},
		{name: "valid STS call", q: queryRequest{creds: creds, service: "sts", region: "ap-southeast-2", form: token}, wantStatus: 200},
		{name: "unsigned", q: queryRequest{creds: creds, service: "iam", form: getInfo, after: func(r *http.Request) { r.Header.Del("Authorization") }},
			wantStatus: 403, wantCode: "MissingAuthenticationToken"},
		{name: "malformed Authorization", q: queryRequest{creds: creds, service: "iam", form: getInfo, after: func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x") }},
			wantStatus: 400, wantCode: "IncompleteSignature"},
		{name: "body changed after signing", q: queryRequest{creds: creds, service: "sts", form: token, after: func(r *http.Request) {
			b := strings.Replace(token.Encode(), "ES384", "RS256", 1)
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(b)), int64(len(b))
		}}, wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "does not match the signature you provided"},
		{name: "IAM action signed for sts", q: queryRequest{creds: creds, service: "sts", form: getInfo},
			wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "Credential should be scoped to correct service: 'iam'"},
		{name: "STS action signed for iam", q: queryRequest{creds: creds, service: "iam", form: token},
			wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "Credential should be scoped to correct service: 'sts'"},
		{name: "not a region", q: queryRequest{creds: creds, service: "sts", region: "mars", form: token},
			wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "valid region"},
		{name: "signed 20 minutes ago", q: queryRequest{creds: creds, service: "iam", form: getInfo, at: time.Now().Add(-20 * time.Minute)},
			wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "Signature expired"},
		{name: "signed 20 minutes ahead", q: queryRequest{creds: creds, service: "iam", form: getInfo, at: time.Now().Add(20 * time.Minute)},
			wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "not yet current"},
		{name: "unknown action", q: queryRequest{creds: creds, service: "sts", form: form("AssumeRole", "2011-06-15")},
			wantStatus: 400, wantCode: "InvalidAction", wantMsg: "Could not find operation AssumeRole"},
		{name: "wrong version", q: queryRequest{creds: creds, service: "iam", form: form("GetOutboundWebIdentityFederationInfo", "2011-06-15")},
			wantStatus: 400, wantCode: "InvalidAction"},
		{name: "no action", q: queryRequest{creds: creds, service: "sts", form: url.Values{"Version": {"2011-06-15"}}},
			wantStatus: 400, wantCode: "MissingAction"},
		{name: "signing algorithm missing", q: queryRequest{creds: creds, service: "sts", form: form("GetWebIdentityToken", "2011-06-15", "Audience.member.1", chainguard)},
			wantStatus: 400, wantCode: "ValidationError", wantMsg: "Value null at 'signingAlgorithm'"},
		{name: "audience missing", q: queryRequest{creds: creds, service: "sts", form: form("GetWebIdentityToken", "2011-06-15", "SigningAlgorithm", "ES384")},
			wantStatus: 400, wantCode: "ValidationError", wantMsg: "Value null at 'audience'"},
		{name: "audience members with a gap", q: queryRequest{creds: creds, service: "sts", form: form("GetWebIdentityToken", "2011-06-15", "Audience.member.2", chainguard, "SigningAlgorithm", "ES384")},
			wantStatus: 400, wantCode: "InvalidParameterValue"},
		{name: "unknown parameter", q: queryRequest{creds: creds, service: "sts", form: form("GetWebIdentityToken", "2011-06-15", "Audience.member.1", chainguard, "SigningAlgorithm", "ES384", "SubjectMode", "OriginIdentity")},
			wantStatus: 400, wantCode: "InvalidParameterValue", wantMsg: "SubjectMode"},
		{name: "STS global endpoint", q: queryRequest{creds: creds, service: "sts", form: token, host: "sts.amazonaws.com"},
			wantStatus: 400, wantCode: "InvalidAction", wantMsg: "not available on the STS Global endpoint"},
		{name: "regional endpoint, scope of another region", q: queryRequest{creds: creds, service: "sts", region: "eu-west-1", form: token, host: "sts.us-east-1.amazonaws.com"},
			wantStatus: 403, wantCode: "SignatureDoesNotMatch", wantMsg: "valid region"},
		{name: "regional endpoint", q: queryRequest{creds: creds, service: "sts", region: "eu-west-1", form: token, host: "sts.eu-west-1.amazonaws.com"}, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sendQuery(t, e, tt.q)
			if a.status != tt.wantStatus || a.code != tt.wantCode {
				t.Fatalf("got %d %s (%s), want %d %s", a.status, a.code, a.message, tt.wantStatus, tt.wantCode)
			}
			if !strings.Contains(a.message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", a.message, tt.wantMsg)
			}
		})
	}
}

// TestWebIdentityTokenVerifies verifies the minted tokens as Chainguard
// would: OIDC discovery of the issuer (go-oidc), signature, exp, aud; and
// checks AWS's claim layout.
func TestWebIdentityTokenVerifies(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	ctx := testCtx(t)
	sessionExp := time.Now().Add(time.Hour).Truncate(time.Second)
	_, derivedCreds := fedPrincipal(e, fedAccount, "aws-auth", nil)
	withPath, withPathCreds := fedPrincipal(e, fedAccount, "deployer", func(p *emulator.AWSPrincipal) {
		p.RoleARN = "arn:aws:iam::" + fedAccount + ":role/service-role/deployer"
		p.SessionExpiry = sessionExp
	})
	issuer := e.EnableWebIdentityFederation(fedAccount)
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("OIDC discovery of %s: %v", issuer, err)
	}

	tests := []struct {
		name       string
		creds      aws.Credentials
		region     string
		in         awssts.GetWebIdentityTokenInput
		verifyAud  string
		wantSub    string
		wantKid    string
		wantAud    any
		wantExp    string // original_session_exp, "" = absent
		wantTags   map[string]any
		wantLife   int64
		wantRegion string
	}{
		{name: "ES384, derived role ARN", creds: derivedCreds, region: "us-west-2",
			in:        awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384"), DurationSeconds: aws.Int32(300)},
			verifyAud: chainguard, wantSub: "arn:aws:iam::" + fedAccount + ":role/aws-auth", wantKid: "EC384_0", wantAud: chainguard, wantLife: 300},
		{name: "RS256, default duration", creds: derivedCreds, region: "eu-central-1",
			in:        awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("RS256")},
			verifyAud: chainguard, wantSub: "arn:aws:iam::" + fedAccount + ":role/aws-auth", wantKid: "RSA2048_0", wantAud: chainguard, wantLife: 300},
		{name: "RoleARN with a path, session expiry, tags, two audiences", creds: withPathCreds, region: "ap-south-1",
			in: awssts.GetWebIdentityTokenInput{Audience: []string{"https://one.example", chainguard}, SigningAlgorithm: aws.String("ES384"), DurationSeconds: aws.Int32(900),
				Tags: []ststypes.Tag{{Key: aws.String("job"), Value: aws.String("j-1")}, {Key: aws.String("empty"), Value: aws.String("")}}},
			verifyAud: chainguard, wantSub: withPath.RoleARN, wantKid: "EC384_0", wantAud: []any{"https://one.example", chainguard},
			wantExp: sessionExp.UTC().Format(time.RFC3339), wantTags: map[string]any{"job": "j-1", "empty": ""}, wantLife: 900},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now().Unix()
			out, err := emulatortest.STSClient(e, tt.creds, tt.region).GetWebIdentityToken(ctx, &tt.in)
			if err != nil {
				t.Fatal(err)
			}
			raw := aws.ToString(out.WebIdentityToken)
			idt, err := provider.Verifier(&oidc.Config{ClientID: tt.verifyAud}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("go-oidc rejects the token: %v", err)
			}
			if _, err := provider.Verifier(&oidc.Config{ClientID: "https://someone.else"}).Verify(ctx, raw); err == nil {
				t.Error("the token verifies for an audience it was not minted for")
			}

			parsed, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES384, jose.RS256})
			if err != nil {
				t.Fatal(err)
			}
			h := parsed.Headers[0]
			if h.KeyID != tt.wantKid || h.Algorithm != aws.ToString(tt.in.SigningAlgorithm) || h.ExtraHeaders["typ"] != "JWT" {
				t.Errorf("header kid=%s alg=%s typ=%v, want kid=%s alg=%s typ=JWT", h.KeyID, h.Algorithm, h.ExtraHeaders["typ"], tt.wantKid, aws.ToString(tt.in.SigningAlgorithm))
			}

			var claims map[string]any
			if err := idt.Claims(&claims); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(sortedKeys(claims), ","), "aud,exp,https://sts.amazonaws.com/,iat,iss,jti,sub"; got != want {
				t.Errorf("claims %s, want %s", got, want)
			}
			if claims["iss"] != issuer || claims["sub"] != tt.wantSub || fmt.Sprint(claims["aud"]) != fmt.Sprint(tt.wantAud) {
				t.Errorf("iss=%v sub=%v aud=%v, want %s %s %v", claims["iss"], claims["sub"], claims["aud"], issuer, tt.wantSub, tt.wantAud)
			}
			if _, isString := claims["aud"].(string); isString != (len(tt.in.Audience) == 1) {
				t.Errorf("aud %#v: want a string exactly when one audience was requested", claims["aud"])
			}
			iat, exp := int64(claims["iat"].(float64)), int64(claims["exp"].(float64))
			if iat < before || iat > time.Now().Unix() || exp-iat != tt.wantLife {
				t.Errorf("iat=%d exp=%d, want iat now and a lifetime of %d s", iat, exp, tt.wantLife)
			}
			if !out.Expiration.Equal(time.Unix(exp, 0)) {
				t.Errorf("Expiration %s, want exp %s", out.Expiration, time.Unix(exp, 0))
			}
			if _, err := uuid.Parse(fmt.Sprint(claims["jti"])); err != nil {
				t.Errorf("jti %v is not a UUID", claims["jti"])
			}
			ns, _ := claims["https://sts.amazonaws.com/"].(map[string]any)
			want := map[string]any{"aws_account": fedAccount, "source_region": tt.region, "principal_id": tt.wantSub}
			if tt.wantExp != "" {
				want["original_session_exp"] = tt.wantExp
			}
			if tt.wantTags != nil {
				want["request_tags"] = tt.wantTags
			}
			if fmt.Sprint(ns) != fmt.Sprint(want) {
				t.Errorf("https://sts.amazonaws.com/ = %v, want %v", ns, want)
			}
		})
	}
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// TestWebIdentityTokenAccountIsolation checks that a token verifies only
// with its own account's issuer and keys, and that disabling federation
// stops new tokens but not the verification of earlier ones.
func TestWebIdentityTokenAccountIsolation(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	ctx := testCtx(t)
	_, credsA := fedPrincipal(e, fedAccount, "workload", nil)
	_, credsB := fedPrincipal(e, fedOtherAccount, "workload", nil)
	issuerA := e.EnableWebIdentityFederation(fedAccount)
	issuerB := e.EnableWebIdentityFederation(fedOtherAccount)
	providerA, err := oidc.NewProvider(ctx, issuerA)
	if err != nil {
		t.Fatal(err)
	}
	providerB, err := oidc.NewProvider(ctx, issuerB)
	if err != nil {
		t.Fatal(err)
	}
	mint := func(creds aws.Credentials, alg string) string {
		out, err := emulatortest.STSClient(e, creds, "us-east-1").GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String(alg)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.WebIdentityToken)
	}
	for _, alg := range []string{"ES384", "RS256"} {
		tokA, tokB := mint(credsA, alg), mint(credsB, alg)
		tests := []struct {
			name     string
			provider *oidc.Provider
			tok      string
			skipIss  bool
			ok       bool
		}{
			{"A's token, A's issuer", providerA, tokA, false, true},
			{"B's token, B's issuer", providerB, tokB, false, true},
			{"A's token, B's issuer", providerB, tokA, false, false},
			{"A's token, B's keys (issuer check skipped)", providerB, tokA, true, false},
			{"B's token, A's keys (issuer check skipped)", providerA, tokB, true, false},
		}
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				_, err := tt.provider.Verifier(&oidc.Config{ClientID: chainguard, SkipIssuerCheck: tt.skipIss}).Verify(ctx, tt.tok)
				if (err == nil) != tt.ok {
					t.Errorf("Verify: %v, want ok=%v", err, tt.ok)
				}
			})
		}
	}

	tok := mint(credsA, "ES384")
	if _, err := emulatortest.IAMClient(e, credsA).DisableOutboundWebIdentityFederation(ctx, &awsiam.DisableOutboundWebIdentityFederationInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := providerA.Verifier(&oidc.Config{ClientID: chainguard}).Verify(ctx, tok); err != nil {
		t.Errorf("a token issued before the disable no longer verifies: %v", err)
	}
	_, err = emulatortest.STSClient(e, credsA, "us-east-1").GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384")})
	if !isErr[*ststypes.OutboundWebIdentityFederationDisabledException](err) {
		t.Errorf("GetWebIdentityToken after the disable: %v, want OutboundWebIdentityFederationDisabledException", err)
	}
}

// TestFederationIssuerDocuments checks the discovery document and JWKS of an
// issuer, and that nothing else is served under /federation/.
func TestFederationIssuerDocuments(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	issuer := e.EnableWebIdentityFederation(fedAccount)
	fetch := func(method, u string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(testCtx(t), method, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	status, body := fetch(http.MethodGet, issuer+"/.well-known/openid-configuration")
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); status != 200 || err != nil {
		t.Fatalf("discovery document: %d %s (%v)", status, body, err)
	}
	want := map[string]any{
		"issuer":                                issuer,
		"jwks_uri":                              issuer + "/.well-known/jwks.json",
		"response_types_supported":              []any{"id_token"},
		"subject_types_supported":               []any{"public"},
		"id_token_signing_alg_values_supported": []any{"RS256", "ES384"},
	}
	if fmt.Sprint(doc) != fmt.Sprint(want) {
		t.Errorf("discovery document %v, want %v", doc, want)
	}

	status, body = fetch(http.MethodGet, issuer+"/.well-known/jwks.json")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); status != 200 || err != nil {
		t.Fatalf("JWKS: %d %s (%v)", status, body, err)
	}
	var got []string
	for _, k := range set.Keys {
		if !k.IsPublic() || !k.Valid() || k.Use != "sig" {
			t.Errorf("key %s: public=%v valid=%v use=%q", k.KeyID, k.IsPublic(), k.Valid(), k.Use)
		}
		got = append(got, k.KeyID+"/"+k.Algorithm)
	}
	if strings.Join(got, ",") != "EC384_0/ES384,RSA2048_0/RS256" {
		t.Errorf("JWKS keys %v, want EC384_0/ES384 and RSA2048_0/RS256", got)
	}

	for _, tt := range []struct{ method, url string }{
		{http.MethodGet, e.AWSURL() + "/federation/" + uuid.NewString() + "/.well-known/openid-configuration"},
		{http.MethodGet, issuer + "/.well-known/other"},
		{http.MethodGet, issuer},
		{http.MethodPost, issuer + "/.well-known/jwks.json"},
	} {
		if status, _ := fetch(tt.method, tt.url); status != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404", tt.method, tt.url, status)
		}
	}
}

// TestAWSQueryThroughEnvironment points the SDK's default configuration at
// the stand-in with AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_IAM, as a
// Lambda function or the provisioner would be in a local run.
func TestAWSQueryThroughEnvironment(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	p, creds := fedPrincipal(e, fedAccount, "workload", nil)
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_ENDPOINT_URL_STS", e.AWSURL())
	t.Setenv("AWS_ENDPOINT_URL_IAM", e.AWSURL())
	ctx := testCtx(t)
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-west-2"),
		config.WithCredentialsProvider(credentials.StaticCredentialsProvider{Value: creds}), config.WithRetryMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	iamc, stsc := awsiam.NewFromConfig(cfg), awssts.NewFromConfig(cfg)

	_, err = iamc.GetOutboundWebIdentityFederationInfo(ctx, &awsiam.GetOutboundWebIdentityFederationInfoInput{})
	if !isErr[*iamtypes.FeatureDisabledException](err) {
		t.Fatalf("get before enabling: %v, want FeatureDisabledException", err)
	}
	enabled, err := iamc.EnableOutboundWebIdentityFederation(ctx, &awsiam.EnableOutboundWebIdentityFederationInput{})
	if err != nil {
		t.Fatal(err)
	}
	who, err := stsc.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(who.Account) != p.Account || aws.ToString(who.Arn) != p.ARN || aws.ToString(who.UserId) != p.UserID {
		t.Errorf("GetCallerIdentity = %s %s %s, want %+v", aws.ToString(who.Account), aws.ToString(who.Arn), aws.ToString(who.UserId), p)
	}
	out, err := stsc.GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384"), DurationSeconds: aws.Int32(300)})
	if err != nil {
		t.Fatal(err)
	}
	provider, err := oidc.NewProvider(ctx, aws.ToString(enabled.IssuerIdentifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: chainguard}).Verify(ctx, aws.ToString(out.WebIdentityToken))
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		STS struct {
			SourceRegion string `json:"source_region"`
		} `json:"https://sts.amazonaws.com/"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.STS.SourceRegion != "us-west-2" {
		t.Errorf("source_region %q, want us-west-2 (the client's region)", claims.STS.SourceRegion)
	}
}

// TestRegisterAWSPrincipalRoleARN checks that a RoleARN must name the role
// of the principal's session, in its account and partition.
func TestRegisterAWSPrincipalRoleARN(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	tests := []struct {
		name, roleARN string
		ok            bool
	}{
		{"the session's role", "arn:aws:iam::" + fedAccount + ":role/aws-auth", true},
		{"the session's role, with a path", "arn:aws:iam::" + fedAccount + ":role/a/b/aws-auth", true},
		{"another role", "arn:aws:iam::" + fedAccount + ":role/other", false},
		{"another account", "arn:aws:iam::" + fedOtherAccount + ":role/aws-auth", false},
		{"another partition", "arn:aws-cn:iam::" + fedAccount + ":role/aws-auth", false},
		{"a user ARN", "arn:aws:iam::" + fedAccount + ":user/aws-auth", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); (r == nil) != tt.ok {
					t.Errorf("RegisterAWSPrincipal with RoleARN %s: panic %v, want ok=%v", tt.roleARN, r, tt.ok)
				}
			}()
			p := emulator.AssumedRolePrincipal(fedAccount, "aws-auth", "fn")
			p.RoleARN = tt.roleARN
			e.RegisterAWSPrincipal(p)
		})
	}
}
