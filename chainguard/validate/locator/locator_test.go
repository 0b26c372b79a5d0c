package locator

import (
	"errors"
	"strings"
	"testing"
)

func TestValidators(t *testing.T) {
	const (
		root  = "0123456789abcdef0123456789abcdef01234567"
		child = root + "/89abcdef01234567"
	)
	tests := []struct {
		name    string
		check   func() error
		wantErr string // substring of the message; "" = valid
	}{
		{"uidp root", func() error { return UIDP("group", root) }, ""},
		{"uidp child", func() error { return UIDP("group", child) }, ""},
		{"uidp grandchild", func() error { return UIDP("group", child+"/0011223344556677") }, ""},
		{"uidp empty", func() error { return UIDP("group", "") }, `group is empty: expected 40 lowercase hex characters`},
		{"uidp short", func() error { return UIDP("parent group", "abc") }, `parent group "abc" is not a Chainguard UIDP: expected 40 lowercase hex characters, optionally followed by "/" and 16`},
		{"uidp upper", func() error { return UIDP("group", "0123456789ABCDEF0123456789abcdef01234567") }, `it has uppercase letters; UIDPs are lowercase: "0123456789abcdef0123456789abcdef01234567"`},
		{"uidp upper not hex", func() error { return UIDP("group", "XYZ") }, `"XYZ" is not a Chainguard UIDP: expected 40`},
		{"uidp trailing slash", func() error { return UIDP("group", root+"/") }, `remove the trailing "/"`},
		{"uidp space", func() error { return UIDP("group", " "+root) }, `has leading or trailing white space`},
		{"uidp bad child", func() error { return UIDP("group", root+"/89ab") }, `is not a Chainguard UIDP`},
		{"url https", func() error { return ServiceURL("issuer URL", "https://issuer.enforce.dev") }, ""},
		{"url https port", func() error { return ServiceURL("API URL", "https://console-api.enforce.dev:443") }, ""},
		{"url local http", func() error { return ServiceURL("API URL", "http://127.0.0.1:41234") }, ""},
		{"url localhost", func() error { return ServiceURL("API URL", "http://localhost:8080") }, ""},
		{"url ipv6 loopback", func() error { return ServiceURL("API URL", "http://[::1]:8080") }, ""},
		{"url empty", func() error { return ServiceURL("issuer URL", "") }, `issuer URL is empty: e.g. "https://issuer.enforce.dev"`},
		{"url unparsable", func() error { return ServiceURL("issuer URL", "https://x.dev:port") }, `is not a URL`},
		{"url remote http", func() error { return ServiceURL("issuer URL", "http://issuer.enforce.dev") }, `uses plain http: use https (plain http is accepted only for 127.0.0.1 or localhost`},
		{"url no scheme", func() error { return ServiceURL("API URL", "127.0.0.1:8080") }, `API URL "127.0.0.1:8080"`},
		{"url bare host", func() error { return ServiceURL("API URL", "console-api.enforce.dev") }, `is not an absolute URL: it needs a scheme and a host`},
		{"url trailing slash", func() error { return ServiceURL("issuer URL", "https://issuer.enforce.dev/") }, `ends with "/": remove it, Chainguard compares the issuer URL exactly`},
		{"url path", func() error { return ServiceURL("API URL", "https://x.dev/api?q=1") }, `without path, query or fragment`},
		{"url fragment", func() error { return ServiceURL("API URL", "https://x.dev#f") }, `without path, query or fragment`},
		{"url userinfo", func() error { return ServiceURL("API URL", "https://user:s3cret@x.dev") }, `must not hold a user name or password`},
		{"url grpc scheme", func() error { return ServiceURL("API URL", "grpc://x.dev") }, `has scheme "grpc": use https`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got nil", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q\ndoes not contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not match ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q leaks the URL's password", err)
			}
			if first, _, _ := strings.Cut(err.Error(), " "); strings.ToLower(first) != first && strings.ToUpper(first) != first {
				t.Errorf("message starts with a capital letter: %q", err)
			}
		})
	}
}
