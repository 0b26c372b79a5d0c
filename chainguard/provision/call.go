package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"github.com/cenkalti/backoff/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/internal/rpcerr"
)

// Notes on why retrying stopped early.
const (
	noteNextRetry = "the next retry would pass the caller's deadline"
	noteCaller    = "the caller's deadline passed or it gave up"
)

// notVisible is a list that shows nothing where the provisioner should see
// something (a group it owns, any role at all). The lists are filtered by the
// caller's rights, and a token carries the rights its identity had when it
// was exchanged, so this may mean "not yet": it is retried like
// PermissionDenied, each time with a fresh token.
type notVisible string

func (e notVisible) Error() string { return string(e) }

// isDenied reports whether err is PermissionDenied.
func isDenied(err error) bool { return status.Code(err) == codes.PermissionDenied }

// isNotVisible reports whether err is a notVisible.
func isNotVisible(err error) bool {
	var nv notVisible
	return errors.As(err, &nv)
}

// retries is the record of one step's attempts, for its error.
type retries struct {
	attempts    int       // RPC attempts
	denied      int       // denials met while a budget allowed retrying them
	firstDenied time.Time // when the first of them was met
	callerBound bool      // the last attempt ran until the caller's deadline
	note        string    // why retrying stopped early, if it did
}

// retried says how denials were retried, and why: "" when they were not.
func (r *retries) retried(why string) string {
	over := roundDuration(time.Since(r.firstDenied))
	switch {
	case r.denied == 2:
		return fmt.Sprintf("retried once over %s; %s", over, why)
	case r.denied > 2:
		return fmt.Sprintf("retried %d times over %s; %s", r.denied-1, over, why)
	}
	return ""
}

// annotate adds to err, which is not a StepError, how denials were retried
// (and why) and why retrying stopped early.
func (r *retries) annotate(err error, why string) error {
	var notes []string
	if s := r.retried(why); s != "" {
		notes = append(notes, s)
	}
	if r.note != "" {
		notes = append(notes, r.note)
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(notes, "; "))
}

// sleep waits d, or less when within ends first (the PermissionDenied
// budget: the last wait is shortened to what is left of it). It does not
// start a wait that would end at or after ctx's deadline, and it returns
// false when it did not wait to the end because of ctx, noting why.
func (r *retries) sleep(ctx, within context.Context, d time.Duration) bool {
	if end, ok := within.Deadline(); ok {
		d = min(d, time.Until(end))
	}
	if end, ok := ctx.Deadline(); ok && !time.Now().Add(d).Before(end) {
		r.note = noteNextRetry
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-within.Done():
	}
	if ctx.Err() != nil {
		r.note = noteCaller
		return false
	}
	return true
}

// attemptFunc is one RPC attempt through c.
type attemptFunc func(ctx context.Context, c iam.Clients) error

// verifyFunc looks for what a failed Create attempt may have made (a
// re-list): done means it exists (and verifyFunc kept it as the step's
// result); otherwise nothing was made and the Create may be tried again.
type verifyFunc func(ctx context.Context) (done bool, err error)

// attempt makes one RPC attempt (for a list, every page) under the per-RPC
// timeout, through the current clients (connecting first if need be: a
// failure to connect ends the step as it is), counting its RPCs in RPCs.
func (p *Provisioner) attempt(ctx context.Context, r *retries, rpc attemptFunc) error {
	c, err := p.clients(ctx)
	if err != nil {
		return backoff.Permanent(err)
	}
	r.attempts++
	actx, cancel := context.WithTimeout(context.WithValue(ctx, rpcCounter{}, &p.rpcs), p.cfg.rpcTimeout)
	defer cancel()
	r.callerBound = rpcerr.CallerDeadlineFirst(ctx, actx)
	return statusOf(rpc(actx, c))
}

// statusOf returns the gRPC status error that err wraps, so that a step's
// error and retry decision see the service's code and message alone: the
// SDK's List...All functions wrap a failed page's error in
// "listing \"<resource>\": ...", and return the context's own error when
// it ends between two pages (made here the status a single RPC would have
// answered).
func statusOf(err error) error {
	var st interface{ GRPCStatus() *status.Status }
	switch {
	case err == nil:
		return nil
	case errors.As(err, &st):
		return st.GRPCStatus().Err()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	}
	return err
}

// transient reports whether err, from one attempt, is a failure worth
// retrying (rpcerr.Transient); never once the caller's own deadline passed
// or it canceled.
func (r *retries) transient(ctx context.Context, err error) bool {
	return ctx.Err() == nil && rpcerr.Transient(err, r.callerBound)
}

