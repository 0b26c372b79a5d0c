package rpcerr

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

func TestTransient(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		callerBound bool
		want        bool
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), false, true},
		{"unknown (HTTP 500 through the gateway)", status.Error(codes.Unknown, "500"), false, true},
		{"internal", status.Error(codes.Internal, "boom"), false, true},
		{"resource exhausted", status.Error(codes.ResourceExhausted, "slow down"), false, true},
		{"aborted", status.Error(codes.Aborted, "conflict"), false, true},
		{"own deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false, true},
		{"own deadline between the SDK's retries", context.DeadlineExceeded, false, true},
		{"caller's deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), true, false},
		{"caller's deadline between the SDK's retries", context.DeadlineExceeded, true, false},
		{"canceled", status.Error(codes.Canceled, "context canceled"), false, false},
		{"permission denied", status.Error(codes.PermissionDenied, "no"), false, false},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no"), false, false},
		{"not found", status.Error(codes.NotFound, "no"), false, false},
		{"invalid argument", status.Error(codes.InvalidArgument, "no"), false, false},
		{"failed precondition", status.Error(codes.FailedPrecondition, "no"), false, false},
		{"not a status", errors.New("parse URL"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Transient(tt.err, tt.callerBound); got != tt.want {
				t.Errorf("Transient(%v, callerBound=%v) = %v, want %v", tt.err, tt.callerBound, got, tt.want)
			}
		})
	}
}
