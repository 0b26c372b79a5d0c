// Package emulator is an in-process emulator of the slice of the Chainguard
// API this project uses, served over real gRPC on 127.0.0.1 so that the real
// SDK clients (chainguard.dev/sdk) talk to it unchanged through
// http://127.0.0.1:PORT URLs:
//
//   - an issuer serving chainguard.platform.oidc.SecurityTokenService/Exchange,
//     which verifies AWS tokens with the SDK's own auth/aws.VerifyToken against
//     a local AWS STS stand-in (SigV4 recomputed with registered test
//     credentials) and matches the identity's aws_identity trust;
//   - an API serving IAM v1 Groups, Identities, Roles and RoleBindings and
//     Registry v1 ListRepos (every other method answers Unimplemented), with
//     UIDP hierarchy, the service's status codes, token expiry, and
//     authorization by the capabilities named in each method's
//     chainguard.annotations.iam option, granted through role bindings on the
//     scope or an ancestor;
//   - seeding, state inspection, call counting and fault injection for tests.
//
// It is test infrastructure held to production standards: it rejects what the
// service rejects, or tests prove nothing. Where the service's behaviour is not
// documented it is strict (deleting a group that still holds objects, or an
// identity that still has role bindings, fails with FailedPrecondition).
//
// Process-wide side effect: the first Start installs a RoundTripper on
// http.DefaultClient that routes requests for https://sts.amazonaws.com to the
// stand-in of the emulator whose issuer URL is the request's
// Chainguard-Audience (see awssts.go). It is the only global state, forced by
// auth/aws.VerifyToken, which offers no other way to reach a local STS.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// DefaultTokenTTL is the lifetime of minted tokens unless Options.TokenTTL
// says otherwise (the service issues tokens for about an hour).
const DefaultTokenTTL = time.Hour

// Options configures Start. The zero value is ready to use.
type Options struct {
	// TokenTTL is the lifetime of tokens minted by Exchange (default
	// DefaultTokenTTL). Tests of expiry set it short.
	TokenTTL time.Duration
	// Logger receives the emulator's logs (default: discarded). Secrets
	// (tokens, AWS credentials) are never logged.
	Logger *slog.Logger
	// APIAddr, IssuerAddr and AWSSTSAddr are the listen addresses of the
	// API, the issuer and the AWS STS stand-in (default "127.0.0.1:0").
	// They must be loopback addresses: the emulator serves plaintext.
	APIAddr, IssuerAddr, AWSSTSAddr string
}

// Emulator is a running emulator. All methods are safe for concurrent use.
type Emulator struct {
	log      *slog.Logger
	tokenTTL time.Duration

	issuerURL, apiURL, awsSTSURL string

	issuerSrv, apiSrv *grpc.Server
	stsSrv            *http.Server
	rules             map[string]methodRules // by full method name, API server
	methods           map[string]bool        // every full method name served (both servers)
	done              sync.WaitGroup
	closeOnce         sync.Once

	mu         sync.Mutex
	groups     map[string]*iam.Group
	identities map[string]*iam.Identity
	bindings   map[string]*binding
	repos      map[string]*repo
	roles      map[string]*role // built-in roles by ID
	tokens     map[string]token
	awsCreds   map[string]awsCredential // by access key ID
	calls      map[string]int
	faults     map[string]*fault
}

type binding struct {
	id, group, identity, role string
	created                   time.Time
}

type repo struct {
	id, name string
	created  time.Time
}

type token struct {
	identity string
	expiry   time.Time
}

type fault struct {
	failN    int
	failCode codes.Code
	hangN    int
	latency  time.Duration
}

