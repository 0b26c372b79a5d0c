// Package rpcerr holds the gRPC error classification shared by the
// Chainguard clients (token, repos, provision): the words for a gRPC code,
// whose deadline a timeout belongs to, and which failures are transient.
package rpcerr

import (
	"context"
	"errors"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CodeText spells a gRPC code in words, e.g. PermissionDenied -> "permission denied".
func CodeText(c codes.Code) string {
	var b strings.Builder
	prevLower := false
	for _, r := range c.String() {
		upper := unicode.IsUpper(r)
		if upper && prevLower {
			b.WriteByte(' ')
		}
		prevLower = !upper
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// CallerDeadlineFirst reports whether the caller's deadline (parent) ends no
// later than the call's own (call, derived from parent with its own timeout),
// so that a timeout is blamed on the right one: false when parent has no
// deadline.
func CallerDeadlineFirst(parent, call context.Context) bool {
	pd, ok := parent.Deadline()
	cd, _ := call.Deadline()
	return ok && !pd.After(cd)
}

// Transient reports whether a failed attempt is worth another: the service
// was not reached (Unavailable), failed on its side (Unknown, Internal,
// ResourceExhausted, Aborted), or did not answer within the attempt's own
// deadline. callerBound says the attempt's deadline was the caller's: a
// timeout is then final, and so are cancellation and every refusal
// (whether a PermissionDenied may be a role binding still propagating is
// for the caller to decide, within its own budget). An error that is
// neither a gRPC status nor a deadline (a malformed URL) is final.
func Transient(err error, callerBound bool) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		// The SDK returns its context's error when the deadline passes
		// between its own Unavailable retries.
		return !callerBound
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		// The server may answer a hair before the caller's context
		// expires: that is still the caller's deadline.
		return !callerBound
	case codes.Unavailable, codes.Unknown, codes.Internal, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}
