package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"chainguard.dev/sdk/auth"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Trust says how the caller proves its AWS identity to the Chainguard STS.
type Trust string

const (
	// CallerIdentity (the default, also for "") signs an AWS STS
	// GetCallerIdentity request with Config.Credentials; the identity's
	// aws_identity trusts the role's session. Chainguard's documentation
	// calls this method "legacy" since 2026-01.
	CallerIdentity Trust = "caller-identity"
	// WebIdentity asks AWS STS for a JWT (sts:GetWebIdentityToken, AWS
	// outbound identity federation) with Config.STS and presents it; the
	// identity's claim_match trusts the account's federation issuer and the
	// role's ARN. The method Chainguard recommends.
	WebIdentity Trust = "web-identity"
)

// Parameters of the GetWebIdentityToken request, as Chainguard's AWS guide
// (aws-identity-oidc) asks for them and the IAM statement that
// stacks.AssumableIdentity.Grant writes allows: the token is for the
// Chainguard issuer (the audience), signed ES384, and lives 300 seconds,
// the API's default and the guide's sts:DurationSeconds bound. It only has
// to outlive the exchange.
const (
	WebIdentitySigningAlgorithm = "ES384"
	WebIdentityTokenLifetime    = 300 * time.Second
)

// WebIdentityTokenAPI is the part of the AWS SDK's STS client
// (*sts.Client of aws-sdk-go-v2/service/sts) the web-identity trust calls.
// The client must have a region: GetWebIdentityToken is not served by the
// STS global endpoint (AWS IAM user guide, "Getting started with outbound
// identity federation"), and the SDK addresses the regional endpoint
// sts.REGION.amazonaws.com by default.
type WebIdentityTokenAPI interface {
	GetWebIdentityToken(ctx context.Context, in *sts.GetWebIdentityTokenInput, optFns ...func(*sts.Options)) (*sts.GetWebIdentityTokenOutput, error)
}

// ParseTrust reads a trust mode as the environment variable CHAINGUARD_TRUST
// spells it: "caller-identity" (or empty) or "web-identity".
func ParseTrust(v string) (Trust, error) {
	switch Trust(v) {
	case "", CallerIdentity:
		return CallerIdentity, nil
	case WebIdentity:
		return WebIdentity, nil
	}
	return "", fmt.Errorf("%w: trust %q is not a trust mode: use %q (a signed GetCallerIdentity request) or %q (AWS outbound identity federation)", ErrConfig, v, CallerIdentity, WebIdentity)
}

// webIdentityToken asks AWS STS for a JWT for the Chainguard issuer under
// the step deadline. Refusals say which AWS rule refused and how to fix it.
func webIdentityToken(ctx context.Context, cfg Config, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := cfg.STS.GetWebIdentityToken(ctx, &sts.GetWebIdentityTokenInput{
		Audience:         []string{cfg.Issuer},
		SigningAlgorithm: aws.String(WebIdentitySigningAlgorithm),
		DurationSeconds:  aws.Int32(int32(WebIdentityTokenLifetime / time.Second)),
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return "", fmt.Errorf("AWS STS did not answer GetWebIdentityToken within %s: check AWS_REGION and that the regional STS endpoint (or AWS_ENDPOINT_URL_STS) is reachable: %w", timeout, err)
	case err != nil:
		return "", awsRefusal(err, cfg.Issuer)
	}
	if out.WebIdentityToken == nil || *out.WebIdentityToken == "" {
		return "", errors.New("AWS STS answered without a web identity token")
	}
	return *out.WebIdentityToken, nil
}

// awsUnavailable reports whether a GetWebIdentityToken failure is AWS's
// side not answering (no answer in time, or a 5xx after the SDK's own
// retries) rather than a refusal: the exchange is ErrUnreachable then, and
// trying again later may succeed.
func awsUnavailable(ctx context.Context, err error) bool {
	var re *smithyhttp.ResponseError
	return errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil ||
		errors.As(err, &re) && re.HTTPStatusCode() >= 500
}

// awsRefusal explains an AWS STS error of GetWebIdentityToken. It keeps the
// SDK error as the cause (errors.As finds the typed exception).
func awsRefusal(err error, audience string) error {
	var disabled *ststypes.OutboundWebIdentityFederationDisabledException
	var api smithy.APIError
	switch {
	case errors.As(err, &disabled):
		return fmt.Errorf("AWS refused: outbound identity federation is not enabled for this AWS account: deploy the provisioner stack with -c trust=webIdentity (it enables it once) or run \"aws iam enable-outbound-web-identity-federation\": %w", err)
	case errors.As(err, &api) && (api.ErrorCode() == "AccessDenied" || api.ErrorCode() == "AccessDeniedException"):
		return fmt.Errorf("AWS refused: this role may not call sts:GetWebIdentityToken for audience %s, algorithm %s and %s: grant it (stacks AssumableIdentity.Grant or ConfigureFunction): %w",
			audience, WebIdentitySigningAlgorithm, WebIdentityTokenLifetime, err)
	}
	return fmt.Errorf("AWS STS GetWebIdentityToken: %w", err)
}

// presented names the issuer and subject a web identity token claims, so
// that a refusal (PermissionDenied, Unauthenticated) can be compared with
// the identity's claim_match; for other errors it says nothing. It reads
// the claims without verifying them (the Chainguard STS verifies) and never
// returns the token.
func presented(jwt string, err error) string {
	if c := status.Code(err); c != codes.PermissionDenied && c != codes.Unauthenticated {
		return ""
	}
	iss, sub, err := auth.ExtractIssuerAndSubject(jwt)
	if err != nil || iss == "" {
		return ""
	}
	return fmt.Sprintf(" (the AWS token presented iss %s and sub %s: the identity's claim_match must name exactly these)", iss, sub)
}
