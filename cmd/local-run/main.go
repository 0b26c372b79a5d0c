// Command local-run runs the whole lifecycle of the CDK app on this machine,
// with no AWS or Chainguard account: it starts the Chainguard emulator,
// synthesizes the app with context pointing at it, performs the one-time
// trust step from the provisioner stack's output, plays CloudFormation with
// the real Lambda bootstraps under the Lambda Runtime Interface Emulator
// (create, invoke, update, delete), deletes the provisioner identity as the
// README's last destroy step does, and checks the emulator holds exactly
// what it held before the trust step. With -group create it also plays the
// user pushing an image to the group the stack created (the repos function
// must list exactly that repo) and deleting it before the stacks are
// deleted; that mode also synthesizes the app environment-agnostic (as an
// offline `cdk synth`), so the default run covers both template shapes.
//
// Usage, from anywhere inside the module:
//
//	go run ./cmd/local-run [-group existing|create|both] [-propagation-delay D] [-v] [-keep DIR]
//
// -propagation-delay (default 10s) is how long the emulator takes to make a
// new identity or role binding effective, as the real service does: longer
// than the synth between the trust step and the first deploy (on an idle
// machine), so that the provisioner meets an identity the STS does not know
// yet and retries.
//
// It prints one line per step with its duration and a summary, and exits 1
// naming the failed step on any failure. Interrupting it (Ctrl-C, SIGTERM)
// stops every process it started.
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

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/localrun"
)

func main() {
	os.Exit(run())
}

func run() int {
	group := flag.String("group", "both", "group mode: existing (the stack uses a pre-existing group), create (the stack creates and deletes its group), or both (one run each)")
	verbose := flag.Bool("v", false, "show the output of the functions and the RIEs on stderr")
	keep := flag.String("keep", "", "keep the cloud assemblies and binaries in this directory (default: a temporary directory, removed)")
	delay := flag.Duration("propagation-delay", localrun.DefaultPropagationDelay, "how long a new Chainguard identity or role binding takes to become effective (0: the emulator's "+emulator.EnvPropagationDelay+", else none)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "local-run: unexpected arguments %q\n", flag.Args())
		return 2
	}
	existing := localrun.Options{}
	create := localrun.Options{CreateGroup: true, EnvironmentAgnostic: true}
	var modes []localrun.Options
	switch *group {
	case "existing":
		modes = []localrun.Options{existing}
	case "create":
		modes = []localrun.Options{create}
	case "both":
		modes = []localrun.Options{existing, create}
	default:
		fmt.Fprintf(os.Stderr, "local-run: -group %q: use existing, create or both\n", *group)
		return 2
	}
	var logs io.Writer
	if *verbose {
		logs = os.Stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for i, opts := range modes {
		opts.Out, opts.FunctionLogs, opts.PropagationDelay = os.Stdout, logs, *delay
		if *keep != "" {
			opts.WorkDir = fmt.Sprintf("%s/run-%d", *keep, i+1)
		}
		if _, err := localrun.Run(ctx, opts); err != nil {
			var se *localrun.StepError
			if errors.As(err, &se) {
				fmt.Fprintf(os.Stderr, "local-run: failed at step %q: %v\n", se.Step, se.Err)
			} else {
				fmt.Fprintf(os.Stderr, "local-run: %v\n", err)
			}
			return 1
		}
	}
	return 0
}
