// Package emulator is an in-process emulator of the slice of the Chainguard
// API this project uses, served over real gRPC on 127.0.0.1 so that the real
// SDK clients (chainguard.dev/sdk) talk to it unchanged through
// http://127.0.0.1:PORT URLs:
//
//   - an issuer serving chainguard.platform.oidc.SecurityTokenService/Exchange,
//     which verifies AWS tokens with the SDK's own auth/aws.VerifyToken against
//     a local AWS STS stand-in (SigV4 recomputed with registered test
//     credentials) and matches the identity's aws_identity trust, and
//     verifies OIDC tokens (JWTs, e.g. from AWS sts:GetWebIdentityToken) by
//     discovery of their issuer with go-oidc and matches the identity's
//     claim_match trust (exchange_jwt.go);
//   - an API serving IAM v1, IAM v2 (the methods are listed under "IAM v1
//     and v2" below) and Registry v1 ListRepos (every other method answers
//     Unimplemented), with UIDP hierarchy, the service's status codes, and
//     authorization by the capabilities named in each method's
//     chainguard.annotations.iam option;
//   - seeding, state inspection, call counting and fault injection for tests.
//
// It is test infrastructure held to production standards: it rejects what the
// service rejects, or tests prove nothing. Every behaviour below cites its
// evidence in the code; where the evidence is silent the emulator takes the
// stricter reading, and where a reading is a choice an Options field switches
// it.
//
// # Contract
//
// Tokens (token.go). Exchange returns an ES256 JWT signed with a key of this
// emulator, with claims iss (IssuerURL), sub (the identity UIDP), aud
// (APIURL), iat, exp and jti. The exp claim is the truth: the API refuses
// the token from that second on, and auth.ExtractExpiry reads it. The
// exchange response's expiry equals exp, or is unset with
// Options.OmitExpiry (the proto marks it optional). A token carries the
// caller's role bindings as of its exchange, restricted to the requested
// scopes and capabilities: a binding created later does not count for it; a
// binding deleted later stops counting, one whose role changed counts only
// for what both roles grant, and the token of a deleted identity is refused
// (the stricter reading; Options.StatelessTokens switches to tokens that keep
// what they were issued with). MintToken issues the same tokens without an
// exchange.
//
// Propagation (Options.PropagationDelay, default 0). An identity created
// through the API cannot be exchanged for until the delay has passed
// (NotFound: "not yet known to the STS"), and a role binding created or
// changed through the API is left out of tokens exchanged less than the
// delay after it. Seeded objects propagate at once.
//
// Authorization. A call is authorized by the capabilities of the token, on
// the method's iam_scope or an ancestor (PermissionDenied otherwise, naming
// the capability, the roles that grant it, and the token's exchange time).
// Lists are filtered by the same capabilities (never PermissionDenied, just
// fewer items). Built-in roles: every role the service documents whose
// capability set the SDK defines (see builtinRoleDefs).
//
// IAM v1 and v2. Both versions serve one set of objects: what one creates,
// changes or deletes, the other reads at once, and State reports. v1 serves
// Create, Update, List and Delete of Groups, Identities and RoleBindings,
// and Roles.List; v2 the same through GroupsService, IdentitiesService,
// RoleBindingsService and RolesService. Authorization (with the nested
// scope of v2 Updates: identity.uid, group.uid, role_binding.uid),
// propagation, token snapshots, validation and status codes are the same in
// both. v2 adds, with the evidence in iamv2*.go and in the core of each kind
// (group.go, identity.go, rolebinding.go):
//   - Get methods (NotFound for a missing object; PermissionDenied first if
//     the token lacks the method's capability on the scope); GetRole, which
//     is unscoped, needs roles.list somewhere.
//   - Update masks: explicit paths (top-level fields only), an empty mask
//     meaning the populated fields, "*" meaning full replacement. A path
//     that is not a field, or that names an OUTPUT_ONLY field, is
//     InvalidArgument; an OUTPUT_ONLY value carried in the body that differs
//     from the stored one is InvalidArgument (under "*", unset counts as
//     different), as is a kind or verified that differs from the stored
//     value. Create refuses OUTPUT_ONLY fields too, except CreateRoleBinding,
//     whose proto says they are ignored. Options.IgnoreOutputOnly switches
//     to the reading under which OUTPUT_ONLY fields and paths are dropped.
//   - UpdateRoleBinding may move a binding to another identity (v1 refuses);
//     DeleteRoleBinding of a missing binding is success (its proto says so);
//     role bindings return identity, group and role hydrated and leave the
//     input fields identity_uid and role_uid unset.
//   - Pagination: page_size default 50, maximum 200 (larger is coerced),
//     negative InvalidArgument; Options.PageSize caps every page further;
//     page tokens are opaque signed cursors, refused (InvalidArgument) from
//     another emulator, method, filter or order_by, or after 3 days;
//     order_by "field [asc|desc]" on uid (default) and per-list fields;
//     skip; total_count unset. Lists stay filtered by the token's rights.
//   - Timestamps: groups carry create_time and update_time (v1 Group has
//     neither), identities map created_at, updated_at and last_seen to
//     create_time, update_time and last_seen_time; identity company is
//     stored (v1 keeps it across its own updates).
//
// Validation. Group and identity names follow validation.ValidateName and
// are 3-63 characters; descriptions follow validation.ValidateDescription;
// group sibling names are unique (AlreadyExists); identity names may repeat
// within a group unless Options.UniqueIdentityNames. v1 updates replace the
// writable fields (name, description, and an identity's relationship; v1
// has no update mask, so an omitted description clears it) and refuse with
// InvalidArgument a server-owned field that is set and differs from the
// stored one: a group's kind, status, verified and resource_limits, an
// identity's created_at, updated_at and last_seen (stored and returned; an
// exchange updates last_seen); v2 updates follow their masks (above).
// Deleting a group that still holds objects, or an identity that still has
// role bindings, fails with FailedPrecondition.
//
// Relationships. Identities have an aws_identity or a claim_match (others
// are InvalidArgument), validated as the vendor's Terraform provider
// validates them (checkAWSIdentity, checkClaimMatch); an update may change a
// relationship's contents but not its kind (InvalidArgument; see
// checkRelationshipKind). Exchange verifies an AWS token for an
// aws_identity, an OIDC token for a claim_match: issuer discovered
// (https, or http on a loopback host), signature (RS256 or ES384), exp and
// iat verified, then issuer, subject, audience (by default this issuer's
// URL) and top-level string claims matched (exchange_jwt.go).
//
// Faults. Calls, FailNext, SetLatency and HangNext take the full gRPC name
// of any method served, v1 or v2 (e.g.
// "/chainguard.platform.iam.v2.IdentitiesService/CreateIdentity"); Calls,
// FailNextAWS, SetLatency and HangNext also take the AWS actions of the
// AWS stand-in, named as IAM policies name them (e.g.
// "sts:GetWebIdentityToken"), counted once their signature verified.
// FailNext makes calls fail with any code, including the transient
// Unknown and Internal the service returns; SetLatency delays calls;
// HangNext blocks them until the caller's deadline; SetIssuerReachable(false)
// makes the issuer a host that refuses connections (SDK clients then block
// until their deadline), SetIssuerReachable(true) restores it.
//
// # AWS side
//
// The AWS stand-in (AWSURL, the same as AWSSTSURL) also serves, to the real
// aws-sdk-go-v2 clients pointed at it (BaseEndpoint, AWS_ENDPOINT_URL_STS,
// AWS_ENDPOINT_URL_IAM), SigV4-verified AWS Query API calls (awsquery.go):
// STS GetCallerIdentity and GetWebIdentityToken (webidentity_token.go), and
// IAM Enable-, Get- and DisableOutboundWebIdentityFederation for the signing
// principal's account (federation.go), with AWS's error codes, statuses and
// XML shapes, so the clients return their typed errors. An account's
// outbound identity federation is off until enabled (by the IAM API, or
// EnableWebIdentityFederation as a console click; WebIdentityFederation
// reports it); its issuer, <AWSURL>/federation/<uuid>, serves OIDC discovery
// and JWKS (oidc_issuer.go) for the emulator's lifetime, and GetWebIdentityToken
// mints ES384 or RS256 JWTs with AWS's claim layout, signed with the
// account's keys. AWSPrincipal.RoleARN sets the tokens' subject, and
// AWSPrincipal.SessionExpiry the session's end. VerifyAWSRequest lends the
// same SigV4 verification to stand-ins of other AWS APIs (awsverify.go; the
// local run's Lambda Invoke), so that their callers are the registered
// principals too.
//
// # Environment
//
// Start reads two variables when the matching Options field is zero, so that
// a whole test suite can run under the strict readings, and fails on an
// invalid value:
//
//	CHAINGUARD_EMULATOR_PROPAGATION_DELAY  Go duration, e.g. 300ms (Options.PropagationDelay)
//	CHAINGUARD_EMULATOR_OMIT_EXPIRY        true or 1 (Options.OmitExpiry); false, 0 or empty: off
//
// Process-wide side effect: the first Start installs a RoundTripper on
// http.DefaultClient that routes requests for https://sts.amazonaws.com to the
// stand-in of the emulator whose issuer URL is the request's
// Chainguard-Audience (see awssts.go). It is the only global state, forced by
// auth/aws.VerifyToken, which offers no other way to reach a local STS.
package emulator

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
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

