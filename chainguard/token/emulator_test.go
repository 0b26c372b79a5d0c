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

	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
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
	id := e.SeedIdentity(group, "aws-auth-identity", "trusts the workload role", trust.AWS{Account: workload.Account, ARN: workload.ARN, UserID: workload.UserID}.Proto().AwsIdentity, map[string][]string{group: {"viewer"}})
	return fixture{e: e, identity: id, creds: e.RegisterAWSPrincipal(workload)}
}

func (f fixture) config(creds aws.Credentials) token.Config {
	return token.Config{
		Issuer:      f.e.IssuerURL(),
		APIURL:      f.e.APIURL(),
		Identity:    f.identity,
		Credentials: credentials.StaticCredentialsProvider{Value: creds},
		RPCTimeout:  2 * time.Second,
	}
}

func TestExchangeEmulator(t *testing.T) {
	f := start(t, emulator.Options{})
	intruderCreds := f.e.RegisterAWSPrincipal(intruder)

	tests := []struct {
		name    string
		cfg     func() token.Config
		before  func()
		wantIs  error
		wantErr []string
		maxTime time.Duration
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
		{
			name:    "unavailable three times (more than the SDK retries)",
			cfg:     func() token.Config { return f.config(f.creds) },
			before:  func() { f.e.FailNext(exchangeMethod, 3, codes.Unavailable) },
			wantIs:  token.ErrUnreachable,
			wantErr: []string{"exchange AWS token for identity " + f.identity, "unreachable: unavailable"},
		},
		{
			name:   "unavailable twice is retried by the SDK",
			cfg:    func() token.Config { return f.config(f.creds) },
			before: func() { f.e.FailNext(exchangeMethod, 2, codes.Unavailable) },
		},
		{
			name: "hang",
			cfg: func() token.Config {
				c := f.config(f.creds)
				c.RPCTimeout = 300 * time.Millisecond
				return c
			},
			before:  func() { f.e.HangNext(exchangeMethod, 1) },
			wantIs:  token.ErrUnreachable,
			wantErr: []string{"exchange AWS token for identity " + f.identity + " at " + f.e.IssuerURL() + ": unreachable: no answer within 300ms"},
			maxTime: 1500 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Cleanup(f.e.ClearFaults)
			if tt.before != nil {
				tt.before()
			}
			cfg := tt.cfg()
			startAt := time.Now()
			tok, err := token.Exchange(t.Context(), cfg)
			took := time.Since(startAt)
			if tt.maxTime > 0 && took > tt.maxTime {
				t.Errorf("Exchange() took %s, want under %s", took, tt.maxTime)
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

func TestSourceCachesToken(t *testing.T) {
	f := start(t, emulator.Options{})
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
}

// TestSourceRefresh walks one Source through its lifecycle with a fake clock
// against the emulator (1 hour tokens, 5 minute margin).
func TestSourceRefresh(t *testing.T) {
	f := start(t, emulator.Options{TokenTTL: time.Hour})
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

func BenchmarkSourceTokenCacheHit(b *testing.B) {
	f := start(b, emulator.Options{})
	s := mustSource(b, f.config(f.creds))
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
	if n := f.e.Calls(exchangeMethod); n != 1 {
		b.Fatalf("Exchange RPCs = %d, want 1", n)
	}
}

// BenchmarkExchange measures one full exchange (sign + STS RPC, fresh
// connection, verification by the emulator's AWS STS stand-in).
func BenchmarkExchange(b *testing.B) {
	f := start(b, emulator.Options{})
	cfg := f.config(f.creds)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.Exchange(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
