package token

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	testIdentity = "0123456789abcdef0123456789abcdef01234567/0123456789abcdef"
	testSecret   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

func staticCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIAIOSFODNN7EXAMPLE", testSecret, "")
}

func validConfig() Config {
	return Config{
		Issuer:      "http://127.0.0.1:1",
		APIURL:      "http://127.0.0.1:2",
		Identity:    testIdentity,
		Credentials: staticCreds(),
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring; "" means valid
	}{
		{name: "valid local", mutate: func(*Config) {}},
		{name: "valid https", mutate: func(c *Config) {
			c.Issuer, c.APIURL = "https://issuer.enforce.dev", "https://console-api.enforce.dev"
		}},
		{name: "valid localhost with timeout", mutate: func(c *Config) { c.Issuer, c.RPCTimeout = "http://localhost:8080", time.Second }},
		{name: "issuer without scheme", mutate: func(c *Config) { c.Issuer = "127.0.0.1:8080" }, wantErr: `issuer URL "127.0.0.1:8080"`},
		{name: "empty issuer", mutate: func(c *Config) { c.Issuer = "" }, wantErr: "issuer URL is empty"},
		{name: "http remote issuer", mutate: func(c *Config) { c.Issuer = "http://issuer.enforce.dev" }, wantErr: "uses plain http"},
		{name: "ftp api", mutate: func(c *Config) { c.APIURL = "ftp://127.0.0.1" }, wantErr: `API URL "ftp://127.0.0.1" has scheme "ftp"`},
		{name: "api with path", mutate: func(c *Config) { c.APIURL = "https://api.example.com/v1" }, wantErr: "without path, query or fragment"},
		{name: "identity not uidp", mutate: func(c *Config) { c.Identity = "aws-auth-identity" }, wantErr: `identity "aws-auth-identity" is not a Chainguard UIDP`},
		{name: "empty identity", mutate: func(c *Config) { c.Identity = "" }, wantErr: "identity is empty"},
		{name: "no credentials", mutate: func(c *Config) { c.Credentials = nil }, wantErr: "no AWS credentials provider"},
		{name: "negative timeout", mutate: func(c *Config) { c.RPCTimeout = -time.Second }, wantErr: "RPC timeout -1s is negative"},
		{name: "unknown trust", mutate: func(c *Config) { c.Trust = "oidc" }, wantErr: `trust "oidc" is not a trust mode: use "caller-identity"`},
		{name: "web identity", mutate: func(c *Config) {
			c.Trust, c.Credentials = WebIdentity, nil
			c.STS = sts.New(sts.Options{Region: "eu-west-1"})
		}},
		{name: "web identity without STS client", mutate: func(c *Config) { c.Trust = WebIdentity }, wantErr: "the web-identity trust needs an AWS STS client"},
		{name: "web identity without region", mutate: func(c *Config) { c.Trust, c.STS = WebIdentity, sts.New(sts.Options{}) },
			wantErr: "the AWS STS client has no region: GetWebIdentityToken is served only by regional endpoints"},
		{name: "custom retry", mutate: func(c *Config) {
			c.Retry = RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Second}
		}},
		{name: "negative attempts", mutate: func(c *Config) { c.Retry.MaxAttempts = -1 }, wantErr: "retry MaxAttempts -1 is negative"},
		{name: "negative initial backoff", mutate: func(c *Config) { c.Retry.InitialBackoff = -time.Second }, wantErr: "retry InitialBackoff -1s is negative"},
		{name: "negative max backoff", mutate: func(c *Config) { c.Retry.MaxBackoff = -time.Second }, wantErr: "retry MaxBackoff -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want ErrConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestWebIdentityEndpointIsRegional pins what the SDK does with the STS
// client the web-identity trust is given: a client with a region addresses
// sts.REGION.amazonaws.com, never the global endpoint that does not serve
// GetWebIdentityToken (AWS IAM user guide, outbound identity federation).
func TestWebIdentityEndpointIsRegional(t *testing.T) {
	for _, region := range []string{"us-east-1", "eu-west-1"} {
		ep, err := sts.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(), sts.EndpointParameters{Region: aws.String(region)})
		if err != nil {
			t.Fatalf("resolve the STS endpoint of %s: %v", region, err)
		}
		if want := "https://sts." + region + ".amazonaws.com"; ep.URI.String() != want {
			t.Errorf("STS endpoint of %s = %s, want %s", region, ep.URI.String(), want)
		}
	}
}

func TestParseTrust(t *testing.T) {
	tests := []struct {
		in      string
		want    Trust
		wantErr bool
	}{
		{"", CallerIdentity, false},
		{"caller-identity", CallerIdentity, false},
		{"web-identity", WebIdentity, false},
		{"webIdentity", "", true},
		{"WEB-IDENTITY", "", true},
	}
	for _, tt := range tests {
		got, err := ParseTrust(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTrust(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("ParseTrust(%q) error %v does not match ErrConfig", tt.in, err)
		}
	}
}

// TestExchangeLocalFailures covers the steps that fail before any network
// call, and a service that is down (nothing listens on the port).
func TestExchangeLocalFailures(t *testing.T) {
	downURL := closedPortURL(t)
	tests := []struct {
		name    string
		cfg     Config
		wantIs  error
		wantErr []string
		maxTime time.Duration
	}{
		{
			name: "provider error",
			cfg: func() Config {
				c := validConfig()
				c.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
					return aws.Credentials{}, errors.New("no EC2 IMDS role found")
				})
				return c
			}(),
			wantIs:  ErrCredentials,
			wantErr: []string{"get AWS credentials for identity " + testIdentity + " at http://127.0.0.1:1", "no EC2 IMDS role found"},
		},
		{
			name: "provider without keys",
			cfg: func() Config {
				c := validConfig()
				c.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
					return aws.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE"}, nil
				})
				return c
			}(),
			wantIs:  ErrCredentials,
			wantErr: []string{"returned no access key ID or secret access key"},
		},
		{
			name: "provider hangs",
			cfg: func() Config {
				c := validConfig()
				c.RPCTimeout = 200 * time.Millisecond
				c.Credentials = aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
					<-ctx.Done()
					return aws.Credentials{}, ctx.Err()
				})
				return c
			}(),
			wantIs:  ErrCredentials,
			wantErr: []string{"context deadline exceeded"},
			maxTime: 2 * time.Second,
		},
		{
			name: "issuer down",
			cfg: func() Config {
				c := validConfig()
				c.Issuer, c.APIURL, c.RPCTimeout = downURL, downURL, 300*time.Millisecond
				c.Retry = RetryPolicy{MaxAttempts: 2, InitialBackoff: 10 * time.Millisecond}
				return c
			}(),
			wantIs:  ErrUnreachable,
			wantErr: []string{"exchange AWS token for identity " + testIdentity + " at " + downURL, "no answer within 300ms", "(after 2 attempts)"},
			maxTime: 2 * time.Second,
		},
		{
			name:    "invalid config",
			cfg:     Config{Issuer: "issuer.enforce.dev"},
			wantIs:  ErrConfig,
			wantErr: []string{`issuer URL "issuer.enforce.dev" is not an absolute URL`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			tok, err := Exchange(t.Context(), tt.cfg)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("Exchange() = %v, want error", tok)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("Exchange() error = %v, want errors.Is %v", err, tt.wantIs)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Exchange() error = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error leaks the AWS secret: %v", err)
			}
			if tt.maxTime > 0 && took > tt.maxTime {
				t.Errorf("Exchange() took %s, want under %s", took, tt.maxTime)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name    string
		caller  bool // the caller's deadline came first
		err     error
		wantIs  []error
		wantErr string
	}{
		{"permission denied", false, status.Error(codes.PermissionDenied, "aws_arn does not match"),
			[]error{ErrRefused}, "step: refused: permission denied: aws_arn does not match (check that the identity's trust names this AWS principal"},
		{"unauthenticated", false, status.Error(codes.Unauthenticated, "bad signature"),
			[]error{ErrRefused}, "step: refused: unauthenticated: bad signature (check the AWS credentials"},
		{"not found", false, status.Error(codes.NotFound, "no such identity"),
			[]error{ErrRefused}, "not found: no such identity (check the identity UIDP"},
		{"invalid argument", false, status.Error(codes.InvalidArgument, "token too old"),
			[]error{ErrRefused}, "refused: invalid argument: token too old"},
		{"unavailable", false, status.Error(codes.Unavailable, "connection refused"),
			[]error{ErrUnreachable}, "step: unreachable: unavailable: connection refused"},
		{"internal", false, status.Error(codes.Internal, "boom"),
			[]error{ErrUnreachable}, "unreachable: internal: boom"},
		{"own deadline", false, status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			[]error{ErrUnreachable}, "no answer within 1s"},
		{"sdk backoff deadline", false, context.DeadlineExceeded,
			[]error{ErrUnreachable, context.DeadlineExceeded}, "no answer within 1s"},
		{"caller deadline", true, context.DeadlineExceeded,
			[]error{ErrUnreachable, context.DeadlineExceeded}, "the caller's deadline passed"},
		{"canceled", false, context.Canceled, []error{context.Canceled}, "step: canceled by the caller"},
		{"grpc canceled", false, status.Error(codes.Canceled, "context canceled"), []error{context.Canceled}, "step: canceled by the caller"},
		{"plain error", false, errors.New("weird"), []error{ErrUnreachable}, "step: unreachable: weird"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify("step", time.Second, tt.caller, tt.err)
			for _, w := range tt.wantIs {
				if !errors.Is(err, w) {
					t.Errorf("classify() = %v, want errors.Is %v", err, w)
				}
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("classify() = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Count(err.Error(), "bad signature") > 1 || strings.Contains(err.Error(), "rpc error") {
				t.Errorf("classify() = %q: the cause's text is repeated", err)
			}
			if c := status.Code(tt.err); c != codes.Unknown && status.Code(err) != c {
				t.Errorf("status.Code(classify()) = %v, want %v", status.Code(err), c)
			}
		})
	}
}

