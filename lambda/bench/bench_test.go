package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/repos"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
)

const (
	warmInvokes = 200
	coldStarts  = 21
	maxArm64    = 20 << 20
)

// result is one function's row of the table.
type result struct {
	name     string
	arm64    int64
	init     time.Duration // median INIT REPORT over coldStarts
	p50, p99 time.Duration
}

func BenchmarkFunctions(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rieBin, err := rie.Binary(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	env := emulatortest.NewEnv(b, emulator.Options{})
	session := "aws-auth"
	identity := env.SeedIdentity(env.Group, "aws-auth-identity", "bench", env.WorkloadPrincipal.ExactTrust(), map[string][]string{env.Group: {"viewer"}})
	c := env.WorkloadCredentials
	reposEnv := []string{
		"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken,
		"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL_STS=" + env.AWSURL(),
		"CHAINGUARD_IDENTITY=" + identity, "CHAINGUARD_GROUP=" + env.Group,
		"CHAINGUARD_ISSUER=" + env.IssuerURL(), "CHAINGUARD_API=" + env.APIURL(),
	}
	// The same function in the web-identity trust: the account's federation
	// on, and an identity trusting the role's ARN through its issuer.
	role, err := validate.AssumedRoleARN(env.WorkloadPrincipal.ARN)
	if err != nil {
		b.Fatal(err)
	}
	wt := trust.WebIdentity{
		Account: role.Account, Partition: role.Partition, RoleName: role.Role, RolePath: "/",
		Issuer: env.EnableWebIdentityFederation(role.Account), Audience: env.IssuerURL(),
	}
	webIdentity := env.SeedClaimMatchIdentity(env.Group, "aws-auth-web-identity", "bench", &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: wt.Issuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: wt.Subject()},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: wt.Audience},
	}, map[string][]string{env.Group: {"viewer"}})
	webEnv := append(slices.Clone(reposEnv), "CHAINGUARD_TRUST=web-identity", "CHAINGUARD_IDENTITY="+webIdentity)

	var rows []result
	for b.Loop() {
		hello := build(ctx, b, rieBin, "hello-world", "./lambda/bench/testdata/hello", session, nil)
		fn := build(ctx, b, rieBin, "repos", "./lambda/repos", session, reposEnv)
		web := build(ctx, b, rieBin, "repos (web identity)", "./lambda/repos", session, webEnv)
		// Cold starts alternate between the functions, so that a change in
		// the machine's load weighs on all alike.
		for range coldStarts {
			hello.coldStart(ctx, b)
			fn.coldStart(ctx, b)
			web.coldStart(ctx, b)
		}
		rows = []result{hello.result(ctx, b), fn.result(ctx, b), web.result(ctx, b)}
	}
	rpc := listReposP50(ctx, b, env, identity)

	hello, fn, web := rows[0], rows[1], rows[2]
	fmt.Fprintf(os.Stdout, "\n| function | arm64 binary | cold init (INIT REPORT) | warm p50 | warm p99 |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "| %s | %.2f MiB | %.2f ms | %.2f ms | %.2f ms |\n", r.name, float64(r.arm64)/(1<<20), msf(r.init), msf(r.p50), msf(r.p99))
	}
	fmt.Fprintf(os.Stdout, "\nemulator ListRepos RPC p50 (in-process): %.2f ms\n", msf(rpc))
	checks := []struct {
		what      string
		got, want float64
		unit      string
	}{
		{"repos init <= 3x hello-world init", msf(fn.init), 3 * msf(hello.init), "ms"},
		{"repos warm p50 <= hello-world p50 + RPC p50 + 2 ms", msf(fn.p50), msf(hello.p50) + msf(rpc) + 2, "ms"},
		{"repos arm64 binary <= 20 MiB", float64(fn.arm64) / (1 << 20), maxArm64 / (1 << 20), "MiB"},
		{"repos init, web identity <= 1.1x caller identity (issue 9)", msf(web.init), 1.1 * msf(fn.init), "ms"},
	}
	// A missed target is reported, not failed: a benchmark reports figures
	// (which vary with the machine's load); tests assert behaviour.
	fmt.Fprintf(os.Stdout, "\n| target | measured | limit | verdict |\n|---|---|---|---|\n")
	for _, c := range checks {
		verdict := "MET"
		if c.got > c.want {
			verdict = "MISSED"
		}
		fmt.Fprintf(os.Stdout, "| %s | %.2f %s | %.2f %s | %s |\n", c.what, c.got, c.unit, c.want, c.unit, verdict)
	}
	b.ReportMetric(float64(fn.arm64)/(1<<20), "repos-arm64-MiB")
	b.ReportMetric(msf(fn.init), "repos-init-ms")
	b.ReportMetric(msf(fn.p50), "repos-p50-ms")
	b.ReportMetric(msf(fn.p99), "repos-p99-ms")
	b.ReportMetric(msf(web.init), "repos-web-init-ms")
	b.ReportMetric(msf(web.p50), "repos-web-p50-ms")
	b.ReportMetric(msf(hello.init), "hello-init-ms")
	b.ReportMetric(msf(hello.p50), "hello-p50-ms")
}

