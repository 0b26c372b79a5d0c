package wire

import (
	"strings"
	"testing"
)

func TestIsRequest(t *testing.T) {
	for _, tt := range []struct {
		name    string
		payload string
		isCheck bool
		wantErr string
		want    Request
	}{
		{name: "request", payload: `{"chainguardTrustCheck":{"version":1,"identity":"a","group":"g","listRepos":true,"timeoutMs":5}}`, isCheck: true,
			want: Request{Version: 1, Identity: "a", Group: "g", ListRepos: true, TimeoutMS: 5}},
		{name: "empty object", payload: `{}`},
		{name: "another key beside it", payload: `{"chainguardTrustCheck":{},"x":1}`},
		{name: "nested", payload: `{"detail":{"chainguardTrustCheck":{}}}`},
		{name: "a string", payload: `"chainguardTrustCheck"`},
		{name: "not JSON", payload: `chainguardTrustCheck`},
		{name: "unknown field", payload: `{"chainguardTrustCheck":{"identity":"a","extra":1}}`, isCheck: true, wantErr: "malformed"},
		{name: "newer version", payload: `{"chainguardTrustCheck":{"version":2}}`, isCheck: true, wantErr: "version 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, isCheck, err := IsRequest([]byte(tt.payload))
			if isCheck != tt.isCheck || (err != nil) != (tt.wantErr != "") {
				t.Fatalf("IsRequest = %v, %v, %v; want check %v, error %q", got, isCheck, err, tt.isCheck, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("request = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	// given a request and a result, when they are encoded and read back, then they are the same
	payload, err := EncodeRequest(Request{Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if req, ok, err := IsRequest(payload); !ok || err != nil || req != (Request{Version: Version, Identity: "a"}) {
		t.Fatalf("IsRequest(EncodeRequest) = %+v, %v, %v", req, ok, err)
	}
	n := 3
	payload, err = EncodeResult(Result{OK: true, Principal: Principal{ARN: "arn"}, Repos: &n})
	if err != nil {
		t.Fatal(err)
	}
	res, ok, _ := DecodeResult(payload)
	if !ok || !res.OK || res.Principal.ARN != "arn" || res.Repos == nil || *res.Repos != 3 {
		t.Fatalf("DecodeResult(EncodeResult) = %+v, %v", res, ok)
	}
}

func TestDecodeResultQuotesNothing(t *testing.T) {
	for payload, want := range map[string]string{
		`"sekrit-value"`:               "a JSON string",
		`{"password":"sekrit-value"}`:  `a JSON object that is not {"chainguardTrustCheck": …}`,
		`sekrit-value`:                 "12 bytes that are not JSON",
		`[1,2]`:                        "a JSON array",
		`{"chainguardTrustCheck":"x"}`: "a chainguardTrustCheck object that is not a check result",
	} {
		// given an answer that is not a check result, when it is decoded
		_, ok, what := DecodeResult([]byte(payload))
		// then it is refused, described without quoting it
		if ok || what != want || strings.Contains(what, "sekrit") {
			t.Errorf("DecodeResult(%s) = %v, %q; want false, %q", payload, ok, what, want)
		}
	}
}

func TestPrincipalString(t *testing.T) {
	for _, tt := range []struct {
		p    Principal
		want string
	}{
		{Principal{ARN: "arn:aws:sts::1:assumed-role/r/s", UserID: "AROA:s"}, "arn:aws:sts::1:assumed-role/r/s (user ID AROA:s)"},
		{Principal{Issuer: "https://i", Subject: "arn:aws:iam::1:role/r"}, "a web identity token with iss https://i and sub arn:aws:iam::1:role/r"},
		{Principal{Note: "GetCallerIdentity failed"}, "an unknown principal (GetCallerIdentity failed)"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String = %q, want %q", got, tt.want)
		}
	}
}
