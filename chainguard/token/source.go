package token

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultRefreshMargin is how long before its expiry a cached token is replaced.
const DefaultRefreshMargin = 5 * time.Minute

// retryAfterFailure is how long a Source keeps serving its still-valid cached
// token after a failed refresh before it tries again, so that a service that
// hangs does not cost every caller a full timeout.
const retryAfterFailure = 30 * time.Second

// Option configures a Source.
type Option func(*Source)

// WithRefreshMargin replaces the cached token once it is within d of its
// expiry (default DefaultRefreshMargin).
func WithRefreshMargin(d time.Duration) Option {
	return func(s *Source) { s.margin = d }
}

// WithClock replaces time.Now (for tests).
func WithClock(now func() time.Time) Option {
	return func(s *Source) { s.now = now }
}

// WithLogger logs a warning (never the token) when a refresh fails and the
// still-valid cached token is served instead. Without it that is silent.
func WithLogger(l *slog.Logger) Option {
	return func(s *Source) { s.logger = l }
}

// Source hands out a cached Chainguard access token, exchanging a new one
// when the cached one is within the refresh margin of its expiry. It is safe
// for concurrent use: at most one exchange is in flight and concurrent
// callers share its result. If a refresh fails while the cached token is still
// valid, the cached token is returned (and the failure logged, see WithLogger);
// the next attempt is made 30 seconds later. Such a refresh makes a single
// exchange attempt, so that callers waiting for it are held for at most one
// Config.RPCTimeout; without a valid token the exchange is retried on the
// schedule of Config.Retry.
type Source struct {
	cfg    Config
	margin time.Duration
	now    func() time.Time
	logger *slog.Logger

	cur    atomic.Pointer[cached] // nil until the first successful exchange
	flight singleflight.Group
}

// cached is an immutable snapshot: a token and when to replace it.
type cached struct {
	tok       Token
	refreshAt time.Time
}

// NewSource validates cfg and returns a Source; no exchange happens until the
// first call to Token.
func NewSource(cfg Config, opts ...Option) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, margin: DefaultRefreshMargin, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.margin < 0 {
		return nil, fmt.Errorf("%w: refresh margin %s is negative: use zero or a positive duration such as 5m", ErrConfig, s.margin)
	}
	if s.now == nil {
		return nil, fmt.Errorf("%w: WithClock(nil): pass a function such as time.Now", ErrConfig)
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Token returns a valid access token, exchanging a new one if the cached one
// is missing or within the refresh margin of its expiry. ctx bounds how long
// this caller waits; the exchange itself is bounded by Config.RPCTimeout per
// step and attempt, and by Config.Retry's attempts, and is not abandoned when
// one waiting caller gives up.
func (s *Source) Token(ctx context.Context) (string, error) {
	if c := s.cur.Load(); c != nil && s.fresh(c, s.now()) {
		return c.tok.AccessToken, nil
	}
	ch := s.flight.DoChan("", func() (any, error) {
		return s.refresh(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", fmt.Errorf("wait for a Chainguard token for identity %s at %s: %w", s.cfg.Identity, s.cfg.Issuer, context.Cause(ctx))
	}
}

func (s *Source) fresh(c *cached, now time.Time) bool {
	return now.Before(c.refreshAt) && now.Before(c.tok.Expiry)
}

// refresh runs inside the single flight.
func (s *Source) refresh(ctx context.Context) (string, error) {
	old := s.cur.Load()
	// A flight that finished just before this one started may have refreshed already.
	if old != nil && s.fresh(old, s.now()) {
		return old.tok.AccessToken, nil
	}
	cfg := s.cfg
	if old != nil && s.now().Before(old.tok.Expiry) {
		// The cached token can be served if this attempt fails, and the
		// next one is only 30 seconds away: do not retry now.
		cfg.Retry.MaxAttempts = 1
	}
	tok, err := exchange(ctx, cfg)
	now := s.now()
	if err != nil {
		if old == nil || !now.Before(old.tok.Expiry) {
			return "", err
		}
		retry := now.Add(retryAfterFailure)
		s.cur.Store(&cached{tok: old.tok, refreshAt: retry})
		s.logger.WarnContext(ctx, "Chainguard token refresh failed; serving the cached token until it expires",
			"identity", s.cfg.Identity, "issuer", s.cfg.Issuer,
			"expiry", old.tok.Expiry, "next_attempt", retry, "error", err)
		return old.tok.AccessToken, nil
	}
	s.cur.Store(&cached{tok: tok, refreshAt: tok.Expiry.Add(-s.margin)})
	return tok.AccessToken, nil
}
