package emulator

import (
	"context"
	"crypto/sha1" //nolint:gosec // deterministic IDs, not security
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"chainguard.dev/sdk/proto/annotations"
	"chainguard.dev/sdk/proto/capabilities"
	"chainguard.dev/sdk/uidp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// role is a built-in role.
type role struct {
	id, name, description string
	caps                  map[capabilities.Capability]bool
	capNames              []string
}

// builtinRoleDefs are the built-in roles the emulator serves, with the
// capability sets of the SDK.
var builtinRoleDefs = []struct {
	name, description string
	caps              []capabilities.Capability
}{
	{"viewer", "Read-only access to the group and its descendants, including pulling from the registry.", capabilities.ViewerCaps},
	{"editor", "Viewer plus creating and editing most resources.", capabilities.EditorCaps},
	{"owner", "Full control of the group and its descendants, including IAM.", capabilities.OwnerCaps},
	{"registry.pull", "Pull images from the registry.", capabilities.RegistryPullCaps},
	{"registry.push", "Push images to the registry.", capabilities.RegistryPushCaps},
}

// builtinRoles returns the built-in roles by ID. IDs are deterministic
// root-level UIDPs (40 hex characters), the same in every emulator.
func builtinRoles() map[string]*role {
	out := map[string]*role{}
	for _, d := range builtinRoleDefs {
		sum := sha1.Sum([]byte("chainguard-emulator built-in role " + d.name)) //nolint:gosec // deterministic ID
		r := &role{id: hex.EncodeToString(sum[:]), name: d.name, description: d.description, caps: map[capabilities.Capability]bool{}}
		for _, c := range d.caps {
			r.caps[c] = true
		}
		names, err := capabilities.StringifyAll(d.caps)
		if err != nil {
			panic(fmt.Sprintf("emulator: capabilities of built-in role %s: %v", d.name, err)) // SDK bug, caught by every test
		}
		r.capNames = names
		out[r.id] = r
	}
	return out
}

// roleByName returns the built-in role called name. Callers hold e.mu.
func (e *Emulator) roleByName(name string) *role {
	for _, r := range e.roles {
		if r.name == name {
			return r
		}
	}
	return nil
}

// methodRules is the chainguard.annotations.iam option of a method.
type methodRules struct {
	caps       []capabilities.Capability
	unscoped   bool
	scopeField protoreflect.FieldDescriptor // the request field annotated iam_scope
}

// loadRules reads the IAM annotations of every method served by srv from the
// SDK's compiled proto descriptors.
func loadRules(srv *grpc.Server) (map[string]methodRules, error) {
	out := map[string]methodRules{}
	for svc := range srv.GetServiceInfo() {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			return nil, fmt.Errorf("emulator: descriptor of service %s: %w", svc, err)
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("emulator: %s is not a service", svc)
		}
		for i := range sd.Methods().Len() {
			m := sd.Methods().Get(i)
			opts, ok := m.Options().(*descriptorpb.MethodOptions)
			if !ok || opts == nil {
				continue
			}
			ann, ok := proto.GetExtension(opts, annotations.E_Iam).(*annotations.IAM)
			if !ok || ann.GetEnabled() == nil {
				continue
			}
			r := methodRules{caps: ann.GetEnabled().GetCapabilities(), unscoped: ann.GetEnabled().GetUnscoped()}
			fields := m.Input().Fields()
			for j := range fields.Len() {
				f := fields.Get(j)
				if fo, ok := f.Options().(*descriptorpb.FieldOptions); ok && fo != nil {
					if scoped, ok := proto.GetExtension(fo, annotations.E_IamScope).(bool); ok && scoped {
						r.scopeField = f
					}
				}
			}
			out["/"+svc+"/"+string(m.Name())] = r
		}
	}
	return out, nil
}

// callerKey is the context key of the authenticated caller's identity UIDP.
type callerKey struct{}

func callerOf(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}

// interceptor counts calls, applies faults and, on the API server,
// authenticates the caller and enforces scoped capabilities.
func (e *Emulator) interceptor(api bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := e.handle(ctx, req, info, handler, api)
		e.log.Debug("rpc", "method", info.FullMethod, "code", status.Code(err), "duration", time.Since(start))
		if err != nil && status.Code(err) != codes.Unimplemented {
			e.log.Info("rpc failed", "method", info.FullMethod, "code", status.Code(err), "error", status.Convert(err).Message())
		}
		return resp, err
	}
}

