// Package emulatortest holds test helpers around the Chainguard emulator:
// starting one for a test, the standard seeded layout, exchanging AWS
// credentials for a token through the real SDK (waiting out the emulator's
// propagation delay in Token), reading a token's expiry whether or not the
// exchange response carries it, signing AWS tokens at a chosen time (for
// stale-token tests), dialing the SDK's IAM v2 clients (IAMv2), and, in
// webidentity.go, the web-identity trust: the real aws-sdk-go-v2 STS and IAM
// clients pointed at the emulator's AWS stand-in (STSClient, IAMClient) and
// the exchange of a web identity token (WebIdentityJWT,
// ExchangeWebIdentity, WebIdentityToken).
package emulatortest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"chainguard.dev/sdk/auth"
	cgaws "chainguard.dev/sdk/auth/aws"
	clientsv2 "chainguard.dev/sdk/proto/chainguard/platform/clients/v2"
	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"chainguard.dev/sdk/sts"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
)

// Start starts an emulator closed when tb ends.
func Start(tb testing.TB, opts emulator.Options) *emulator.Emulator {
	tb.Helper()
	e, err := emulator.Start(opts)
	if err != nil {
		tb.Fatalf("start the Chainguard emulator: %v", err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return e
}

// Env is an emulator seeded with emulator.SeedStandard.
type Env struct {
	*emulator.Emulator
	emulator.Standard
}

// NewEnv starts an emulator (closed when tb ends) seeded with the standard
// layout (default StandardOptions).
func NewEnv(tb testing.TB, opts emulator.Options) *Env {
	tb.Helper()
	e := Start(tb, opts)
	return &Env{Emulator: e, Standard: e.SeedStandard(emulator.StandardOptions{})}
}

// IAMv2 returns the SDK's IAM v2 clients (iamv2.NewClientsFromConnection)
// for e's API, authenticated with token, over a connection dialed as the
// SDK's iam v1 NewClients and its clients/v2 NewClients dial
// (proto/platform/iam/v1/clients.go, proto/chainguard/platform/clients/v2/
// clients.go: target and options from go-grpc-kit's GRPCOptions, per-RPC
// credentials from auth.NewFromToken). The connection is closed when tb
// ends.
func IAMv2(tb testing.TB, e *emulator.Emulator, token string) iamv2.Clients {
	tb.Helper()
	ctx := context.Background()
	c, err := clientsv2.NewClients(ctx, e.APIURL(), "emulatortest", auth.NewFromToken(ctx, token, false))
	if err != nil {
		tb.Fatalf("dial the emulator API: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c.IAM()
}

// Exchange generates an AWS token for identity with creds (as
// auth/aws.GenerateToken does) and exchanges it at e's issuer through the
// SDK's STS client, requesting e's API URL as audience.
func Exchange(ctx context.Context, e *emulator.Emulator, creds aws.Credentials, identity string) (sts.TokenPair, error) {
	tok, err := cgaws.GenerateToken(ctx, creds, e.IssuerURL(), identity)
	if err != nil {
		return sts.TokenPair{}, fmt.Errorf("generate AWS token: %w", err)
	}
	return ExchangeToken(ctx, e, tok, identity)
}

// ExchangeToken exchanges an already generated AWS token for identity.
func ExchangeToken(ctx context.Context, e *emulator.Emulator, awsToken, identity string) (sts.TokenPair, error) {
	pair, err := sts.New(e.IssuerURL(), e.APIURL(), sts.WithIdentity(identity)).Exchange(ctx, awsToken)
	if err != nil {
		return sts.TokenPair{}, fmt.Errorf("exchange AWS token for identity %s: %w", identity, err)
	}
	return pair, nil
}

// Token exchanges creds for a token of identity and fails tb on error. Like
// a client that knows a new identity takes time to reach the STS, it retries
// the NotFound the emulator answers for an identity that has not propagated
// yet (emulator.NotYetKnown), for at most the emulator's propagation delay
// plus a second; every other error fails tb at once.
func Token(tb testing.TB, e *emulator.Emulator, creds aws.Credentials, identity string) string {
	tb.Helper()
	return untilPropagated(tb, e, func(ctx context.Context) (sts.TokenPair, error) { return Exchange(ctx, e, creds, identity) })
}

// untilPropagated calls exchange until it returns a token, retrying the
// NotFound of an identity that has not propagated yet for at most e's
// propagation delay plus a second, and returns the access token; any other
// error fails tb at once.
func untilPropagated(tb testing.TB, e *emulator.Emulator, exchange func(context.Context) (sts.TokenPair, error)) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+e.PropagationDelay())
	defer cancel()
	giveUp := time.Now().Add(e.PropagationDelay() + time.Second)
	for {
		pair, err := exchange(ctx)
		if err == nil {
			return pair.AccessToken
		}
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), emulator.NotYetKnown) || time.Now().After(giveUp) {
			tb.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Expiry returns the expiry of an exchanged token: the response's, or, when
// the emulator leaves it unset (Options.OmitExpiry), the token's own exp
// claim, read as clients read it (auth.ExtractExpiry).
func Expiry(pair sts.TokenPair) (time.Time, error) {
	if !pair.Expiry.IsZero() {
		return pair.Expiry, nil
	}
	exp, err := auth.ExtractExpiry(pair.AccessToken)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the exp claim of the token: %w", err)
	}
	return exp, nil
}

// GenerateTokenAt builds the same token as auth/aws.GenerateToken, but signed
// at time at instead of now (auth/aws offers no clock option).
func GenerateTokenAt(ctx context.Context, creds aws.Credentials, audience, identity string, at time.Time) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", nil)
	if err != nil {
		return "", fmt.Errorf("build GetCallerIdentity request: %w", err)
	}
	req.Header.Add("Accept", "application/json")
	req.Header.Add("Chainguard-Audience", audience)
	req.Header.Add("Chainguard-Identity", identity)
	const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySHA256, "sts", "us-east-1", at); err != nil {
		return "", fmt.Errorf("sign GetCallerIdentity request: %w", err)
	}
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		return "", fmt.Errorf("serialize GetCallerIdentity request: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b.Bytes()), nil
}
