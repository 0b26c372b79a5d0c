package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The schedules' waits themselves, drawn from the backoff a step uses: the
// documented doubling and jitter bounds.
func TestScheduleIntervals(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name   string
		opts   []Option
		sched  func(config) schedule
		jitter float64         // allowed deviation from each nominal wait
		want   []time.Duration // nominal waits
		tries  int             // attempts allowed; 0: not bounded by a count
	}{
		{name: "transient defaults", sched: transientOf, jitter: 0.1,
			want: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 4 * s}, tries: 5},
		{name: "transient capped", opts: []Option{WithBackoff(s, 3*s, 6)}, sched: transientOf, jitter: 0.1,
			want: []time.Duration{s, 2 * s, 3 * s, 3 * s, 3 * s}, tries: 6},
		{name: "transient: max below initial", opts: []Option{WithBackoff(2*s, s, 0)}, sched: transientOf, jitter: 0.1,
			want: []time.Duration{2 * s, 2 * s}, tries: DefaultMaxTries},
		{name: "propagation defaults", sched: propagationOf,
			want: []time.Duration{2 * s, 4 * s, 8 * s, 16 * s, 16 * s, 16 * s}},
		{name: "propagation custom", opts: []Option{WithPropagationBackoff(s, 5*s)}, sched: propagationOf,
			want: []time.Duration{s, 2 * s, 4 * s, 5 * s, 5 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched := tt.sched(New(nil, tt.opts...).cfg)
			if sched.maxTries != tt.tries {
				t.Fatalf("tries = %d, want %d", sched.maxTries, tt.tries)
			}
			// Many draws, so that a jitter outside the bounds (or none
			// where some is documented) shows.
			spread := false
			for range 200 {
				waits := sched.backOff()
				for i, nominal := range tt.want {
					got := waits.NextBackOff()
					lo, hi := time.Duration(float64(nominal)*(1-tt.jitter)), time.Duration(float64(nominal)*(1+tt.jitter))
					if got < lo || got > hi {
						t.Fatalf("wait #%d = %s, want %s within ±%g%% [%s, %s]", i+1, got, nominal, tt.jitter*100, lo, hi)
					}
					spread = spread || got != nominal
				}
			}
			if spread != (tt.jitter > 0) {
				t.Fatalf("waits varied: %v; want them to vary only with jitter (%g)", spread, tt.jitter)
			}
		})
	}
}

func transientOf(c config) schedule   { return c.transient }
func propagationOf(c config) schedule { return c.propagation }

// The documented budget arithmetic: the default propagation waits fit a 30s
// budget four times, the fourth shortened to what is left.
func TestPropagationWaitsInBudget(t *testing.T) {
	const budget = 30 * time.Second
	waits := New(nil).cfg.propagation.backOff()
	var got []time.Duration
	for elapsed := time.Duration(0); elapsed < budget; {
		w := min(waits.NextBackOff(), budget-elapsed)
		got = append(got, w)
		elapsed += w
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("waits in a 30s budget = %v, want %v", got, want)
	}
}

// statusOf hands the retry loops and StepError the service's own status,
// whatever the SDK's List...All wrapped around it.
func TestStatusOf(t *testing.T) {
	denied := status.Error(codes.PermissionDenied, "no")
	plain := errors.New("plain")
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string // the status message, or the error text when not a status
	}{
		{name: "nil", err: nil, wantCode: codes.OK},
		{name: "a status", err: denied, wantCode: codes.PermissionDenied, wantMsg: "no"},
		{name: "a page's status, wrapped", err: fmt.Errorf("listing %q: %w", "identities", denied), wantCode: codes.PermissionDenied, wantMsg: "no"},
		{name: "the context's deadline between pages", err: context.DeadlineExceeded, wantCode: codes.DeadlineExceeded, wantMsg: context.DeadlineExceeded.Error()},
		{name: "cancelled between pages", err: context.Canceled, wantCode: codes.Canceled, wantMsg: context.Canceled.Error()},
		{name: "another error", err: plain, wantCode: codes.Unknown, wantMsg: "plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := statusOf(tt.err)
			if tt.err == nil {
				if got != nil {
					t.Fatalf("statusOf(nil) = %v", got)
				}
				return
			}
			st, _ := status.FromError(got)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Fatalf("statusOf(%v) = %v (code %v, message %q), want code %v, message %q", tt.err, got, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.err == plain && got != plain {
				t.Fatalf("statusOf(%v) = %v, want it unchanged", tt.err, got)
			}
		})
	}
}
