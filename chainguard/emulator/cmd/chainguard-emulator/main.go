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
// The AWS stand-in (aws_url) also serves the AWS STS and IAM calls of the
// web-identity trust to SDK clients pointed at it (AWS_ENDPOINT_URL_STS,
// AWS_ENDPOINT_URL_IAM). With -web-identity the account's outbound identity
// federation starts enabled (web_identity_issuer) and the provisioner's
// owner identity is seeded with a claim_match trust (issuer, the
// provisioner role's ARN, audience = the issuer URL) instead of the
// aws_identity one.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
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
	WebIdentityIssuer string    `json:"web_identity_issuer,omitempty"`
	RootGroup         string    `json:"root_group"`
	Group             string    `json:"group"`
	GroupName         string    `json:"group_name"`
	Repos             []Repo    `json:"repos"`
	Provisioner       Principal `json:"provisioner"`
	Workload          Principal `json:"workload"`
	TokenTTL          string    `json:"token_ttl"`
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
	provRole := fs.String("provisioner-role", "chainguard-provisioner", "IAM role name of the provisioner principal")
	provSession := fs.String("provisioner-session", "chainguard-provisioner", "session name of the provisioner principal (its Lambda function name)")
	wlRole := fs.String("workload-role", "aws-auth", "IAM role name of the workload principal")
	wlSession := fs.String("workload-session", "aws-auth", "session name of the workload principal (its Lambda function name)")
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
	if err := seed(func() {
		s = e.SeedStandard(emulator.StandardOptions{
			RootName: *rootName, GroupName: *groupName, Repos: repoNames, Account: *account,
			ProvisionerRole: *provRole, ProvisionerSession: *provSession,
			WorkloadRole: *wlRole, WorkloadSession: *wlSession,
			WebIdentity: *webIdentity,
		})
		if *webIdentity {
			issuer, _ = e.WebIdentityFederation(*account)
		}
	}); err != nil {
		return err
	}

	out := Output{
		IssuerURL: e.IssuerURL(), APIURL: e.APIURL(), AWSSTSURL: e.AWSSTSURL(), AWSURL: e.AWSURL(), WebIdentityIssuer: issuer,
		RootGroup: s.Root, Group: s.Group, GroupName: s.GroupName,
		Provisioner:      principal(s.Provisioner, s.ProvisionerPrincipal, *account, *provRole, *provSession, s.ProvisionerCredentials),
		Workload:         principal("", s.WorkloadPrincipal, *account, *wlRole, *wlSession, s.WorkloadCredentials),
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

func principal(identity string, p emulator.AWSPrincipal, account, role, session string, c aws.Credentials) Principal {
	return Principal{
		Identity: identity, AWSPrincipal: p, RoleName: role, SessionName: session,
		RoleID:      emulator.RoleUniqueID(account, role),
		Credentials: Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
	}
}
