package localrun

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
	"github.com/assumable-identity/cdk-chainguard/localrun/template"
	"github.com/assumable-identity/cdk-chainguard/stacks"
)

// TestRun runs the whole lifecycle once per group mode, with the real app,
// the real bootstraps and the emulator with a propagation delay longer than
// the synth between the trust step and the first deploy: the repos function
// must list the seeded repos of the pre-existing group, or exactly the repo
// pushed to the group the stack created, and the run must end with the
// provisioner identity deleted. The created-group mode synthesizes the app
// environment-agnostic, so its stacks carry the ChainguardPartition rule,
// which the deploy must evaluate and pass.
//
// Both runs deploy the aws-auth stack's trust check, which passes once the
// new identity propagated (a later attempt), and, after the normal
// lifecycle, a wrong-trust variant of the stack, whose check must fail
// naming both principals (refused for the trust, not the propagation) and
// whose creation must roll back to what the emulator held before.
//
// Each run takes 65-80 s (three synths, the waits for propagation, and the
// trust checks: about 14 s for the passing one and 14 s for the wrong
// trust, with the 10 s delay), so
// the test pairs the modes instead of running all four combinations
// (cmd/local-run does): the caller-identity trust with the pre-existing
// group, the web-identity trust with the created group. The trust mode and
// the group mode change different parts of the stacks (the identities'
// trust, the provisioner's federation resource and the functions' tokens;
// the group resource and the repos), so two runs cover both values of each
// at about half the time of four, and the web-identity run gets the
// environment-agnostic templates, whose role ARNs (the claim_match
// subjects) are built from pseudo parameters. -short skips it.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the full local run synthesizes the app three times: skipped with -short")
	}
	const delay = DefaultPropagationDelay
	tests := []struct {
		name      string
		opts      Options
		wantRepos []string
		wantSteps []string // besides the steps of both modes
		wantRules []string // the rules of the provisioner stack as deployed
		wantLines []string // besides the lines of both modes
	}{
		{
			name: "caller identity, pre-existing group", opts: Options{Trust: token.CallerIdentity, PropagationDelay: delay},
			wantRepos: []string{"nginx", "python", "static"}, wantRules: []string{"CheckBootstrapVersion"},
			wantLines: []string{
				"outbound identity federation: never enabled (the caller-identity mode leaves the account setting alone)",
				"; aws_identity arn:aws:sts::111122223333:assumed-role/",
				"(AwsSession not-ChainguardAwsAuth)",
				"trusts arn:aws:sts::111122223333:assumed-role/ChainguardAwsAuth-us-east-1/not-ChainguardAwsAuth (user ID ",
				"; the function ran as arn:aws:sts::111122223333:assumed-role/ChainguardAwsAuth-us-east-1/ChainguardAwsAuth (user ID ",
			},
		},
		{
			name:      "web identity, group created by the stack, environment-agnostic",
			opts:      Options{Trust: token.WebIdentity, CreateGroup: true, EnvironmentAgnostic: true, PropagationDelay: delay},
			wantRepos: []string{"hello"}, wantRules: []string{"ChainguardPartition", "CheckBootstrapVersion"},
			wantSteps: []string{
				"push an image: repo hello into the created group",
				"delete the image: repo hello from the created group",
				"deploy the provisioner stack again (federation already on)",
				"delete the provisioner stack again",
			},
			wantLines: []string{
				"Create Custom::AwsOutboundWebIdentityFederation ",
				"outbound identity federation: off before the deploy, enabled by it; issuer http://127.0.0.1:",
				"; claim_match issuer http://127.0.0.1:",
				"Delete Custom::AwsOutboundWebIdentityFederation ",
				"found on and left on by 1 later deploy(s), still enabled after destroy (never disabled)",
				"(AwsRolePath /not-ChainguardAwsAuth/)",
				", sub arn:aws:iam::111122223333:role/not-ChainguardAwsAuth/ChainguardAwsAuth-us-east-1 and aud ",
				"; the function ran as a web identity token with iss http://127.0.0.1:",
				// The rollback deletes the group the stack created, last.
				"Role1ABCC5F0 (AWS::IAM::Role), GroupC77FDACD (Custom::ChainguardGroup)\n",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			start := time.Now()
			work := t.TempDir()
			opts := tt.opts
			opts.Out, opts.FunctionLogs, opts.WorkDir = &out, testWriter{t}, work
			res, err := Run(ctx, opts)
			t.Logf("run output:\n%s", out.String())
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("local run (%s) took %s", tt.name, time.Since(start).Round(100*time.Millisecond))
			if got := strings.Join(res.Repos, ","); got != strings.Join(tt.wantRepos, ",") {
				t.Errorf("repos = %q, want %q", res.Repos, tt.wantRepos)
			}
			if len(res.Steps) != 18+len(tt.wantSteps) || res.Identity == "" || res.Group == "" || res.ProvisionerIdentity == "" {
				t.Errorf("result = %+v", res)
			}
			// The trust check of the first deploy met the identity before it
			// propagated, and passed on a later attempt; the update's ran too
			// (the roles changed).
			if c := res.TrustCheck; c.Invocations < 2 || c.Duration < delay {
				t.Errorf("the first deploy's trust check took %s and %d invocations, want a refused attempt and a later one that passed, after the %s delay", c.Duration, c.Invocations, delay)
			}
			if c := res.TrustCheckUpdate; c.Invocations < 1 {
				t.Errorf("the update's trust check made %d invocations, want it run again (the roles changed)", c.Invocations)
			}
			if !strings.Contains(res.WrongTrustReason, "may not assume identity") || !strings.Contains(res.WrongTrustReason, "; the function ran as ") {
				t.Errorf("the wrong trust's reason is %q, want the trust refused and both principals named", res.WrongTrustReason)
			}
			if web := opts.Trust == token.WebIdentity; web != (res.FederationIssuer != "") {
				t.Errorf("federation issuer = %q in trust mode %s", res.FederationIssuer, opts.Trust)
			}
			lines := append([]string{
				"ok   deploy the provisioner stack (",
				"Update Custom::ChainguardIdentity",
				"Create Custom::ChainguardTrustCheck IdentityTrustCheck",
				"     trust check: passed in ",
				"Update Custom::ChainguardTrustCheck IdentityTrustCheck",
				"ok   delete the aws-auth stack (",
				"-> FAILED (",
				"stack ChainguardAwsAuth: CREATE_FAILED at IdentityTrustCheck",
				"     ROLLBACK_COMPLETE after ",
				"ok   deploy it with a wrong trust: fails at the trust check and rolls back (",
				"ok   check the rollback: the emulator holds what it held before (",
				"ok   delete the provisioner identity (chainctl iam identities delete) (",
				"ok   check the end state (",
				"PASS in ",
			}, tt.wantLines...)
			for _, step := range tt.wantSteps {
				lines = append(lines, "ok   "+step+" (")
			}
			for _, line := range lines {
				if !strings.Contains(out.String(), line) {
					t.Errorf("output lacks %q", line)
				}
			}
			// A first deploy that started before the trust step's identity
			// propagated met refused exchanges, retried with fresh ones.
			if fd := res.FirstDeploy; fd.SinceTrustStep < delay && fd.Exchanges < 2 {
				t.Errorf("the first deploy started %s after the trust step (delay %s) and made %d token exchanges, want a refused one and a retry", fd.SinceTrustStep, delay, fd.Exchanges)
			}
			a, err := template.ReadAssembly(filepath.Join(work, "cdk.out.3"))
			if err != nil {
				t.Fatal(err)
			}
			prov, err := a.Stack(stacks.DefaultProvisionerStackName)
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(maps.Keys(prov.Template.Rules)); !slices.Equal(got, tt.wantRules) {
				t.Errorf("the provisioner stack deployed with rules %q, want %q", got, tt.wantRules)
			}
			assertNoLeftovers(t, work)
		})
	}
}

