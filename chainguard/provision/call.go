package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"chainguard.dev/sdk/uidp"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ownerHint is added to PermissionDenied errors.
const ownerHint = "the provisioner identity needs the owner role on this group"

// StepError is returned when an RPC fails: it names the step (object and
// action) and keeps the service's status, so status.Code(err) still works.
type StepError struct {
	Step     string // e.g. `create identity "aws-auth-identity" in group 0123...`
	Attempts int    // RPC attempts made for this step
	Hint     string // what to do about it, if known
	Note     string // why retrying stopped early, if it did
	Err      error  // the gRPC status error (or context error)
}

func (e *StepError) Error() string {
	var b strings.Builder
	b.WriteString(e.Step)
	b.WriteString(": ")
	st, ok := status.FromError(e.Err)
	if !ok {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString(codeText(st.Code()))
		if e.Hint != "" {
			b.WriteString(": ")
			b.WriteString(e.Hint)
		}
		if msg := st.Message(); msg != "" {
			if e.Hint != "" {
				fmt.Fprintf(&b, " (service: %s)", msg)
			} else {
				b.WriteString(": ")
				b.WriteString(msg)
			}
		}
	}
	var notes []string
	if e.Attempts > 1 {
		notes = append(notes, fmt.Sprintf("after %d attempts", e.Attempts))
	}
	if e.Note != "" {
		notes = append(notes, e.Note)
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
	}
	return b.String()
}

// Unwrap returns the underlying status or context error.
func (e *StepError) Unwrap() error { return e.Err }

// codeText turns a gRPC code into words: PermissionDenied -> "permission denied".
func codeText(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte(' ')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hintFor says what to do about a failure code, when that is known.
func hintFor(c codes.Code) string {
	switch c {
	case codes.PermissionDenied:
		return ownerHint
	case codes.Unauthenticated:
		return "the Chainguard access token is missing, invalid or expired: exchange a fresh one"
	}
	return ""
}

// nameTakenHint adds a hint to an update refused with AlreadyExists: another
// object of kind under parent took the name between the check and the update.
func nameTakenHint(err error, kind, parent string) error {
	var se *StepError
	if status.Code(err) == codes.AlreadyExists && errors.As(err, &se) {
		se.Hint = fmt.Sprintf("another %s in group %s has that name: choose another name, or delete or rename that %s first", kind, parent, kind)
	}
	return err
}

type retryClass int

const (
	permanent retryClass = iota
	transient
	propagation
)

// classify decides whether err (from one attempt under the parent ctx) is
// worth retrying, and on which schedule. callerBound says the attempt's
// deadline was the caller's, not the per-RPC timeout.
func (p *Provisioner) classify(ctx context.Context, scope string, err error, callerBound bool) retryClass {
	if ctx.Err() != nil {
		return permanent // the caller's own deadline or cancellation
	}
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		if callerBound {
			// The server may answer a hair before the caller's context
			// expires: this is still the caller's deadline.
			return permanent
		}
		return transient
	case codes.Unavailable, codes.ResourceExhausted:
		return transient
	case codes.PermissionDenied:
		if p.isFresh(scope) {
			return propagation
		}
	}
	return permanent
}

// markFresh records that this client just created a binding or group in
// scope, so PermissionDenied there is retried for a while.
func (p *Provisioner) markFresh(scope string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fresh[scope] = time.Now()
}

func (p *Provisioner) isFresh(scope string) bool {
	if scope == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for s, at := range p.fresh {
		if time.Since(at) < freshScopeWindow && uidp.IsAncestorOrSelf(s, scope) {
			return true
		}
	}
	return false
}

// schedule is the backoff.BackOff used for one step: it follows the policy of
// the class of the last failure, gives up when that class has used its
// tries, and stops when the next wait would pass the caller's deadline.
type schedule struct {
	ctx      context.Context
	last     retryClass
	deadline bool // gave up because the next wait would pass ctx's deadline
	policies map[retryClass]*backoffPolicy
	curves   map[retryClass]*backoff.ExponentialBackOff
	tries    map[retryClass]int
}

func (p *Provisioner) newSchedule(ctx context.Context) *schedule {
	s := &schedule{
		ctx: ctx,
		policies: map[retryClass]*backoffPolicy{
			transient:   &p.cfg.transient,
			propagation: &p.cfg.propagation,
		},
		curves: map[retryClass]*backoff.ExponentialBackOff{},
		tries:  map[retryClass]int{},
	}
	for c, pol := range s.policies {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = pol.initial
		b.MaxInterval = pol.max
		s.curves[c] = b
	}
	return s
}

// failed records one failed attempt of class c.
func (s *schedule) failed(c retryClass) {
	s.last = c
	s.tries[c]++
}

// Reset implements backoff.BackOff.
func (s *schedule) Reset() {
	for _, b := range s.curves {
		b.Reset()
	}
}

// NextBackOff implements backoff.BackOff.
func (s *schedule) NextBackOff() time.Duration {
	pol, ok := s.policies[s.last]
	if !ok || s.tries[s.last] >= pol.maxTries {
		return backoff.Stop
	}
	next := s.curves[s.last].NextBackOff()
	if deadline, ok := s.ctx.Deadline(); ok && time.Now().Add(next).After(deadline) {
		s.deadline = true
		return backoff.Stop
	}
	return next
}

// call runs one RPC step with a per-attempt timeout and retries. step names
// the object and action for errors; scope is the UIDP the RPC acts on (for
// the propagation-delay rule).
func call[T any](ctx context.Context, p *Provisioner, step, scope string, rpc func(context.Context) (T, error)) (T, error) {
	sched := p.newSchedule(ctx)
	attempts := 0
	var lastErr error
	callerBound := false // the last attempt ran until the caller's deadline
	op := func() (T, error) {
		attempts++
		p.rpcs.Add(1)
		deadline, ok := ctx.Deadline()
		callerBound = ok && time.Until(deadline) <= p.cfg.rpcTimeout
		actx, cancel := context.WithTimeout(ctx, p.cfg.rpcTimeout)
		defer cancel()
		res, err := rpc(actx)
		if err == nil {
			return res, nil
		}
		lastErr = err
		c := p.classify(ctx, scope, err, callerBound)
		if c == permanent {
			return res, backoff.Permanent(err)
		}
		sched.failed(c)
		return res, err
	}
	res, err := backoff.Retry(ctx, op, backoff.WithBackOff(sched), backoff.WithMaxElapsedTime(0))
	if err == nil {
		return res, nil
	}
	if lastErr != nil {
		// Retry returns the context's cause if the caller gave up while
		// waiting; the last RPC's own error says more.
		err = lastErr
	}
	se := &StepError{Step: step, Attempts: attempts, Hint: hintFor(status.Code(err)), Err: err}
	switch {
	case sched.deadline:
		se.Note = "the next retry would pass the caller's deadline"
	case ctx.Err() != nil, callerBound && status.Code(err) == codes.DeadlineExceeded:
		se.Note = "the caller's deadline passed or it gave up"
	}
	var zero T
	return zero, se
}
