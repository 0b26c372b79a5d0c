// Package functest runs the project's Lambda functions as real bootstraps
// under the Lambda Runtime Interface Emulator for tests: it builds a
// function once per test binary, starts the RIE with AWS credentials for a
// principal the Chainguard emulator knows, and scans everything the function
// logged for secrets when the test ends.
package functest

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
)

// Binaries are a function's bootstrap and the RIE, built once by Main.
type Binaries struct {
	Bootstrap string
	RIE       string
}

// Main builds pkg (e.g. "./lambda/repos") for the host and the RIE, runs the
// tests with them and returns the exit code for os.Exit. run receives the
// binaries and runs m.Run.
func Main(pkg string, run func(Binaries) int) int {
	dir, err := os.MkdirTemp("", "functest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bootstrap, err := lambdabuild.Build(ctx, lambdabuild.Options{Package: pkg, OutDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r, err := rie.Binary(ctx, "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return run(Binaries{Bootstrap: bootstrap, RIE: r})
}

// AWSEnv is the environment that gives the function creds, as Lambda does.
func AWSEnv(creds aws.Credentials) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"AWS_SESSION_TOKEN=" + creds.SessionToken,
	}
}

// Start runs the bootstrap under the RIE for the rest of t. When t ends the
// RIE is stopped and its whole output (the RIE's and the function's) is
// scanned: any of secrets, or anything that looks like a token, fails t.
func Start(t testing.TB, bin Binaries, opts rie.Options, secrets ...string) *rie.Emulator {
	t.Helper()
	opts.Bootstrap, opts.RIE = bin.Bootstrap, bin.RIE
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := rie.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start the function under the RIE: %v", err)
	}
	t.Cleanup(func() {
		e.Stop()
		logs := e.Logs()
		if found := Secrets(logs, secrets...); len(found) > 0 {
			t.Errorf("the function's logs hold secrets: %s", strings.Join(found, "; "))
		}
		if t.Failed() {
			t.Logf("function logs:\n%s", logs)
		}
	})
	return e
}

// tokenLike matches runs of token characters long enough to be an access
// token (the emulator's are 43) or a base64url AWS token.
var tokenLike = regexp.MustCompile(`[A-Za-z0-9_-]{43,}`)

// hexLike is a build or content hash, not a token.
var hexLike = regexp.MustCompile(`^[0-9a-f-]+$`)

// awsSigned matches the parts of a signed AWS request (an AWS token
// decoded, or a header dump).
var awsSigned = regexp.MustCompile(`AWS4-HMAC-SHA256|X-Amz-Security-Token|X-Amz-Signature|(?i)bearer [A-Za-z0-9]`)

// Secrets returns a description of every secret found in logs: any of the
// given strings, token-like runs, signed AWS request parts. The findings are
// redacted (only their position and length are shown).
func Secrets(logs string, secrets ...string) []string {
	var found []string
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			found = append(found, fmt.Sprintf("a known secret (%d characters) at offset %d", len(s), strings.Index(logs, s)))
		}
	}
	for _, loc := range tokenLike.FindAllStringIndex(logs, -1) {
		if !hexLike.MatchString(logs[loc[0]:loc[1]]) {
			found = append(found, fmt.Sprintf("a token-like string (%d characters) at offset %d", loc[1]-loc[0], loc[0]))
		}
	}
	for _, loc := range awsSigned.FindAllStringIndex(logs, -1) {
		found = append(found, fmt.Sprintf("signed AWS request material %q at offset %d", logs[loc[0]:loc[1]], loc[0]))
	}
	return found
}
