package token_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chainguard.dev/sdk/auth"
	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
)

const exchangeMethod = oidc.SecurityTokenService_Exchange_FullMethodName

var (
	workload = emulator.AWSPrincipal{
		Account: "111122223333",
		ARN:     "arn:aws:sts::111122223333:assumed-role/aws-auth/my-fn",
		UserID:  "AROAEXAMPLEEXAMPLE12:my-fn",
	}
	intruder = emulator.AWSPrincipal{
		Account: "111122223333",
		ARN:     "arn:aws:sts::111122223333:assumed-role/other-role/my-fn",
		UserID:  "AROAEXAMPLEEXAMPLE99:my-fn",
	}
)

// fixture is a running emulator with an identity that trusts workload.
type fixture struct {
	e        *emulator.Emulator
	identity string
	creds    aws.Credentials // signs as workload
}

func start(t testing.TB, opts emulator.Options) fixture {
	t.Helper()
	e, err := emulator.Start(opts)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	root := e.SeedGroup("", "acme", "test root")
	group := e.SeedGroup(root, "example-group", "test group")
	id := e.SeedIdentity(group, "aws-auth-identity", "trusts the workload role", workload.ExactTrust(), map[string][]string{group: {"viewer"}})
	return fixture{e: e, identity: id, creds: e.RegisterAWSPrincipal(workload)}
}

func (f fixture) config(creds aws.Credentials) token.Config {
	return token.Config{
		Issuer:      f.e.IssuerURL(),
		APIURL:      f.e.APIURL(),
		Identity:    f.identity,
		Credentials: credentials.StaticCredentialsProvider{Value: creds},
		RPCTimeout:  2 * time.Second,
		Retry:       fastRetry,
	}
}

// fastRetry keeps the default number of attempts with short waits.
var fastRetry = token.RetryPolicy{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}

