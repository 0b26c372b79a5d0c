package emulator_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
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

// AWS actions, as Calls and the fault methods name them.
const (
	awsGetWebIdentityToken = "sts:GetWebIdentityToken"
	awsGetCallerIdentity   = "sts:GetCallerIdentity"
	awsEnableFederation    = "iam:EnableOutboundWebIdentityFederation"
	awsGetFederationInfo   = "iam:GetOutboundWebIdentityFederationInfo"
	awsDisableFederation   = "iam:DisableOutboundWebIdentityFederation"
)

// TestAWSCalls: every verified AWS call counts under its action, whatever
// its outcome; a request whose signature does not verify counts nowhere.
func TestAWSCalls(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	_, creds := fedPrincipal(e, fedAccount, "workload", nil)
	ctx := testCtx(t)
	stsc, iamc := emulatortest.STSClient(e, creds, "eu-west-1"), emulatortest.IAMClient(e, creds)
	wit := func() error {
		_, err := stsc.GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384")})
		return err
	}
	counts := func() map[string]int {
		m := map[string]int{}
		for _, a := range []string{awsGetWebIdentityToken, awsGetCallerIdentity, awsEnableFederation, awsGetFederationInfo, awsDisableFederation} {
			m[a] = e.Calls(a)
		}
		return m
	}
	bad := creds
	bad.SecretAccessKey = strings.Repeat("x", 40)
	steps := []struct {
		name    string
		call    func() error
		wantErr string // AWS error code; "" = success
		want    map[string]int
	}{
		{name: "token while federation is off", call: wit, wantErr: "OutboundWebIdentityFederationDisabledException",
			want: map[string]int{awsGetWebIdentityToken: 1}},
		{name: "get info while off", call: func() error {
			_, err := iamc.GetOutboundWebIdentityFederationInfo(ctx, &awsiam.GetOutboundWebIdentityFederationInfoInput{})
			return err
		}, wantErr: "FeatureDisabled", want: map[string]int{awsGetWebIdentityToken: 1, awsGetFederationInfo: 1}},
		{name: "enable", call: func() error {
			_, err := iamc.EnableOutboundWebIdentityFederation(ctx, &awsiam.EnableOutboundWebIdentityFederationInput{})
			return err
		}, want: map[string]int{awsGetWebIdentityToken: 1, awsGetFederationInfo: 1, awsEnableFederation: 1}},
		{name: "token", call: wit, want: map[string]int{awsGetWebIdentityToken: 2, awsGetFederationInfo: 1, awsEnableFederation: 1}},
		{name: "caller identity", call: func() error {
			_, err := stsc.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
			return err
		}, want: map[string]int{awsGetWebIdentityToken: 2, awsGetFederationInfo: 1, awsEnableFederation: 1, awsGetCallerIdentity: 1}},
		{name: "badly signed: not counted", call: func() error {
			_, err := emulatortest.STSClient(e, bad, "eu-west-1").GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384")})
			return err
		}, wantErr: "SignatureDoesNotMatch", want: map[string]int{awsGetWebIdentityToken: 2, awsGetFederationInfo: 1, awsEnableFederation: 1, awsGetCallerIdentity: 1}},
		{name: "disable", call: func() error {
			_, err := iamc.DisableOutboundWebIdentityFederation(ctx, &awsiam.DisableOutboundWebIdentityFederationInput{})
			return err
		}, want: map[string]int{awsGetWebIdentityToken: 2, awsGetFederationInfo: 1, awsEnableFederation: 1, awsGetCallerIdentity: 1, awsDisableFederation: 1}},
	}
	for _, st := range steps {
		err := st.call()
		var apiErr smithy.APIError
		switch {
		case st.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.wantErr != "" && (!errors.As(err, &apiErr) || apiErr.ErrorCode() != st.wantErr):
			t.Fatalf("%s: error %v, want %s", st.name, err, st.wantErr)
		}
		got := counts()
		for a, n := range got {
			if n != st.want[a] {
				t.Errorf("%s: Calls(%s) = %d, want %d", st.name, a, n, st.want[a])
			}
		}
	}
}

// TestAWSCallerIdentityVerificationCounts: the GetCallerIdentity request
// the Chainguard STS forwards to verify a caller-identity token counts as
// sts:GetCallerIdentity, and takes its faults (auth/aws.VerifyToken reports
// any non-200 answer as a rejection).
func TestAWSCallerIdentityVerificationCounts(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	if _, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner); err != nil {
		t.Fatal(err)
	}
	if got := env.Calls(awsGetCallerIdentity); got != 1 {
		t.Errorf("Calls(%s) after one exchange = %d, want 1", awsGetCallerIdentity, got)
	}
	env.FailNextAWS(awsGetCallerIdentity, 1, "InternalFailure", http.StatusInternalServerError)
	_, err := emulatortest.Exchange(testCtx(t), env.Emulator, env.ProvisionerCredentials, env.Provisioner)
	checkErr(t, err, codes.Unauthenticated, "AWS STS rejected the AWS token", "InternalFailure", "injected failure of sts:GetCallerIdentity")
	if got := env.Calls(awsGetCallerIdentity); got != 2 {
		t.Errorf("Calls(%s) = %d, want 2", awsGetCallerIdentity, got)
	}
}

