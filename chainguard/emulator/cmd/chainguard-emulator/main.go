// Command chainguard-emulator runs the Chainguard API emulator as its own
// process on 127.0.0.1, seeded with a root group, a group with repos, an owner
// "provisioner" identity assumable by an AWS test principal, and a registered
// workload principal. It prints one JSON object describing all of that
// (URLs, UIDPs, AWS test credentials) on stdout, logs to stderr, and stops
// cleanly on SIGTERM or SIGINT.
//
//	go run ./chainguard/emulator/cmd/chainguard-emulator -listen 127.0.0.1:0
//
// The strict readings of the emulator (see package emulator) have flags:
// -propagation-delay (a Go duration; new identities and role bindings reach
// the STS only after it), -omit-expiry (Exchange leaves the expiry field
// unset; clients read the token's exp claim) and -unique-identity-names
// (identity names unique within a group); -stateless-tokens switches to the
// looser reading of tokens after their bindings change, -ignore-output-only
// to the looser reading of IAM v2 OUTPUT_ONLY fields (dropped instead of
// refused); -page-size caps IAM v2 List pages. When a flag is not
// given, the emulator's environment overrides apply
// (CHAINGUARD_EMULATOR_PROPAGATION_DELAY, CHAINGUARD_EMULATOR_OMIT_EXPIRY).
//
// # The two seeded principals
//
// The provisioner and workload principals are assumed-role sessions:
// -provisioner-role (a role name, or the role's ARN with its path, such as
// the provisioner stack's ProvisionerRoleArn output), -provisioner-role-id
// (the role's unique ID as AWS or a CloudFormation engine assigned it, the
// ProvisionerRoleId output; by default one derived from -account and the
// role name) and -provisioner-session (the function name,
// ProvisionerFunctionName); likewise -workload-role, -workload-role-id and
// -workload-session. A role ARN must be in -account. So the seeded
// provisioner identity can trust the real principal of a function a
// CloudFormation engine deployed.
//
// The AWS stand-in (aws_url) also serves the AWS STS and IAM calls of the
// web-identity trust to SDK clients pointed at it (AWS_ENDPOINT_URL_STS,
// AWS_ENDPOINT_URL_IAM). With -web-identity the account's outbound identity
// federation starts enabled (web_identity_issuer) and the provisioner's
// owner identity is seeded with a claim_match trust (issuer, the
// provisioner role's ARN, audience = the issuer URL) instead of the
// aws_identity one.
//
// # Control endpoint
//
// control_url (-control-listen, default 127.0.0.1:0, loopback addresses
// only) serves plain HTTP with JSON bodies, for principals known only once
// something is deployed. It is unauthenticated, hence loopback only: it
// also refuses requests whose Host is not a loopback name (403) and POSTs
// whose Content-Type is not application/json (415).
//
//	POST /principals  {"role_arn": "arn:aws:iam::ACCOUNT:role/PATH/NAME", "role_id": "AROA...", "session_name": "FUNCTION"}
//
// registers the assumed-role principal of that session (ARN
// arn:aws:sts::ACCOUNT:assumed-role/NAME/FUNCTION, user ID AROA...:FUNCTION;
// the role ARN, path included, is the subject of its web identity tokens)
// and answers fresh credentials that sign as it, in the shape of the
// printed principals: {"aws_principal": {...}, "role_name", "session_name",
// "role_id", "role_arn", "aws_credentials": {"AWS_ACCESS_KEY_ID",
// "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}}. Each call registers a new
// session with new credentials.
//
//	POST /trust-step  {"trust_spec": <the provisioner stack's TrustSpec output>, "parent": "GROUP_UIDP", "role": "owner"}
//
// is the one-time trust step, as a user does it with chainctl (package
// chainguard/truststep, shared with the local run): it checks the spec (an
// aws_identity or a claim_match, the JSON string the output holds or the
// object it encodes), creates that identity in parent (default: the seeded
// root group) and binds role (default owner) to it on parent, through the
// IAM API as the identity trust_step_user (an owner of the root group). It
// answers {"identity": UIDP, "name", "parent", "role"}. The new identity and
// binding are subject to -propagation-delay like any created through the
// API.
//
//	GET /state
//
// lists the groups, identities, role bindings and repos the emulator holds.
//
// A bad request is answered 4xx with {"error": "FIELD: reason", "field":
// "FIELD"}: 400 for a missing, malformed or invalid field or an unknown
// one, 403 for a parent the trust step user may not create identities in
// (as the service, the emulator answers PermissionDenied for a group that
// does not exist), 409 for an identity name already taken
// (-unique-identity-names). Credentials appear only in
// response bodies, never in the logs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Output is the JSON object printed on stdout once the emulator serves.
type Output struct {
	IssuerURL string `json:"issuer_url"`
	APIURL    string `json:"api_url"`
	AWSSTSURL string `json:"aws_sts_url"`
	// AWSURL serves AWS STS and IAM to SDK clients (AWS_ENDPOINT_URL_STS,
	// AWS_ENDPOINT_URL_IAM); the same server as AWSSTSURL.
	AWSURL string `json:"aws_url"`
	// WebIdentityIssuer is the account's federation issuer (-web-identity).
	WebIdentityIssuer string `json:"web_identity_issuer,omitempty"`
	// ControlURL is the control endpoint (POST /principals, POST
	// /trust-step, GET /state).
	ControlURL string `json:"control_url"`
	// TrustStepUser is the identity POST /trust-step acts as: an owner of
	// the root group, as the user signed in to chainctl.
	TrustStepUser string    `json:"trust_step_user"`
	RootGroup     string    `json:"root_group"`
	Group         string    `json:"group"`
	GroupName     string    `json:"group_name"`
	Repos         []Repo    `json:"repos"`
	Provisioner   Principal `json:"provisioner"`
	Workload      Principal `json:"workload"`
	TokenTTL      string    `json:"token_ttl"`
	// Settings are the emulator's strictness settings in effect.
	PropagationDelay    string            `json:"propagation_delay"`
	OmitExpiry          bool              `json:"omit_expiry"`
	UniqueIdentityNames bool              `json:"unique_identity_names"`
	StatelessTokens     bool              `json:"stateless_tokens"`
	IgnoreOutputOnly    bool              `json:"ignore_output_only"`
	PageSize            int               `json:"page_size"`
	Roles               map[string]string `json:"roles"`
}

