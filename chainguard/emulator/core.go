package emulator

import (
	"maps"
	"slices"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	"chainguard.dev/sdk/uidp"
	"chainguard.dev/sdk/validation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The IAM objects have one core per kind, which both API versions serve:
// group.go, identity.go and rolebinding.go (roles included) hold the
// operations (validation, uniqueness, storage, propagation, lists) and this
// file what they share (names, descriptions, list filters). The core works
// on the stored v1 messages under e.mu and returns views, copies taken under
// the lock; iam.go (v1) and iamv2.go (v2) are adapters that read a request,
// call one core operation and turn its views into the version's response.
// Where a version checks a request differently (v1 refuses what a v2 update
// mask may change), the adapter passes its check to the core operation.
//
// Scoped methods are authorized by the interceptor (capabilities of the
// method's iam annotation on its iam_scope field, held by the caller's token)
// before they get here; unscoped ones (Create of groups, the Lists, GetRole)
// check or filter in the core, by the same token: a List leaves out what the
// token may not list instead of failing.

// checkName applies the SDK's character rule (validation.ValidateName) to
// the name of an object of kind.
func checkName(kind, name string) error {
	if err := validation.ValidateName(name); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s name %q is invalid: %v (lower-case letters, digits, space, '.', '_', '-')", kind, name, err)
	}
	return nil
}

// Name lengths of groups and identities: "Must be 3-63 characters"
// (proto/chainguard/platform/iam/v2/groups.proto, Group.name, and
// identities.proto, Identity.name, SDK v0.1.212). The v1 protos the emulator
// serves say nothing; the service behind both versions is one, so the
// stricter v2 rule applies to v1 too.
const minNameLen, maxNameLen = 3, 63

// checkNameAndDescription validates the name (checkName plus the 3-63
// character rule) and the description (validation.ValidateDescription) of
// a group or an identity (kind).
func checkNameAndDescription(kind, name, description string) error {
	if err := checkName(kind, name); err != nil {
		return err
	}
	if n := len(name); n < minNameLen || n > maxNameLen { // ValidateName admits ASCII only: bytes are characters
		return status.Errorf(codes.InvalidArgument, "%s name %q has %d characters: it must have %d to %d", kind, name, n, minNameLen, maxNameLen)
	}
	if err := validation.ValidateDescription(description); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s description is invalid: %v (at most 512 characters, no tabs or newlines)", kind, err)
	}
	return nil
}

// parentOf is uidp.Parent with "" for root-level UIDPs.
func parentOf(id string) string {
	if uidp.InRoot(id) {
		return ""
	}
	return uidp.Parent(id)
}

// listQuery is what every List filters by: the request's UIDP filter, its
// exact id and name where it has them ("" matches any), and its other UIDP
// fields (field name -> value, checked when set; e.g. a v2 role binding
// list's identity and group).
type listQuery struct {
	uidp     *common.UIDPFilter
	id, name string
	refs     map[string]string
}

// check fails with InvalidArgument unless every UIDP of q is valid.
func (q listQuery) check() error {
	f := q.uidp
	for field, v := range map[string]string{
		"uidp.ancestors_of": f.GetAncestorsOf(), "uidp.descendants_of": f.GetDescendantsOf(), "uidp.children_of": f.GetChildrenOf(),
	} {
		if v != "" {
			if err := checkUIDP(field, v); err != nil {
				return err
			}
		}
	}
	for _, v := range f.GetIds() {
		if err := checkUIDP("uidp.ids", v); err != nil {
			return err
		}
	}
	for field, v := range q.refs {
		if v != "" {
			if err := checkUIDP(field, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// matches reports whether the object id called name passes the id, the name
// and every condition of the UIDP filter of q.
func (q listQuery) matches(id, name string) bool {
	f := q.uidp
	switch {
	case q.id != "" && id != q.id, q.name != "" && name != q.name:
		return false
	case f.GetAncestorsOf() != "" && !uidp.IsAncestor(id, f.GetAncestorsOf()):
		return false
	case f.GetDescendantsOf() != "" && !uidp.IsAncestor(f.GetDescendantsOf(), id):
		return false
	case f.GetChildrenOf() != "" && uidp.Parent(id) != f.GetChildrenOf():
		return false
	case f.GetInRoot() && !uidp.InRoot(id):
		return false
	case len(f.GetIds()) > 0 && !slices.Contains(f.GetIds(), id):
		return false
	}
	return true
}

// list checks q, then returns, sorted by ID, view(o) of every object o of
// objs (stored by ID) that keep accepts; keep applies q and the caller's
// rights. It takes e.mu.
func list[O, V any](e *Emulator, q listQuery, objs map[string]O, keep func(id string, o O) bool, view func(O) V) ([]V, error) {
	if err := q.check(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []V
	for _, id := range slices.Sorted(maps.Keys(objs)) {
		if o := objs[id]; keep(id, o) {
			out = append(out, view(o))
		}
	}
	return out, nil
}

// lookup returns the object of objs (stored by ID) with id, or NotFound
// naming it as kind (e.g. "role binding"). Callers hold e.mu.
func lookup[O any](objs map[string]O, kind, id string) (O, error) {
	o, ok := objs[id]
	if !ok {
		return o, status.Errorf(codes.NotFound, "%s %s not found", kind, id)
	}
	return o, nil
}

// get returns view(o) of the object o of objs with id, or NotFound
// (lookup). It takes e.mu.
func get[O, V any](e *Emulator, objs map[string]O, kind, id string, view func(O) V) (V, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	o, err := lookup(objs, kind, id)
	if err != nil {
		var zero V
		return zero, err
	}
	return view(o), nil
}
