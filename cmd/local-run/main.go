// Command local-run runs the whole lifecycle of the CDK app on this machine,
// with no AWS or Chainguard account: it starts the Chainguard emulator (and
// its AWS stand-in), synthesizes the app with context pointing at it,
// performs the one-time trust step from the provisioner stack's output,
// plays CloudFormation with the real Lambda bootstraps under the Lambda
// Runtime Interface Emulator (create, invoke, update, delete), deletes the
// provisioner identity as the README's last destroy step does, and checks
// the emulator holds exactly what it held before the trust step.
//
// It runs every combination of the chosen trust and group modes, one after
// the other, each against a fresh emulator:
//
//   - -trust caller-identity: the functions sign GetCallerIdentity requests
//     and the identities trust their assumed-role principals (aws_identity);
//     the account's outbound identity federation must stay off.
//   - -trust web-identity: the app is synthesized with -c trust=webIdentity;
//     the provisioner stack's Custom::AwsOutboundWebIdentityFederation
//     enables the account's federation (the run prints its issuer), the
//     trust step creates a claim_match identity (issuer, subject = the
//     provisioner role's ARN, audience), the functions exchange web identity
//     tokens from sts:GetWebIdentityToken, a later deploy of the provisioner
//     stack finds the federation on and leaves it on, and it is still on
//     after destroy.
//   - -group existing: the stack uses a pre-existing group with seeded repos.
//   - -group create: the stack creates its group (and deletes it); the run
//     plays the user pushing an image to it (the repos function must list
//     exactly that repo) and deleting it before the stacks are deleted.
//     This mode also synthesizes the app environment-agnostic (as an
//     offline `cdk synth`), so the default run covers both template shapes.
//
// In every run the aws-auth stack's deploy-time trust check runs: the
// provisioner invokes the repos function through a local Lambda API
// (AWS_ENDPOINT_URL_LAMBDA; SigV4-verified, and allowed by the function's
// AWS::Lambda::Permission for the provisioner role alone), and the run
// prints how long the check took, the time it adds to the deploy. After the
// normal lifecycle the run deletes the aws-auth stack, deploys it again
// with an identity that trusts another principal (session
// not-<function>, or the role path /not-<function>/ with web identity):
// the check must fail naming what the identity trusts and what the function
// ran as, and the stack must roll back, leaving the emulator as before.
//
// Usage, from anywhere inside the module:
//
//	go run ./cmd/local-run [-trust caller-identity|web-identity|both] [-group existing|create|both]
//	                       [-propagation-delay D] [-v] [-keep DIR]
//
// Both flags default to both: four runs. -propagation-delay (default 10s) is
// how long the emulator takes to make a new identity or role binding
// effective, as the real service does: longer than the synth between the
// trust step and the first deploy (on an idle machine), so that the
// provisioner meets an identity the STS does not know yet and retries.
// -keep DIR keeps each run's cloud assemblies and binaries in DIR/run-N.
//
// It prints one line per step with its duration, a summary per run and the
// duration of every run (with its trust check's), and exits 1 naming the failed run and step on any
// failure. Interrupting it (Ctrl-C, SIGTERM) stops every process it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/localrun"
)

func main() {
	os.Exit(run())
}

// mode is one run: a trust mode and a group mode.
type mode struct {
	name string
	opts localrun.Options
}

// modes returns the runs of the flags' combination, trust mode first.
func modes(trust, group string) ([]mode, error) {
	var trusts []token.Trust
	switch trust {
	case string(token.CallerIdentity), string(token.WebIdentity):
		trusts = []token.Trust{token.Trust(trust)}
	case "both":
		trusts = []token.Trust{token.CallerIdentity, token.WebIdentity}
	default:
		return nil, fmt.Errorf("-trust %q: use %s, %s or both", trust, token.CallerIdentity, token.WebIdentity)
	}
	existing := mode{"pre-existing group", localrun.Options{}}
	create := mode{"group created by the stack", localrun.Options{CreateGroup: true, EnvironmentAgnostic: true}}
	var groups []mode
	switch group {
	case "existing":
		groups = []mode{existing}
	case "create":
		groups = []mode{create}
	case "both":
		groups = []mode{existing, create}
	default:
		return nil, fmt.Errorf("-group %q: use existing, create or both", group)
	}
	var out []mode
	for _, t := range trusts {
		for _, g := range groups {
			g.opts.Trust = t
			out = append(out, mode{name: string(t) + ", " + g.name, opts: g.opts})
		}
	}
	return out, nil
}

func run() int {
	trust := flag.String("trust", "both", "trust mode: caller-identity (a signed GetCallerIdentity request), web-identity (AWS outbound identity federation: a JWT from sts:GetWebIdentityToken), or both (one run each)")
	group := flag.String("group", "both", "group mode: existing (the stack uses a pre-existing group), create (the stack creates and deletes its group), or both (one run each)")
	verbose := flag.Bool("v", false, "show the output of the functions and the RIEs on stderr")
	keep := flag.String("keep", "", "keep the cloud assemblies and binaries in this directory, one run-N folder per run (default: a temporary directory, removed)")
	delay := flag.Duration("propagation-delay", localrun.DefaultPropagationDelay, "how long a new Chainguard identity or role binding takes to become effective (0: the emulator's "+emulator.EnvPropagationDelay+", else none)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "local-run: unexpected arguments %q\n", flag.Args())
		return 2
	}
	runs, err := modes(*trust, *group)
	if err != nil {
		fmt.Fprintf(os.Stderr, "local-run: %v\n", err)
		return 2
	}
	var logs io.Writer
	if *verbose {
		logs = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var durations, checks []time.Duration
	for i, m := range runs {
		opts := m.opts
		opts.Out, opts.FunctionLogs, opts.PropagationDelay = os.Stdout, logs, *delay
		if *keep != "" {
			opts.WorkDir = fmt.Sprintf("%s/run-%d", *keep, i+1)
		}
		fmt.Printf("=== run %d of %d: %s\n", i+1, len(runs), m.name)
		start := time.Now()
		res, err := localrun.Run(ctx, opts)
		durations = append(durations, time.Since(start))
		checks = append(checks, res.TrustCheck.Duration)
		if err != nil {
			var se *localrun.StepError
			if errors.As(err, &se) {
				fmt.Fprintf(os.Stderr, "local-run: run %d (%s) failed at step %q: %v\n", i+1, m.name, se.Step, se.Err)
			} else {
				fmt.Fprintf(os.Stderr, "local-run: run %d (%s): %v\n", i+1, m.name, err)
			}
			return 1
		}
	}
	var total time.Duration
	fmt.Println("=== durations")
	for i, d := range durations {
		fmt.Printf("run %d (%s): %s (trust check on create: %s)\n", i+1, runs[i].name, d.Round(100*time.Millisecond), checks[i].Round(time.Millisecond))
		total += d
	}
	if len(durations) > 1 {
		fmt.Printf("total: %s\n", total.Round(100*time.Millisecond))
	}
	return 0
}