// Environment variables Start reads when the matching Options field is zero,
// so that a whole test suite can run under the strict readings.
const (
	// EnvPropagationDelay sets Options.PropagationDelay (a Go duration such
	// as "300ms").
	EnvPropagationDelay = "CHAINGUARD_EMULATOR_PROPAGATION_DELAY"
	// EnvOmitExpiry sets Options.OmitExpiry ("true" or "1"; "false", "0" or
	// empty leave it off).
	EnvOmitExpiry = "CHAINGUARD_EMULATOR_OMIT_EXPIRY"
)

// Options configures Start. The zero value is ready to use.
type Options struct {
	// TokenTTL is the lifetime of tokens minted by Exchange (default
	// DefaultTokenTTL). Tokens are JWTs whose exp claim is in whole seconds,
	// so it must be at least a second.
	TokenTTL time.Duration
	// OmitExpiry makes Exchange leave RawToken.expiry unset, which the proto
	// allows ("(optional) Expiry time of the token.",
	// proto/platform/oidc/v1/oidc.platform.proto): clients must then read
	// the token's own exp claim (auth.ExtractExpiry). Zero: read
	// EnvOmitExpiry.
	OmitExpiry bool
	// PropagationDelay is how long a new identity or role binding takes to
	// reach the STS: Exchange answers NotFound for an identity created less
	// than the delay ago, and a token leaves out role bindings created (or
	// changed) less than the delay before its exchange. Objects made by the
	// Seed methods are there before the test and propagate at once. Zero:
	// read EnvPropagationDelay (default 0).
	PropagationDelay time.Duration
	// StatelessTokens makes a token keep the role bindings of its exchange
	// until it expires, even after they are deleted or their role changes,
	// and keep working after its identity is deleted: the reading under
	// which tokens are self-contained, as chainctl documents for delegate
	// grants ("Grants are stateless, so ones already minted for it are not
	// revoked; they expire within 60 minutes", chainctl iam identities
	// delete). Default off: the stricter reading, under which a token never
	// grants more than both its exchange-time and the current bindings do,
	// and a deleted identity's token is refused (see token.go).
	StatelessTokens bool
	// UniqueIdentityNames makes Identities.Create and Update refuse a name
	// already used in the group with AlreadyExists. Default off: the service
	// allows several identities of one name in a group (see
	// identityNameTaken).
	UniqueIdentityNames bool
	// IgnoreOutputOnly makes IAM v2 Create and Update methods drop
	// OUTPUT_ONLY fields carried in the request and OUTPUT_ONLY paths named
	// in an update mask, as google.api.field_behavior defines OUTPUT_ONLY
	// ("the server must ignore it and must not throw an error as a result of
	// the field's presence"). Default off: the stricter reading, backed by
	// the vendor's Terraform provider, under which the service rejects them
	// with InvalidArgument (see iamv2_mask.go).
	IgnoreOutputOnly bool
	// PageSize caps the number of items of every IAM v2 List page (the
	// protos' page_size default is 50 and maximum 200; AIP-158 lets a
	// server return fewer items than asked). Tests set it low (e.g. 2) to
	// make every listing span several pages. Zero: no cap beyond the
	// protos'. It must be between 0 and 200.
	PageSize int
	// Logger receives the emulator's logs (default: discarded). Secrets
	// (tokens, AWS credentials) are never logged.
	Logger *slog.Logger
	// APIAddr, IssuerAddr and AWSSTSAddr are the listen addresses of the
	// API, the issuer and the AWS STS stand-in (default "127.0.0.1:0").
	// They must be loopback addresses: the emulator serves plaintext.
	APIAddr, IssuerAddr, AWSSTSAddr string
}