// TestRunInterrupted cancels a run while the CDK app is synthesizing: Run
// returns an error naming the step, and no process is left behind.
func TestRunInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CDK app: skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	work := t.TempDir()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{Out: &out, WorkDir: work})
		done <- err
	}()
	// Cancel once the first synth has started (the CDK app and node run).
	deadline := time.After(5 * time.Minute)
	for !strings.Contains(out.String(), "synthesize (before the trust step) ...") {
		select {
		case err := <-done:
			t.Fatalf("Run ended before the synth: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("the synth did not start within 5 minutes:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	time.Sleep(2 * time.Second)
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of the cancellation")
	}
	var se *StepError
	if !errors.As(err, &se) || se.Step != "synthesize (before the trust step)" || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want a StepError of the first synth wrapping context.Canceled", err)
	}
	assertNoLeftovers(t, work)
}

// assertNoLeftovers fails if a process the run started is still there: a
// child of this process (RIE, CDK app) or any process whose command line or
// environment names the run's work directory (functions, the app's node
// runtime, which would be orphaned rather than remain a child).
func assertNoLeftovers(t *testing.T, workDir string) {
	t.Helper()
	self := os.Getpid()
	var left []string
	for range 50 { // give killed processes a moment to be reaped
		left = left[:0]
		entries, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatalf("list processes: %v", err)
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			dir := filepath.Join("/proc", e.Name())
			stat, err := os.ReadFile(filepath.Join(dir, "stat"))
			if err != nil {
				continue // exited meanwhile
			}
			// "pid (comm) state ppid ...": comm may hold spaces.
			s := string(stat)
			end := strings.LastIndexByte(s, ')')
			fields := strings.Fields(s[end+1:])
			cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
			environ, _ := os.ReadFile(filepath.Join(dir, "environ"))
			if len(fields) > 1 && fields[0] != "Z" && (fields[1] == strconv.Itoa(self) ||
				bytes.Contains(cmdline, []byte(workDir)) || bytes.Contains(environ, []byte(workDir))) {
				left = append(left, s[:end+1])
			}
		}
		if len(left) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("processes left behind: %q", left)
}

// testWriter sends function logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
