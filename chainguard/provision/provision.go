// Package provision creates, updates and deletes the Chainguard objects an
// assumable identity needs: a group, the identity in it (trusting an AWS
// principal) and the identity's role bindings on that group.
//
// Every operation is idempotent and safe to replay: objects are looked up by
// name under their parent before anything is created, so a CloudFormation
// event delivered twice never makes a duplicate, and deleting something that
// is already gone (or whose ID is not a UIDP at all) succeeds without touching
// anything. An object whose current ID is known (the spec's ID field, from a
// CloudFormation physical ID) is updated in place instead, renamed if its
// name changed, and keeps its UIDP; a rename onto a name another object under
// the same parent already has is refused.
//
// Each RPC runs under its own timeout inside the caller's context, and
// transient failures (Unavailable, ResourceExhausted, a per-RPC
// DeadlineExceeded, and PermissionDenied shortly after this provisioner
// created a binding or group in that scope, while it propagates) are retried
// with bounded exponential backoff that never waits past the caller's
// deadline. Errors name the object and the step that failed.
package provision

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
)

// Defaults for the options.
const (
	DefaultRPCTimeout = 10 * time.Second

	// Transient failures: Unavailable, ResourceExhausted, DeadlineExceeded.
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 4 * time.Second
	DefaultMaxTries       = 5

	// PermissionDenied right after a binding or group was created in scope
	// (the same schedule as the Chainguard Terraform provider).
	DefaultPropagationInitialBackoff = 2 * time.Second
	DefaultPropagationMaxBackoff     = 16 * time.Second
	DefaultPropagationMaxTries       = 5

	// freshScopeWindow is how long after creating a binding or a group a
	// PermissionDenied in that scope is treated as propagation delay.
	freshScopeWindow = 2 * time.Minute
)

// Option configures a Provisioner.
type Option func(*config)

type backoffPolicy struct {
	initial, max time.Duration
	maxTries     int
}

type config struct {
	rpcTimeout  time.Duration
	transient   backoffPolicy
	propagation backoffPolicy
}

// WithBackoff sets the retry schedule for transient failures (Unavailable,
// ResourceExhausted, DeadlineExceeded of one RPC): waits start at initial,
// grow exponentially up to max, and at most maxTries attempts are made in
// all. Non-positive values keep the defaults.
func WithBackoff(initial, max time.Duration, maxTries int) Option {
	return func(c *config) { c.transient.set(initial, max, maxTries) }
}

// WithPropagationBackoff sets the retry schedule for PermissionDenied shortly
// after this provisioner created a binding or a group in the same scope
// (defaults 2s to 16s, 5 attempts). Non-positive values keep the defaults.
func WithPropagationBackoff(initial, max time.Duration, maxTries int) Option {
	return func(c *config) { c.propagation.set(initial, max, maxTries) }
}

// WithRPCTimeout bounds each single RPC attempt (default 10s). The caller's
// context deadline always applies as well.
func WithRPCTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.rpcTimeout = d
		}
	}
}

func (b *backoffPolicy) set(initial, max time.Duration, maxTries int) {
	if initial > 0 {
		b.initial = initial
	}
	if max > 0 {
		b.max = max
	}
	if maxTries > 0 {
		b.maxTries = maxTries
	}
	if b.max < b.initial {
		b.max = b.initial
	}
}

// Provisioner ensures and deletes Chainguard groups, identities and role
// bindings through the SDK's IAM clients. It is safe for concurrent use. Role
// names are resolved to IDs once per Provisioner and cached.
type Provisioner struct {
	clients iam.Clients
	cfg     config
	rpcs    atomic.Int64

	mu    sync.Mutex
	roles map[string]string    // role name -> role ID
	fresh map[string]time.Time // scope UIDP -> when this client created a binding or group there
}

// New returns a Provisioner that issues its RPCs through clients. The caller
// keeps ownership of clients (and closes them).
func New(clients iam.Clients, opts ...Option) *Provisioner {
	cfg := config{
		rpcTimeout:  DefaultRPCTimeout,
		transient:   backoffPolicy{DefaultInitialBackoff, DefaultMaxBackoff, DefaultMaxTries},
		propagation: backoffPolicy{DefaultPropagationInitialBackoff, DefaultPropagationMaxBackoff, DefaultPropagationMaxTries},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Provisioner{
		clients: clients,
		cfg:     cfg,
		roles:   map[string]string{},
		fresh:   map[string]time.Time{},
	}
}

// Dial connects the SDK's IAM clients to apiURL (for example
// https://console-api.enforce.dev, or http://127.0.0.1:PORT for the local
// emulator) with accessToken, and returns a Provisioner over them plus the
// function that closes the connection. No RPC is made here.
func Dial(ctx context.Context, apiURL, accessToken string, opts ...Option) (*Provisioner, func() error, error) {
	clients, err := iam.NewClients(ctx, apiURL, accessToken)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the Chainguard IAM API at %s: %w", apiURL, err)
	}
	return New(clients, opts...), clients.Close, nil
}

// RPCs reports how many RPC attempts (retries included) this Provisioner has
// issued so far.
func (p *Provisioner) RPCs() int { return int(p.rpcs.Load()) }

// directlyIn reports whether id is the UIDP of an object directly under
// parent (an ID to update in place).
func directlyIn(id, parent string) bool {
	return uidp.Valid(id) && !uidp.InRoot(id) && uidp.Parent(id) == parent
}

// invalidSpec is every problem found in a spec, on one line.
type invalidSpec []error

func (e invalidSpec) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap exposes the individual errors to errors.Is (validate.ErrInvalid).
func (e invalidSpec) Unwrap() []error { return e }

// joinErrors returns nil when every error is nil, else an invalidSpec.
func joinErrors(errs ...error) error {
	var out invalidSpec
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	if out == nil {
		return nil
	}
	return out
}
