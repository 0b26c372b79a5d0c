package functest

import "testing"

func TestSecrets(t *testing.T) {
	tests := []struct {
		name    string
		logs    string
		secrets []string
		want    int
	}{
		{name: "clean", logs: `{"level":"INFO","group":"0123456789abcdef0123456789abcdef01234567/0123456789abcdef","request_id":"df0c62f4-4156-42c7-b23f-489d33bb85d4"}`, want: 0},
		{name: "build hash", logs: "exec /root/.cache/go-build/20/2026f81822e2ff8a6276ed988562785c8e2c83123f42d01d548d5ae84a34bb22-d/x", want: 0},
		{name: "known secret", logs: "key=abc+/defghij", secrets: []string{"abc+/defghij"}, want: 1},
		{name: "access token", logs: "token Zr2K-pX0q_7bYc9LmN3vT5wQ8eA1sD4fG6hJ0kL2mN4", want: 1},
		{name: "signed request", logs: "Authorization: AWS4-HMAC-SHA256 Credential=x", want: 1},
		{name: "bearer", logs: "authorization: Bearer abc", want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Secrets(tt.logs, tt.secrets...); len(got) != tt.want {
				t.Fatalf("Secrets = %q, want %d findings", got, tt.want)
			}
		})
	}
}
