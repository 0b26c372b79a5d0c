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
// # Ownership
//
// A spec's ManagedBy names the owner; it must tell apart every owner that
// may share a group (the handler uses "<account>/<region>/<stack name>/<stack
// ID>/<logical ID>", so that the same stack deployed in two accounts or
// regions are two owners). When it is set, the stored description is the spec's description
// followed by the marker " [managed by CloudFormation: <ManagedBy>]", and an
// object found by name counts as the caller's only when it carries that
// marker: a replay adopts and updates it, while a same-named identity without
// the marker is refused (never taken over) and a same-named group without it
// is used as it is (never renamed, re-described, stamped or deleted).
// DeleteGroup deletes only a group that carries the caller's marker. Without
// ManagedBy, any same-named object is adopted.
//
// # Retries
//
// Each RPC runs under its own timeout inside the caller's context, and
// transient failures (Unavailable, ResourceExhausted, a per-RPC
// DeadlineExceeded) are retried with bounded exponential backoff that never
// waits past the caller's deadline (200ms doubling to at most 4s, ±10%,
// within 5 tries by default). PermissionDenied is retried only within a
// per-Provisioner time budget (WithPermissionDeniedBudget; exactly 2s, 4s,
// 8s, 16s by default, so 30s allows 4 retries): a role binding
// made moments before, such as the provisioner's own owner binding from the
// trust step, takes a few seconds to apply. Errors name the object and the
// step that failed, and say how long a PermissionDenied was retried.
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
	// The waits double from 200ms up to 4s (200ms, 400ms, 800ms, 1.6s
	// within 5 tries), each varied by up to ±10% (transientJitter).
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 4 * time.Second
	DefaultMaxTries       = 5

	// PermissionDenied while a role binding propagates (the same schedule
	// as the Chainguard Terraform provider), within the budget set by
	// WithPermissionDeniedBudget (none by default: PermissionDenied is
	// final). The waits double from 2s up to 16s and are exact: 2s, 4s,
	// 8s, 16s, 16s...
	DefaultPropagationInitialBackoff = 2 * time.Second
	DefaultPropagationMaxBackoff     = 16 * time.Second
)

// transientJitter is the randomization factor of transient retries: each
// wait is drawn uniformly from ±10% around its nominal value, so that
// events failing together (a rate limit) do not retry in step.
// PermissionDenied waits have none, so that a budget's arithmetic is exact.
const transientJitter = 0.1

// Option configures a Provisioner.
type Option func(*config)

type backoffPolicy struct {
	initial, max time.Duration
	maxTries     int
	jitter       float64 // backoff's RandomizationFactor
}

type config struct {
	rpcTimeout       time.Duration
	transient        backoffPolicy
	permissionDenied backoffPolicy // maxTries unused: pdBudget bounds it
	pdBudget         time.Duration
	idHook           func(id string)
}

// WithBackoff sets the retry schedule for transient failures (Unavailable,
// ResourceExhausted, DeadlineExceeded of one RPC): waits start at initial
// and double up to max, each varied by up to ±10%, and at most
// maxTries attempts are made in all. Non-positive values keep the defaults.
func WithBackoff(initial, max time.Duration, maxTries int) Option {
	return func(c *config) { c.transient.set(initial, max, maxTries) }
}

// WithPermissionDeniedBudget lets the Provisioner retry PermissionDenied for
// up to d in all, counted from the first PermissionDenied it meets, on the
// propagation schedule (WithPropagationBackoff; by default exactly 2s, 4s,
// 8s, 16s, 16s...: a 30s budget allows 4 retries, the fourth wait shortened
// by the time the attempts took). The last wait is shortened to fit the
// budget, and no wait passes the caller's deadline. Zero (the default)
// makes PermissionDenied final.
func WithPermissionDeniedBudget(d time.Duration) Option {
	return func(c *config) { c.pdBudget = max(d, 0) }
}

// WithPropagationBackoff sets the schedule of PermissionDenied retries: waits
// start at initial and double up to max, without jitter (defaults 2s and
// 16s); the budget bounds how many are made.
// Non-positive values keep the defaults.
func WithPropagationBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.permissionDenied.set(initial, max, 0) }
}

// WithIDHook sets a function called with the UIDP of the group or identity an
// Ensure call settles on (created by it, or found and the caller's), as soon
// as that is known and before any further step. A caller that may stop
// waiting before Ensure returns (a deadline) learns from it what exists and
// must be cleaned up.
func WithIDHook(f func(id string)) Option {
	return func(c *config) { c.idHook = f }
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

	mu      sync.Mutex
	roles   map[string]string // role name -> role ID
	pdStart time.Time         // the first PermissionDenied: the budget's clock
}

// New returns a Provisioner that issues its RPCs through clients. The caller
// keeps ownership of clients (and closes them).
func New(clients iam.Clients, opts ...Option) *Provisioner {
	cfg := config{
		rpcTimeout:       DefaultRPCTimeout,
		transient:        backoffPolicy{DefaultInitialBackoff, DefaultMaxBackoff, DefaultMaxTries, transientJitter},
		permissionDenied: backoffPolicy{initial: DefaultPropagationInitialBackoff, max: DefaultPropagationMaxBackoff},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Provisioner{
		clients: clients,
		cfg:     cfg,
		roles:   map[string]string{},
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

// settled reports the UIDP an Ensure call settled on to the ID hook.
func (p *Provisioner) settled(id string) {
	if p.cfg.idHook != nil && id != "" {
		p.cfg.idHook(id)
	}
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
