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

// builtinRoleDefs are the built-in roles the emulator serves: every role
// whose name the service documents and whose capability set the SDK defines
// (chainguard.dev/sdk v0.1.212, proto/capabilities/roles.go). Names: the
// "Built-in Roles and Capabilities Reference"
// (https://edu.chainguard.dev/chainguard/administration/iam-organizations/roles-role-bindings/capabilities-reference/:
// owner, editor, viewer, registry.pull, registry.pull_token_creator,
// apk.pull, libraries.{java,python,javascript}.pull and .pull_token_creator;
// its April 2026 revision adds limited_owner and console_viewer, and
// chainguard-dev/edu pull request 3329 guardener.user and guardener.admin),
// actions.viewer and argos.osv.reader from the comments of roles.go. The
// weakest: registry.push (RegistryPushCaps), which the official reference
// does not list; it is named only by third-party chainctl notes
// ("--role=registry.push,registry.pull") and this project's design brief,
// and is kept because the project binds it.
// The libraries.*.pull_token_creator sets are PullTokenCreatorCaps plus the
// ecosystem's pull set, as roles.go builds RegistryPullTokenCreatorCaps and as
// the reference's table lists them (groups.list, identity.create,
// role_bindings.create, roles.list, libraries.entitlements.list,
// libraries.<ecosystem>.list).
//
// Not served: limited_owner, documented ("read access across all resources
// with ability to create identities and role bindings"), has no capability
// set in the SDK, and guessing one would be inventing evidence; custom roles
// (Roles.Create) are Unimplemented.
var builtinRoleDefs = []struct {
	name, description string
	caps              []capabilities.Capability
}{
	{"owner", "Full control of the group and its descendants, including IAM.", capabilities.OwnerCaps},
	{"editor", "Viewer plus creating and editing most resources, but no IAM changes.", capabilities.EditorCaps},
	{"viewer", "Read-only access to the group and its descendants, including pulling from the registry.", capabilities.ViewerCaps},
	{"console_viewer", "Read-only access without pulling images.", capabilities.ConsoleViewerCaps},
	{"registry.pull", "Pull images from the registry.", capabilities.RegistryPullCaps},
	{"registry.push", "Push images to the registry.", capabilities.RegistryPushCaps},
	{"registry.pull_token_creator", "Create registry pull tokens (identity and role binding), and pull.", capabilities.RegistryPullTokenCreatorCaps},
	{"apk.pull", "Pull the organization's APK packages.", capabilities.APKPullCaps},
	{"libraries.java.pull", "Java library access.", capabilities.LibrariesJavaPullCaps},
	{"libraries.java.pull_token_creator", "Java library pull token management.", capabilities.SortCaps(capabilities.PullTokenCreatorCaps, capabilities.LibrariesJavaPullCaps)},
	{"libraries.python.pull", "Python library access.", capabilities.LibrariesPythonPullCaps},
	{"libraries.python.pull_token_creator", "Python library pull token management.", capabilities.SortCaps(capabilities.PullTokenCreatorCaps, capabilities.LibrariesPythonPullCaps)},
	{"libraries.javascript.pull", "JavaScript library access.", capabilities.LibrariesJavascriptPullCaps},
	{"libraries.javascript.pull_token_creator", "JavaScript library pull token management.", capabilities.SortCaps(capabilities.PullTokenCreatorCaps, capabilities.LibrariesJavascriptPullCaps)},
	{"guardener.user", "Run Guardener sessions, with registry pull access.", capabilities.GuardenerUserCaps},
	{"guardener.admin", "Guardener user plus accepting the legal terms and linking GitHub organizations.", capabilities.GuardenerAdminCaps},
	{"actions.viewer", "Read the Chainguard Actions catalog.", capabilities.ActionsViewerCaps},
	{"argos.osv.reader", "Read the shared Private OSV corpus.", capabilities.ArgosOSVReaderCaps},
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
	caps     []capabilities.Capability
	unscoped bool
	// scopePath leads from the request to the string field holding the
	// scope: one field when the request carries the UIDP itself (v1, and v2
	// Get, Delete and Create), two when the request's annotated field is a
	// message whose own annotated field holds it (v2 Update: identity.uid,
	// group.uid, role_binding.uid).
	scopePath []protoreflect.FieldDescriptor
}

// scopeName is the dotted name of the scope field, e.g. "identity.uid".
func (r methodRules) scopeName() string {
	names := make([]string, len(r.scopePath))
	for i, f := range r.scopePath {
		names[i] = string(f.Name())
	}
	return strings.Join(names, ".")
}

// scope reads the scope UIDP of msg ("" when a message on the path is
// unset).
func (r methodRules) scope(msg protoreflect.Message) string {
	for _, f := range r.scopePath[:len(r.scopePath)-1] {
		if !msg.Has(f) {
			return ""
		}
		msg = msg.Get(f).Message()
	}
	return msg.Get(r.scopePath[len(r.scopePath)-1]).String()
}

