package emulator_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func setOf(s ...string) sets.Set[string] { return sets.New(s...) }

// newSTSRequest is the GetCallerIdentity request auth/aws.GenerateToken
// signs, with the given extra headers.
func newSTSRequest(t *testing.T, headers map[string]string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return req
}

func encodeRequest(t *testing.T, req *http.Request) string {
	t.Helper()
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(b.Bytes())
}

// TestAWSSTSStandIn sends signed requests straight to the stand-in (not
// through auth/aws.VerifyToken, which pre-filters some of these), to check
// that the stand-in itself rejects what AWS STS rejects.
func TestAWSSTSStandIn(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	p := emulator.AssumedRolePrincipal("111122223333", "aws-auth", "fn")
	creds := e.RegisterAWSPrincipal(p)
	binding := map[string]string{"Chainguard-Audience": e.IssuerURL(), "Chainguard-Identity": "some-identity"}
	sign := func(c aws.Credentials, headers map[string]string, at time.Time) *http.Request {
		req := newSTSRequest(t, headers)
		if err := v4.NewSigner().SignHTTP(testCtx(t), c, req, emptySHA256, "sts", "us-east-1", at); err != nil {
			t.Fatal(err)
		}
		return req
	}
	now := time.Now()
	tampered := sign(creds, binding, now)
	tampered.Header.Set("Chainguard-Identity", "another-identity")
	unsigned := sign(creds, nil, now)
	for k, v := range binding {
		unsigned.Header.Set(k, v)
	}
	otherHost := sign(creds, binding, now)
	otherHost.Host = "sts.us-west-2.amazonaws.com"
	wrongSecret := creds
	wrongSecret.SecretAccessKey = "x"
	tests := []struct {
		name     string
		req      *http.Request
		wantCode string // "" = success
	}{
		{"valid", sign(creds, binding, now), ""},
		{"wrong secret", sign(wrongSecret, binding, now), "SignatureDoesNotMatch"},
		{"tampered signed header", tampered, "SignatureDoesNotMatch"},
		{"binding headers not signed", unsigned, "SignatureDoesNotMatch"},
		{"signed 20 minutes ago", sign(creds, binding, now.Add(-20*time.Minute)), "SignatureDoesNotMatch"},
		{"signed 20 minutes ahead", sign(creds, binding, now.Add(20*time.Minute)), "SignatureDoesNotMatch"},
		{"another host", otherHost, "InvalidRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Serialize and parse like a token, then send to the stand-in
			// with the signed Host kept.
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(mustDecode(t, encodeRequest(t, tt.req)))))
			if err != nil {
				t.Fatal(err)
			}
			req.RequestURI = ""
			u, _ := url.Parse(e.AWSSTSURL())
			req.URL.Scheme, req.URL.Host = u.Scheme, u.Host
			resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req.WithContext(testCtx(t)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var out struct {
				GetCallerIdentityResponse struct {
					GetCallerIdentityResult struct{ Account, Arn, UserId string }
				}
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatalf("response %s: %v", body, err)
			}
			if out.Error.Code != tt.wantCode {
				t.Fatalf("got status %d, error code %q (%s), want %q", resp.StatusCode, out.Error.Code, out.Error.Message, tt.wantCode)
			}
			if tt.wantCode != "" {
				return
			}
			got := out.GetCallerIdentityResponse.GetCallerIdentityResult
			if got.Account != p.Account || got.Arn != p.ARN || got.UserId != p.UserID {
				t.Errorf("GetCallerIdentity = %+v, want %+v", got, p)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