func TestExchangeEmulator(t *testing.T) {
	f := start(t, emulator.Options{})
	intruderCreds := f.e.RegisterAWSPrincipal(intruder)

	tests := []struct {
		name    string
		cfg     func() token.Config
		wantIs  error
		wantErr []string
	}{
		{
			name: "happy path",
			cfg:  func() token.Config { return f.config(f.creds) },
		},
		{
			name:    "principal not trusted",
			cfg:     func() token.Config { return f.config(intruderCreds) },
			wantIs:  token.ErrRefused,
			wantErr: []string{"exchange AWS token for identity " + f.identity + " at " + f.e.IssuerURL() + ": refused: "},
		},
		{
			name: "wrong secret",
			cfg: func() token.Config {
				bad := f.creds
				bad.SecretAccessKey = strings.Repeat("x", 40)
				return f.config(bad)
			},
			wantIs:  token.ErrRefused,
			wantErr: []string{"refused: "},
		},
		{
			name: "identity does not exist",
			cfg: func() token.Config {
				c := f.config(f.creds)
				c.Identity = c.Identity[:len(c.Identity)-16] + "0123456789abcdef"
				return c
			},
			wantIs:  token.ErrRefused,
			wantErr: []string{"refused: "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg()
			tok, err := token.Exchange(t.Context(), cfg)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Exchange() error = %v", err)
				}
				if tok.AccessToken == "" || time.Until(tok.Expiry) < 50*time.Minute {
					t.Fatalf("Exchange() = %v, want a token valid for about an hour", tok)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("Exchange() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
				}
			}
			secret := cfg.Credentials.(credentials.StaticCredentialsProvider).Value.SecretAccessKey
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the AWS secret: %v", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

// TestExchangeRetries: an issuer that is not reached, does not answer in
// time or fails on its side is retried within the caller's deadline; a
// refusal and the caller's own deadline are final. The SDK's STS client
// itself makes up to 3 RPCs per attempt on Unavailable.
func TestExchangeRetries(t *testing.T) {
	f := start(t, emulator.Options{})
	type retryCase struct {
		name       string
		fault      func()
		cfg        func(*token.Config)
		ctxTimeout time.Duration // the caller's deadline; zero: none
		wantCalls  int           // Exchange RPCs the emulator received
		wantIs     []error       // nil: success
		wantErr    []string
		wantNot    []string
		wantEarly  bool // returns while the caller's context is still live
	}
	tests := []retryCase{
		{
			name:      "unavailable three times (more than the SDK retries): retried",
			fault:     func() { f.e.FailNext(exchangeMethod, 3, codes.Unavailable) },
			wantCalls: 4,
		},
		{name: "unknown once", fault: func() { f.e.FailNext(exchangeMethod, 1, codes.Unknown) }, wantCalls: 2},
		{name: "internal once", fault: func() { f.e.FailNext(exchangeMethod, 1, codes.Internal) }, wantCalls: 2},
		{name: "resource exhausted once", fault: func() { f.e.FailNext(exchangeMethod, 1, codes.ResourceExhausted) }, wantCalls: 2},
		{name: "aborted once", fault: func() { f.e.FailNext(exchangeMethod, 1, codes.Aborted) }, wantCalls: 2},
		{name: "internal three times", fault: func() { f.e.FailNext(exchangeMethod, 3, codes.Internal) }, wantCalls: 4},
		{
			name:      "hangs once, then answers within the caller's deadline",
			fault:     func() { f.e.HangNext(exchangeMethod, 1) },
			cfg:       func(c *token.Config) { c.RPCTimeout = 300 * time.Millisecond },
			wantCalls: 2,
		},
		{
			name:      "unavailable on every attempt",
			fault:     func() { f.e.FailNext(exchangeMethod, 1000, codes.Unavailable) },
			cfg:       func(c *token.Config) { c.Retry.MaxAttempts = 2 },
			wantCalls: 6,
			wantIs:    []error{token.ErrUnreachable},
			wantErr:   []string{"exchange AWS token for identity " + f.identity, "unreachable: unavailable", "(after 2 attempts)"},
		},
		{
			name:      "internal on every attempt",
			fault:     func() { f.e.FailNext(exchangeMethod, 1000, codes.Internal) },
			wantCalls: token.DefaultMaxAttempts,
			wantIs:    []error{token.ErrUnreachable},
			wantErr:   []string{"unreachable: internal: emulator: injected failure", "(after 4 attempts)"},
		},
		{
			name:  "hangs on every attempt",
			fault: func() { f.e.HangNext(exchangeMethod, 1000) },
			cfg: func(c *token.Config) {
				c.RPCTimeout = 200 * time.Millisecond
				c.Retry.MaxAttempts = 3
			},
			wantCalls: 3,
			wantIs:    []error{token.ErrUnreachable},
			wantErr:   []string{"at " + f.e.IssuerURL() + ": unreachable: no answer within 200ms", "(after 3 attempts)"},
		},
		{
			name:       "hang until the caller's deadline: not retried",
			fault:      func() { f.e.HangNext(exchangeMethod, 1000) },
			ctxTimeout: 300 * time.Millisecond,
			wantCalls:  1,
			wantIs:     []error{token.ErrUnreachable},
			wantErr:    []string{"unreachable: the caller's deadline passed before the issuer answered"},
			wantNot:    []string{"attempts"},
		},
		{
			name:       "the next wait would pass the caller's deadline: not waited",
			fault:      func() { f.e.FailNext(exchangeMethod, 1000, codes.Internal) },
			cfg:        func(c *token.Config) { c.Retry = token.RetryPolicy{InitialBackoff: time.Hour} },
			ctxTimeout: time.Minute,
			wantCalls:  1,
			wantIs:     []error{token.ErrUnreachable},
			wantErr:    []string{"unreachable: internal: ", "(the next retry would pass the caller's deadline)"},
			wantEarly:  true,
		},
		{
			name:  "the second wait would pass the caller's deadline",
			fault: func() { f.e.FailNext(exchangeMethod, 1000, codes.Internal) },
			// Waits of 400-600ms, then 800-1200ms: the first ends before
			// 900ms, the second after it.
			cfg: func(c *token.Config) {
				c.Retry = token.RetryPolicy{InitialBackoff: 500 * time.Millisecond, MaxBackoff: time.Hour}
			},
			ctxTimeout: 900 * time.Millisecond,
			wantCalls:  2,
			wantIs:     []error{token.ErrUnreachable},
			wantErr:    []string{"(after 2 attempts; the next retry would pass the caller's deadline)"},
			wantEarly:  true,
		},
	}
	for _, code := range []codes.Code{codes.PermissionDenied, codes.Unauthenticated, codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition} {
		tests = append(tests, retryCase{
			name:      code.String() + " once: refused, not retried",
			fault:     func() { f.e.FailNext(exchangeMethod, 1, code) },
			wantCalls: 1,
			wantIs:    []error{token.ErrRefused},
			wantErr:   []string{"exchange AWS token for identity " + f.identity + " at " + f.e.IssuerURL() + ": refused: "},
			wantNot:   []string{"attempts"},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(f.e.ClearFaults)
			cfg := f.config(f.creds)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			ctx := t.Context()
			if tt.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxTimeout)
				defer cancel()
			}
			before := f.e.Calls(exchangeMethod)
			tt.fault()
			tok, err := token.Exchange(ctx, cfg)
			if n := f.e.Calls(exchangeMethod) - before; n != tt.wantCalls {
				t.Errorf("Exchange RPCs = %d, want %d", n, tt.wantCalls)
			}
			if tt.wantIs == nil {
				if err != nil {
					t.Fatalf("Exchange() error = %v", err)
				}
				if tok.AccessToken == "" || time.Until(tok.Expiry) < 50*time.Minute {
					t.Fatalf("Exchange() = %v, want a token valid for about an hour", tok)
				}
				return
			}
			for _, w := range tt.wantIs {
				if !errors.Is(err, w) {
					t.Errorf("Exchange() error = %v, want errors.Is %v", err, w)
				}
			}
			if err == nil {
				return
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it not to contain %q", err, w)
				}
			}
			if tt.wantEarly && ctx.Err() != nil {
				t.Errorf("Exchange() returned after the caller's deadline; it should give up rather than wait past it")
			}
			if strings.Contains(err.Error(), f.creds.SecretAccessKey) {
				t.Errorf("error leaks the AWS secret: %v", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

// TestExchangeCanceledWhileWaiting: a caller that gives up between attempts
// gets its own cancellation back, at once.
func TestExchangeCanceledWhileWaiting(t *testing.T) {
	f := start(t, emulator.Options{})
	f.e.FailNext(exchangeMethod, 1000, codes.Internal)
	t.Cleanup(f.e.ClearFaults)
	cfg := f.config(f.creds)
	cfg.Retry = token.RetryPolicy{InitialBackoff: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		// Cancel once the first attempt has failed (the Exchange is then
		// waiting an hour for the next).
		for f.e.Calls(exchangeMethod) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := token.Exchange(ctx, cfg)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "exchange AWS token for identity "+f.identity+" at "+f.e.IssuerURL()+": canceled by the caller") {
		t.Fatalf("Exchange() error = %v, want context.Canceled naming the exchange step", err)
	}
	if n := f.e.Calls(exchangeMethod); n != 1 {
		t.Fatalf("Exchange RPCs = %d, want 1", n)
	}
}

// TestExchangeIssuerUnreachable: an issuer host that refuses connections
// (the SDK's clients then wait for it until the attempt's deadline) is
// retried; the exchange succeeds once it is back within the attempts.
func TestExchangeIssuerUnreachable(t *testing.T) {
	tests := []struct {
		name      string
		backAfter time.Duration // zero: never back
		wantErr   []string      // nil: success
	}{
		{name: "back after a while", backAfter: 500 * time.Millisecond},
		{name: "never back", wantErr: []string{"unreachable: no answer within 200ms", "(after 3 attempts)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, emulator.Options{})
			cfg := f.config(f.creds)
			cfg.RPCTimeout = 200 * time.Millisecond
			cfg.Retry = token.RetryPolicy{MaxAttempts: 3, InitialBackoff: 50 * time.Millisecond}
			if tt.backAfter > 0 {
				// Enough attempts to span the outage many times over.
				cfg.Retry.MaxAttempts = 20
			}
			if err := f.e.SetIssuerReachable(false); err != nil {
				t.Fatal(err)
			}
			back := make(chan error, 1)
			if tt.backAfter > 0 {
				timer := time.AfterFunc(tt.backAfter, func() { back <- f.e.SetIssuerReachable(true) })
				t.Cleanup(func() { timer.Stop() })
			}
			tok, err := token.Exchange(t.Context(), cfg)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Exchange() error = %v", err)
				}
				if err := <-back; err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken == "" || f.e.Calls(exchangeMethod) != 1 {
					t.Fatalf("Exchange() = %v after %d Exchange RPCs, want a token from the one attempt that reached the issuer", tok, f.e.Calls(exchangeMethod))
				}
				return
			}
			if !errors.Is(err, token.ErrUnreachable) {
				t.Fatalf("Exchange() error = %v, want ErrUnreachable", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestExchangeRefusalReason checks that the service's reason reaches the caller.
func TestExchangeRefusalReason(t *testing.T) {
	f := start(t, emulator.Options{})
	_, err := token.Exchange(t.Context(), f.config(f.e.RegisterAWSPrincipal(intruder)))
	if !errors.Is(err, token.ErrRefused) {
		t.Fatalf("Exchange() error = %v, want ErrRefused", err)
	}
	// The message is "<step>: refused: <code>: <reason>...": the reason must not be empty.
	_, after, ok := strings.Cut(err.Error(), ": refused: ")
	code, reason, _ := strings.Cut(after, ": ")
	if !ok || (code != "permission denied" && code != "unauthenticated") || len(strings.TrimSpace(reason)) < 5 {
		t.Fatalf("Exchange() error = %q, want refused: permission denied/unauthenticated: <service's reason>", err)
	}
}

func TestExchangeEmulatorDown(t *testing.T) {
	f := start(t, emulator.Options{})
	cfg := f.config(f.creds)
	cfg.RPCTimeout = 300 * time.Millisecond
	cfg.Retry.MaxAttempts = 2
	f.e.Close()
	startAt := time.Now()
	_, err := token.Exchange(t.Context(), cfg)
	if took := time.Since(startAt); took > 1500*time.Millisecond {
		t.Errorf("Exchange() took %s, want under 1.5s", took)
	}
	if !errors.Is(err, token.ErrUnreachable) || !strings.Contains(err.Error(), "exchange AWS token for identity "+f.identity) {
		t.Fatalf("Exchange() error = %v, want ErrUnreachable naming the exchange step and identity", err)
	}
}

// clock is a settable, frozen time source for WithClock.
type clock struct{ at atomic.Pointer[time.Time] }

func (c *clock) now() time.Time   { return *c.at.Load() }
func (c *clock) set(at time.Time) { c.at.Store(&at) }

func mustSource(t testing.TB, cfg token.Config, opts ...token.Option) *token.Source {
	t.Helper()
	s, err := token.NewSource(cfg, opts...)
	if err != nil {
		t.Fatalf("NewSource() error = %v", err)
	}
	return s
}

func mustToken(t testing.TB, s *token.Source) string {
	t.Helper()
	at, err := s.Token(context.Background())
	if err != nil {
		t.Fatalf("Token() error = %v", err)
	}
	if at == "" {
		t.Fatal("Token() returned an empty token")
	}
	return at
}

// expiryModes are the two readings of the exchange response's optional
// expiry: set (equal to the token's exp), and left unset.
var expiryModes = []struct {
	name string
	opts emulator.Options
}{
	{name: "response with expiry", opts: emulator.Options{}},
	{name: "response without expiry", opts: emulator.Options{OmitExpiry: true}},
}

// TestExchangeExpiry: the token's expiry is its own exp claim, whether or not
// the response carries one.
func TestExchangeExpiry(t *testing.T) {
	const ttl = 20 * time.Minute // not the usual hour: the expiry must come from the token
	for _, m := range expiryModes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.TokenTTL = ttl
			f := start(t, opts)
			issued := time.Now()
			tok, err := token.Exchange(t.Context(), f.config(f.creds))
			if err != nil {
				t.Fatalf("Exchange() error = %v", err)
			}
			exp, err := auth.ExtractExpiry(tok.AccessToken)
			if err != nil {
				t.Fatalf("the emulator's token is not a JWT with exp: %v", err)
			}
			if !tok.Expiry.Equal(exp) {
				t.Errorf("Expiry = %s, want the token's exp %s", tok.Expiry, exp)
			}
			// exp is in whole seconds: the issue time plus ttl, rounded down.
			if lo, hi := issued.Add(ttl-time.Second), time.Now().Add(ttl); tok.Expiry.Before(lo) || tok.Expiry.After(hi) {
				t.Errorf("Expiry = %s, want between %s and %s", tok.Expiry, lo, hi)
			}
		})
	}
}

func TestSourceCachesToken(t *testing.T) {
	for _, m := range expiryModes {
		t.Run(m.name, func(t *testing.T) {
			f := start(t, m.opts)
			s := mustSource(t, f.config(f.creds))
			first := mustToken(t, s)
			for range 19 {
				if got := mustToken(t, s); got != first {
					t.Fatal("Token() returned a different token while the cached one is fresh")
				}
			}
			if n := f.e.Calls(exchangeMethod); n != 1 {
				t.Fatalf("20 Token() calls made %d Exchange RPCs, want 1", n)
			}
		})
	}
}

// TestSourceRefresh walks one Source through its lifecycle with a fake clock
// against the emulator (1 hour tokens, 5 minute margin), with and without an
// expiry in the exchange response.
func TestSourceRefresh(t *testing.T) {
	for _, m := range expiryModes {
		t.Run(m.name, func(t *testing.T) {
			opts := m.opts
			opts.TokenTTL = time.Hour
			testSourceRefresh(t, start(t, opts))
		})
	}
}

func testSourceRefresh(t *testing.T, f fixture) {
	var logs bytes.Buffer
	var c clock
	c.set(time.Now())
	s := mustSource(t, f.config(f.creds), token.WithClock(c.now), token.WithRefreshMargin(5*time.Minute),
		token.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	calls := func() int { return f.e.Calls(exchangeMethod) }

	first := mustToken(t, s)
	expiry := c.now().Add(time.Hour)

	steps := []struct {
		name      string
		at        time.Time // clock position for this step
		fault     func()
		wantCalls int
		wantSame  bool // token equal to the previous step's
		wantErr   error
		wantLog   string
	}{
		{name: "before the margin: cached", at: expiry.Add(-6 * time.Minute), wantCalls: 1, wantSame: true},
		{name: "in the margin, refresh refused: cached token, warning logged", at: expiry.Add(-4 * time.Minute),
			fault: func() { f.e.FailNext(exchangeMethod, 1, codes.PermissionDenied) }, wantCalls: 2, wantSame: true,
			wantLog: "Chainguard token refresh failed"},
		{name: "10s later: no new attempt yet", at: expiry.Add(-4*time.Minute + 10*time.Second), wantCalls: 2, wantSame: true},
		{name: "31s later, refresh hangs: cached token", at: expiry.Add(-4*time.Minute + 31*time.Second),
			fault: func() { f.e.HangNext(exchangeMethod, 1) }, wantCalls: 3, wantSame: true},
		{name: "62s later: refreshed", at: expiry.Add(-4*time.Minute + 62*time.Second), wantCalls: 4},
	}
	prev := first
	for _, st := range steps {
		c.set(st.at)
		logs.Reset()
		if st.fault != nil {
			st.fault()
		}
		cfgTimeout := 2 * time.Second
		began := time.Now()
		got, err := s.Token(t.Context())
		f.e.ClearFaults()
		if err != nil {
			t.Fatalf("%s: Token() error = %v", st.name, err)
		}
		if time.Since(began) > cfgTimeout+time.Second {
			t.Errorf("%s: Token() took %s", st.name, time.Since(began))
		}
		if n := calls(); n != st.wantCalls {
			t.Errorf("%s: Exchange RPCs = %d, want %d", st.name, n, st.wantCalls)
		}
		if (got == prev) != st.wantSame {
			t.Errorf("%s: token same as before = %v, want %v", st.name, got == prev, st.wantSame)
		}
		if st.wantLog != "" && !strings.Contains(logs.String(), st.wantLog) {
			t.Errorf("%s: log = %q, want it to contain %q", st.name, logs.String(), st.wantLog)
		}
		if strings.Contains(logs.String(), got) || strings.Contains(logs.String(), f.creds.SecretAccessKey) {
			t.Errorf("%s: log leaks a token or secret: %q", st.name, logs.String())
		}
		prev = got
	}

	// Once the cached token has expired, a failed refresh fails the caller.
	c.set(time.Now().Add(2 * time.Hour))
	f.e.FailNext(exchangeMethod, 1, codes.PermissionDenied)
	t.Cleanup(f.e.ClearFaults)
	if _, err := s.Token(t.Context()); !errors.Is(err, token.ErrRefused) {
		t.Fatalf("Token() after expiry with a refused refresh: error = %v, want ErrRefused", err)
	}
}

// TestSourceRetriesWithoutAToken: with no valid token to fall back on, the
// Source's exchange retries an issuer that fails on its side.
func TestSourceRetriesWithoutAToken(t *testing.T) {
	f := start(t, emulator.Options{})
	f.e.FailNext(exchangeMethod, 2, codes.Internal)
	s := mustSource(t, f.config(f.creds))
	mustToken(t, s)
	if n := f.e.Calls(exchangeMethod); n != 3 {
		t.Fatalf("Exchange RPCs = %d, want 3 (two failures, then the token)", n)
	}
}

func TestSourceConcurrentCallersShareOneExchange(t *testing.T) {
	f := start(t, emulator.Options{})
	f.e.SetLatency(exchangeMethod, 200*time.Millisecond) // keep the flight open while everyone arrives
	s := mustSource(t, f.config(f.creds))

	const callers = 32
	var (
		wg     sync.WaitGroup
		ready  sync.WaitGroup
		gate   = make(chan struct{})
		tokens = make([]string, callers)
		errs   = make([]error, callers)
	)
	ready.Add(callers)
	for i := range callers {
		wg.Go(func() {
			ready.Done()
			<-gate
			tokens[i], errs[i] = s.Token(t.Context())
		})
	}
	ready.Wait()
	close(gate)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: Token() error = %v", i, errs[i])
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("caller %d got a different token", i)
		}
	}
	if n := f.e.Calls(exchangeMethod); n != 1 {
		t.Fatalf("%d concurrent callers made %d Exchange RPCs, want 1", callers, n)
	}
}

// TestSourceWaiterGivesUp: a caller whose context ends stops waiting, while
// the exchange it started still completes for the next caller.
func TestSourceWaiterGivesUp(t *testing.T) {
	f := start(t, emulator.Options{})
	f.e.SetLatency(exchangeMethod, 500*time.Millisecond)
	s := mustSource(t, f.config(f.creds))

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := s.Token(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(began) > 300*time.Millisecond {
		t.Fatalf("Token() with a 50ms context = %v after %s, want DeadlineExceeded promptly", err, time.Since(began))
	}
	mustToken(t, s) // joins the flight still in progress
	if n := f.e.Calls(exchangeMethod); n != 1 {
		t.Fatalf("Exchange RPCs = %d, want 1", n)
	}
}

func TestNewSourceOptions(t *testing.T) {
	f := start(t, emulator.Options{})
	tests := []struct {
		name    string
		opts    []token.Option
		wantErr string
	}{
		{name: "defaults"},
		{name: "zero margin", opts: []token.Option{token.WithRefreshMargin(0)}},
		{name: "negative margin", opts: []token.Option{token.WithRefreshMargin(-time.Second)}, wantErr: "refresh margin -1s is negative"},
		{name: "nil clock", opts: []token.Option{token.WithClock(nil)}, wantErr: "WithClock(nil)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := token.NewSource(f.config(f.creds), tt.opts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewSource() error = %v", err)
				}
				return
			}
			if !errors.Is(err, token.ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewSource() error = %v, want ErrConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

// BenchmarkSourceTokenCacheHit measures Source.Token with a fresh cached
// token, in each trust mode (the cache does not depend on it; target < 1µs).
func BenchmarkSourceTokenCacheHit(b *testing.B) {
	for _, trust := range []token.Trust{token.CallerIdentity, token.WebIdentity} {
		b.Run(string(trust), func(b *testing.B) {
			e, cfg := coldConfig(b, trust)
			s := mustSource(b, cfg)
			mustToken(b, s)
			ctx := context.Background()
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Token(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Token(ctx); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			want := map[token.Trust]int{token.CallerIdentity: 1, token.WebIdentity: 2}[trust]
			if n := e.Calls(exchangeMethod) + e.Calls(getWebIdentityToken); n != want {
				b.Fatalf("calls = %d, want %d: the cold exchange's only", n, want)
			}
		})
	}
}

// BenchmarkExchange measures one full exchange in each trust mode, answered
// at the first attempt and after one Internal failure (the retry's own
// cost: its wait is shortened to 1µs). Caller identity: sign + STS RPC
// (fresh connection) + the emulator's verification through its AWS STS
// stand-in. Web identity: GetWebIdentityToken through the real SDK STS
// client + STS RPC + the emulator's OIDC verification (discovery cached).
// It reports the workload's calls per exchange (calls/op: AWS
// GetWebIdentityToken + Chainguard STS Exchange RPCs) and checks them.
func BenchmarkExchange(b *testing.B) {
	ctx := context.Background()
	tests := []struct {
		trust token.Trust
		name  string
		fail  bool
		aws   int // GetWebIdentityToken calls per exchange
		rpcs  int // Exchange RPCs per exchange
	}{
		{trust: token.CallerIdentity, name: "first attempt", rpcs: 1},
		{trust: token.CallerIdentity, name: "retried once", fail: true, rpcs: 2},
		{trust: token.WebIdentity, name: "first attempt", aws: 1, rpcs: 1},
		{trust: token.WebIdentity, name: "retried once", fail: true, aws: 1, rpcs: 2},
	}
	for _, tt := range tests {
		b.Run(string(tt.trust)+"/"+tt.name, func(b *testing.B) {
			e, cfg := coldConfig(b, tt.trust)
			cfg.Retry = token.RetryPolicy{InitialBackoff: time.Microsecond}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				if tt.fail {
					e.FailNext(exchangeMethod, 1, codes.Internal)
				}
				if _, err := token.Exchange(ctx, cfg); err != nil {
					b.Fatal(err)
				}
				n++
			}
			awsCalls, rpcs := e.Calls(getWebIdentityToken), e.Calls(exchangeMethod)
			if awsCalls != n*tt.aws || rpcs != n*tt.rpcs {
				b.Fatalf("%d GetWebIdentityToken calls and %d Exchange RPCs for %d exchanges, want %d and %d each", awsCalls, rpcs, n, tt.aws, tt.rpcs)
			}
			b.ReportMetric(float64(awsCalls+rpcs)/float64(n), "calls/op")
		})
	}
}
