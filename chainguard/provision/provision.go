// Package provision creates, updates and deletes the Chainguard objects an
// assumable identity needs: a group, the identity in it (trusting an AWS
// principal) and the identity's role bindings on that group.
//
// Every operation is idempotent and safe to replay: objects are looked up by
// name under their parent before anything is created, so a CloudFormation
// event delivered twice finds what the first delivery made, and deleting
// something that is already gone (or whose ID is not a UIDP at all) succeeds
// without touching anything. An object whose current ID is known (the spec's
// ID field, from a CloudFormation physical ID) is updated in place instead,
// renamed if its name changed, and keeps its UIDP; a rename onto a name
// another object under the same parent already has is refused. Updates send
// only the fields this package writes (ID, name, description, and an
// identity's trust), never an object read back from the service.
//
// Identity names are not unique in a group (the service allows several
// identities of one name), so two deliveries of one event running at once
// can each create one. With ManagedBy set, an Ensure that finds several of
// the caller's identities of its name, before or right after creating one,
// keeps the oldest (by creation time, then lowest UIDP) and deletes the
// others with their role bindings.
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
// # API version
//
// Every call goes through IAM v2 (the SDK's proto/chainguard/platform/iam/v2),
// at the same API URL as v1: updates name the fields they
// write in an explicit update mask, so a server-owned field is never sent
// back, and lists follow their pages (the SDK's List...All). By step, in
// the service chainguard.platform.iam.v2:
//
//	roles               RolesService/ListRoles
//	groups              GroupsService/ListGroups (filters uidp.children_of and
//	                    name, uidp.ids, uidp.ancestors_of), CreateGroup,
//	                    UpdateGroup (mask name, description), DeleteGroup
//	identities          IdentitiesService/ListIdentities (uidp.children_of,
//	                    and name on lookups by name), CreateIdentity,
//	                    UpdateIdentity (mask name, description, and
//	                    aws_identity or claim_match: the trust's kind),
//	                    DeleteIdentity, GetIdentity (Identity: what a
//	                    failed trust check's reason quotes)
//	role bindings       RoleBindingsService/ListRoleBindings (uidp.children_of,
//	                    and identity for one identity's), CreateRoleBinding
//	                    (identity_uid, role_uid), DeleteRoleBinding
//
// # Connection
//
// A Provisioner reaches the API through a Connector, which returns IAM v2
// clients acting with a token obtained then (NewClients dials them). A
// token carries its identity's rights as of its exchange, so after
// PermissionDenied the Provisioner
// connects again before each retry: only a fresh token can carry a role
// binding made since (such as the provisioner's own owner binding from the
// trust step). A refused connect (NotFound or PermissionDenied: the
// provisioner identity was just made and the STS does not know it yet) is
// retried the same way.
//
// # Retries
//
// Each RPC attempt (a list's, with all its pages) runs under its own
// timeout inside the caller's context. Two loops, on the schedules of
// github.com/cenkalti/backoff/v5:
//
//   - Transient failures (Unavailable, Unknown, Internal, Aborted,
//     ResourceExhausted, and a DeadlineExceeded of one RPC, not of the
//     caller) are retried on idempotent calls (List, Delete, an Update to
//     given values) with bounded exponential backoff that never waits past
//     the caller's deadline (200ms doubling to at most 4s, ±10%, within 5
//     tries by default: WithBackoff). A Create is not idempotent: after a
//     transient failure it is tried again only when a re-list proves that
//     nothing was made; an object the re-list finds is the result.
//   - PermissionDenied, a refused connect, and a list that shows nothing
//     where the provisioner must see something (its own group on delete, any
//     role at all) are retried within a time budget per step, a context
//     deadline that starts at the first refusal (WithPermissionDeniedBudget;
//     none by default), after waits of exactly 2s, 4s, 8s, 16s by default
//     (WithPropagationBackoff), each retry with a fresh connection: a 30s
//     budget allows 4 retries, the last wait shortened to end with it.
//
// Errors name the object and the step that failed, and say how long a
// PermissionDenied was retried.
package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"chainguard.dev/sdk/uidp"
	"github.com/cenkalti/backoff/v5"
)

// Defaults for the options.
const (
	DefaultRPCTimeout = 10 * time.Second

	// Transient failures: Unavailable, Unknown, Internal, Aborted,
	// ResourceExhausted, DeadlineExceeded of one RPC. The waits double
	// from 200ms up to 4s (200ms, 400ms, 800ms, 1.6s within 5 tries),
	// each varied by up to ±10% (transientJitter).
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

// backoffMultiplier is how much each wait grows over the one before (up to
// the schedule's maximum).
const backoffMultiplier = 2

// Option configures a Provisioner.
type Option func(*config)

// schedule is a retry schedule: waits from initial doubling up to max,
// varied by jitter (backoff's RandomizationFactor), at most maxTries
// attempts (where a count bounds it).
type schedule struct {
	initial, max time.Duration
	maxTries     int
	jitter       float64
}

// backOff returns the schedule's waits, from the first.
func (s schedule) backOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = s.initial
	b.MaxInterval = s.max
	b.Multiplier = backoffMultiplier
	b.RandomizationFactor = s.jitter
	b.Reset()
	return b
}

// PropagationBackOff returns the default propagation schedule's waits
// (DefaultPropagationInitialBackoff doubling up to
// DefaultPropagationMaxBackoff, exact), for a caller that waits on rights
// applying outside a Provisioner.
func PropagationBackOff() *backoff.ExponentialBackOff {
	return defaultPropagation.backOff()
}

// defaultPropagation is the propagation schedule New starts from.
var defaultPropagation = schedule{initial: DefaultPropagationInitialBackoff, max: DefaultPropagationMaxBackoff}

