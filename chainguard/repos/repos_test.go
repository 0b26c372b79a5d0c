package repos_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/repos"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

const listMethod = registry.Registry_ListRepos_FullMethodName

// world is an emulator with groups A (identity bound viewer) and B (no
// binding), both children of one root, and a subgroup of A.
type world struct {
	e           *emulator.Emulator
	a, aSub, b  string
	aRepos      map[string]string // name -> ID of A's own repos
	accessToken string            // for the identity in A
}

func setup(t *testing.T) world {
	t.Helper()
	e, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	root := e.SeedGroup("", "acme", "test root")
	w := world{e: e, a: e.SeedGroup(root, "group-a", "A"), b: e.SeedGroup(root, "group-b", "B"), aRepos: map[string]string{}}
	w.aSub = e.SeedGroup(w.a, "sub", "child of A")
	for _, name := range []string{"nginx", "alpine", "python", "busybox"} {
		w.aRepos[name] = e.SeedRepo(w.a, name)
	}
	e.SeedRepo(w.aSub, "redis") // a grandchild of A: not listed
	e.SeedRepo(w.b, "secret-b")

	principal := emulator.AWSPrincipal{
		Account: "111122223333",
		ARN:     "arn:aws:sts::111122223333:assumed-role/aws-auth/my-fn",
		UserID:  "AROAEXAMPLEEXAMPLE12:my-fn",
	}
	id := e.SeedIdentity(w.a, "aws-auth-identity", "lists repos of A", principal.ExactTrust(), map[string][]string{w.a: {"viewer"}})
	tok, err := token.Exchange(t.Context(), token.Config{
		Issuer:      e.IssuerURL(),
		APIURL:      e.APIURL(),
		Identity:    id,
		Credentials: credentials.StaticCredentialsProvider{Value: e.RegisterAWSPrincipal(principal)},
		RPCTimeout:  2 * time.Second,
	})
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	w.accessToken = tok.AccessToken
	return w
}

func TestList(t *testing.T) {
	w := setup(t)
	api := w.e.APIURL()
	tests := []struct {
		name     string
		apiURL   string
		token    string
		group    string
		timeout  time.Duration
		fault    func()
		want     []string // names, in order
		wantCode codes.Code
		wantIs   error
		wantErr  []string
		maxTime  time.Duration
	}{
		{name: "children only, sorted", apiURL: api, token: w.accessToken, group: w.a, timeout: 2 * time.Second,
			want: []string{"alpine", "busybox", "nginx", "python"}},
		{name: "default timeout", apiURL: api, token: w.accessToken, group: w.a,
			want: []string{"alpine", "busybox", "nginx", "python"}},
		{name: "subgroup (inherits the binding on A)", apiURL: api, token: w.accessToken, group: w.aSub, timeout: time.Second,
			want: []string{"redis"}},
		// ListRepos is unscoped: the service answers with what the caller may
		// see, so B's repos are simply absent.
		{name: "another group: none of its repos", apiURL: api, token: w.accessToken, group: w.b, timeout: time.Second,
			want: []string{}},
		{name: "permission denied", apiURL: api, token: w.accessToken, group: w.a, timeout: time.Second,
			fault:    func() { w.e.FailNext(listMethod, 1, codes.PermissionDenied) },
			wantCode: codes.PermissionDenied,
			wantErr:  []string{"list repos of group " + w.a + " at " + api + ": permission denied: ", "needs viewer, registry.pull or more"}},
		{name: "bad token", apiURL: api, token: "not-a-token", group: w.a, timeout: time.Second,
			wantCode: codes.Unauthenticated, wantErr: []string{"list repos of group " + w.a, "unauthenticated: ", "exchange a new one"}},
		{name: "hang", apiURL: api, token: w.accessToken, group: w.a, timeout: 300 * time.Millisecond,
			fault:    func() { w.e.HangNext(listMethod, 1) },
			wantCode: codes.DeadlineExceeded, wantErr: []string{"list repos of group " + w.a, "no answer within 300ms"},
			maxTime: 1500 * time.Millisecond},
		{name: "unavailable", apiURL: api, token: w.accessToken, group: w.a, timeout: time.Second,
			fault:    func() { w.e.FailNext(listMethod, 1, codes.Unavailable) },
			wantCode: codes.Unavailable, wantErr: []string{"list repos of group " + w.a, ": unavailable: "}},
		{name: "group not a UIDP", apiURL: api, token: w.accessToken, group: "example-group",
			wantIs: validate.ErrInvalid, wantErr: []string{`group "example-group" is not a Chainguard UIDP`}},
		{name: "URL without scheme", apiURL: strings.TrimPrefix(api, "http://"), token: w.accessToken, group: w.a,
			wantIs: validate.ErrInvalid, wantErr: []string{`API URL "` + strings.TrimPrefix(api, "http://") + `" is not a URL`}},
		{name: "no token", apiURL: api, group: w.a, wantErr: []string{"no access token"}},
		{name: "negative timeout", apiURL: api, token: w.accessToken, group: w.a, timeout: -time.Second,
			wantErr: []string{"timeout -1s is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(w.e.ClearFaults)
			if tt.fault != nil {
				tt.fault()
			}
			began := time.Now()
			got, err := repos.List(t.Context(), tt.apiURL, tt.token, tt.group, tt.timeout)
			if tt.maxTime > 0 && time.Since(began) > tt.maxTime {
				t.Errorf("List() took %s, want under %s", time.Since(began), tt.maxTime)
			}
			if tt.want != nil {
				if err != nil {
					t.Fatalf("List() error = %v", err)
				}
				if got == nil {
					t.Fatal("List() = nil, want a non-nil slice (JSON [])")
				}
				var names []string
				for _, r := range got {
					names = append(names, r.Name)
					if id, ok := w.aRepos[r.Name]; ok && r.ID != id {
						t.Errorf("repo %s has ID %s, want %s", r.Name, r.ID, id)
					}
				}
				if strings.Join(names, ",") != strings.Join(tt.want, ",") {
					t.Fatalf("List() names = %v, want %v", names, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("List() = %v, want an error", got)
			}
			if tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
				t.Errorf("status.Code(err) = %v, want %v (err: %v)", status.Code(err), tt.wantCode, err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("List() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("List() error = %q, want it to contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "rpc error") {
				t.Errorf("List() error = %q: the gRPC error text is repeated", err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error leaks the access token: %v", err)
			}
		})
	}
}

func TestListCallerDeadline(t *testing.T) {
	w := setup(t)
	w.e.HangNext(listMethod, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := repos.List(ctx, w.e.APIURL(), w.accessToken, w.a, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "the caller's deadline passed") || time.Since(began) > time.Second {
		t.Fatalf("List() = %v after %s, want an error within the caller's 100ms deadline", err, time.Since(began))
	}
}
