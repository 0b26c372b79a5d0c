package provision

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/internal/rpcerr"
)

// ownerHint is added to PermissionDenied errors.
const ownerHint = "the provisioner identity needs the owner role on this group"

// Why refusals were retried.
const (
	propagationNote         = "a new role binding can take a few seconds to apply"
	identityPropagationNote = "a new identity or role binding can take a few seconds to apply"
)

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