// jwt builds an unsigned JWT whose payload is claims (a JSON object).
func jwt(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc([]byte(claims)) + ".c2lnbmF0dXJl"
}

func TestExpiryOf(t *testing.T) {
	exp := time.Unix(1893456000, 0) // 2030-01-01T00:00:00Z
	tests := []struct {
		name     string
		token    string
		response time.Time // zero: the response had no expiry
		want     time.Time
		wantErr  string
	}{
		{name: "jwt exp, no response expiry", token: jwt(`{"iss":"x","exp":1893456000}`), want: exp},
		{name: "both agree", token: jwt(`{"exp":1893456000}`), response: exp, want: exp},
		{name: "jwt exp earlier than the response's", token: jwt(`{"exp":1893456000}`), response: exp.Add(time.Hour), want: exp},
		{name: "response expiry earlier than exp", token: jwt(`{"exp":1893456000}`), response: exp.Add(-time.Minute), want: exp.Add(-time.Minute)},
		{name: "opaque token, response expiry", token: "0paqueT0ken", response: exp, want: exp},
		{name: "jwt without exp, response expiry", token: jwt(`{"iss":"x"}`), response: exp, want: exp},
		{name: "unreadable claims, response expiry", token: "a.%%%.b", response: exp, want: exp},
		{name: "opaque token, no response expiry", token: "0paqueT0ken", wantErr: "not a JWT whose claims can be read"},
		{name: "jwt without exp, no response expiry", token: jwt(`{"iss":"x","sub":"y"}`), wantErr: "claims have no exp"},
		{name: "jwt with exp 0", token: jwt(`{"exp":0}`), wantErr: "claims have no exp"},
		{name: "jwt with a string exp", token: jwt(`{"exp":"soon"}`), wantErr: "not a JWT whose claims can be read"},
		{name: "payload not base64", token: "a.%%%.b", wantErr: "not a JWT whose claims can be read"},
		{name: "payload not JSON", token: "a." + base64.RawURLEncoding.EncodeToString([]byte("Zsecret")) + ".b", wantErr: "not a JWT whose claims can be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expiryOf(tt.token, tt.response)
			if tt.wantErr == "" {
				if err != nil || !got.Equal(tt.want) {
					t.Fatalf("expiryOf() = %v, %v, want %v", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("expiryOf() = %v, %v, want error containing %q", got, err, tt.wantErr)
			}
			for _, leak := range []string{tt.token, "0paque", "Zsecret", "Z'", "%"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("expiryOf() error = %q: it shows %q from the token", err, leak)
				}
			}
		})
	}
}

func TestRetryPolicyDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   RetryPolicy
		want RetryPolicy
	}{
		{name: "zero", want: RetryPolicy{MaxAttempts: DefaultMaxAttempts, InitialBackoff: DefaultInitialBackoff, MaxBackoff: DefaultMaxBackoff}},
		{name: "set", in: RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Second},
			want: RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Second}},
		{name: "initial above the default max", in: RetryPolicy{InitialBackoff: 5 * time.Second},
			want: RetryPolicy{MaxAttempts: DefaultMaxAttempts, InitialBackoff: 5 * time.Second, MaxBackoff: 5 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.withDefaults(); got != tt.want {
				t.Errorf("withDefaults() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSchedule checks the waits (doubling from the initial one, capped, ±20%)
// and that the schedule stops rather than wait past the caller's deadline.
func TestSchedule(t *testing.T) {
	pol := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond}.withDefaults()
	tests := []struct {
		name     string
		deadline time.Duration // from now; zero: none
		nominal  []time.Duration
		wantStop bool // after the nominal waits
	}{
		{name: "no deadline", nominal: []time.Duration{100, 200, 400, 400, 400}},
		{name: "deadline an hour away", deadline: time.Hour, nominal: []time.Duration{100, 200, 400}},
		{name: "deadline before the first wait ends", deadline: 50 * time.Millisecond, wantStop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			s := newSchedule(ctx, pol)
			s.Reset()
			for i, n := range tt.nominal {
				n *= time.Millisecond
				lo, hi := time.Duration(float64(n)*(1-retryJitter)), time.Duration(float64(n)*(1+retryJitter))+1
				if got := s.NextBackOff(); got < lo || got > hi {
					t.Errorf("wait %d = %s, want %s ±20%%", i+1, got, n)
				}
			}
			if tt.wantStop {
				if got := s.NextBackOff(); got != backoff.Stop || !s.pastDeadline {
					t.Errorf("NextBackOff() = %s, pastDeadline = %v; want Stop because of the deadline", got, s.pastDeadline)
				}
			} else if s.pastDeadline {
				t.Error("pastDeadline set without a deadline in reach")
			}
		})
	}
}

func TestTokenStringRedacts(t *testing.T) {
	tok := Token{AccessToken: "eyJsecret", Expiry: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v", tok), fmt.Sprintf("%+v", tok), fmt.Sprintf("%#v", tok), fmt.Sprint(&tok)} {
		if strings.Contains(s, "eyJsecret") || !strings.Contains(s, "2030-01-02T03:04:05Z") {
			t.Errorf("formatted token = %q: want the expiry and no token", s)
		}
	}
}

// closedPortURL returns an http URL on 127.0.0.1 where nothing listens.
func closedPortURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}
