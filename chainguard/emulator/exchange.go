package emulator

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"chainguard.dev/sdk/auth/aws"
	"chainguard.dev/sdk/proto/capabilities"
	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"chainguard.dev/sdk/uidp"
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

// Exchange trades a token proving who the caller is for a Chainguard token
// of the requested identity with audience = the API URL: a JWT (see
// token.go) that carries the identity's role bindings in effect now,
// restricted to the requested scopes (UIDPs; a binding on a scope or an
// ancestor of it counts, as ExchangeRequest.scopes describes) and
// capabilities (ExchangeRequest.cap). No refresh token is issued. The bearer
// is either
//   - an AWS token (auth/aws.GenerateToken for audience = the issuer URL and
//     identity = the requested identity), verified here and matched against
//     the identity's aws_identity, or
//   - an OIDC token (a JWT such as AWS sts:GetWebIdentityToken issues),
//     verified by discovery of its issuer and matched against the identity's
//     claim_match (exchange_jwt.go).
//
// The two are told apart by their form: auth/aws.GenerateToken encodes its
// token with base64.URLEncoding (auth/aws/generate.go), whose alphabet has no
// '.', and a JWT in compact serialization is base64url parts joined by '.'
// (RFC 7515 §7.1). Everything after verification is shared (exchange).
func (s *stsService) Exchange(ctx context.Context, req *oidc.ExchangeRequest) (*oidc.RawToken, error) {
	e := s.e
	tok, err := bearer(ctx)
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
		return nil, status.Errorf(codes.InvalidArgument, "identity_provider %q is not supported: AWS and OIDC tokens for assumable identities need no identity provider", req.GetIdentityProvider())
	}
	scopes, caps, err := requestedScope(req)
	if err != nil {
		return nil, err
	}

	if strings.Contains(tok, ".") {
		verified, err := e.verifyJWT(ctx, tok)
		if err != nil {
			return nil, err
		}
		return e.exchange(req.GetIdentity(), scopes, caps, e.claimMatchTrust(verified), "oidc_issuer", verified.Issuer, "oidc_subject", verified.Subject)
	}

	logCtx := clog.WithLogger(ctx, clog.NewLogger(e.log))
	var claims *aws.VerifiedClaims
	reason, err := verifyWithReason(logCtx, func(ctx context.Context) error {
		var err error
		claims, err = aws.VerifyToken(ctx, tok, aws.WithIdentity(req.GetIdentity()), aws.WithAudience(sets.New(e.issuerURL)))
		return err
	})
	if err != nil {
		return nil, e.verifyError(err, reason, req.GetIdentity())
	}
	return e.exchange(req.GetIdentity(), scopes, caps, func(id *iam.Identity) error {
		trust := id.GetAwsIdentity()
		if trust == nil {
			return status.Errorf(codes.PermissionDenied, "identity %s is not assumable by AWS principals (it has no aws_identity)", id.GetId())
		}
		if err := matchAWS(trust, claims); err != nil {
			return status.Errorf(codes.PermissionDenied, "AWS principal %s may not assume identity %s: %v", claims.Arn, id.GetId(), err)
		}
		return nil
	}, "aws_arn", claims.Arn)
}

// exchange issues a token of identity to a caller whose bearer has been
// verified, once trusted (which fails with PermissionDenied unless the
// identity's relationship admits the caller) accepts the identity; logAttrs
// name the caller in the log. An identity created less than
// Options.PropagationDelay ago is not yet known to the STS: NotFound, as for
// an identity that does not exist (the Terraform provider's
// waitForRoleBindingPropagation treats a fresh object that cannot be used yet
// as retryable; the emulator makes the identity itself lag too, the stricter
// reading).
func (e *Emulator) exchange(identity string, scopes []string, caps map[capabilities.Capability]bool, trusted func(*iam.Identity) error, logAttrs ...any) (*oidc.RawToken, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	id, ok := e.identities[identity]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "identity %s not found", identity)
	}
	if at := e.visibleAt[id.GetId()]; now.Before(at) {
		return nil, status.Errorf(codes.NotFound, "identity %s %s (created %s ago; it propagates within %s): retry the exchange",
			id.GetId(), NotYetKnown, now.Sub(id.GetCreatedAt().AsTime()).Round(time.Millisecond), e.propagationDelay)
	}
	if err := trusted(id); err != nil {
		return nil, err
	}
	id.LastSeen = timestamppb.New(now)
	raw, t, err := e.issueToken(id.GetId(), now, scopes, caps)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	attrs := append([]any{"identity", id.GetId()}, logAttrs...)
	e.log.Info("token issued", append(attrs, "expiry", t.expiry.UTC().Format(time.RFC3339), "bindings", len(t.grants))...)
	out := &oidc.RawToken{Token: raw}
	if !e.omitExpiry {
		out.Expiry = timestamppb.New(t.expiry)
	}
	return out, nil
}

// NotYetKnown is in the message of the NotFound that Exchange answers for an
// identity created less than Options.PropagationDelay ago.
const NotYetKnown = "is not yet known to the STS"

// requestedScope validates the scopes (ExchangeRequest.scopes and the
// deprecated scope, deduplicated as the proto says) and capabilities of req.
// A scope must be a group UIDP: the proto calls them "group scopes".
func requestedScope(req *oidc.ExchangeRequest) ([]string, map[capabilities.Capability]bool, error) {
	var scopes []string
	for _, sc := range append([]string{req.GetScope()}, req.GetScopes()...) { //nolint:staticcheck // the deprecated field is still sent by the SDK
		if sc == "" || slices.Contains(scopes, sc) {
			continue
		}
		if !uidp.Valid(sc) {
			return nil, nil, status.Errorf(codes.InvalidArgument, "scope %q is not a group UIDP", sc)
		}
		scopes = append(scopes, sc)
	}
	if len(req.GetCap()) == 0 {
		return scopes, nil, nil
	}
	caps := map[capabilities.Capability]bool{}
	for _, name := range req.GetCap() {
		c, err := capabilities.Parse(name) // unknown names parse to UNKNOWN
		if err != nil || c == capabilities.Capability_UNKNOWN {
			return nil, nil, status.Errorf(codes.InvalidArgument, "capability %q is unknown: use a name such as groups.list", name)
		}
		caps[c] = true
	}
	return scopes, caps, nil
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
