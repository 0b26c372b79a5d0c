package emulator

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"chainguard.dev/sdk/auth/aws"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"github.com/chainguard-dev/clog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/util/sets"
)

// stsService serves chainguard.platform.oidc.SecurityTokenService.
// ExchangeRefreshToken is Unimplemented: Exchange issues no refresh tokens.
type stsService struct {
	oidc.UnimplementedSecurityTokenServiceServer
	e *Emulator
}

// Exchange trades an AWS token (auth/aws.GenerateToken for audience = the
// issuer URL and identity = the requested identity) for a Chainguard token
// of that identity with audience = the API URL. Requested scopes and
// capabilities are ignored (the token carries the identity; its role
// bindings are evaluated on every call) and no refresh token is issued.
func (s *stsService) Exchange(ctx context.Context, req *oidc.ExchangeRequest) (*oidc.RawToken, error) {
	e := s.e
	awsTok, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkUIDP("identity", req.GetIdentity()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s (set it with sts.WithIdentity)", status.Convert(err).Message())
	}
	if len(req.GetAud()) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "no audience requested: request audience %s", e.apiURL)
	}
	for _, a := range req.GetAud() {
		if a != e.apiURL {
			return nil, status.Errorf(codes.InvalidArgument, "audience %q is not served by this issuer: request audience %s (the API URL)", a, e.apiURL)
		}
	}
	if req.GetIdentityProvider() != "" {
		return nil, status.Errorf(codes.InvalidArgument, "identity_provider %q is not supported: AWS tokens need no identity provider", req.GetIdentityProvider())
	}

	logCtx := clog.WithLogger(ctx, clog.NewLogger(e.log))
	var claims *aws.VerifiedClaims
	reason, err := verifyWithReason(logCtx, func(ctx context.Context) error {
		var err error
		claims, err = aws.VerifyToken(ctx, awsTok, aws.WithIdentity(req.GetIdentity()), aws.WithAudience(sets.New(e.issuerURL)))
		return err
	})
	if err != nil {
		return nil, e.verifyError(err, reason, req.GetIdentity())
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.identities[req.GetIdentity()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", req.GetIdentity())
	}
	trust := id.GetAwsIdentity()
	if trust == nil {
		return nil, status.Errorf(codes.PermissionDenied, "identity %s is not assumable by AWS principals (it has no aws_identity)", id.GetId())
	}
	if err := matchAWS(trust, claims); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "AWS principal %s may not assume identity %s: %v", claims.Arn, id.GetId(), err)
	}
	now := time.Now()
	id.LastSeen = timestamppb.New(now)
	tok := randomString(43, tokenAlphabet)
	expiry := now.Add(e.tokenTTL)
	e.tokens[tok] = token{identity: id.GetId(), expiry: expiry}
	e.log.Info("token issued", "identity", id.GetId(), "aws_arn", claims.Arn, "expiry", expiry.UTC().Format(time.RFC3339))
	return &oidc.RawToken{Token: tok, Expiry: timestamppb.New(expiry)}, nil
}

// verifyError maps an auth/aws.VerifyToken error to a status.
func (e *Emulator) verifyError(err error, reason, identity string) error {
	switch {
	case errors.Is(err, aws.ErrInvalidEncoding), errors.Is(err, aws.ErrInvalidRequest):
		return status.Errorf(codes.InvalidArgument, "the bearer token is not an AWS token (%v): generate it with auth/aws.GenerateToken", err)
	case errors.Is(err, aws.ErrInvalidAudience):
		return status.Errorf(codes.Unauthenticated, "the AWS token was generated for another audience (%v): generate it for audience %s", err, e.issuerURL)
	case errors.Is(err, aws.ErrInvalidIdentity):
		return status.Errorf(codes.Unauthenticated, "the AWS token was generated for another identity than %s (%v)", identity, err)
	case errors.Is(err, aws.ErrTokenExpired):
		return status.Errorf(codes.Unauthenticated, "the AWS token is older than 15 minutes (%v): generate a fresh one", err)
	case errors.Is(err, aws.ErrTokenFutureDated):
		return status.Errorf(codes.Unauthenticated, "the AWS token is dated in the future (%v): check the clock", err)
	case errors.Is(err, aws.ErrUnsignedBindingHeaders):
		return status.Errorf(codes.Unauthenticated, "the AWS token does not sign its audience and identity headers (%v)", err)
	case errors.Is(err, aws.ErrTokenRejected):
		if reason == "" {
			reason = "no reason given"
		}
		return status.Errorf(codes.Unauthenticated, "AWS STS rejected the AWS token: %s", reason)
	case errors.Is(err, aws.ErrInvalidVerificationConfiguration):
		return status.Errorf(codes.Internal, "emulator: %v", err)
	default:
		return status.Errorf(codes.Unavailable, "verify the AWS token with AWS STS: %v", err)
	}
}

// matchAWS matches verified AWS claims against an identity's aws_identity as
// the service does: account equal; arn equal or arn_pattern matching; user_id
// equal or user_id_pattern matching. Patterns must match the whole value.
func matchAWS(t *iam.Identity_AWSIdentity, c *aws.VerifiedClaims) error {
	if c.Account != t.GetAwsAccount() {
		return fmt.Errorf("account %s is not the trusted account %s", c.Account, t.GetAwsAccount())
	}
	if err := matchOne("ARN", "arn_pattern", c.Arn, t.GetArn(), t.GetArnPattern()); err != nil {
		return err
	}
	return matchOne("user ID", "user_id_pattern", c.UserID, t.GetUserId(), t.GetUserIdPattern())
}

// matchOne checks one claim (what: "ARN", "user ID") against the trusted
// exact value or, when that is empty, the trusted pattern (its field name in
// the identity is patternField).
func matchOne(what, patternField, value, exact, pattern string) error {
	switch {
	case exact != "":
		if value != exact {
			return fmt.Errorf("%s %s is not the trusted %s %s", what, value, what, exact)
		}
	case pattern != "":
		if ok, err := patternMatch(pattern, value); err != nil || !ok {
			return fmt.Errorf("%s %s does not match the trusted %s %s", what, value, patternField, pattern)
		}
	default:
		return fmt.Errorf("the identity trusts no %s", what)
	}
	return nil
}

// patternMatch reports whether pattern matches s with Go regexp semantics: a
// match anywhere in s counts, and anchoring is the pattern's own business.
// The service's documented patterns spell out ^ and $ (e.g.
// "^AROA(.*):my-function$"), which they would not need if it anchored them;
// emulating the looser reading keeps an unanchored trust from looking narrow
// here and being broad in production.
func patternMatch(pattern, s string) (bool, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return false, fmt.Errorf("compile %q: %w", pattern, err)
	}
	return re.MatchString(s), nil
}