// Start starts an emulator on free 127.0.0.1 ports (or the addresses in
// opts). Close it when done.
func Start(opts Options) (*Emulator, error) {
	if opts.TokenTTL < 0 {
		return nil, fmt.Errorf("emulator: TokenTTL %s is negative", opts.TokenTTL)
	}
	e := &Emulator{
		log:        opts.Logger,
		tokenTTL:   opts.TokenTTL,
		groups:     map[string]*iam.Group{},
		identities: map[string]*iam.Identity{},
		bindings:   map[string]*binding{},
		repos:      map[string]*repo{},
		roles:      builtinRoles(),
		tokens:     map[string]token{},
		awsCreds:   map[string]awsCredential{},
		calls:      map[string]int{},
		faults:     map[string]*fault{},
		methods:    map[string]bool{},
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.tokenTTL == 0 {
		e.tokenTTL = DefaultTokenTTL
	}

	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}
	for _, addr := range []string{opts.IssuerAddr, opts.APIAddr, opts.AWSSTSAddr} {
		l, err := listenLoopback(addr)
		if err != nil {
			closeAll()
			return nil, err
		}
		lns = append(lns, l)
	}
	e.issuerURL = "http://" + lns[0].Addr().String()
	e.apiURL = "http://" + lns[1].Addr().String()
	e.awsSTSURL = "http://" + lns[2].Addr().String()

	e.issuerSrv = grpc.NewServer(grpc.ChainUnaryInterceptor(e.interceptor(false)))
	oidc.RegisterSecurityTokenServiceServer(e.issuerSrv, &stsService{e: e})

	e.apiSrv = grpc.NewServer(grpc.ChainUnaryInterceptor(e.interceptor(true)))
	iam.RegisterGroupsServer(e.apiSrv, &groupsService{e: e})
	iam.RegisterIdentitiesServer(e.apiSrv, &identitiesService{e: e})
	iam.RegisterRolesServer(e.apiSrv, &rolesService{e: e})
	iam.RegisterRoleBindingsServer(e.apiSrv, &roleBindingsService{e: e})
	registry.RegisterRegistryServer(e.apiSrv, &registryService{e: e})

	for _, srv := range []*grpc.Server{e.issuerSrv, e.apiSrv} {
		for svc, info := range srv.GetServiceInfo() {
			for _, m := range info.Methods {
				e.methods["/"+svc+"/"+m.Name] = true
			}
		}
	}
	rules, err := loadRules(e.apiSrv)
	if err != nil {
		closeAll()
		return nil, err
	}
	e.rules = rules

	mux := http.NewServeMux()
	mux.HandleFunc("/", e.serveAWSSTS)
	e.stsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stsURL, err := url.Parse(e.awsSTSURL)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("emulator: parse AWS STS URL: %w", err)
	}
	router.register(e.issuerURL, stsURL)

	e.serve(func() error { return e.issuerSrv.Serve(lns[0]) })
	e.serve(func() error { return e.apiSrv.Serve(lns[1]) })
	e.serve(func() error {
		if err := e.stsSrv.Serve(lns[2]); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	e.log.Info("chainguard emulator started", "issuer_url", e.issuerURL, "api_url", e.apiURL, "aws_sts_url", e.awsSTSURL, "token_ttl", e.tokenTTL)
	return e, nil
}

func (e *Emulator) serve(f func() error) {
	e.done.Add(1)
	go func() {
		defer e.done.Done()
		if err := f(); err != nil {
			e.log.Error("emulator server stopped", "error", err)
		}
	}()
}

// listenLoopback listens on addr (default 127.0.0.1:0), which must be a
// loopback address.
func listenLoopback(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("emulator: listen address %q is not host:port, e.g. 127.0.0.1:0: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("emulator: listen address %q is not a loopback address (the emulator serves plaintext): use 127.0.0.1:PORT", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("emulator: listen on %s: %w", addr, err)
	}
	return l, nil
}

// Close stops the servers (in-flight calls are cancelled) and forgets the
// emulator's AWS STS route. It is safe to call more than once.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		router.unregister(e.issuerURL)
		e.issuerSrv.Stop()
		e.apiSrv.Stop()
		_ = e.stsSrv.Close()
		e.done.Wait()
		e.log.Info("chainguard emulator stopped")
	})
	return nil
}

// IssuerURL is the URL of the issuer (SecurityTokenService), e.g.
// "http://127.0.0.1:41234". It is also the audience AWS tokens must be
// generated for.
func (e *Emulator) IssuerURL() string { return e.issuerURL }

// APIURL is the URL of the IAM and Registry API, and the audience to request
// from Exchange.
func (e *Emulator) APIURL() string { return e.apiURL }

// AWSSTSURL is the URL of the AWS STS stand-in. Tokens reach it through the
// http.DefaultClient hook; it is exposed for diagnostics and direct tests.
func (e *Emulator) AWSSTSURL() string { return e.awsSTSURL }

// Calls returns how many RPCs of the full method (e.g.
// "/chainguard.platform.iam.Identities/Create") the emulator received,
// including failed ones. It panics on a method the emulator does not serve,
// so that a misspelled name cannot make an assertion pass.
func (e *Emulator) Calls(method string) int {
	e.mustKnow("Calls", method)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[method]
}

// FailNext makes the next n calls of method fail with code (and a message
// saying the failure was injected).
func (e *Emulator) FailNext(method string, n int, code codes.Code) {
	e.mustKnow("FailNext", method)
	if code == codes.OK {
		panic("emulator: FailNext with codes.OK")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.fault(method)
	f.failN, f.failCode = n, code
}

// SetLatency delays every call of method by d (0 removes the delay). A call
// whose context ends during the delay fails with its context's error.
func (e *Emulator) SetLatency(method string, d time.Duration) {
	e.mustKnow("SetLatency", method)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fault(method).latency = d
}

// HangNext makes the next n calls of method block until the caller's context
// is done (its deadline passes or it is cancelled); they then fail with
// DeadlineExceeded or Canceled.
func (e *Emulator) HangNext(method string, n int) {
	e.mustKnow("HangNext", method)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fault(method).hangN = n
}

// ClearFaults removes every injected failure, hang and latency.
func (e *Emulator) ClearFaults() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = map[string]*fault{}
}