// scopeField returns the field of fields annotated
// chainguard.annotations.iam_scope, or nil.
func scopeField(fields protoreflect.FieldDescriptors) protoreflect.FieldDescriptor {
	for j := range fields.Len() {
		f := fields.Get(j)
		if fo, ok := f.Options().(*descriptorpb.FieldOptions); ok && fo != nil {
			if scoped, ok := proto.GetExtension(fo, annotations.E_IamScope).(bool); ok && scoped {
				return f
			}
		}
	}
	return nil
}

// scopePathOf follows iam_scope annotations from the request message md
// down to a string field: SDK v0.1.212's v2 Update requests annotate the
// resource field (UpdateIdentityRequest.identity) and the resource its uid
// (Identity.uid), proto/chainguard/platform/iam/v2/*.proto. It returns nil
// when md has no annotated field, and an error when the chain does not end
// in a string.
func scopePathOf(md protoreflect.MessageDescriptor) ([]protoreflect.FieldDescriptor, error) {
	var path []protoreflect.FieldDescriptor
	for f := scopeField(md.Fields()); f != nil; f = scopeField(f.Message().Fields()) {
		path = append(path, f)
		switch {
		case f.Kind() == protoreflect.StringKind && !f.IsList():
			return path, nil
		case f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap():
			return nil, fmt.Errorf("emulator: iam_scope field %s of %s is neither a string nor a message", f.FullName(), md.FullName())
		}
	}
	if len(path) > 0 {
		return nil, fmt.Errorf("emulator: iam_scope message field %s of %s has no iam_scope string field", path[len(path)-1].FullName(), md.FullName())
	}
	return nil, nil
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
			if r.scopePath, err = scopePathOf(m.Input()); err != nil {
				return nil, err
			}
			out["/"+svc+"/"+string(m.Name())] = r
		}
	}
	return out, nil
}

// callerKey is the context key of the authenticated caller's token.
type callerKey struct{}

// callerOf returns the token that authenticated the call (nil on the issuer,
// which grants nothing).
func callerOf(ctx context.Context) *token {
	t, _ := ctx.Value(callerKey{}).(*token)
	return t
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
		if len(r.scopePath) == 0 {
			return nil, status.Errorf(codes.Internal, "emulator: %s has no iam_scope field", info.FullMethod)
		}
		msg, ok := req.(proto.Message)
		if !ok {
			return nil, status.Errorf(codes.Internal, "emulator: request of %s is not a proto message", info.FullMethod)
		}
		scope := r.scope(msg.ProtoReflect())
		if err := checkUIDP(r.scopeName(), scope); err != nil {
			return nil, err
		}
		if err := e.authorize(caller, scope, r.caps...); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// authenticate verifies the request's token (an emulator JWT whose exp
// claim has not passed, whose identity still exists unless
// Options.StatelessTokens) and returns what the emulator recorded at its
// exchange.
func (e *Emulator) authenticate(ctx context.Context) (*token, error) {
	raw, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	c, err := e.signer.verify(raw)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "the token is not one this emulator issued: exchange an AWS token at %s for one", e.issuerURL)
	}
	if c.Issuer != e.issuerURL || c.Audience != e.apiURL {
		return nil, status.Errorf(codes.Unauthenticated, "the token was issued by %s for audience %s: exchange an AWS token at %s for audience %s", c.Issuer, c.Audience, e.issuerURL, e.apiURL)
	}
	if exp := time.Unix(c.Expiry, 0); !time.Now().Before(exp) {
		return nil, status.Errorf(codes.Unauthenticated, "the token expired at %s (its exp claim): exchange a new one", exp.UTC().Format(time.RFC3339))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[c.ID]
	if !ok || t.identity != c.Subject {
		return nil, status.Errorf(codes.Unauthenticated, "the token is not one this emulator issued: exchange an AWS token at %s for one", e.issuerURL)
	}
	if _, ok := e.identities[t.identity]; !ok && !e.statelessTokens {
		return nil, status.Errorf(codes.Unauthenticated, "the token's identity %s no longer exists", t.identity)
	}
	return &t, nil
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

// authorize fails with PermissionDenied unless the caller's token t holds
// every one of caps on scope (see tokenHas).
func (e *Emulator) authorize(t *token, scope string, caps ...capabilities.Capability) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range caps {
		if !e.tokenHas(t, scope, c) {
			return status.Error(codes.PermissionDenied, e.deniedMessage(t, scope, c))
		}
	}
	return nil
}

// deniedMessage says which capability is missing where, which built-in roles
// grant it, and that the token's bindings are those of its exchange. Callers
// hold e.mu.
func (e *Emulator) deniedMessage(t *token, scope string, c capabilities.Capability) string {
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
	return fmt.Sprintf("identity %s lacks capability %s (%s) on %s: bind a role that grants it (%s) on that group or an ancestor; "+
		"a token carries the role bindings in effect when it was exchanged (%s), so exchange a fresh one after binding",
		t.identity, c.String(), name, scope, strings.Join(grants, ", "), t.issued.UTC().Format(time.RFC3339Nano))
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
