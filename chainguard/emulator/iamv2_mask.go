package emulator

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// Update masks of IAM v2 (UpdateGroup, UpdateIdentity, UpdateRoleBinding).
//
// Evidence, SDK v0.1.212 proto/chainguard/platform/iam/v2/*.proto, on each
// Update*Request.update_mask: "If not provided, an implied field mask is
// used equivalent to all fields that are populated (have non-default
// values). * is supported and interpreted as a full replacement with the
// given field values." google/protobuf/field_mask.proto ("Field Mask
// Verification"): a service "should verify the included field paths, and
// return an INVALID_ARGUMENT error if any path is unmappable".
//
// Server-owned fields are those annotated google.api.field_behavior =
// OUTPUT_ONLY. The annotation's own definition (google/api/
// field_behavior.proto) says a server "must ignore" such a field in a
// request and "must not throw an error as a result of the field's
// presence". The vendor's Terraform provider says the Chainguard service
// does not: "The server treats a wildcard mask as intent to update every
// field -- including kind and status, which this resource does not set --
// and rejects such updates once those fields hold values"
// (chainguard-dev/terraform-provider-chainguard 74ae4e4, internal/provider/
// resource_group.go, update; the provider calls IAM v2beta1, whose Group
// .status is OUTPUT_ONLY as in v2). So by default the emulator takes the
// strict reading, the same as its v1 check:
//   - a path naming an OUTPUT_ONLY field is InvalidArgument;
//   - an OUTPUT_ONLY field carried in the body with a value other than the
//     stored one is InvalidArgument; under "*" an unset OUTPUT_ONLY field
//     counts as carried (cleared), as the Terraform provider observed;
//     with any other mask an unset field is not carried;
//   - the resource's identifier (uid) is never updated: it names the
//     resource (the HTTP binding puts it in the path, e.g. PATCH
//     /iam/v2/identities/{identity.uid=**}) and is left out of the implied
//     and "*" masks.
//
// Options.IgnoreOutputOnly switches to the field_behavior reading (OUTPUT_ONLY
// paths and values are dropped silently). The Terraform provider's identity
// update sends "*" with every timestamp unset (internal/provider/
// resource_identity.go, Update, at 5085c9f, IAM v2beta1), which works only
// under that reading if the identity has been used; code meant for both
// readings sends explicit masks naming writable fields only.
//
// Paths are top-level field names of the resource. A nested path (e.g.
// "aws_identity.arn") is refused with InvalidArgument: the protos neither
// promise nor exclude them, and a relationship is replaced as a whole.

// maskWildcard is the full-replacement mask path.
const maskWildcard = "*"

// outputOnly reports whether f is annotated google.api.field_behavior =
// OUTPUT_ONLY.
func outputOnly(f protoreflect.FieldDescriptor) bool {
	fb, ok := proto.GetExtension(f.Options(), annotations.E_FieldBehavior).([]annotations.FieldBehavior)
	return ok && slices.Contains(fb, annotations.FieldBehavior_OUTPUT_ONLY)
}

// sameField reports whether field f holds the same value (or is unset) in a
// and b.
func sameField(f protoreflect.FieldDescriptor, a, b protoreflect.Message) bool {
	x, y := a.New(), b.New()
	if a.Has(f) {
		x.Set(f, a.Get(f))
	}
	if b.Has(f) {
		y.Set(f, b.Get(f))
	}
	return proto.Equal(x.Interface(), y.Interface())
}

// applyMask returns a copy of stored with the fields of body selected by
// mask written over it, following the rules above; kind names the resource
// in messages ("group") and idField is its identifier ("uid"). It checks
// mask paths and OUTPUT_ONLY fields only: the caller validates the merged
// resource as it would a new one.
func applyMask[M proto.Message](stored, body M, mask *fieldmaskpb.FieldMask, kind, idField string, ignoreOutputOnly bool) (M, error) {
	var zero M
	sm, bm := stored.ProtoReflect(), body.ProtoReflect()
	fields := sm.Descriptor().Fields()
	paths := mask.GetPaths()
	wildcard := slices.Contains(paths, maskWildcard)
	if wildcard && len(paths) > 1 {
		return zero, status.Errorf(codes.InvalidArgument, "update_mask %q mixes %q with other paths: send %q alone (full replacement) or name the fields", strings.Join(paths, ","), maskWildcard, maskWildcard)
	}

	var selected []protoreflect.FieldDescriptor
	switch {
	case wildcard:
		for i := range fields.Len() {
			if f := fields.Get(i); !outputOnly(f) {
				selected = append(selected, f)
			}
		}
	case len(paths) == 0:
		for i := range fields.Len() {
			if f := fields.Get(i); !outputOnly(f) && bm.Has(f) {
				selected = append(selected, f)
			}
		}
	default:
		for _, p := range paths {
			f := fields.ByName(protoreflect.Name(p))
			switch {
			case strings.Contains(p, "."):
				return zero, status.Errorf(codes.InvalidArgument, "update_mask path %q is nested: name top-level %s fields (%s)", p, kind, writableNames(fields))
			case f == nil:
				return zero, status.Errorf(codes.InvalidArgument, "update_mask path %q is not a field of %s: name one of %s", p, kind, writableNames(fields))
			case outputOnly(f) && ignoreOutputOnly:
				continue
			case outputOnly(f):
				return zero, status.Errorf(codes.InvalidArgument, "update_mask path %q names an output-only %s field: it is server-owned; name only %s", p, kind, writableNames(fields))
			case slices.Contains(selected, f):
				return zero, status.Errorf(codes.InvalidArgument, "update_mask names %q twice", p)
			}
			selected = append(selected, f)
		}
	}

	if !ignoreOutputOnly {
		for i := range fields.Len() {
			f := fields.Get(i)
			if !outputOnly(f) || string(f.Name()) == idField || (!wildcard && !bm.Has(f)) || sameField(f, sm, bm) {
				continue
			}
			how := "differs from the stored value"
			if !bm.Has(f) {
				how = "is unset under update_mask \"*\" (full replacement), which would clear the stored value"
			}
			return zero, status.Errorf(codes.InvalidArgument, "%s field %s %s: it is output-only (server-owned); leave it unset and name only the fields to change in update_mask", kind, f.Name(), how)
		}
	}

	merged := proto.Clone(stored).(M)
	mm := merged.ProtoReflect()
	for _, f := range selected {
		if bm.Has(f) {
			mm.Set(f, bm.Get(f))
		} else {
			mm.Clear(f)
		}
	}
	return merged, nil
}

// writableNames lists the fields of a resource that an update mask may name.
func writableNames(fields protoreflect.FieldDescriptors) string {
	var out []string
	for i := range fields.Len() {
		if f := fields.Get(i); !outputOnly(f) {
			out = append(out, string(f.Name()))
		}
	}
	return fmt.Sprintf("%q", out)
}