// function is one function under measurement: its arm64 size, and a host
// build run under the RIE.
type function struct {
	name  string
	arm64 int64
	opts  rie.Options
	inits []time.Duration
}

// build builds pkg for arm64 (size) and the host (run).
func build(ctx context.Context, b *testing.B, rieBin, name, pkg, session string, env []string) *function {
	b.Helper()
	arm, err := lambdabuild.Build(ctx, lambdabuild.Options{Package: pkg, OutDir: b.TempDir(), GOARCH: "arm64"})
	if err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(arm)
	if err != nil {
		b.Fatal(err)
	}
	host, err := lambdabuild.Build(ctx, lambdabuild.Options{Package: pkg, OutDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	return &function{name: name, arm64: fi.Size(),
		opts: rie.Options{Bootstrap: host, RIE: rieBin, FunctionName: session, Timeout: 10 * time.Second, Env: env}}
}

// start starts a fresh instance and invokes it once (its cold start).
func (f *function) start(ctx context.Context, b *testing.B) *rie.Emulator {
	b.Helper()
	fn, err := rie.Start(ctx, f.opts)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fn.Invoke(ctx, []byte(`{}`)); err != nil {
		fn.Stop()
		b.Fatalf("%s: cold invoke: %v\n%s", f.name, err, fn.Logs())
	}
	return fn
}

// coldStart records the INIT REPORT duration of one fresh instance.
func (f *function) coldStart(ctx context.Context, b *testing.B) {
	b.Helper()
	fn := f.start(ctx, b)
	defer fn.Stop()
	d, ok := fn.InitDuration()
	if !ok {
		b.Fatalf("%s: no INIT REPORT in:\n%s", f.name, fn.Logs())
	}
	f.inits = append(f.inits, d)
}

// result times warmInvokes invocations of one warm instance and returns the
// function's row.
func (f *function) result(ctx context.Context, b *testing.B) result {
	b.Helper()
	fn := f.start(ctx, b)
	defer fn.Stop()
	lat := make([]time.Duration, 0, warmInvokes)
	for range warmInvokes {
		start := time.Now()
		if _, err := fn.Invoke(ctx, []byte(`{}`)); err != nil {
			b.Fatalf("%s: warm invoke: %v", f.name, err)
		}
		lat = append(lat, time.Since(start))
	}
	return result{name: f.name, arm64: f.arm64, init: percentile(f.inits, 50),
		p50: percentile(lat, 50), p99: percentile(lat, 99)}
}

// listReposP50 is the emulator's share of a warm repos invoke: one ListRepos
// through the real SDK client, measured in-process.
func listReposP50(ctx context.Context, b *testing.B, env *emulatortest.Env, identity string) time.Duration {
	tok := emulatortest.Token(b, env.Emulator, env.WorkloadCredentials, identity)
	lat := make([]time.Duration, 0, warmInvokes)
	for range warmInvokes {
		start := time.Now()
		if _, err := repos.List(ctx, env.APIURL(), tok, env.Group, 0); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	return percentile(lat, 50)
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
