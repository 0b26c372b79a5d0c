// Package token turns AWS credentials into a Chainguard access token.
//
// The caller proves its AWS identity in one of two ways (Config.Trust) and
// exchanges the proof at the Chainguard STS for a short-lived access token
// (chainguard.dev/sdk/sts). No Chainguard secret is involved.
//
//   - [CallerIdentity]: it signs an AWS STS GetCallerIdentity request
//     (chainguard.dev/sdk/auth/aws.GenerateToken, bound to the issuer and
//     the assumable identity) with Config.Credentials.
//   - [WebIdentity]: it asks AWS STS for a JWT (GetWebIdentityToken on the
//     regional endpoint, audience = the Chainguard issuer, ES384, 300 s)
//     with Config.STS and presents that. A cold exchange is these two calls.
//
// [Exchange] performs one exchange (the provisioner mints a fresh token per
// event); [Source] caches the token until shortly before it expires and is
// safe for concurrent use (a workload calling the API on every request).
//
// Every step runs under its own deadline (Config.RPCTimeout): the SDK's gRPC
// clients wait for the connection to become ready, so a call to a service
// that is down would otherwise block forever. An issuer that is not reached,
// does not answer in time or fails on its side is retried (Config.Retry)
// within the caller's deadline; a refusal is not.
//
// A token's expiry is the earlier of the exchange response's expiry and the
// token's own exp claim; the response may omit its expiry, the JWT's exp is
// then the only one.
//
// Errors say which step failed and are classified with [ErrConfig],
// [ErrCredentials], [ErrGenerate], [ErrRefused] and [ErrUnreachable] for
// errors.Is. They name the identity and the issuer, never a token or a secret.
package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	awsauth "chainguard.dev/sdk/auth/aws"
	cgsts "chainguard.dev/sdk/sts"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/internal/rpcerr"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator"
)

// DefaultRPCTimeout bounds each step of an exchange when Config.RPCTimeout is zero.
const DefaultRPCTimeout = 10 * time.Second

// Error classes, for errors.Is.
var (
	// ErrConfig: the Config is unusable (bad URL, identity that is not a UIDP, ...).
	ErrConfig = errors.New("invalid configuration")
	// ErrCredentials: the AWS credentials provider failed or returned no keys.
	ErrCredentials = errors.New("AWS credentials unavailable")
	// ErrGenerate: the AWS proof could not be made: signing the
	// GetCallerIdentity token failed, or AWS STS refused
	// GetWebIdentityToken (the message says which AWS rule refused).
	ErrGenerate = errors.New("AWS token generation failed")
	// ErrRefused: the Chainguard STS answered and said no; the message carries its reason.
	ErrRefused = errors.New("refused")
	// ErrUnreachable: the Chainguard STS (or, for the web-identity trust,
	// AWS STS) was not reached, did not answer within the deadline, or
	// failed on its side (Unavailable, DeadlineExceeded,
	// ResourceExhausted, Internal, ..., or an answer without an access token
	// or without any way to tell when the token expires), after the retries
	// of Config.Retry. Retrying later may succeed.
	ErrUnreachable = errors.New("unreachable")
)

// Config says where to exchange and as whom.
type Config struct {
	// Issuer is the Chainguard STS URL, e.g. https://issuer.enforce.dev
	// (http:// only for a local emulator on 127.0.0.1 or localhost).
	Issuer string
	// APIURL is the Chainguard API URL the token is for (its audience),
	// e.g. https://console-api.enforce.dev.
	APIURL string
	// Identity is the UIDP of the assumable identity to act as.
	Identity string
	// Trust is how the caller proves its AWS principal; "" means
	// CallerIdentity.
	Trust Trust
	// Credentials supplies the AWS credentials that prove the caller's AWS
	// principal (e.g. the Lambda function's role credentials). Required
	// for CallerIdentity.
	Credentials aws.CredentialsProvider
	// STS asks AWS for web identity tokens, e.g. sts.NewFromConfig of an
	// aws.Config loaded with config.LoadDefaultConfig (its region comes
	// from AWS_REGION, which Lambda sets). Required for WebIdentity.
	STS WebIdentityTokenAPI
	// RPCTimeout bounds each step (credentials, signing, and each exchange
	// attempt); zero means DefaultRPCTimeout.
	RPCTimeout time.Duration
	// Retry is the schedule on which an unreachable issuer is retried; the
	// zero value means the defaults (DefaultMaxAttempts and so on).
	Retry RetryPolicy
}

// Token is a Chainguard access token and the time it expires.
type Token struct {
	AccessToken string
	Expiry      time.Time
}

// String hides the token so that logging a Token never leaks it.
func (t Token) String() string {
	return fmt.Sprintf("token.Token{AccessToken: <redacted>, Expiry: %s}", t.Expiry.Format(time.RFC3339))
}

// GoString hides the token from %#v as well.
func (t Token) GoString() string { return t.String() }

