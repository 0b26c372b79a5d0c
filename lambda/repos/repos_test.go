package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
	"github.com/assumable-identity/cdk-chainguard/lambda/internal/functest"
)

var bin functest.Binaries

func TestMain(m *testing.M) {
	os.Exit(functest.Main("./lambda/repos", func(b functest.Binaries) int {
		bin = b
		return m.Run()
	}))
}

const exchangeMethod = "/chainguard.platform.oidc.SecurityTokenService/Exchange"

// env is a seeded emulator plus an identity for the workload principal.
type env struct {
	*emulatortest.Env
	identity string
	logs     *syncbuf.Buffer
}

// newEnv seeds the standard layout and an identity in its group with viewer
// on the group, trusting trusted (the workload principal if nil).
func newEnv(t *testing.T, trusted *emulator.AWSPrincipal) *env {
	t.Helper()
	logs := &syncbuf.Buffer{}
	e := emulatortest.NewEnv(t, emulator.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	p := e.WorkloadPrincipal
	if trusted != nil {
		p = *trusted
	}
	id := e.SeedIdentity(e.Group, "aws-auth-identity", "the repos function", p.ExactTrust(), map[string][]string{e.Group: {"viewer"}})
	t.Cleanup(func() {
		if found := functest.Secrets(logs.String(), e.WorkloadCredentials.SecretAccessKey, e.WorkloadCredentials.SessionToken); len(found) > 0 {
			t.Errorf("the emulator's logs hold secrets: %s", strings.Join(found, "; "))
		}
	})
	return &env{Env: e, identity: id, logs: logs}
}

func (e *env) vars() []string {
	return append(functest.AWSEnv(e.WorkloadCredentials),
		"CHAINGUARD_IDENTITY="+e.identity,
		"CHAINGUARD_GROUP="+e.Group,
		"CHAINGUARD_ISSUER="+e.IssuerURL(),
		"CHAINGUARD_API="+e.APIURL(),
	)
}

func (e *env) start(t *testing.T, timeout time.Duration, vars ...string) *rie.Emulator {
	t.Helper()
	return functest.Start(t, bin, rie.Options{
		FunctionName: e.session(),
		Timeout:      timeout,
		Env:          append(e.vars(), vars...),
	}, secretsOf(e.WorkloadCredentials)...)
}

// session is the session name of the workload principal:
// a Lambda runs as session = function name.
func (e *env) session() string {
	return e.WorkloadPrincipal.ARN[strings.LastIndex(e.WorkloadPrincipal.ARN, "/")+1:]
}

func secretsOf(c aws.Credentials) []string { return []string{c.SecretAccessKey, c.SessionToken} }

func invoke(t *testing.T, f *rie.Emulator) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return f.Invoke(ctx, []byte(`{}`))
}

func TestListsTheGroupsRepos(t *testing.T) {
	e := newEnv(t, nil)
	f := e.start(t, 10*time.Second)
	body, err := invoke(t, f)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	repos := slices.Clone(e.Repos)
	slices.SortFunc(repos, func(a, b emulator.Repo) int { return strings.Compare(a.Name, b.Name) })
	type repo struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	want := struct {
		Identity string `json:"identity"`
		Group    string `json:"group"`
		Count    int    `json:"count"`
		Repos    []repo `json:"repos"`
	}{Identity: e.identity, Group: e.Group, Count: len(repos)}
	for _, r := range repos {
		want.Repos = append(want.Repos, repo{ID: r.ID, Name: r.Name})
	}
	wantJSON, _ := json.Marshal(want)
	if string(body) != string(wantJSON) {
		t.Fatalf("response:\n got %s\nwant %s", body, wantJSON)
	}
	if len(repos) == 0 {
		t.Fatal("the standard layout seeded no repos: the test proves nothing")
	}
	// Structured logs: JSON lines with the request ID, step and duration.
	var sawStep bool
	for line := range strings.Lines(f.WaitLogs(0, 2*time.Second, `"step":`)) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["step"] == nil {
			continue
		}
		sawStep = true
		for _, k := range []string{"request_id", "duration_ms", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("log record %s has no %s", strings.TrimSpace(line), k)
			}
		}
	}
	if !sawStep {
		t.Fatalf("no JSON step log in:\n%s", f.Logs())
	}
}

func TestIdentityNotTrustingThisPrincipal(t *testing.T) {
	other := emulator.AssumedRolePrincipal("111122223333", "some-other-role", "some-other-fn")
	e := newEnv(t, &other)
	f := e.start(t, 10*time.Second)
	_, err := invoke(t, f)
	var fe *rie.FunctionError
	if !errors.As(err, &fe) {
		t.Fatalf("invoke error = %v, want a function error", err)
	}
	t.Logf("error: %s", fe.Message)
	for _, want := range []string{"get a Chainguard token", "exchange", e.identity} {
		if !strings.Contains(fe.Message, want) {
			t.Errorf("error %q does not mention %q", fe.Message, want)
		}
	}
	if !strings.Contains(strings.ToLower(fe.Message), "refused") {
		t.Errorf("error %q does not say the service refused", fe.Message)
	}
}

