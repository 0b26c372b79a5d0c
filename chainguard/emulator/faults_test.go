package emulator_test

import (
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

const (
	listIdentities = "/chainguard.platform.iam.Identities/List"
	listRepos      = "/chainguard.platform.registry.Registry/ListRepos"
	exchange       = "/chainguard.platform.oidc.SecurityTokenService/Exchange"
)

func TestFailNext(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	env.FailNext(listIdentities, 2, codes.Unavailable)
	for i, want := range []codes.Code{codes.Unavailable, codes.Unavailable, codes.OK, codes.OK} {
		_, err := c.Identities().List(testCtx(t), &iam.IdentityFilter{})
		if got := codeOf(err); got != want {
			t.Fatalf("call %d: got %v (%v), want %v", i+1, got, err, want)
		}
	}
	if got := env.Calls(listIdentities); got != 4 {
		t.Errorf("Calls(%s) = %d, want 4", listIdentities, got)
	}
	// Faults are per method.
	env.FailNext(listIdentities, 1, codes.ResourceExhausted)
	_, err := c.Groups().List(testCtx(t), &iam.GroupFilter{})
	checkErr(t, err, codes.OK)
	env.ClearFaults()
	_, err = c.Identities().List(testCtx(t), &iam.IdentityFilter{})
	checkErr(t, err, codes.OK)
}

func TestFailNextExchange(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	// The SDK's STS client retries Unavailable (3 attempts in all).
	env.FailNext(exchange, 2, codes.Unavailable)
	if _, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner); err != nil {
		t.Fatalf("exchange after 2 injected Unavailable: %v", err)
	}
	if got := env.Calls(exchange); got != 3 {
		t.Errorf("Calls(Exchange) = %d, want 3", got)
	}
	env.FailNext(exchange, 1, codes.PermissionDenied)
	_, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner)
	checkErr(t, err, codes.PermissionDenied, "injected")
}

func TestHangNext(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	rc := registryClient(t, env.Emulator, env.MintToken(env.Provisioner))
	env.HangNext(listRepos, 1)
	const deadline = 200 * time.Millisecond
	ctx, cancel := contextWithTimeout(t, deadline)
	defer cancel()
	start := time.Now()
	_, err := rc.ListRepos(ctx, &registry.RepoFilter{})
	took := time.Since(start)
	checkErr(t, err, codes.DeadlineExceeded)
	if took < deadline || took > deadline+time.Second {
		t.Errorf("hung call returned after %s, want just after its %s deadline", took, deadline)
	}
	// Only the next call hangs.
	_, err = rc.ListRepos(testCtx(t), &registry.RepoFilter{})
	checkErr(t, err, codes.OK)
}

func TestSetLatency(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	rc := registryClient(t, env.Emulator, env.MintToken(env.Provisioner))
	env.SetLatency(listRepos, 150*time.Millisecond)
	start := time.Now()
	_, err := rc.ListRepos(testCtx(t), &registry.RepoFilter{})
	checkErr(t, err, codes.OK)
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("call took %s with 150ms latency", took)
	}
	// Latency beyond the deadline fails the call at the deadline.
	ctx, cancel := contextWithTimeout(t, 50*time.Millisecond)
	defer cancel()
	_, err = rc.ListRepos(ctx, &registry.RepoFilter{})
	checkErr(t, err, codes.DeadlineExceeded)
	env.SetLatency(listRepos, 0)
	start = time.Now()
	_, err = rc.ListRepos(testCtx(t), &registry.RepoFilter{})
	checkErr(t, err, codes.OK)
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("call took %s after removing the latency", took)
	}
}

// TestTransientCodes injects the transient failures the service really
// returns and the SDK clients do not retry themselves (their connection-level
// retry covers Unavailable and ResourceExhausted only): Unknown (a raw HTTP
// 500 through the gateway) and Internal, per the Terraform provider's
// isRetryable (internal/provider/retry.go). Each reaches the caller once,
// and the next call succeeds.
func TestTransientCodes(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	c := iamClients(t, env.Emulator, env.MintToken(env.Provisioner))
	for _, code := range []codes.Code{codes.Unknown, codes.Internal, codes.DeadlineExceeded, codes.Aborted} {
		t.Run(code.String(), func(t *testing.T) {
			env.FailNext(listIdentities, 1, code)
			_, err := c.Identities().List(testCtx(t), &iam.IdentityFilter{})
			checkErr(t, err, code, "injected")
			_, err = c.Identities().List(testCtx(t), &iam.IdentityFilter{})
			checkErr(t, err, codes.OK)

			env.FailNext(exchange, 1, code)
			_, err = emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner)
			checkErr(t, err, code, "injected")
			if _, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner); err != nil {
				t.Fatalf("exchange after the injected %v: %v", code, err)
			}
		})
	}
}