func (e *Emulator) handle(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, api bool) (any, error) {
	if err := e.beforeCall(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	if !api {
		return handler(ctx, req)
	}
	caller, err := e.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, callerKey{}, caller)
	if r, ok := e.rules[info.FullMethod]; ok && !r.unscoped {
		if r.scopeField == nil {
			return nil, status.Errorf(codes.Internal, "emulator: %s has no iam_scope field", info.FullMethod)
		}
		msg, ok := req.(proto.Message)
		if !ok {
			return nil, status.Errorf(codes.Internal, "emulator: request of %s is not a proto message", info.FullMethod)
		}
		scope := msg.ProtoReflect().Get(r.scopeField).String()
		if err := checkUIDP(string(r.scopeField.Name()), scope); err != nil {
			return nil, err
		}
		if err := e.authorize(caller, scope, r.caps...); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// authenticate returns the identity of the request's token.
func (e *Emulator) authenticate(ctx context.Context) (string, error) {
	tok, err := bearer(ctx)
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[tok]
	if !ok {
		return "", status.Errorf(codes.Unauthenticated, "the token is not one this emulator issued: exchange an AWS token at %s for one", e.issuerURL)
	}
	if !time.Now().Before(t.expiry) {
		return "", status.Errorf(codes.Unauthenticated, "the token expired at %s: exchange a new one", t.expiry.UTC().Format(time.RFC3339))
	}
	if _, ok := e.identities[t.identity]; !ok {
		return "", status.Errorf(codes.Unauthenticated, "the token's identity %s no longer exists", t.identity)
	}
	return t.identity, nil
}

// bearer reads the token from the "authorization" metadata, which the STS
// client sends as "Bearer <token>" and the IAM and Registry clients send raw.
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", status.Errorf(codes.Unauthenticated, "expected one authorization metadata value, got %d: pass a token to the client", len(vals))
	}
	tok := strings.TrimSpace(vals[0])
	if scheme, rest, _ := strings.Cut(tok, " "); strings.EqualFold(scheme, "bearer") {
		tok = strings.TrimSpace(rest)
	}
	if tok == "" {
		return "", status.Error(codes.Unauthenticated, "the authorization metadata is empty: pass a token to the client")
	}
	return tok, nil
}

// authorize fails with PermissionDenied unless identity holds every one of
// caps on scope through a role binding on scope or an ancestor.
func (e *Emulator) authorize(identity, scope string, caps ...capabilities.Capability) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range caps {
		if !e.has(identity, scope, c) {
			return status.Error(codes.PermissionDenied, e.deniedMessage(identity, scope, c))
		}
	}
	return nil
}

// has reports whether identity holds capability c on scope. Callers hold e.mu.
func (e *Emulator) has(identity, scope string, c capabilities.Capability) bool {
	for _, b := range e.bindings {
		if b.identity == identity && uidp.IsAncestorOrSelf(b.group, scope) && e.roles[b.role].caps[c] {
			return true
		}
	}
	return false
}

// hasAnywhere reports whether identity holds c on some scope. Callers hold e.mu.
func (e *Emulator) hasAnywhere(identity string, c capabilities.Capability) bool {
	for _, b := range e.bindings {
		if b.identity == identity && e.roles[b.role].caps[c] {
			return true
		}
	}
	return false
}

// deniedMessage says which capability is missing where and which built-in
// roles grant it. Callers hold e.mu.
func (e *Emulator) deniedMessage(identity, scope string, c capabilities.Capability) string {
	var grants []string
	for _, d := range builtinRoleDefs {
		if r := e.roleByName(d.name); r != nil && r.caps[c] {
			grants = append(grants, d.name)
		}
	}
	name, err := capabilities.Stringify(c)
	if err != nil {
		name = c.String()
	}
	return fmt.Sprintf("identity %s lacks capability %s (%s) on %s: bind a role that grants it (%s) on that group or an ancestor",
		identity, c.String(), name, scope, strings.Join(grants, ", "))
}

// checkUIDP fails with InvalidArgument unless v is a UIDP.
func checkUIDP(field, v string) error {
	if v == "" {
		return status.Errorf(codes.InvalidArgument, "%s is required: a UIDP such as 0123456789abcdef0123456789abcdef01234567/0123456789abcdef", field)
	}
	if !uidp.Valid(v) {
		return status.Errorf(codes.InvalidArgument, "%s %q is not a UIDP: expected 40 hex characters optionally followed by /16-hex segments", field, v)
	}
	return nil
}
