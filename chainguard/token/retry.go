package token

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Defaults of RetryPolicy: up to 4 attempts, waiting about 200ms, 400ms and
// 800ms between them.
const (
	// DefaultMaxAttempts is how many exchange attempts are made in all when
	// RetryPolicy.MaxAttempts is zero.
	DefaultMaxAttempts = 4
	// DefaultInitialBackoff is the wait before the second attempt when
	// RetryPolicy.InitialBackoff is zero.
	DefaultInitialBackoff = 200 * time.Millisecond
	// DefaultMaxBackoff caps one wait when RetryPolicy.MaxBackoff is zero.
	DefaultMaxBackoff = 2 * time.Second
)

// retryJitter is the backoff's randomization factor: each wait is drawn
// uniformly from ±20% around its nominal value, so that callers failing
// together (an issuer restarting) do not retry in step.
const retryJitter = 0.2

// retryMultiplier is how much each wait grows over the one before (up to
// RetryPolicy.MaxBackoff).
const retryMultiplier = 2

// RetryPolicy is the schedule on which Exchange retries an issuer that was
// not reached, did not answer within one attempt's deadline
// (Config.RPCTimeout), or failed on its side (gRPC Unavailable,
// DeadlineExceeded, Unknown, Internal, ResourceExhausted, Aborted). Refusals
// (PermissionDenied, Unauthenticated, NotFound, InvalidArgument, ...) are
// never retried: the caller decides that. No wait passes the caller's
// deadline. Zero fields take the defaults.
//
// The SDK's STS client also retries Unavailable by itself (3 RPCs about
// 100-200ms apart) within each attempt.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts, the first included (default
	// DefaultMaxAttempts); 1 disables retries.
	MaxAttempts int
	// InitialBackoff is the wait before the second attempt (default
	// DefaultInitialBackoff); each further wait doubles, up to MaxBackoff.
	// Every wait varies by up to ±20%.
	InitialBackoff time.Duration
	// MaxBackoff caps one wait (default DefaultMaxBackoff; never less than
	// InitialBackoff).
	MaxBackoff time.Duration
}

// validate reports a negative field.
func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 0:
		return fmt.Errorf("%w: retry MaxAttempts %d is negative: use 1 for no retries, or zero for the default %d", ErrConfig, p.MaxAttempts, DefaultMaxAttempts)
	case p.InitialBackoff < 0:
		return fmt.Errorf("%w: retry InitialBackoff %s is negative: use a positive duration such as 200ms, or zero for the default %s", ErrConfig, p.InitialBackoff, DefaultInitialBackoff)
	case p.MaxBackoff < 0:
		return fmt.Errorf("%w: retry MaxBackoff %s is negative: use a positive duration such as 2s, or zero for the default %s", ErrConfig, p.MaxBackoff, DefaultMaxBackoff)
	}
	return nil
}

// withDefaults fills the zero fields.
func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = DefaultInitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	p.MaxBackoff = max(p.MaxBackoff, p.InitialBackoff)
	return p
}

// schedule is the backoff.BackOff of one exchange: the policy's exponential
// waits, stopping when the next wait would end at or after the caller's
// deadline (an attempt after it could not run).
type schedule struct {
	ctx          context.Context
	curve        backoff.ExponentialBackOff
	pastDeadline bool // stopped because the next wait would pass ctx's deadline
}

func newSchedule(ctx context.Context, p RetryPolicy) *schedule {
	return &schedule{ctx: ctx, curve: backoff.ExponentialBackOff{
		InitialInterval:     p.InitialBackoff,
		RandomizationFactor: retryJitter,
		Multiplier:          retryMultiplier,
		MaxInterval:         p.MaxBackoff,
	}}
}

// Reset implements backoff.BackOff.
func (s *schedule) Reset() { s.curve.Reset() }

// NextBackOff implements backoff.BackOff.
func (s *schedule) NextBackOff() time.Duration {
	next := s.curve.NextBackOff()
	if deadline, ok := s.ctx.Deadline(); ok && !time.Now().Add(next).Before(deadline) {
		s.pastDeadline = true
		return backoff.Stop
	}
	return next
}
