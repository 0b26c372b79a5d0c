package rpcerr

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func TestCodeText(t *testing.T) {
	tests := []struct {
		code codes.Code
		want string
	}{
		{codes.OK, "ok"},
		{codes.PermissionDenied, "permission denied"},
		{codes.Unavailable, "unavailable"},
		{codes.DeadlineExceeded, "deadline exceeded"},
		{codes.ResourceExhausted, "resource exhausted"},
		{codes.FailedPrecondition, "failed precondition"},
		{codes.Code(99), "code(99)"},
	}
	for _, tt := range tests {
		if got := CodeText(tt.code); got != tt.want {
			t.Errorf("CodeText(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

func TestCallerDeadlineFirst(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		parent time.Time // zero: no deadline
		call   time.Duration
		want   bool
	}{
		{name: "no caller deadline", call: time.Second, want: false},
		{name: "caller deadline earlier", parent: now.Add(time.Second), call: time.Hour, want: true},
		{name: "call deadline earlier", parent: now.Add(time.Hour), call: time.Second, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.Context()
			if !tt.parent.IsZero() {
				var cancel context.CancelFunc
				parent, cancel = context.WithDeadline(parent, tt.parent)
				defer cancel()
			}
			call, cancel := context.WithTimeout(parent, tt.call)
			defer cancel()
			if got := CallerDeadlineFirst(parent, call); got != tt.want {
				t.Errorf("CallerDeadlineFirst() = %v, want %v", got, tt.want)
			}
		})
	}
}
