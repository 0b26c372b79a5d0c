package emulatortest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"chainguard.dev/sdk/sts"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
)

// The web-identity trust (AWS outbound identity federation) against the
// emulator, through the real aws-sdk-go-v2 clients pointed at e.AWSURL().

// STSClient is the SDK's STS client of a principal holding creds (from
// e.RegisterAWSPrincipal, or the Standard layout's), signing in region
// (GetWebIdentityToken wants a regional endpoint) and calling e's AWS
// stand-in through BaseEndpoint. It makes one attempt per call (an emulator
// answer is never transient); SDKRetries gives it the SDK's default
// retries. optFns adjust the options further (e.g. APIOptions, Retryer).
// The credentials are client.Options().Credentials.
func STSClient(e *emulator.Emulator, creds aws.Credentials, region string, optFns ...func(*awssts.Options)) *awssts.Client {
	return awssts.New(awssts.Options{
		Region:           region,
		Credentials:      credentials.StaticCredentialsProvider{Value: creds},
		BaseEndpoint:     aws.String(e.AWSURL()),
		RetryMaxAttempts: 1,
	}, optFns...)
}

// SDKRetries is an STSClient option: the SDK's default retries (3 attempts
// with backoff, as config.LoadDefaultConfig sets them up for a Lambda
// function) instead of one attempt. With a Retryer of the test's own, it
// keeps the 3 attempts.
func SDKRetries(o *awssts.Options) { o.RetryMaxAttempts = 3 }

// IAMClient is the SDK's IAM client of a principal holding creds (region
// us-east-1, as the SDK signs IAM), calling e's AWS stand-in through
// BaseEndpoint, one attempt per call.
func IAMClient(e *emulator.Emulator, creds aws.Credentials) *awsiam.Client {
	return awsiam.New(awsiam.Options{
		Region:           "us-east-1",
		Credentials:      credentials.StaticCredentialsProvider{Value: creds},
		BaseEndpoint:     aws.String(e.AWSURL()),
		RetryMaxAttempts: 1,
	})
}

// WebIdentityJWT asks AWS STS (client) for a web identity token for e's
// issuer, as the workload does: audience e.IssuerURL(), ES384, 300 seconds.
func WebIdentityJWT(ctx context.Context, e *emulator.Emulator, client *awssts.Client) (string, error) {
	out, err := client.GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{
		Audience:         []string{e.IssuerURL()},
		SigningAlgorithm: aws.String("ES384"),
		DurationSeconds:  aws.Int32(300),
	})
	if err != nil {
		return "", fmt.Errorf("AWS STS GetWebIdentityToken: %w", err)
	}
	return aws.ToString(out.WebIdentityToken), nil
}

// ExchangeWebIdentity gets a web identity token from client (WebIdentityJWT)
// and exchanges it at e's issuer for identity through the SDK's STS client.
func ExchangeWebIdentity(ctx context.Context, e *emulator.Emulator, client *awssts.Client, identity string) (sts.TokenPair, error) {
	jwt, err := WebIdentityJWT(ctx, e, client)
	if err != nil {
		return sts.TokenPair{}, err
	}
	return ExchangeToken(ctx, e, jwt, identity)
}

// WebIdentityToken is Token for the web-identity trust: it exchanges a web
// identity token from client for a token of identity, retrying the
// NotFound of an identity that has not propagated yet (one AWS call: the
// JWT outlives the retries), and fails tb on any other error.
func WebIdentityToken(tb testing.TB, e *emulator.Emulator, client *awssts.Client, identity string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jwt, err := WebIdentityJWT(ctx, e, client)
	if err != nil {
		tb.Fatal(err)
	}
	return untilPropagated(tb, e, func(ctx context.Context) (sts.TokenPair, error) { return ExchangeToken(ctx, e, jwt, identity) })
}
