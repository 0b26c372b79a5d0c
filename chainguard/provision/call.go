package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/internal/rpcerr"
)

// ownerHint is added to PermissionDenied errors.
const ownerHint = "the provisioner identity needs the owner role on this group"

// propagationNote says why PermissionDenied was retried.
const propagationNote = "a new role binding can take a few seconds to apply"

// StepError is returned when an RPC fails: it names the step (object and
// action) and keeps the service's status, so status.Code(err) still works.
type StepError struct {
	Step     string // e.g. `create identity "aws-auth-identity" in group 0123...`
	Attempts int    // RPC attempts made for this step
	Hint     string // what to do about it, if known
	Retried  string // how PermissionDenied was retried, if it was
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
		b.WriteString(rpcerr.CodeText(st.Code()))
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
	switch {
	case e.Retried != "":
		notes = append(notes, e.Retried)
	case e.Attempts > 1:
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
	permissionDenied
)

// classify decides whether err (from one attempt under the parent ctx) is
// worth retrying, and on which schedule. callerBound says the attempt's
// deadline was the caller's, not the per-RPC timeout.
func (p *Provisioner) classify(ctx context.Context, err error, callerBound bool) retryClass {
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
		if p.cfg.pdBudget > 0 {
			return permissionDenied
		}
	}
	return permanent
}

// pdRemaining starts the PermissionDenied budget's clock at the first
// PermissionDenied this Provisioner sees, and returns how much of the budget
// is left.
func (p *Provisioner) pdRemaining() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pdStart.IsZero() {
		p.pdStart = time.Now()
	}
	return p.cfg.pdBudget - time.Since(p.pdStart)
}

// backoffMultiplier is how much each wait grows over the one before (up to
// the policy's maximum).
const backoffMultiplier = 2

// schedule is the backoff.BackOff used for one step: it follows the policy of
// the class of the last failure, gives up when transient failures have used
// their tries or PermissionDenied the Provisioner's budget, and stops when
// the next wait would pass the caller's deadline.
type schedule struct {
	ctx      context.Context
	p        *Provisioner
	last     retryClass
	deadline bool // gave up because the next wait would pass ctx's deadline
	spent    bool // gave up because the PermissionDenied budget is used up
	curves   map[retryClass]*backoff.ExponentialBackOff
	tries    map[retryClass]int
}

func (p *Provisioner) newSchedule(ctx context.Context) *schedule {
	s := &schedule{ctx: ctx, p: p, curves: map[retryClass]*backoff.ExponentialBackOff{}, tries: map[retryClass]int{}}
	for c, pol := range map[retryClass]backoffPolicy{transient: p.cfg.transient, permissionDenied: p.cfg.permissionDenied} {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = pol.initial
		b.MaxInterval = pol.max
		b.Multiplier = backoffMultiplier
		b.RandomizationFactor = pol.jitter
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
	var next time.Duration
	switch s.last {
	case transient:
		if s.tries[transient] >= s.p.cfg.transient.maxTries {
			return backoff.Stop
		}
		next = s.curves[transient].NextBackOff()
	case permissionDenied:
		left := s.p.pdRemaining()
		if left <= 0 {
			s.spent = true
			return backoff.Stop
		}
		next = min(s.curves[permissionDenied].NextBackOff(), left)
	default:
		return backoff.Stop
	}
	if deadline, ok := s.ctx.Deadline(); ok && time.Now().Add(next).After(deadline) {
		s.deadline = true
		return backoff.Stop
	}
	return next
}

// call runs one RPC step with a per-attempt timeout and retries. step names
// the object and action for errors.
func call[T any](ctx context.Context, p *Provisioner, step string, rpc func(context.Context) (T, error)) (T, error) {
	sched := p.newSchedule(ctx)
	attempts := 0
	var lastErr error
	var firstDenied time.Time // when this step was first refused with PermissionDenied
	callerBound := false      // the last attempt ran until the caller's deadline
	op := func() (T, error) {
		attempts++
		p.rpcs.Add(1)
		actx, cancel := context.WithTimeout(ctx, p.cfg.rpcTimeout)
		defer cancel()
		callerBound = rpcerr.CallerDeadlineFirst(ctx, actx)
		res, err := rpc(actx)
		if err == nil {
			return res, nil
		}
		lastErr = err
		if status.Code(err) == codes.PermissionDenied && firstDenied.IsZero() {
			firstDenied = time.Now()
		}
		c := p.classify(ctx, err, callerBound)
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
	if status.Code(err) == codes.PermissionDenied && p.cfg.pdBudget > 0 {
		switch denied := sched.tries[permissionDenied]; {
		case denied == 2:
			se.Retried = fmt.Sprintf("retried once over %s; %s", roundDuration(time.Since(firstDenied)), propagationNote)
		case denied > 2:
			se.Retried = fmt.Sprintf("retried %d times over %s; %s", denied-1, roundDuration(time.Since(firstDenied)), propagationNote)
		case sched.spent:
			se.Retried = fmt.Sprintf("not retried: this event already used its %s of retries for permission denied", p.cfg.pdBudget)
		}
	}
	switch {
	case sched.deadline:
		se.Note = "the next retry would pass the caller's deadline"
	case ctx.Err() != nil, callerBound && status.Code(err) == codes.DeadlineExceeded:
		se.Note = "the caller's deadline passed or it gave up"
	}
	var zero T
	return zero, se
}

// roundDuration shortens d for messages: whole seconds from 10s, tenths from
// 1s, else milliseconds.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
