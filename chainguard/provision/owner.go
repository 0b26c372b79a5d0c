package provision

import (
	"fmt"
	"strings"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// StoredDescription returns the description stored for an object made for
// managedBy: description followed by the ownership marker
// " [managed by CloudFormation: <managedBy>]", or description alone when
// managedBy is empty. It fails (matching validate.ErrInvalid) when the result
// is not a valid description, saying by how much a description is too long.
func StoredDescription(description, managedBy string) (string, error) {
	if err := validate.Description(description); err != nil || managedBy == "" {
		return description, err
	}
	m := validate.OwnershipMarker(managedBy)
	stored := m
	if description != "" {
		m = " " + m
		stored = description + m
	}
	if validate.Description(m) != nil {
		return "", invalidMarker(fmt.Sprintf("the ownership marker %q cannot be stored in a description: the owner must be letters, digits and punctuation, and short", m))
	}
	if n, extra := len([]rune(description)), len([]rune(m)); n+extra > validate.MaxDescriptionLen {
		return "", invalidMarker(fmt.Sprintf("description is %d characters long and the ownership marker %q adds %d: at most %d are allowed in all: shorten the description to at most %d characters",
			n, m, extra, validate.MaxDescriptionLen, max(validate.MaxDescriptionLen-extra, 0)))
	}
	return stored, nil
}

// owns reports whether an object with the stored description belongs to
// managedBy: it carries its marker. Without managedBy every object does.
func owns(stored, managedBy string) bool {
	return managedBy == "" || strings.HasSuffix(stored, validate.OwnershipMarker(managedBy))
}

// invalidMarker is a description that cannot take the ownership marker; it
// matches validate.ErrInvalid.
type invalidMarker string

func (e invalidMarker) Error() string        { return string(e) }
func (e invalidMarker) Is(target error) bool { return target == validate.ErrInvalid }
