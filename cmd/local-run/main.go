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
// deleted.
//
// Usage, from anywhere inside the module:
//
//	go run ./cmd/local-run [-group existing|create|both] [-v] [-keep DIR]
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

	"github.com/assumable-identity/cdk-chainguard/localrun"
)

func main() {
	os.Exit(run())
}

func run() int {
	group := flag.String("group", "both", "group mode: existing (the stack uses a pre-existing group), create (the stack creates and deletes its group), or both (one run each)")
	verbose := flag.Bool("v", false, "show the output of the functions and the RIEs on stderr")
	keep := flag.String("keep", "", "keep the cloud assemblies and binaries in this directory (default: a temporary directory, removed)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "local-run: unexpected arguments %q\n", flag.Args())
		return 2
	}
	var modes []bool // CreateGroup values
	switch *group {
	case "existing":
		modes = []bool{false}
	case "create":
		modes = []bool{true}
	case "both":
		modes = []bool{false, true}
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
	for i, create := range modes {
		opts := localrun.Options{CreateGroup: create, Out: os.Stdout, FunctionLogs: logs}
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