func TestStartUpConfiguration(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name    string
		vars    []string
		wantErr string // the variable the error must name
	}{
		{name: "missing identity", vars: []string{"CHAINGUARD_IDENTITY="}, wantErr: "CHAINGUARD_IDENTITY is not set"},
		{name: "missing group", vars: []string{"CHAINGUARD_GROUP="}, wantErr: "CHAINGUARD_GROUP is not set"},
		{name: "invalid group", vars: []string{"CHAINGUARD_GROUP=abc"}, wantErr: `CHAINGUARD_GROUP "abc"`},
		{name: "invalid issuer", vars: []string{"CHAINGUARD_ISSUER=issuer.enforce.dev"}, wantErr: "CHAINGUARD_ISSUER"},
		{name: "plain http API elsewhere", vars: []string{"CHAINGUARD_API=http://console-api.enforce.dev"}, wantErr: "CHAINGUARD_API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := e.start(t, 5*time.Second, tt.vars...)
			_, err := invoke(t, f)
			var ie *rie.InvokeError
			if !errors.As(err, &ie) {
				t.Fatalf("invoke error = %v, want the init failure (an InvokeError)", err)
			}
			if !strings.Contains(ie.Message, tt.wantErr) {
				t.Fatalf("init error %q does not contain %q", ie.Message, tt.wantErr)
			}
			variable, _, _ := strings.Cut(tt.wantErr, " ")
			if logs := f.WaitLogs(0, 2*time.Second, `"msg":"start-up failed"`, variable); !strings.Contains(logs, `"msg":"start-up failed"`) || !strings.Contains(logs, variable) {
				t.Fatalf("the start-up log does not name %s", variable)
			}
		})
	}
}

func TestEmulatorDownFailsWithinTheTimeout(t *testing.T) {
	e := newEnv(t, nil)
	const timeout = 3 * time.Second
	f := e.start(t, timeout)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := invoke(t, f)
	elapsed := time.Since(start)
	var fe *rie.FunctionError
	if !errors.As(err, &fe) || fe.Type == "TimedOut" {
		t.Fatalf("invoke error = %v, want the function's own error, not a timeout", err)
	}
	t.Logf("answered in %s: %s", elapsed.Round(time.Millisecond), fe.Message)
	if elapsed >= timeout {
		t.Fatalf("answered after %s, not within the %s function timeout", elapsed, timeout)
	}
	if !strings.Contains(fe.Message, "get a Chainguard token") {
		t.Fatalf("error %q does not name the step", fe.Message)
	}
}

func TestWarmInvocationsShareOneExchange(t *testing.T) {
	e := newEnv(t, nil)
	f := e.start(t, 10*time.Second)
	const n = 20
	for i := range n {
		body, err := invoke(t, f)
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		if !strings.Contains(string(body), `"count":`) {
			t.Fatalf("invoke %d: %s", i, body)
		}
	}
	if got := e.Calls(exchangeMethod); got != 1 {
		t.Fatalf("%d warm invocations made %d exchanges, want 1", n, got)
	}
	if got := e.Calls("/chainguard.platform.registry.Registry/ListRepos"); got != n {
		t.Fatalf("ListRepos calls = %d, want %d", got, n)
	}
}

// webIdentity switches e to the web-identity trust: its identity becomes
// one whose claim_match trusts the workload role's web identity tokens
// from its account's issuer (outbound identity federation enabled), and the
// returned variables make the function use that trust and reach the
// emulator's AWS side for GetWebIdentityToken.
func (e *env) webIdentity() []string {
	issuer := e.EnableWebIdentityFederation(e.WorkloadPrincipal.Account)
	e.identity = e.SeedClaimMatchIdentity(e.Group, "aws-auth-web-identity", "the repos function, by web identity",
		e.WorkloadPrincipal.WebIdentityTrust(issuer, e.IssuerURL()), map[string][]string{e.Group: {"viewer"}})
	return []string{"CHAINGUARD_TRUST=web-identity", "AWS_ENDPOINT_URL_STS=" + e.AWSURL()}
}

// TestWebIdentityWarmInvocationsShareOneExchange runs the function in the
// web-identity trust (config.LoadDefaultConfig's STS client, pointed at the
// emulator by AWS_ENDPOINT_URL_STS): warm invocations share one exchange,
// made of exactly 2 calls (AWS GetWebIdentityToken and the Chainguard STS
// Exchange). The refusals of this trust are tested in chainguard/token.
func TestWebIdentityWarmInvocationsShareOneExchange(t *testing.T) {
	e := newEnv(t, nil)
	f := e.start(t, 10*time.Second, e.webIdentity()...)
	const n = 20
	for i := range n {
		body, err := invoke(t, f)
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		if !strings.Contains(string(body), `"identity":"`+e.identity+`"`) || !strings.Contains(string(body), `"count":3`) {
			t.Fatalf("invoke %d: %s", i, body)
		}
	}
	if aws, ex := e.Calls("sts:GetWebIdentityToken"), e.Calls(exchangeMethod); aws != 1 || ex != 1 {
		t.Fatalf("%d warm invocations made %d GetWebIdentityToken calls and %d exchanges, want 1 and 1", n, aws, ex)
	}
	if got := e.Calls("sts:GetCallerIdentity"); got != 0 {
		t.Fatalf("sts:GetCallerIdentity calls = %d, want 0 in the web-identity trust", got)
	}
}