// Validate reports the first problem with c. Errors wrap ErrConfig (and
// locator.ErrInvalid, which is validate.ErrInvalid, for a bad value).
func (c Config) Validate() error {
	for _, err := range []error{
		locator.ServiceURL("issuer URL", c.Issuer),
		locator.ServiceURL("API URL", c.APIURL),
		locator.UIDP("identity", c.Identity),
	} {
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	trust, err := ParseTrust(string(c.Trust))
	if err != nil {
		return err
	}
	switch {
	case trust == CallerIdentity && c.Credentials == nil:
		return fmt.Errorf("%w: no AWS credentials provider: pass e.g. the Credentials of an aws.Config loaded with config.LoadDefaultConfig", ErrConfig)
	case trust == WebIdentity && c.STS == nil:
		return fmt.Errorf("%w: the web-identity trust needs an AWS STS client: pass e.g. sts.NewFromConfig of an aws.Config loaded with config.LoadDefaultConfig (with a region: the STS global endpoint does not serve GetWebIdentityToken)", ErrConfig)
	case trust == WebIdentity:
		if c, ok := c.STS.(*sts.Client); ok && c.Options().Region == "" {
			return fmt.Errorf("%w: the AWS STS client has no region: GetWebIdentityToken is served only by regional endpoints; set AWS_REGION (Lambda sets it) or the client's Region", ErrConfig)
		}
	}
	if c.RPCTimeout < 0 {
		return fmt.Errorf("%w: RPC timeout %s is negative: use a positive duration such as 10s, or zero for the default %s", ErrConfig, c.RPCTimeout, DefaultRPCTimeout)
	}
	return c.Retry.validate()
}

func (c Config) timeout() time.Duration {
	if c.RPCTimeout == 0 {
		return DefaultRPCTimeout
	}
	return c.RPCTimeout
}

// Exchange proves the AWS principal of cfg.Credentials to the Chainguard STS
// and returns an access token for cfg.Identity. It does not cache: see
// [Source] for that. Each step and each exchange attempt is bounded by
// cfg.RPCTimeout (and by ctx); an unreachable issuer is retried on the
// schedule of cfg.Retry, never waiting past ctx's deadline. A refusal is
// returned at once (ErrRefused), and so is the caller's giving up: its
// cancellation (context.Canceled) or its deadline (ErrUnreachable, saying
// the caller's deadline passed) ends the retries.
func Exchange(ctx context.Context, cfg Config) (Token, error) {
	if err := cfg.Validate(); err != nil {
		return Token{}, err
	}
	return exchange(ctx, cfg)
}

// exchange is Exchange without validation (Source validates once).
func exchange(ctx context.Context, cfg Config) (Token, error) {
	timeout := cfg.timeout()
	who := fmt.Sprintf("for identity %s at %s", cfg.Identity, cfg.Issuer)
	step := "exchange AWS token " + who

	prove, err := prover(ctx, cfg, timeout, who)
	if err != nil {
		return Token{}, err
	}
	client := cgsts.New(cfg.Issuer, cfg.APIURL, cgsts.WithIdentity(cfg.Identity))
	var (
		attempts    int
		genErr      error // the AWS proof failed: final, and not the issuer's fault
		lastProof   string
		callerBound bool // the last attempt's deadline was the caller's
	)
	op := func() (cgsts.TokenPair, error) {
		attempts++
		awsToken, err := prove()
		if err != nil {
			genErr = err
			return cgsts.TokenPair{}, backoff.Permanent(err)
		}
		lastProof = awsToken
		actx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		callerBound = rpcerr.CallerDeadlineFirst(ctx, actx)
		pair, err := client.Exchange(actx, awsToken)
		if err == nil {
			return pair, nil
		}
		switch {
		case !rpcerr.Transient(err, callerBound):
			return pair, backoff.Permanent(err)
		case ctx.Err() != nil:
			// The caller gave up: that, not this transient failure, ends
			// the retries.
			return pair, backoff.Permanent(context.Cause(ctx))
		}
		return pair, err
	}
	retry := cfg.Retry.withDefaults()
	sched := newSchedule(ctx, retry)
	pair, err := backoff.Retry(ctx, op, backoff.WithBackOff(sched),
		backoff.WithMaxTries(uint(retry.MaxAttempts)), backoff.WithMaxElapsedTime(0))
	switch {
	case genErr != nil:
		return Token{}, fmt.Errorf("generate AWS token %s: %w: %w", who, ErrGenerate, genErr)
	case err != nil:
		// Retry returns the last attempt's error, or the context's cause
		// when the caller gave up during a wait: once ctx is done, a
		// deadline is the caller's.
		ce := classify(step, timeout, callerBound || ctx.Err() != nil, err)
		if cfg.Trust == WebIdentity && errors.Is(ce, ErrRefused) {
			ce.msg += presented(lastProof, err)
		}
		ce.note(attempts, sched.pastDeadline)
		return Token{}, ce
	case pair.AccessToken == "":
		return Token{}, fmt.Errorf("%s: %w: the issuer answered without an access token", step, ErrUnreachable)
	}
	expiry, err := expiryOf(pair.AccessToken, pair.Expiry)
	if err != nil {
		return Token{}, fmt.Errorf("%s: %w: the issuer answered with a token whose expiry cannot be determined: %w", step, ErrUnreachable, err)
	}
	return Token{AccessToken: pair.AccessToken, Expiry: expiry}, nil
}

// prover returns what makes the AWS proof of each exchange attempt.
// CallerIdentity retrieves the credentials once and signs afresh for every
// attempt: the issuer refuses a signature older than 15 minutes, and
// signing costs microseconds. WebIdentity asks AWS STS once and presents
// the same JWT to every attempt: it lives WebIdentityTokenLifetime, far
// longer than the retries, and each extra request is an AWS call.
func prover(ctx context.Context, cfg Config, timeout time.Duration, who string) (func() (string, error), error) {
	if cfg.Trust == WebIdentity {
		jwt, err := webIdentityToken(ctx, cfg, timeout)
		if err != nil {
			class := ErrGenerate
			if awsUnavailable(ctx, err) {
				class = ErrUnreachable
			}
			return nil, fmt.Errorf("get an AWS web identity token %s: %w: %w", who, class, err)
		}
		return func() (string, error) { return jwt, nil }, nil
	}
	creds, err := retrieve(ctx, cfg.Credentials, timeout)
	if err != nil {
		return nil, fmt.Errorf("get AWS credentials %s: %w: %w", who, ErrCredentials, err)
	}
	return func() (string, error) { return generate(ctx, creds, cfg, timeout) }, nil
}

// generate signs the AWS GetCallerIdentity token for cfg under the step
// deadline.
func generate(ctx context.Context, creds aws.Credentials, cfg Config, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return awsauth.GenerateToken(ctx, creds, cfg.Issuer, cfg.Identity)
}

// retrieve gets credentials under the step deadline and checks they carry keys.
func retrieve(ctx context.Context, p aws.CredentialsProvider, timeout time.Duration) (aws.Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	creds, err := p.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	if !creds.HasKeys() {
		return aws.Credentials{}, errors.New("the provider returned no access key ID or secret access key")
	}
	return creds, nil
}

// classify turns an STS exchange error into ErrRefused (the service answered
// no, with its reason) or ErrUnreachable (not reached / no answer in time /
// transient failure). The result matches its class and the cause (errors.Is,
// status.Code) without repeating the cause's text.
func classify(step string, timeout time.Duration, callerDeadline bool, err error) *classifiedError {
	st, isStatus := status.FromError(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || st.Code() == codes.DeadlineExceeded:
		if callerDeadline {
			return causeError(err, ErrUnreachable, "%s: %v: the caller's deadline passed before the issuer answered", step, ErrUnreachable)
		}
		return causeError(err, ErrUnreachable, "%s: %v: no answer within %s: check the issuer URL and that the service is up", step, ErrUnreachable, timeout)
	case errors.Is(err, context.Canceled) || st.Code() == codes.Canceled:
		return causeError(err, context.Canceled, "%s: canceled by the caller", step)
	case !isStatus:
		return causeError(err, ErrUnreachable, "%s: %v: %v", step, ErrUnreachable, err)
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument, codes.NotFound,
		codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange, codes.Unimplemented:
		return causeError(err, ErrRefused, "%s: %v: %s: %s%s", step, ErrRefused, rpcerr.CodeText(st.Code()), st.Message(), refusalHint(st.Code()))
	default:
		return causeError(err, ErrUnreachable, "%s: %v: %s: %s", step, ErrUnreachable, rpcerr.CodeText(st.Code()), st.Message())
	}
}

func refusalHint(c codes.Code) string {
	switch c {
	case codes.PermissionDenied:
		return " (check that the identity's trust names this AWS principal: with the caller-identity trust its account, role, role unique ID and session; with the web-identity trust the account's federation issuer and the role's ARN)"
	case codes.Unauthenticated:
		return " (check the AWS credentials, and that the issuer URL is the one the identity's tokens are exchanged at)"
	case codes.NotFound:
		return " (check the identity UIDP: it must name an existing assumable identity)"
	default:
		return ""
	}
}

// classifiedError has its own message but matches its class and its cause
// with errors.Is / errors.As (so status.Code still sees a gRPC status).
type classifiedError struct {
	msg          string
	class, cause error
}

func causeError(cause, class error, format string, args ...any) *classifiedError {
	return &classifiedError{msg: fmt.Sprintf(format, args...), class: class, cause: cause}
}

// note appends how the retries went: the attempts made when more than one,
// and that retrying stopped because the next wait would pass the caller's
// deadline.
func (e *classifiedError) note(attempts int, pastDeadline bool) {
	var notes []string
	if attempts > 1 {
		notes = append(notes, fmt.Sprintf("after %d attempts", attempts))
	}
	if pastDeadline {
		notes = append(notes, "the next retry would pass the caller's deadline")
	}
	if len(notes) > 0 {
		e.msg += " (" + strings.Join(notes, "; ") + ")"
	}
}

func (e *classifiedError) Error() string   { return e.msg }
func (e *classifiedError) Unwrap() []error { return []error{e.class, e.cause} }