// retryTransient is the first retry loop: it makes attempts until one
// succeeds, fails otherwise than transiently, or the step has used its
// tries (WithBackoff), waiting between them on the transient schedule
// (never past ctx's deadline). A step with verify is a Create: after a
// transient failure it is tried again only when verify shows that nothing
// was made.
func (p *Provisioner) retryTransient(ctx context.Context, r *retries, rpc attemptFunc, verify verifyFunc) error {
	waits := p.cfg.transient.backOff()
	for tries := 1; ; tries++ {
		err := p.attempt(ctx, r, rpc)
		var permanent *backoff.PermanentError
		if err == nil || errors.As(err, &permanent) || !r.transient(ctx, err) {
			return err
		}
		if verify != nil {
			done, verr := verify(ctx)
			if verr != nil {
				return backoff.Permanent(verr)
			}
			if done {
				return nil
			}
		}
		if tries >= p.cfg.transient.maxTries || !r.sleep(ctx, ctx, waits.NextBackOff()) {
			return err
		}
	}
}

// retryDenied is the second retry loop: it runs try until it succeeds or
// fails otherwise than by a denial (denied), waiting between tries on the
// propagation schedule (WithPropagationBackoff) within the PermissionDenied
// budget, a context deadline that starts at the first denial. The last wait
// is shortened to end with the budget, and the last try made then. With
// fresh, each retry first reconnects: a token carries the rights its
// identity had when it was exchanged, so only a new one can carry a role
// binding made since. Without a budget a denial is final.
func (p *Provisioner) retryDenied(ctx context.Context, r *retries, denied func(error) bool, fresh bool, try func() error) error {
	var (
		budget context.Context
		waits  *backoff.ExponentialBackOff
	)
	for {
		err := try()
		var permanent *backoff.PermanentError
		if err == nil || errors.As(err, &permanent) || !denied(err) || p.cfg.pdBudget <= 0 {
			return err
		}
		if r.denied++; r.denied == 1 {
			r.firstDenied = time.Now()
		}
		if ctx.Err() != nil {
			return err
		}
		if budget == nil {
			var cancel context.CancelFunc
			budget, cancel = context.WithTimeout(ctx, p.cfg.pdBudget)
			defer cancel()
			waits = p.cfg.propagation.backOff()
		}
		if budget.Err() != nil || !r.sleep(ctx, budget, waits.NextBackOff()) {
			return err
		}
		if fresh {
			if rerr := p.reconnect(ctx); rerr != nil && !refused(rerr) {
				r.note = "a fresh token to retry with could not be had: " + rerr.Error()
				return err
			}
			// Refused: the provisioner identity itself is not yet
			// known to the STS everywhere; retry with the current token.
		}
	}
}

// run runs one RPC step through both retry loops and names it in its error
// (a StepError).
func (p *Provisioner) run(ctx context.Context, step string, rpc attemptFunc, verify verifyFunc) error {
	r := &retries{}
	err := p.retryDenied(ctx, r, isDenied, true, func() error { return p.retryTransient(ctx, r, rpc, verify) })
	if err == nil {
		return nil
	}
	var permanent *backoff.PermanentError
	if errors.As(err, &permanent) {
		return permanent.Err // the verify step's or the connection's error, named by them
	}
	code := status.Code(err)
	se := &StepError{Step: step, Attempts: r.attempts, Hint: hintFor(code), Note: r.note, Err: err}
	if code == codes.PermissionDenied {
		se.Retried = r.retried(propagationNote)
	}
	if se.Note == "" && (ctx.Err() != nil || r.callerBound && code == codes.DeadlineExceeded) {
		se.Note = noteCaller
	}
	return se
}

// untilVisible runs check, which makes its own calls, and retries it within
// the PermissionDenied budget, each time with a fresh token, while it fails
// with notVisible (see there). The last notVisible is returned with the
// step's name and how it was retried.
func (p *Provisioner) untilVisible(ctx context.Context, step string, check func() error) error {
	r := &retries{}
	err := p.retryDenied(ctx, r, isNotVisible, true, check)
	var permanent *backoff.PermanentError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &permanent):
		return permanent.Err
	case !isNotVisible(err):
		return err
	}
	return fmt.Errorf("%s: %w", step, r.annotate(err, propagationNote))
}

// call runs an idempotent RPC (a List, a Delete, an Update to given values)
// as one step: transient failures and PermissionDenied are retried.
func call[T any](ctx context.Context, p *Provisioner, step string, rpc func(context.Context, iam.Clients) (T, error)) (T, error) {
	var res T
	err := p.run(ctx, step, func(ctx context.Context, c iam.Clients) (err error) {
		res, err = rpc(ctx, c)
		return err
	}, nil)
	return res, err
}

// create runs a Create as one step. It is not idempotent: after a
// transient failure it is tried again only when find (a re-list) proves
// that nothing was made; when find shows the object, that is the result,
// and found is true. PermissionDenied is retried (nothing is made then).
func create[T any](ctx context.Context, p *Provisioner, step string, rpc func(context.Context, iam.Clients) (T, error), find func(context.Context) (T, bool, error)) (res T, found bool, err error) {
	err = p.run(ctx, step, func(ctx context.Context, c iam.Clients) (err error) {
		res, err = rpc(ctx, c)
		return err
	}, func(ctx context.Context) (bool, error) {
		got, ok, err := find(ctx)
		if ok {
			res, found = got, true
		}
		return ok, err
	})
	return res, found, err
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