// Repo is a seeded repo.
type Repo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Principal is an AWS test principal, its credentials and (for the
// provisioner) the identity it may assume.
type Principal struct {
	Identity     string                `json:"identity,omitempty"`
	AWSPrincipal emulator.AWSPrincipal `json:"aws_principal"`
	RoleName     string                `json:"role_name"`
	SessionName  string                `json:"session_name"`
	RoleID       string                `json:"role_id"`
	RoleARN      string                `json:"role_arn"`
	Credentials  Credentials           `json:"aws_credentials"`
}

// Credentials are AWS test credentials, named like the AWS environment
// variables they go into.
type Credentials struct {
	AccessKeyID     string `json:"AWS_ACCESS_KEY_ID"`
	SecretAccessKey string `json:"AWS_SECRET_ACCESS_KEY"`
	SessionToken    string `json:"AWS_SESSION_TOKEN"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chainguard-emulator:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chainguard-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "API listen address (loopback only)")
	issuerListen := fs.String("issuer-listen", "127.0.0.1:0", "issuer (STS) listen address (loopback only)")
	stsListen := fs.String("sts-listen", "127.0.0.1:0", "AWS STS stand-in listen address (loopback only)")
	rootName := fs.String("root-name", "acme", "name of the seeded root group")
	groupName := fs.String("group-name", "example-group", "name of the seeded group (child of the root group) holding the repos")
	repos := fs.String("repos", "nginx,python,static", "comma-separated repo names seeded in the group")
	account := fs.String("account", "111122223333", "AWS account of the test principals")
	provRole := fs.String("provisioner-role", "chainguard-provisioner", "IAM role of the provisioner principal: its name, or its ARN with path (the ProvisionerRoleArn output; in -account)")
	provRoleID := fs.String("provisioner-role-id", "", "unique ID (AROA...) of the provisioner role as AWS or the CloudFormation engine assigned it (the ProvisionerRoleId output; default: one derived from -account and the role name)")
	provSession := fs.String("provisioner-session", "chainguard-provisioner", "session name of the provisioner principal (its Lambda function name: the ProvisionerFunctionName output)")
	wlRole := fs.String("workload-role", "aws-auth", "IAM role of the workload principal: its name, or its ARN with path (in -account)")
	wlRoleID := fs.String("workload-role-id", "", "unique ID (AROA...) of the workload role as AWS or the CloudFormation engine assigned it (default: one derived from -account and the role name)")
	wlSession := fs.String("workload-session", "aws-auth", "session name of the workload principal (its Lambda function name)")
	controlListen := fs.String("control-listen", "127.0.0.1:0", "control endpoint (HTTP) listen address (loopback only)")
	tokenTTL := fs.Duration("token-ttl", emulator.DefaultTokenTTL, "lifetime of issued Chainguard tokens (at least 1s)")
	propagation := fs.Duration("propagation-delay", 0, "how long new identities and role bindings take to reach the STS (0: $"+emulator.EnvPropagationDelay+" or none)")
	omitExpiry := fs.Bool("omit-expiry", false, "leave the expiry of exchanged tokens unset: clients read the token's exp claim (false: $"+emulator.EnvOmitExpiry+")")
	uniqueNames := fs.Bool("unique-identity-names", false, "refuse a second identity of one name in a group (AlreadyExists)")
	stateless := fs.Bool("stateless-tokens", false, "tokens keep the role bindings of their exchange after those are deleted or changed")
	ignoreOutputOnly := fs.Bool("ignore-output-only", false, "IAM v2: drop OUTPUT_ONLY fields and update_mask paths instead of refusing them (InvalidArgument)")
	pageSize := fs.Int("page-size", 0, "IAM v2: at most this many items per List page (0: the protos' page_size default 50, maximum 200)")
	webIdentity := fs.Bool("web-identity", false, "enable the account's outbound identity federation and seed the provisioner identity with a claim_match trust (the web-identity trust mode)")
	verbose := fs.Bool("v", false, "log every RPC")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: all settings are flags", fs.Args())
	}
	if err := validate.AWSAccount(*account); err != nil {
		return fmt.Errorf("-account: %w", err)
	}
	provPrincipal, err := rolePrincipal("provisioner", *account, *provRole, *provRoleID, *provSession)
	if err != nil {
		return err
	}
	wlPrincipal, err := rolePrincipal("workload", *account, *wlRole, *wlRoleID, *wlSession)
	if err != nil {
		return err
	}
	if err := checkLoopback("-control-listen", *controlListen); err != nil {
		return err
	}
	repoNames := []string{}
	for _, r := range strings.Split(*repos, ",") {
		if r = strings.TrimSpace(r); r != "" {
			repoNames = append(repoNames, r)
		}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	e, err := emulator.Start(emulator.Options{
		TokenTTL: *tokenTTL, Logger: log,
		PropagationDelay: *propagation, OmitExpiry: *omitExpiry, UniqueIdentityNames: *uniqueNames, StatelessTokens: *stateless,
		IgnoreOutputOnly: *ignoreOutputOnly, PageSize: *pageSize,
		APIAddr: *listen, IssuerAddr: *issuerListen, AWSSTSAddr: *stsListen,
	})
	if err != nil {
		return err
	}
	defer func() { _ = e.Close() }()

	var s emulator.Standard
	var issuer string
	var ctl *control
	if err := seed(func() {
		s = e.SeedStandard(emulator.StandardOptions{
			RootName: *rootName, GroupName: *groupName, Repos: repoNames, Account: *account,
			ProvisionerPrincipal: &provPrincipal, WorkloadPrincipal: &wlPrincipal,
			WebIdentity: *webIdentity,
		})
		if *webIdentity {
			issuer, _ = e.WebIdentityFederation(*account)
		}
		ctl = newControl(e, s.Root, log)
	}); err != nil {
		return err
	}
	controlLn, err := net.Listen("tcp", *controlListen)
	if err != nil {
		return fmt.Errorf("control endpoint: listen on %s: %w", *controlListen, err)
	}
	controlSrv := &http.Server{Handler: ctl.handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := controlSrv.Serve(controlLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("control endpoint stopped", "error", err)
		}
	}()
	defer func() { _ = controlSrv.Close() }()

	out := Output{
		IssuerURL: e.IssuerURL(), APIURL: e.APIURL(), AWSSTSURL: e.AWSSTSURL(), AWSURL: e.AWSURL(), WebIdentityIssuer: issuer,
		RootGroup: s.Root, Group: s.Group, GroupName: s.GroupName,
		ControlURL: "http://" + controlLn.Addr().String(), TrustStepUser: ctl.user,
		Provisioner:      newPrincipal(s.Provisioner, s.ProvisionerPrincipal, s.ProvisionerCredentials),
		Workload:         newPrincipal("", s.WorkloadPrincipal, s.WorkloadCredentials),
		TokenTTL:         tokenTTL.String(),
		Roles:            map[string]string{},
		PropagationDelay: e.PropagationDelay().String(), OmitExpiry: e.OmitExpiry(), UniqueIdentityNames: *uniqueNames, StatelessTokens: e.StatelessTokens(),
		IgnoreOutputOnly: *ignoreOutputOnly, PageSize: *pageSize,
	}
	for _, r := range s.Repos {
		out.Repos = append(out.Repos, Repo{ID: r.ID, Name: r.Name})
	}
	for _, r := range e.State().Roles {
		out.Roles[r.Name] = r.ID
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		return fmt.Errorf("write the JSON description to stdout: %w", err)
	}
	log.Info("serving; stop with SIGTERM or SIGINT", "group", s.Group, "provisioner", s.Provisioner)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	log.Info("signal received, shutting down")
	start := time.Now()
	_ = controlSrv.Close()
	_ = e.Close()
	log.Info("stopped", "took", time.Since(start))
	return nil
}

// seed runs f, turning a seeding panic (invalid flags) into an error.
func seed(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("seed the emulator: %v", r)
		}
	}()
	f()
	return nil
}

// rolePrincipal builds the principal of one seeded role (kind "provisioner"
// or "workload") from its flags, validated.
func rolePrincipal(kind, account, role, roleID, session string) (emulator.AWSPrincipal, error) {
	arn, name := role, role
	if strings.HasPrefix(role, "arn:") {
		r, err := validate.IAMRoleARN(role)
		if err != nil {
			return emulator.AWSPrincipal{}, fmt.Errorf("-%s-role: %w", kind, err)
		}
		if r.Account != account {
			return emulator.AWSPrincipal{}, fmt.Errorf("-%s-role %q is in account %s, not in -account %s: pass -account %s", kind, role, r.Account, account, r.Account)
		}
		name = r.Name
	} else {
		if err := validate.IAMRoleName(role); err != nil {
			return emulator.AWSPrincipal{}, fmt.Errorf("-%s-role: %w (or give the role's ARN)", kind, err)
		}
		arn = "arn:aws:iam::" + account + ":role/" + role
	}
	if roleID == "" {
		roleID = emulator.RoleUniqueID(account, name)
	} else if err := validate.RoleID(roleID); err != nil {
		return emulator.AWSPrincipal{}, fmt.Errorf("-%s-role-id: %w", kind, err)
	}
	if err := validate.SessionName(session); err != nil {
		return emulator.AWSPrincipal{}, fmt.Errorf("-%s-session: %w", kind, err)
	}
	p, err := emulator.RolePrincipal(arn, roleID, session)
	if err != nil {
		return emulator.AWSPrincipal{}, fmt.Errorf("-%s-role: %w", kind, err)
	}
	return p, nil
}

// newPrincipal describes the principal p (with the identity that trusts it,
// if any) and its credentials.
func newPrincipal(identity string, p emulator.AWSPrincipal, c aws.Credentials) Principal {
	roleID, session, _ := strings.Cut(p.UserID, ":")
	role := ""
	if parts := strings.Split(p.ARN, "/"); len(parts) == 3 {
		role = parts[1]
	}
	return Principal{
		Identity: identity, AWSPrincipal: p, RoleName: role, SessionName: session, RoleID: roleID, RoleARN: p.RoleARN,
		Credentials: Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
	}
}