// fromEnv fills the zero fields of o that have an environment override.
func (o *Options) fromEnv() error {
	if o.PropagationDelay == 0 {
		if v := os.Getenv(EnvPropagationDelay); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("emulator: %s=%q is not a Go duration such as 300ms: %w", EnvPropagationDelay, v, err)
			}
			o.PropagationDelay = d
		}
	}
	if !o.OmitExpiry {
		switch v := os.Getenv(EnvOmitExpiry); v {
		case "true", "1":
			o.OmitExpiry = true
		case "", "false", "0":
		default:
			return fmt.Errorf("emulator: %s=%q: use true, 1, false or 0", EnvOmitExpiry, v)
		}
	}
	return nil
}

// Emulator is a running emulator. All methods are safe for concurrent use.
type Emulator struct {
	log                 *slog.Logger
	tokenTTL            time.Duration
	omitExpiry          bool
	propagationDelay    time.Duration
	uniqueIdentityNames bool
	statelessTokens     bool
	ignoreOutputOnly    bool
	pageSize            int
	signer              *jwtSigner
	pageKey             []byte        // signs IAM v2 page tokens
	providers           providerCache // OIDC issuers discovered by Exchange (exchange_jwt.go)

	issuerURL, apiURL, awsSTSURL string
	issuerAddr                   string // host:port of the issuer, kept across SetIssuerReachable

	apiSrv    *grpc.Server
	stsSrv    *http.Server
	rules     map[string]methodRules // by full method name, API server
	methods   map[string]bool        // every full method name served (both servers)
	done      sync.WaitGroup
	closeOnce sync.Once

	issuerMu  sync.Mutex
	issuerSrv *grpc.Server // nil while the issuer is unreachable
	closed    bool

	mu         sync.Mutex
	groups     map[string]*iam.Group
	groupTimes map[string]objectTimes // by group: v2 create_time, update_time
	identities map[string]*iam.Identity
	// identityCompany holds the IAM v2 Identity.company of identities that
	// have one (v1 Identity has no such field).
	identityCompany map[string]string
	visibleAt       map[string]time.Time // by identity: when the STS knows it
	bindings        map[string]*binding
	repos           map[string]*repo
	roles           map[string]*role         // built-in roles by ID
	tokens          map[string]token         // by jti
	awsCreds        map[string]awsCredential // by access key ID
	calls           map[string]int
	faults          map[string]*fault

	// AWS outbound identity federation (federation.go), under mu.
	federations   map[string]*accountFederation // by AWS account
	federationIDs map[string]*accountFederation // by issuer uuid
}

