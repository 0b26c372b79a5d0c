package provision

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// The schedules' waits themselves, read from the schedule a step uses: the
// documented doubling, jitter bounds and number of tries.
func TestScheduleIntervals(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name   string
		opts   []Option
		class  retryClass
		jitter float64         // allowed deviation from each nominal wait
		want   []time.Duration // nominal waits, then backoff.Stop
	}{
		{name: "transient defaults", class: transient, jitter: 0.1,
			want: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}},
		{name: "transient capped", opts: []Option{WithBackoff(s, 3*s, 6)}, class: transient, jitter: 0.1,
			want: []time.Duration{s, 2 * s, 3 * s, 3 * s, 3 * s}},
		{name: "permission denied defaults", opts: []Option{WithPermissionDeniedBudget(time.Hour)}, class: permissionDenied,
			want: []time.Duration{2 * s, 4 * s, 8 * s, 16 * s, 16 * s, 16 * s}},
		{name: "permission denied custom", opts: []Option{WithPermissionDeniedBudget(time.Hour), WithPropagationBackoff(s, 5*s)}, class: permissionDenied,
			want: []time.Duration{s, 2 * s, 4 * s, 5 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Many draws, so that a jitter outside the bounds (or none
			// where some is documented) shows.
			spread := false
			for range 200 {
				sched := New(nil, tt.opts...).newSchedule(context.Background())
				for i, nominal := range tt.want {
					sched.failed(tt.class)
					got := sched.NextBackOff()
					lo, hi := time.Duration(float64(nominal)*(1-tt.jitter)), time.Duration(float64(nominal)*(1+tt.jitter))
					if got < lo || got > hi {
						t.Fatalf("wait #%d = %s, want %s within ±%g%% [%s, %s]", i+1, got, nominal, tt.jitter*100, lo, hi)
					}
					spread = spread || got != nominal
				}
				if tt.class == transient {
					sched.failed(tt.class)
					if got := sched.NextBackOff(); got != backoff.Stop {
						t.Fatalf("wait #%d = %s, want none (tries used up)", len(tt.want)+1, got)
					}
				}
			}
			if spread != (tt.jitter > 0) {
				t.Fatalf("waits varied: %v; want them to vary only with jitter (%g)", spread, tt.jitter)
			}
		})
	}
}

// The documented budget arithmetic: a 30s PermissionDenied budget allows 4
// retries (2s, 4s, 8s, then 16s shortened to what is left), when each
// refused attempt takes 50ms.
func TestPermissionDeniedBudgetRetries(t *testing.T) {
	p := New(nil, WithPermissionDeniedBudget(30*time.Second))
	sched := p.newSchedule(context.Background())
	const attempt = 50 * time.Millisecond
	elapsed, retries := attempt, 0 // the first refused attempt
	var waits []time.Duration
	for {
		// Move the budget's clock instead of sleeping.
		p.mu.Lock()
		p.pdStart = time.Now().Add(-elapsed)
		p.mu.Unlock()
		sched.failed(permissionDenied)
		next := sched.NextBackOff()
		if next == backoff.Stop {
			break
		}
		waits = append(waits, next.Round(100*time.Millisecond))
		retries++
		elapsed += next + attempt
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 15800 * time.Millisecond}
	if retries != 4 || !slices.Equal(waits, want) {
		t.Fatalf("a 30s budget made %d retries after waits %v, want 4 after %v", retries, waits, want)
	}
}