// fault returns the fault record of method. Callers hold e.mu.
func (e *Emulator) fault(method string) *fault {
	f, ok := e.faults[method]
	if !ok {
		f = &fault{}
		e.faults[method] = f
	}
	return f
}

func (e *Emulator) mustKnow(fn, method string) {
	if !e.methods[method] {
		panic(fmt.Sprintf("emulator: %s: %q is not a method the emulator serves; use a full gRPC method name such as %q",
			fn, method, "/chainguard.platform.iam.Identities/Create"))
	}
}

// beforeCall counts the call and applies injected faults.
func (e *Emulator) beforeCall(ctx context.Context, method string) error {
	e.mu.Lock()
	e.calls[method]++
	var latency time.Duration
	hang, fail := false, codes.OK
	if f, ok := e.faults[method]; ok {
		latency = f.latency
		switch {
		case f.hangN > 0:
			f.hangN--
			hang = true
		case f.failN > 0:
			f.failN--
			fail = f.failCode
		}
	}
	e.mu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	if hang {
		e.log.Info("injected hang", "method", method)
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	if fail != codes.OK {
		e.log.Info("injected failure", "method", method, "code", fail)
		return status.Errorf(fail, "emulator: injected failure of %s", method)
	}
	return nil
}

// State is a deep copy of the emulator's objects, each slice sorted by ID.
type State struct {
	Groups       []Group
	Identities   []Identity
	RoleBindings []RoleBinding
	Repos        []Repo
	Roles        []Role
}

// IDs lists every group, identity, role binding and repo of s as "<kind>
// <UIDP>", in that order and sorted within each kind: two states hold the same
// objects exactly when their IDs are equal.
func (s State) IDs() []string {
	var out []string
	for _, g := range s.Groups {
		out = append(out, "group "+g.ID)
	}
	for _, i := range s.Identities {
		out = append(out, "identity "+i.ID)
	}
	for _, b := range s.RoleBindings {
		out = append(out, "binding "+b.ID)
	}
	for _, r := range s.Repos {
		out = append(out, "repo "+r.ID)
	}
	return out
}

// Group is a group in State.
type Group struct{ ID, Name, Description string }

// Identity is an identity in State. Proto is a copy of the stored message;
// AWS is its aws_identity (nil if it has another relationship).
type Identity struct {
	ID, Name, Description string
	AWS                   *iam.Identity_AWSIdentity
	Proto                 *iam.Identity
}

// RoleBinding is a role binding in State: Identity has role Role (ID;
// RoleName its name) on Group.
type RoleBinding struct{ ID, Group, Identity, Role, RoleName string }

// Repo is a registry repo in State (ID is a child of its group).
type Repo struct{ ID, Name string }

// Role is a built-in role in State.
type Role struct {
	ID, Name     string
	Capabilities []string
}

// State returns a deep copy of everything the emulator holds.
func (e *Emulator) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s State
	for _, g := range e.groups {
		s.Groups = append(s.Groups, Group{ID: g.GetId(), Name: g.GetName(), Description: g.GetDescription()})
	}
	for _, id := range e.identities {
		c := proto.Clone(id).(*iam.Identity)
		s.Identities = append(s.Identities, Identity{ID: c.GetId(), Name: c.GetName(), Description: c.GetDescription(), AWS: c.GetAwsIdentity(), Proto: c})
	}
	for _, b := range e.bindings {
		s.RoleBindings = append(s.RoleBindings, RoleBinding{ID: b.id, Group: b.group, Identity: b.identity, Role: b.role, RoleName: e.roles[b.role].name})
	}
	for _, r := range e.repos {
		s.Repos = append(s.Repos, Repo{ID: r.id, Name: r.name})
	}
	for _, r := range e.roles {
		s.Roles = append(s.Roles, Role{ID: r.id, Name: r.name, Capabilities: append([]string(nil), r.capNames...)})
	}
	sort.Slice(s.Groups, func(i, j int) bool { return s.Groups[i].ID < s.Groups[j].ID })
	sort.Slice(s.Identities, func(i, j int) bool { return s.Identities[i].ID < s.Identities[j].ID })
	sort.Slice(s.RoleBindings, func(i, j int) bool { return s.RoleBindings[i].ID < s.RoleBindings[j].ID })
	sort.Slice(s.Repos, func(i, j int) bool { return s.Repos[i].ID < s.Repos[j].ID })
	sort.Slice(s.Roles, func(i, j int) bool { return s.Roles[i].ID < s.Roles[j].ID })
	return s
}