type config struct {
	rpcTimeout  time.Duration
	transient   schedule
	propagation schedule // maxTries unused: pdBudget bounds it
	pdBudget    time.Duration
	idHook      func(id string)
}

// WithBackoff sets the retry schedule for transient failures (see the
// package doc): waits start at initial and double up to max, each varied by
// up to ±10%, and at most maxTries attempts are made in all. Non-positive
// values keep the defaults.
func WithBackoff(initial, max time.Duration, maxTries int) Option {
	return func(c *config) { c.transient.set(initial, max, maxTries) }
}

// WithPermissionDeniedBudget lets each step retry PermissionDenied (and a
// refused connect, and a list that shows nothing yet; see the package doc)
// for up to d, counted from its first refusal, on the propagation schedule
// (WithPropagationBackoff; by default exactly 2s, 4s, 8s, 16s, 16s...: a
// 30s budget allows 4 retries), each retry with a fresh connection. The
// last wait is shortened to end with the budget, and no wait passes the
// caller's deadline. Zero (the default) makes PermissionDenied final.
func WithPermissionDeniedBudget(d time.Duration) Option {
	return func(c *config) { c.pdBudget = max(d, 0) }
}

// WithPropagationBackoff sets the schedule of PermissionDenied retries: waits
// start at initial and double up to max, without jitter (defaults 2s and
// 16s); the budget bounds how many are made.
// Non-positive values keep the defaults.
func WithPropagationBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.propagation.set(initial, max, 0) }
}

// WithIDHook sets a function called with the UIDP of the group or identity an
// Ensure call settles on (created by it, or found and the caller's), as soon
// as that is known and before any further step: a caller that must answer
// before Ensure returns (a call that ignores its deadline, a panic) learns
// from it what exists and must be cleaned up.
func WithIDHook(f func(id string)) Option {
	return func(c *config) { c.idHook = f }
}

// WithRPCTimeout bounds each single RPC attempt, a list with all its pages
// (default 10s). The caller's context deadline always applies as well.
func WithRPCTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.rpcTimeout = d
		}
	}
}

func (s *schedule) set(initial, max time.Duration, maxTries int) {
	if initial > 0 {
		s.initial = initial
	}
	if max > 0 {
		s.max = max
	}
	if maxTries > 0 {
		s.maxTries = maxTries
	}
	if s.max < s.initial {
		s.max = s.initial
	}
}

// Provisioner ensures and deletes Chainguard groups, identities and role
// bindings through the SDK's IAM v2 clients, which it gets from a
// Connector. It is safe for concurrent use. The roles visible to it are
// listed once and cached. Close it when done.
type Provisioner struct {
	conn Connector
	cfg  config
	rpcs atomic.Int64

	mu      sync.Mutex
	current iam.Clients   // the clients calls go through; nil until connected
	opened  []iam.Clients // every connection made, closed by Close
	roles   []*iam.Role   // every role visible, once listed
}

// New returns a Provisioner that reaches the API through conn. It connects
// on its first call, or on Connect.
func New(conn Connector, opts ...Option) *Provisioner {
	cfg := config{
		rpcTimeout:  DefaultRPCTimeout,
		transient:   schedule{DefaultInitialBackoff, DefaultMaxBackoff, DefaultMaxTries, transientJitter},
		propagation: defaultPropagation,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Provisioner{conn: conn, cfg: cfg}
}

// Dial returns a Provisioner that calls the SDK's IAM v2 clients at apiURL
// (for example https://console-api.enforce.dev, or http://127.0.0.1:PORT for
// the local emulator) with accessToken, already connected, plus the function
// that closes it. No RPC is made here. A fixed token cannot be refreshed: after
// PermissionDenied it only reconnects with the same token (see Static).
func Dial(ctx context.Context, apiURL, accessToken string, opts ...Option) (*Provisioner, func() error, error) {
	p := New(Static(apiURL, accessToken), opts...)
	if err := p.Connect(ctx); err != nil {
		return nil, nil, err
	}
	return p, p.Close, nil
}

// Close closes every connection the Provisioner made.
func (p *Provisioner) Close() error {
	p.mu.Lock()
	opened := p.opened
	p.opened, p.current = nil, nil
	p.mu.Unlock()
	var errs []error
	for _, c := range opened {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close a Chainguard IAM connection: %w", err))
		}
	}
	return errors.Join(errs...)
}

// settled reports the UIDP an Ensure call settled on to the ID hook.
func (p *Provisioner) settled(id string) {
	if p.cfg.idHook != nil && id != "" {
		p.cfg.idHook(id)
	}
}

// RPCs reports how many RPCs this Provisioner has sent so far, retries and
// each page of a list included. Only clients made by NewClients (as Static
// and Dial make them) count them: through other clients it stays 0.
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

// object is what groups and identities share for lookups by name.
type object interface {
	GetUid() string
	GetName() string
}

// childrenOf keeps the items directly under parent (a list filtered by
// children_of should hold nothing else; the check costs nothing).
func childrenOf[T object](items []T, parent string) []T {
	var out []T
	for _, it := range items {
		if uidp.Parent(it.GetUid()) == parent {
			out = append(out, it)
		}
	}
	return out
}

// named returns the items named name, except the one whose ID is except.
func named[T object](items []T, name, except string) []T {
	var out []T
	for _, it := range items {
		if it.GetName() == name && it.GetUid() != except {
			out = append(out, it)
		}
	}
	return out
}

// uids joins the items' UIDPs for errors.
func uids[T object](items []T) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.GetUid()
	}
	return strings.Join(out, ", ")
}