// TestAWSFaults injects failures, hangs and latency into AWS actions, seen
// through the real SDK clients.
func TestAWSFaults(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	_, creds := fedPrincipal(e, fedAccount, "workload", nil)
	e.EnableWebIdentityFederation(fedAccount)
	stsc, iamc := emulatortest.STSClient(e, creds, "eu-west-1"), emulatortest.IAMClient(e, creds)
	wit := func(ctx context.Context) error {
		_, err := stsc.GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384")})
		return err
	}
	getInfo := func(ctx context.Context) error {
		_, err := iamc.GetOutboundWebIdentityFederationInfo(ctx, &awsiam.GetOutboundWebIdentityFederationInfoInput{})
		return err
	}

	t.Run("fail next", func(t *testing.T) {
		t.Cleanup(e.ClearFaults)
		before := e.Calls(awsGetWebIdentityToken)
		e.FailNextAWS(awsGetWebIdentityToken, 2, "AccessDenied", http.StatusForbidden)
		e.FailNextAWS(awsGetFederationInfo, 1, "ServiceFailure", http.StatusServiceUnavailable)
		for range 2 {
			checkAWSErr(t, wit(testCtx(t)), "AccessDenied", http.StatusForbidden, "emulator: injected failure of sts:GetWebIdentityToken")
		}
		checkAWSErr(t, wit(testCtx(t)), "", 0, "")
		if got := e.Calls(awsGetWebIdentityToken) - before; got != 3 {
			t.Errorf("Calls(%s) = %d, want 3", awsGetWebIdentityToken, got)
		}
		// Faults are per action; a 5xx is the SDK's to retry (one attempt here).
		checkAWSErr(t, getInfo(testCtx(t)), "ServiceFailure", http.StatusServiceUnavailable, "injected failure of iam:GetOutboundWebIdentityFederationInfo")
		checkAWSErr(t, getInfo(testCtx(t)), "", 0, "")
	})
	t.Run("fail next, SDK retries a 5xx", func(t *testing.T) {
		t.Cleanup(e.ClearFaults)
		before := e.Calls(awsGetWebIdentityToken)
		e.FailNextAWS(awsGetWebIdentityToken, 1, "InternalFailure", http.StatusInternalServerError)
		retrying := emulatortest.STSClient(e, creds, "eu-west-1", emulatortest.SDKRetries)
		if _, err := retrying.GetWebIdentityToken(testCtx(t), &awssts.GetWebIdentityTokenInput{Audience: []string{chainguard}, SigningAlgorithm: aws.String("ES384")}); err != nil {
			t.Fatalf("the SDK's retry after one injected 500: %v", err)
		}
		if got := e.Calls(awsGetWebIdentityToken) - before; got != 2 {
			t.Errorf("Calls(%s) = %d, want 2 (the failed attempt and its retry)", awsGetWebIdentityToken, got)
		}
	})
	t.Run("hang next", func(t *testing.T) {
		t.Cleanup(e.ClearFaults)
		e.HangNext(awsGetWebIdentityToken, 1)
		const deadline = 200 * time.Millisecond
		ctx, cancel := contextWithTimeout(t, deadline)
		defer cancel()
		start := time.Now()
		err := wit(ctx)
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took < deadline || took > deadline+time.Second {
			t.Fatalf("hung call: %v after %s, want context.DeadlineExceeded just after %s", err, took, deadline)
		}
		checkAWSErr(t, wit(testCtx(t)), "", 0, "")
	})
	t.Run("latency", func(t *testing.T) {
		t.Cleanup(e.ClearFaults)
		e.SetLatency(awsGetWebIdentityToken, 150*time.Millisecond)
		start := time.Now()
		checkAWSErr(t, wit(testCtx(t)), "", 0, "")
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Errorf("call took %s with 150ms latency", took)
		}
	})
}

// TestFaultNamesChecked: the fault methods refuse names they cannot apply.
func TestFaultNamesChecked(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	tests := []struct {
		name string
		call func()
		want string
	}{
		{name: "unknown AWS action", call: func() { e.Calls("sts:AssumeRole") }, want: `"sts:AssumeRole" is not a method the emulator serves`},
		{name: "action of the wrong service", call: func() { e.Calls("iam:GetWebIdentityToken") }, want: "is not a method the emulator serves"},
		{name: "FailNext of an AWS action", call: func() { e.FailNext(awsGetWebIdentityToken, 1, codes.Internal) }, want: "use FailNextAWS"},
		{name: "FailNextAWS of a gRPC method", call: func() { e.FailNextAWS(exchange, 1, "AccessDenied", 403) }, want: "use FailNext"},
		{name: "FailNextAWS without a code", call: func() { e.FailNextAWS(awsGetWebIdentityToken, 1, "", 403) }, want: "empty error code"},
		{name: "FailNextAWS with a success status", call: func() { e.FailNextAWS(awsGetWebIdentityToken, 1, "AccessDenied", 200) }, want: "HTTP status 200 is not an error status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Fatalf("panic %v, want one containing %q", r, tt.want)
				}
			}()
			tt.call()
		})
	}
}
