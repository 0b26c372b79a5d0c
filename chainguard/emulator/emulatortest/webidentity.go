package emulatortest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"chainguard.dev/sdk/sts"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
)

// The web-identity trust (AWS outbound identity federation) against the
// emulator, through the real aws-sdk-go-v2 clients pointed at e.AWSURL().

// AWSConfig is an SDK configuration for creds in region that makes one
// attempt per call (an emulator answer is never transient).
func AWSConfig(creds aws.Credentials, region string) aws.Config {
	return aws.Config{Region: region, Credentials: credentials.StaticCredentialsProvider{Value: creds}, RetryMaxAttempts: 1}
}

// STSClient is the SDK's STS client for creds in region (GetWebIdentityToken
// wants a regional one), calling e's AWS stand-in through BaseEndpoint.
func STSClient(e *emulator.Emulator, creds aws.Credentials, region string) *awssts.Client {
	return awssts.NewFromConfig(AWSConfig(creds, region), func(o *awssts.Options) { o.BaseEndpoint = aws.String(e.AWSURL()) })
}

// IAMClient is the SDK's IAM client for creds (region us-east-1, as the SDK
// signs IAM), calling e's AWS stand-in through BaseEndpoint.
func IAMClient(e *emulator.Emulator, creds aws.Credentials) *awsiam.Client {
	return awsiam.NewFromConfig(AWSConfig(creds, "us-east-1"), func(o *awsiam.Options) { o.BaseEndpoint = aws.String(e.AWSURL()) })
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+e.PropagationDelay())
	defer cancel()
	jwt, err := WebIdentityJWT(ctx, e, client)
	if err != nil {
		tb.Fatal(err)
	}
	giveUp := time.Now().Add(e.PropagationDelay() + time.Second)
	for {
		pair, err := ExchangeToken(ctx, e, jwt, identity)
		if err == nil {
			return pair.AccessToken
		}
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), emulator.NotYetKnown) || time.Now().After(giveUp) {
			tb.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
