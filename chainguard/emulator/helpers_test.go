package emulator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// testCtx is a context with a deadline for one test step (SDK clients wait
// for readiness forever without one).
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(context.Background(), d)
}

func codeOf(err error) codes.Code { return status.Code(err) }

// iamClients returns real SDK IAM clients for token.
func iamClients(t *testing.T, e *emulator.Emulator, token string) iam.Clients {
	t.Helper()
	return sdkClients(t, e, token, iam.NewClients)
}

// registryClient returns a real SDK Registry client for token.
func registryClient(t *testing.T, e *emulator.Emulator, token string) registry.RegistryClient {
	t.Helper()
	return sdkClients(t, e, token, registry.NewClients).Registry()
}

// sdkClients dials e's API with an SDK constructor (iam.NewClients,
// registry.NewClients) for token and closes the clients when t ends.
func sdkClients[C interface{ Close() error }](t *testing.T, e *emulator.Emulator, token string, newClients func(context.Context, string, string) (C, error)) C {
	t.Helper()
	c, err := newClients(testCtx(t), e.APIURL(), token)
	if err != nil {
		t.Fatalf("dial the emulator API with the SDK: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// checkErr fails t unless err has code want and its message contains every
// one of msgs (want == codes.OK means err must be nil).
func checkErr(t *testing.T, err error, want codes.Code, msgs ...string) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("got code %v (error %v), want %v", got, err, want)
	}
	for _, m := range msgs {
		if !strings.Contains(status.Convert(err).Message(), m) {
			t.Errorf("error %q does not contain %q", status.Convert(err).Message(), m)
		}
	}
}

// awsIdentity builds an aws_identity; a value starting with "^" is a pattern.
func awsIdentity(account, arn, userID string) *iam.Identity_AWSIdentity {
	a := &iam.Identity_AWSIdentity{AwsAccount: account}
	if strings.HasPrefix(arn, "^") {
		a.AwsArn = &iam.Identity_AWSIdentity_ArnPattern{ArnPattern: arn}
	} else {
		a.AwsArn = &iam.Identity_AWSIdentity_Arn{Arn: arn}
	}
	if strings.HasPrefix(userID, "^") {
		a.AwsUserId = &iam.Identity_AWSIdentity_UserIdPattern{UserIdPattern: userID}
	} else {
		a.AwsUserId = &iam.Identity_AWSIdentity_UserId{UserId: userID}
	}
	return a
}

// wantHourTokenListingRepos checks an exchanged token: it expires in about an
// hour and works on the API, as the identity, listing the repos of env's
// group.
func wantHourTokenListingRepos(t *testing.T, env *emulatortest.Env, pair sts.TokenPair) {
	t.Helper()
	exp, err := emulatortest.Expiry(pair)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %s, want about an hour", d)
	}
	repos, err := registryClient(t, env.Emulator, pair.AccessToken).ListRepos(testCtx(t), &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
	checkErr(t, err, codes.OK)
	if len(repos.GetItems()) != len(env.Repos) {
		t.Errorf("listed %d repos, want %d", len(repos.GetItems()), len(env.Repos))
	}
}