type repo struct {
	id, name string
	created  time.Time
}

type fault struct {
	failN    int
	failCode codes.Code // a gRPC method's (FailNext)
	// awsCode and awsStatus are an AWS action's (FailNextAWS).
	awsCode   string
	awsStatus int
	hangN     int
	latency   time.Duration
}

// Start starts an emulator on free 127.0.0.1 ports (or the addresses in
// opts). Zero fields of opts with an environment override (EnvOmitExpiry,
// EnvPropagationDelay) take it; an invalid value fails Start. Close it when
// done.
func Start(opts Options) (*Emulator, error) {
	if err := opts.fromEnv(); err != nil {
		return nil, err
	}
	if opts.TokenTTL != 0 && opts.TokenTTL < time.Second {
		return nil, fmt.Errorf("emulator: TokenTTL %s is under a second: the exp claim of a JWT counts whole seconds", opts.TokenTTL)
	}
	if opts.PropagationDelay < 0 {
		return nil, fmt.Errorf("emulator: PropagationDelay %s is negative", opts.PropagationDelay)
	}
	if opts.PageSize < 0 || opts.PageSize > maxPageSize {
		return nil, fmt.Errorf("emulator: PageSize %d is outside 0-%d (the IAM v2 protos' maximum page_size)", opts.PageSize, maxPageSize)
	}
	signer, err := newJWTSigner()
	if err != nil {
		return nil, err
	}
	pageKey := make([]byte, 32)
	if _, err := rand.Read(pageKey); err != nil {
		return nil, fmt.Errorf("emulator: generate the page token key: %w", err)
	}
	e := &Emulator{
		log:                 opts.Logger,
		tokenTTL:            opts.TokenTTL,
		omitExpiry:          opts.OmitExpiry,
		propagationDelay:    opts.PropagationDelay,
		uniqueIdentityNames: opts.UniqueIdentityNames,
		statelessTokens:     opts.StatelessTokens,
		ignoreOutputOnly:    opts.IgnoreOutputOnly,
		pageSize:            opts.PageSize,
		signer:              signer,
		pageKey:             pageKey,
		groups:              map[string]*iam.Group{},
		groupTimes:          map[string]objectTimes{},
		identities:          map[string]*iam.Identity{},
		identityCompany:     map[string]string{},
		visibleAt:           map[string]time.Time{},
		bindings:            map[string]*binding{},
		repos:               map[string]*repo{},
		roles:               builtinRoles(),
		tokens:              map[string]token{},
		awsCreds:            map[string]awsCredential{},
		federations:         map[string]*accountFederation{},
		federationIDs:       map[string]*accountFederation{},
		calls:               map[string]int{},
		faults:              map[string]*fault{},
		methods:             map[string]bool{},
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
	e.issuerAddr = lns[0].Addr().String()
	e.issuerURL = "http://" + e.issuerAddr
	e.apiURL = "http://" + lns[1].Addr().String()
	e.awsSTSURL = "http://" + lns[2].Addr().String()

	e.apiSrv = grpc.NewServer(grpc.ChainUnaryInterceptor(e.interceptor(true)))
	iam.RegisterGroupsServer(e.apiSrv, &groupsService{e: e})
	iam.RegisterIdentitiesServer(e.apiSrv, &identitiesService{e: e})
	iam.RegisterRolesServer(e.apiSrv, &rolesService{e: e})
	iam.RegisterRoleBindingsServer(e.apiSrv, &roleBindingsService{e: e})
	registry.RegisterRegistryServer(e.apiSrv, &registryService{e: e})
	iamv2.RegisterGroupsServiceServer(e.apiSrv, &groupsV2Service{e: e})
	iamv2.RegisterIdentitiesServiceServer(e.apiSrv, &identitiesV2Service{e: e})
	iamv2.RegisterRolesServiceServer(e.apiSrv, &rolesV2Service{e: e})
	iamv2.RegisterRoleBindingsServiceServer(e.apiSrv, &roleBindingsV2Service{e: e})

	e.issuerSrv = e.newIssuerServer()
	for _, srv := range []*grpc.Server{e.issuerSrv, e.apiSrv} {
		for svc, info := range srv.GetServiceInfo() {
			for _, m := range info.Methods {
				e.methods["/"+svc+"/"+m.Name] = true
			}
		}
	}
	for name, act := range awsQueryActions {
		e.methods[act.service+":"+name] = true
	}
	rules, err := loadRules(e.apiSrv)
	if err != nil {
		closeAll()
		return nil, err
	}
	e.rules = rules

	mux := http.NewServeMux()
	mux.HandleFunc("/", e.serveAWSSTS)
	e.federationRoutes(mux)
	e.stsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stsURL, err := url.Parse(e.awsSTSURL)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("emulator: parse AWS STS URL: %w", err)
	}
	router.register(e.issuerURL, stsURL)

	issuer := e.issuerSrv
	e.serve(func() error { return issuer.Serve(lns[0]) })
	e.serve(func() error { return e.apiSrv.Serve(lns[1]) })
	e.serve(func() error {
		if err := e.stsSrv.Serve(lns[2]); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	e.log.Info("chainguard emulator started", "issuer_url", e.issuerURL, "api_url", e.apiURL, "aws_sts_url", e.awsSTSURL,
		"token_ttl", e.tokenTTL, "omit_expiry", e.omitExpiry, "propagation_delay", e.propagationDelay, "unique_identity_names", e.uniqueIdentityNames, "stateless_tokens", e.statelessTokens,
		"ignore_output_only", e.ignoreOutputOnly, "page_size", e.pageSize)
	return e, nil
}

// newIssuerServer builds a gRPC server for the issuer.
func (e *Emulator) newIssuerServer() *grpc.Server {
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(e.interceptor(false)))
	oidc.RegisterSecurityTokenServiceServer(srv, &stsService{e: e})
	return srv
}

// SetIssuerReachable makes the issuer unreachable (false: its listener is
// closed and open connections are dropped, so a client sees a host that
// refuses connections) or reachable again (true: it listens on the same
// address). The SDK's clients use WaitForReady, so an exchange against an
// unreachable issuer blocks until its context's deadline and fails with
// DeadlineExceeded. Setting the current state again does nothing; re-listening
// fails if another process took the port meanwhile.
func (e *Emulator) SetIssuerReachable(reachable bool) error {
	e.issuerMu.Lock()
	defer e.issuerMu.Unlock()
	if e.closed {
		return errors.New("emulator: SetIssuerReachable after Close")
	}
	switch {
	case !reachable && e.issuerSrv != nil:
		e.issuerSrv.Stop()
		e.issuerSrv = nil
		e.log.Info("issuer made unreachable", "issuer_url", e.issuerURL)
	case reachable && e.issuerSrv == nil:
		l, err := net.Listen("tcp", e.issuerAddr)
		if err != nil {
			return fmt.Errorf("emulator: listen on the issuer address %s again: %w", e.issuerAddr, err)
		}
		srv := e.newIssuerServer()
		e.issuerSrv = srv
		e.serve(func() error { return srv.Serve(l) })
		e.log.Info("issuer reachable again", "issuer_url", e.issuerURL)
	}
	return nil
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
		e.issuerMu.Lock()
		if e.issuerSrv != nil {
			e.issuerSrv.Stop()
		}
		e.closed = true
		e.issuerMu.Unlock()
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

// Calls returns how many calls of method the emulator received: a
// Chainguard RPC by its full gRPC method name (e.g.
// "/chainguard.platform.iam.Identities/Create"), counted on arrival,
// including failed ones; or an AWS action of the AWS stand-in as IAM policies
// name it, "sts:GetWebIdentityToken", "sts:GetCallerIdentity",
// "iam:EnableOutboundWebIdentityFederation",
// "iam:GetOutboundWebIdentityFederationInfo" or
// "iam:DisableOutboundWebIdentityFederation", counted on every request whose
// SigV4 signature verified (a request refused before that, e.g. with
// SignatureDoesNotMatch, reached no action), including those that then fail
// (an injected fault, a disabled federation, a parameter refused).
// sts:GetCallerIdentity counts both the Query API calls of the SDK clients
// and the GetCallerIdentity requests auth/aws.VerifyToken forwards when the
// Chainguard STS verifies a caller-identity token. It panics on a name the
// emulator does not serve, so that a misspelled name cannot make an
// assertion pass.
func (e *Emulator) Calls(method string) int {
	e.mustKnow("Calls", method)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[method]
}

// FailNext makes the next n calls of the gRPC method fail with code (and a
// message saying the failure was injected). Any code but OK works; the
// transient ones the service really returns are Unavailable, Unknown (a raw
// HTTP 5xx from the gateway) and Internal (the Terraform provider's
// isRetryable in internal/provider/retry.go, at 5085c9f, retries Unknown,
// Internal, DeadlineExceeded and Aborted; the SDK's own connection retry
// covers Unavailable and ResourceExhausted). AWS actions fail with
// FailNextAWS.
func (e *Emulator) FailNext(method string, n int, code codes.Code) {
	e.mustKnow("FailNext", method)
	if isAWSAction(method) {
		panic(fmt.Sprintf("emulator: FailNext: %q is an AWS action: use FailNextAWS, which takes an AWS error code and HTTP status", method))
	}
	if code == codes.OK {
		panic("emulator: FailNext with codes.OK")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.fault(method)
	f.failN, f.failCode = n, code
}

// FailNextAWS makes the next n verified calls of the AWS action (named as
// for Calls, e.g. "sts:GetWebIdentityToken") fail with the AWS error code
// (e.g. "AccessDenied", "Throttling", "InternalFailure") and HTTP status
// (400-599; AccessDenied is 403, Throttling 400, InternalFailure 500),
// answered in the action's own error format (the Query API's XML
// ErrorResponse, so the SDK clients return a smithy.APIError with that code;
// the JSON error of a forwarded GetCallerIdentity, which auth/aws.VerifyToken
// reports as ErrTokenRejected) with a message saying the failure was
// injected. The call is counted and its signature verified first: an
// unsigned or badly signed request still gets AWS's own error. The SDK
// clients retry 5xx and throttling codes by themselves (3 attempts by
// default), each attempt one call.
func (e *Emulator) FailNextAWS(action string, n int, code string, httpStatus int) {
	e.mustKnow("FailNextAWS", action)
	switch {
	case !isAWSAction(action):
		panic(fmt.Sprintf("emulator: FailNextAWS: %q is a gRPC method: use FailNext", action))
	case code == "":
		panic("emulator: FailNextAWS with an empty error code")
	case httpStatus < 400 || httpStatus > 599:
		panic(fmt.Sprintf("emulator: FailNextAWS: HTTP status %d is not an error status (400-599)", httpStatus))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.fault(action)
	f.failN, f.awsCode, f.awsStatus = n, code, httpStatus
}

// SetLatency delays every call of method (a gRPC method or an AWS action,
// named as for Calls) by d (0 removes the delay). A call whose context ends
// during the delay fails with its context's error.
func (e *Emulator) SetLatency(method string, d time.Duration) {
	e.mustKnow("SetLatency", method)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fault(method).latency = d
}

// HangNext makes the next n calls of method (a gRPC method or an AWS
// action, named as for Calls) block until the caller's context is done (its
// deadline passes or it is cancelled; for an AWS action, until the client
// gives up the HTTP request); gRPC calls then fail with DeadlineExceeded or
// Canceled.
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
		panic(fmt.Sprintf("emulator: %s: %q is not a method the emulator serves; use a full gRPC method name such as %q or an AWS action such as %q",
			fn, method, "/chainguard.platform.iam.Identities/Create", "sts:GetWebIdentityToken"))
	}
}

// isAWSAction reports whether a name the emulator serves is an AWS action
// ("sts:...", "iam:...") rather than a gRPC method ("/...").
func isAWSAction(name string) bool { return !strings.HasPrefix(name, "/") }

// injected is what the faults of one call say to do.
type injected struct {
	latency   time.Duration
	hang      bool
	fail      bool
	code      codes.Code // gRPC
	awsCode   string     // AWS
	awsStatus int
}

// admit counts a call of name (a gRPC method or an AWS action) and takes its
// share of the injected faults: it waits out the latency and a hang, and
// returns the failure to answer with (injected.fail). err is the context's
// when ctx ended while waiting.
func (e *Emulator) admit(ctx context.Context, name string) (injected, error) {
	e.mu.Lock()
	e.calls[name]++
	var in injected
	if f, ok := e.faults[name]; ok {
		in.latency = f.latency
		switch {
		case f.hangN > 0:
			f.hangN--
			in.hang = true
		case f.failN > 0:
			f.failN--
			in.fail, in.code, in.awsCode, in.awsStatus = true, f.failCode, f.awsCode, f.awsStatus
		}
	}
	e.mu.Unlock()

	if in.latency > 0 {
		t := time.NewTimer(in.latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return in, ctx.Err()
		case <-t.C:
		}
	}
	if in.hang {
		e.log.Info("injected hang", "method", name)
		<-ctx.Done()
		return in, ctx.Err()
	}
	if in.fail {
		e.log.Info("injected failure", "method", name, "code", in.code, "aws_code", in.awsCode)
	}
	return in, nil
}

// beforeCall counts a gRPC call and applies injected faults.
func (e *Emulator) beforeCall(ctx context.Context, method string) error {
	in, err := e.admit(ctx, method)
	switch {
	case err != nil:
		return status.FromContextError(err).Err()
	case in.fail:
		return status.Errorf(in.code, "emulator: injected failure of %s", method)
	}
	return nil
}

// beforeAWSCall counts a verified call of an AWS action ("sts:...",
// "iam:...") and applies injected faults.
func (e *Emulator) beforeAWSCall(ctx context.Context, action string) error {
	in, err := e.admit(ctx, action)
	switch {
	case err != nil:
		// The client gave up (its deadline, or a closed connection):
		// nobody reads this answer.
		return &awsError{status: http.StatusServiceUnavailable, code: "RequestCanceled", message: fmt.Sprintf("the client gave up %s: %v", action, err)}
	case in.fail:
		return &awsError{status: in.awsStatus, code: in.awsCode, message: fmt.Sprintf("emulator: injected failure of %s", action)}
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

// RolesOf lists the names of the roles identity is bound to (on any
// group), sorted.
func (s State) RolesOf(identity string) []string {
	return s.ofIdentity(identity, func(b RoleBinding) string { return b.RoleName })
}

// BindingsOf lists the UIDPs of identity's role bindings, sorted.
func (s State) BindingsOf(identity string) []string {
	return s.ofIdentity(identity, func(b RoleBinding) string { return b.ID })
}

// ofIdentity lists field of identity's role bindings, sorted.
func (s State) ofIdentity(identity string, field func(RoleBinding) string) []string {
	var out []string
	for _, b := range s.RoleBindings {
		if b.Identity == identity {
			out = append(out, field(b))
		}
	}
	sort.Strings(out)
	return out
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
// AWS is its aws_identity and ClaimMatch its claim_match (nil if it has
// another relationship).
type Identity struct {
	ID, Name, Description string
	AWS                   *iam.Identity_AWSIdentity
	ClaimMatch            *iam.Identity_ClaimMatch
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
		s.Identities = append(s.Identities, Identity{ID: c.GetId(), Name: c.GetName(), Description: c.GetDescription(), AWS: c.GetAwsIdentity(), ClaimMatch: c.GetClaimMatch(), Proto: c})
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

// PropagationDelay is the propagation delay in effect (Options or
// EnvPropagationDelay).
func (e *Emulator) PropagationDelay() time.Duration { return e.propagationDelay }

// OmitExpiry reports whether Exchange leaves RawToken.expiry unset (Options
// or EnvOmitExpiry).
func (e *Emulator) OmitExpiry() bool { return e.omitExpiry }

// StatelessTokens reports whether tokens keep the bindings of their exchange
// (Options.StatelessTokens).
func (e *Emulator) StatelessTokens() bool { return e.statelessTokens }
