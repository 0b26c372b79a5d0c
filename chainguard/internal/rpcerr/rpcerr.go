// Package rpcerr holds the gRPC error classification shared by the
// Chainguard clients (token, repos, provision): the words for a gRPC code and
// whose deadline a timeout belongs to.
package rpcerr

import (
	"context"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
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
