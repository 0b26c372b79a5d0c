package handler

import (
	"strings"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
)

func TestConfigFromEnv(t *testing.T) {
	const (
		id    = "0123456789abcdef0123456789abcdef01234567/0123456789abcdef/fedcba9876543210"
		group = "0123456789abcdef0123456789abcdef01234567/0123456789abcdef"
	)
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr []string // every variable the error must name
	}{
		{name: "defaults", env: map[string]string{EnvIdentity: id, EnvGroup: group},
			want: Config{Identity: id, Group: group, Issuer: DefaultIssuer, API: DefaultAPI, Trust: token.CallerIdentity}},
		{name: "web identity", env: map[string]string{EnvIdentity: id, EnvGroup: group, EnvTrust: "web-identity"},
			want: Config{Identity: id, Group: group, Issuer: DefaultIssuer, API: DefaultAPI, Trust: token.WebIdentity}},
		{name: "unknown trust", env: map[string]string{EnvIdentity: id, EnvGroup: group, EnvTrust: "webIdentity"},
			wantErr: []string{EnvTrust + `: invalid configuration: trust "webIdentity" is not a trust mode`}},
		{name: "local emulator", env: map[string]string{EnvIdentity: id, EnvGroup: group, EnvIssuer: "http://127.0.0.1:1", EnvAPI: "http://127.0.0.1:2"},
			want: Config{Identity: id, Group: group, Issuer: "http://127.0.0.1:1", API: "http://127.0.0.1:2", Trust: token.CallerIdentity}},
		{name: "nothing set", env: map[string]string{}, wantErr: []string{EnvIdentity + " is not set", EnvGroup + " is not set"}},
		{name: "identity not a UIDP", env: map[string]string{EnvIdentity: "my-identity", EnvGroup: group}, wantErr: []string{EnvIdentity + ` "my-identity"`}},
		{name: "issuer without scheme", env: map[string]string{EnvIdentity: id, EnvGroup: group, EnvIssuer: "issuer.enforce.dev"}, wantErr: []string{EnvIssuer}},
		{name: "plain http API", env: map[string]string{EnvIdentity: id, EnvGroup: group, EnvAPI: "http://console-api.enforce.dev"}, wantErr: []string{EnvAPI}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if (err != nil) != (len(tt.wantErr) > 0) {
				t.Fatalf("ConfigFromEnv error = %v, wantErr %q", err, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if err == nil && got != tt.want {
				t.Fatalf("config = %+v, want %+v", got, tt.want)
			}
		})
	}
}
