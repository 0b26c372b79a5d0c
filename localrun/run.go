// Package localrun runs the whole lifecycle of the CDK app on one machine,
// with no AWS or Chainguard account: it starts the Chainguard emulator (and
// its AWS stand-in, serving STS and IAM, and a Lambda Invoke API), synthesizes the real app with
// context pointing at it, performs the provisioner's one-time trust step
// from the stack's own output, then plays CloudFormation's part — the real Lambda bootstraps run
// under the Lambda Runtime Interface Emulator with their roles' credentials
// and receive Create, Update and Delete custom resource events — invokes the
// repos function, performs the README's last destroy step (deleting the
// provisioner identity) and checks that the emulator ends up holding exactly
// what it held before the run: nothing the run created is left.
//
// When the stack creates its group, the run plays the user pushing an image
// to it (a repo seeded into the created group), so the repos function must
// list exactly that repo, and deleting it (the user deleting their image)
// before the Delete events, so the stack can delete the group.
//
// It runs either trust mode (Options.Trust). In the caller-identity mode the
// functions sign GetCallerIdentity requests and the identities trust their
// assumed-role principals; the account's AWS outbound identity federation
// must stay off throughout. In the web-identity mode the app is synthesized
// with context trust=webIdentity: the provisioner stack's
// Custom::AwsOutboundWebIdentityFederation, served by the provisioner
// bootstrap like the other custom resources, enables the account's
// federation through the emulator's IAM API (its IssuerIdentifier feeds
// Fn::GetAtt, the issuer's SSM parameter that the identity stacks read, and
// the outputs); the trust step creates the claim_match identity the stack's
// TrustSpec describes; the functions exchange web identity tokens from
// sts:GetWebIdentityToken; and the run checks the federation is off before
// the provisioner stack's first deploy, on after it, found on by a later
// deploy of that stack, and still on after destroy. In both modes the
// functions reach the emulator's AWS stand-in through the SDK's endpoint
// overrides (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_IAM), and their
// principals are registered with their roles' ARNs (path included), the
// subject of their web identity tokens.
//
// The deploy-time trust check (issue 10) runs as it would in AWS: the
// provisioner's Lambda client reaches a local Lambda API
// (AWS_ENDPOINT_URL_LAMBDA, lambdaapi.go) that verifies the caller's SigV4
// signature with the emulator's own verification and lets it invoke a
// function only if the function's AWS::Lambda::Permission names the
// caller's role; the repos function answers the check with a fresh
// exchange. The run reports the time each check added to its deploy, and,
// after the normal lifecycle, deletes the aws-auth stack and deploys it
// again with a wrong trust: the check must fail naming both principals and
// the creation must roll back, as CloudFormation rolls back a failed
// creation (cloud.go), to exactly what the emulator held before
// (trustcheck.go).
//
// The templates are read from the synthesized cloud assembly and resolved by
// package template: what the run deploys is exactly what `cdk deploy` would
// send to CloudFormation.
package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/truststep"
	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
	"github.com/assumable-identity/cdk-chainguard/localrun/template"
	"github.com/assumable-identity/cdk-chainguard/stacks"
)

// DefaultPropagationDelay is the delay cmd/local-run and TestRun use. It is
// longer than the synth between the trust step and the first deploy (5-8 s
// measured on an idle 2-core machine), so that the first deploy meets a provisioner identity that is not effective yet.
// The real service's delay is not documented; the vendor's Terraform
// provider waits up to about 30 s for a new role binding to propagate
// (internal/provider/resource_group.go, waitForRoleBindingPropagation).
const DefaultPropagationDelay = 10 * time.Second

// Options configure Run. The zero value runs the caller-identity trust with
// the pre-existing group mode from the module containing the working
// directory, printing nothing.
type Options struct {
	// ModuleDir is the root of the module holding the CDK app (main package
	// and cdk.json). Default: the module containing the working directory.
	ModuleDir string
	// CreateGroup makes the identity stack create (and on delete remove) its
	// own group under the seeded parent group, instead of using the seeded
	// group as a pre-existing one. The run pushes the repo "hello" to the
	// created group once it exists and deletes it before the stacks.
	CreateGroup bool
	// Out receives one progress line per step and the summary.
	Out io.Writer
	// FunctionLogs receives the output of the RIEs and functions.
	FunctionLogs io.Writer
	// WorkDir holds the cloud assemblies and built binaries; default a
	// temporary directory removed when Run returns.
	WorkDir string
	// PropagationDelay is how long the emulator takes to make a new
	// identity or role binding effective (emulator.Options.PropagationDelay;
	// zero: the emulator's CHAINGUARD_EMULATOR_PROPAGATION_DELAY, else
	// none). With a delay longer than the second synth, the first deploy
	// after the trust step meets a provisioner identity the STS does not
	// know yet, as it can against the real service. Before it invokes the
	// repos function after a deploy, the run waits until the deploy's
	// changes have propagated, as a user would.
	PropagationDelay time.Duration
	// Trust is how the provisioner and the repos function prove their AWS
	// identity to Chainguard: token.CallerIdentity (the default, also for
	// "": a signed GetCallerIdentity request, identities with
	// aws_identity) or token.WebIdentity (AWS outbound identity federation:
	// the app is synthesized with context trust=webIdentity, the provisioner
	// stack turns the account's federation on, the trust step creates a
	// claim_match identity, and the functions exchange web identity
	// tokens). Either way the functions reach the emulator's AWS stand-in
	// through the SDK's endpoint overrides (AWS_ENDPOINT_URL_STS,
	// AWS_ENDPOINT_URL_IAM), and the run checks the account's federation:
	// never enabled in the caller-identity mode; off before the first
	// provisioner deploy, enabled by it, found on by a later deploy and
	// still on after destroy in the web-identity mode.
	Trust token.Trust
	// EnvironmentAgnostic synthesizes the app as an offline `cdk synth`
	// does, without CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION: the stacks
	// then take the account, region and partition from the deployment, and
	// carry the ChainguardPartition rule that refuses a partition other than
	// aws. Default: the environment is the local account and region, as the
	// CDK CLI passes them when it has credentials.
	EnvironmentAgnostic bool
}

// Result is what a run did.
type Result struct {
	Steps []Step
	// Repos are the names of the repos the repos function listed: the
	// seeded nginx, python and static of the pre-existing group, or the one
	// repo pushed to the group the stack created.
	Repos []string
	// ProvisionerIdentity, Identity and Group are the UIDPs of the trust
	// step's identity, the workload identity and its group.
	ProvisionerIdentity, Identity, Group string
	// FirstDeploy is how the first deploy of the identity stacks met the
	// propagation of the trust step's identity.
	FirstDeploy FirstDeploy
	// FederationIssuer is the issuer of the account's AWS outbound identity
	// federation, which the provisioner stack enabled (web-identity mode;
	// "" in the caller-identity mode, which never enables it).
	FederationIssuer string
	// TrustCheck and TrustCheckUpdate are the deploy-time trust checks of
	// the first deploy of the identity stacks (a Create) and of the update
	// (an Update: the roles changed).
	TrustCheck, TrustCheckUpdate CheckTiming
	// WrongTrustReason is the reason of the FAILED Create of the trust
	// check of the wrong-trust deploy, which was rolled back.
	WrongTrustReason string
}

// CheckTiming is one deploy-time trust check (Custom::ChainguardTrustCheck)
// of a deploy.
type CheckTiming struct {
	// Duration is how long its event took to be answered: the time the
	// check adds to the deploy (the local run creates resources one after
	// the other).
	Duration time.Duration
	// Invocations is how many times the provisioner invoked the function
	// (its attempts: a refusal while the new identity or binding
	// propagates is retried).
	Invocations int
}

// FirstDeploy describes the first deploy of the identity stacks after the
// trust step.
type FirstDeploy struct {
	// SinceTrustStep is the time from the trust step to the start of the
	// deploy; when it is shorter than the propagation delay, the provisioner
	// met an identity the STS did not know yet.
	SinceTrustStep time.Duration
	// Exchanges is how many token exchanges the provisioner made during
	// the deploy (each refused one is retried with a fresh exchange).
	Exchanges int
}

// Step is one completed step of a run.
type Step struct {
	Name     string
	Duration time.Duration
}

// StepError is the error of a failed run: the step and why.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %q failed: %v", e.Step, e.Err) }

func (e *StepError) Unwrap() error { return e.Err }

// Names of the seeded objects and the values the run checks.
const (
	rootGroupName     = "acme"
	groupName         = "example-group"
	adminIdentityName = "local-admin"
	updatedRole       = "registry.pull"
	initialRole       = "viewer"
)

// seededRepos are the repos of the pre-existing group.
var seededRepos = []string{"nginx", "python", "static"}

// pushedRepo is the repo the user pushes to the group the stack created.
const pushedRepo = "hello"

// Run performs the whole local lifecycle. Every process it starts (the CDK
// app, the RIEs) is stopped before it returns, also when ctx is cancelled.
func Run(ctx context.Context, opts Options) (res *Result, err error) {
	r := &runner{opts: opts, res: &Result{}, out: opts.Out}
	trust, err := token.ParseTrust(string(opts.Trust))
	if err != nil {
		return r.res, &StepError{Step: "set up", Err: fmt.Errorf("Options.Trust: %w", err)}
	}
	r.web = trust == token.WebIdentity
	if r.out == nil {
		r.out = io.Discard
	}
	start := time.Now()
	defer func() {
		r.cleanup()
		if err != nil {
			fmt.Fprintf(r.out, "FAIL after %s: %v\n", time.Since(start).Round(100*time.Millisecond), err)
			return
		}
		r.summary(time.Since(start))
	}()
	if err := r.setup(); err != nil {
		return r.res, &StepError{Step: "set up", Err: err}
	}
	for _, s := range r.steps() {
		if err := r.step(ctx, s.name, s.do); err != nil {
			return r.res, err
		}
	}
	return r.res, nil
}

type runner struct {
	opts Options
	res  *Result
	out  io.Writer
	web  bool // Options.Trust is token.WebIdentity

	moduleDir, workDir string
	removeWork         bool
	emu                *emulator.Emulator
	responses          *responseServer
	lambda             *lambdaAPI
	fns                *functions
	cloud              *cloud
	synth              *synthesizer
	adminToken         string
	// group is the context's group: the pre-existing group, or the parent
	// of the group the stack creates. The provisioner is owner on it.
	group           string
	preState        emulator.State // before the trust step
	pushedRepoID    string         // the repo pushed to the created group, until deleted
	assembly        *template.Assembly
	synths          int
	provOutputs     map[string]string
	identityOutputs map[string]string
	trustedAt       time.Time // when the trust step created the provisioner identity
	// changedAt is when the last Chainguard change of the last deploy of
	// the identity stacks was answered: the end of its last custom
	// resource event other than the trust check, which changes nothing
	// (the deploy's end if it sent none).
	changedAt time.Time
	// lastCheck is the trust check of the last deploy of the identity
	// stacks.
	lastCheck CheckTiming
	// wrongTrust is what the wrong-trust deploy needs and checks.
	wrongTrust wrongTrust
	// laterDeploys counts the deploys of the provisioner stack after the
	// one that enabled the account's federation (web-identity mode).
	laterDeploys int
}

type stepFunc struct {
	name string
	do   func(context.Context) error
}

// steps are the steps of the run; with CreateGroup, two more play the user
// pushing an image to the created group and deleting it.
func (r *runner) steps() []stepFunc {
	steps := []stepFunc{
		{"start the Chainguard emulator", r.startEmulator},
		{"build the CDK app and the RIE", r.buildApp},
		{"synthesize (before the trust step)", r.synthFirst},
		{"deploy the provisioner stack", r.deployProvisioner},
		{"trust step from the provisioner stack's output", r.trustStep},
		{"synthesize (provisioner identity in context)", r.synthSecond},
		{"deploy the identity stacks", r.deployFirst},
		{"check the created objects", r.checkCreated},
	}
	if r.opts.CreateGroup {
		steps = append(steps, stepFunc{"push an image: repo " + pushedRepo + " into the created group", r.pushRepo})
	}
	steps = append(steps,
		stepFunc{"invoke the repos function", r.invokeRepos},
		stepFunc{"synthesize (roles " + updatedRole + ")", r.synthUpdate},
		stepFunc{"update the identity stacks", r.deployAll},
		stepFunc{"check the updated binding", r.checkUpdated},
	)
	if r.opts.CreateGroup {
		steps = append(steps, stepFunc{"delete the image: repo " + pushedRepo + " from the created group", r.deletePushedRepo})
	}
	steps = append(steps,
		stepFunc{"delete the aws-auth stack", r.deleteAwsAuth},
		stepFunc{"deploy it with a wrong trust: fails at the trust check and rolls back", r.deployWrongTrust},
		stepFunc{"check the rollback: the emulator holds what it held before", r.checkRollback},
		stepFunc{"delete the stacks", r.destroy},
	)
	if r.web {
		// CloudFormation sends no event to a custom resource whose
		// properties did not change, so the update step's deploy of the
		// provisioner stack does not reach the federation resource: a new
		// deploy of the stack does (a Create, as after a destroy or in
		// another region of the account).
		steps = append(steps,
			stepFunc{"deploy the provisioner stack again (federation already on)", r.redeployProvisioner},
			stepFunc{"delete the provisioner stack again", r.destroy},
		)
	}
	return append(steps,
		stepFunc{"delete the provisioner identity (chainctl iam identities delete)", r.deleteProvisionerIdentity},
		stepFunc{"check the end state", r.checkEnd},
	)
}

func (r *runner) step(ctx context.Context, name string, do func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return &StepError{Step: name, Err: fmt.Errorf("interrupted: %w", err)}
	}
	n := len(r.res.Steps) + 1
	fmt.Fprintf(r.out, "[%2d] %s ...\n", n, name)
	start := time.Now()
	err := do(ctx)
	d := time.Since(start)
	if err != nil {
		fmt.Fprintf(r.out, "[%2d] FAIL %s (%s)\n", n, name, d.Round(time.Millisecond))
		return &StepError{Step: name, Err: err}
	}
	r.res.Steps = append(r.res.Steps, Step{Name: name, Duration: d})
	fmt.Fprintf(r.out, "[%2d] ok   %s (%s)\n", n, name, d.Round(time.Millisecond))
	return nil
}

func (r *runner) summary(total time.Duration) {
	mode := "pre-existing group"
	if r.opts.CreateGroup {
		mode = "group created by the stack"
	}
	mode = r.trustName() + ", " + mode
	fmt.Fprintf(r.out, "PASS in %s (%s): %d steps, %d synths; provisioner identity %s, identity %s in group %s; repos listed: %s; "+
		"trust check %s on create (%d invocations), %s on update; a wrong trust failed the check and rolled back; "+
		"end state: the emulator holds exactly what it held before the trust step\n",
		total.Round(100*time.Millisecond), mode, len(r.res.Steps), r.synths,
		r.res.ProvisionerIdentity, r.res.Identity, r.res.Group, strings.Join(r.res.Repos, ", "),
		r.res.TrustCheck.Duration.Round(100*time.Millisecond), r.res.TrustCheck.Invocations,
		r.res.TrustCheckUpdate.Duration.Round(time.Millisecond))
}

// trustName names the run's trust mode as the -trust flag does.
func (r *runner) trustName() string {
	if r.web {
		return string(token.WebIdentity)
	}
	return string(token.CallerIdentity)
}

func (r *runner) setup() error {
	r.moduleDir = r.opts.ModuleDir
	if r.moduleDir == "" {
		dir, err := lambdabuild.ModuleRoot()
		if err != nil {
			return err
		}
		r.moduleDir = dir
	}
	r.workDir = r.opts.WorkDir
	if r.workDir != "" {
		if err := os.MkdirAll(r.workDir, 0o755); err != nil {
			return fmt.Errorf("create the work directory: %w", err)
		}
	} else {
		dir, err := os.MkdirTemp("", "local-run-")
		if err != nil {
			return fmt.Errorf("create a work directory: %w", err)
		}
		r.workDir, r.removeWork = dir, true
	}
	return nil
}

// cleanup stops everything the run started.
func (r *runner) cleanup() {
	if r.lambda != nil {
		r.lambda.close()
	}
	if r.fns != nil {
		r.fns.stopAll()
	}
	if r.responses != nil {
		r.responses.close()
	}
	if r.emu != nil {
		_ = r.emu.Close()
	}
	if r.removeWork {
		_ = os.RemoveAll(r.workDir)
	}
}

func (r *runner) startEmulator(ctx context.Context) error {
	emu, err := emulator.Start(emulator.Options{PropagationDelay: r.opts.PropagationDelay})
	if err != nil {
		return err
	}
	r.emu = emu
	fmt.Fprintf(r.out, "     propagation delay %s\n", emu.PropagationDelay())
	root := emu.SeedGroup("", rootGroupName, "root group of the local run")
	r.group = root
	if !r.opts.CreateGroup {
		r.group = emu.SeedGroup(root, groupName, "pre-existing group of the local run")
		for _, name := range seededRepos {
			emu.SeedRepo(r.group, name)
		}
	}
	// The user who runs the trust step: an owner of the root group, signed
	// in the way workloads are (as an AWS principal).
	admin := emulator.AWSPrincipal{
		Account: localAccount,
		ARN:     "arn:aws:sts::" + localAccount + ":assumed-role/local-admin/local-run",
		UserID:  roleID("local-run", "admin") + ":local-run",
	}
	creds := emu.RegisterAWSPrincipal(admin)
	adminID := emu.SeedIdentity(root, adminIdentityName, "the user of the local run", admin.ExactTrust(), map[string][]string{root: {"owner"}})
	tok, err := token.Exchange(ctx, token.Config{
		Issuer: emu.IssuerURL(), APIURL: emu.APIURL(), Identity: adminID,
		Credentials: credentials.StaticCredentialsProvider{Value: creds},
	})
	if err != nil {
		return fmt.Errorf("sign in as the local admin: %w", err)
	}
	r.adminToken = tok.AccessToken
	r.responses, err = startResponseServer()
	return err
}

func (r *runner) buildApp(ctx context.Context) error {
	riePath, err := rie.Binary(ctx, r.moduleDir)
	if err != nil {
		return err
	}
	ln, lambdaURL, err := listenLocal("the Lambda API")
	if err != nil {
		return err
	}
	// The SDK's own endpoint overrides (aws-sdk-go-v2 config reads
	// AWS_ENDPOINT_URL_<SERVICE ID> since v1.25): the functions' STS and
	// IAM clients call the AWS stand-in, in both trust modes, and their
	// Lambda client (the provisioner's trust checks) the local Lambda API.
	awsEnv := []string{
		"AWS_ENDPOINT_URL_STS=" + r.emu.AWSURL(), "AWS_ENDPOINT_URL_IAM=" + r.emu.AWSURL(),
		"AWS_ENDPOINT_URL_LAMBDA=" + lambdaURL,
	}
	r.fns = newFunctions(r.moduleDir, r.workDir, riePath, r.credentials, awsEnv, r.opts.FunctionLogs)
	r.lambda = serveLambdaAPI(ln, lambdaURL, r.fns, r.emu.VerifyAWSRequest)
	r.cloud = newCloud(localEnv(), r.fns, r.responses, r.out)
	account, region := localAccount, localRegion
	if r.opts.EnvironmentAgnostic {
		account, region = "", ""
	}
	r.synth, err = buildApp(ctx, r.moduleDir, r.workDir, account, region)
	return err
}

// credentials registers a function's principal with the AWS STS stand-in,
// with its role's ARN (path included): the sub of its web identity tokens.
func (r *runner) credentials(p Principal) (aws.Credentials, error) {
	return r.emu.RegisterAWSPrincipal(emulator.AWSPrincipal{Account: p.Account, ARN: p.ARN, UserID: p.UserID, RoleARN: p.RoleARN}), nil
}

// appContext is the CDK context that points the app at the emulator.
func (r *runner) appContext(provisionerIdentity string, roles ...string) map[string]any {
	c := map[string]any{
		stacks.CtxIssuer:      r.emu.IssuerURL(),
		stacks.CtxAPIURL:      r.emu.APIURL(),
		stacks.CtxGroup:       r.group,
		stacks.CtxCreateGroup: r.opts.CreateGroup,
		stacks.CtxGroupName:   groupName,
	}
	if r.web {
		c[stacks.CtxTrust] = string(stacks.TrustWebIdentity)
	}
	if provisionerIdentity != "" {
		c[stacks.CtxProvisionerIdentity] = provisionerIdentity
	}
	if len(roles) > 0 {
		c[stacks.CtxIdentityRoles] = roles
	}
	return c
}

func (r *runner) synthWith(ctx context.Context, c map[string]any) error {
	r.synths++
	a, err := r.synth.synth(ctx, filepath.Join(r.workDir, fmt.Sprintf("cdk.out.%d", r.synths)), c)
	if err != nil {
		return err
	}
	r.assembly = a
	return nil
}

func (r *runner) synthFirst(ctx context.Context) error {
	return r.synthWith(ctx, r.appContext(""))
}

func (r *runner) synthSecond(ctx context.Context) error {
	return r.synthWith(ctx, r.appContext(r.res.ProvisionerIdentity))
}

func (r *runner) synthUpdate(ctx context.Context) error {
	return r.synthWith(ctx, r.appContext(r.res.ProvisionerIdentity, updatedRole))
}

// provisionerStack finds the provisioner stack: the one with the trust
// step outputs.
func (r *runner) provisionerStack() (*template.Stack, error) {
	return r.stackWithOutput(truststep.OutputTrustSpec, "the provisioner stack")
}

// stackWithOutput finds the stack of the assembly with the output (what
// names the stack in the error).
func (r *runner) stackWithOutput(output, what string) (*template.Stack, error) {
	for _, s := range r.assembly.Stacks {
		if _, ok := s.Template.Outputs[output]; ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no stack of the assembly has the %s output (%s)", output, what)
}

// deployProvisioner deploys the provisioner stack. The account's outbound
// identity federation is off before (the emulator starts with it off); in
// the web-identity mode the deploy enables it and publishes its issuer
// (output WebIdentityIssuer), in the caller-identity mode it stays off.
func (r *runner) deployProvisioner(ctx context.Context) error {
	if issuer, on := r.emu.WebIdentityFederation(localAccount); on || issuer != "" {
		return fmt.Errorf("the account's outbound identity federation is on (issuer %q) before the provisioner stack's first deploy, want off", issuer)
	}
	s, err := r.provisionerStack()
	if err != nil {
		return err
	}
	out, err := r.cloud.deploy(ctx, s)
	if err != nil {
		return err
	}
	r.provOutputs = out
	if !r.web {
		if _, ok := out[truststep.OutputWebIdentityIssuer]; ok {
			return fmt.Errorf("the provisioner stack has a %s output in the caller-identity mode", truststep.OutputWebIdentityIssuer)
		}
		return r.checkFederation("the provisioner stack's deploy")
	}
	issuer, on := r.emu.WebIdentityFederation(localAccount)
	if !on {
		return errors.New("the provisioner stack's deploy did not enable the account's outbound identity federation")
	}
	if out[truststep.OutputWebIdentityIssuer] != issuer {
		return fmt.Errorf("the provisioner stack's %s output is %q, want the account's federation issuer %q", truststep.OutputWebIdentityIssuer, out[truststep.OutputWebIdentityIssuer], issuer)
	}
	r.res.FederationIssuer = issuer
	fmt.Fprintf(r.out, "     outbound identity federation: off before the deploy, enabled by it; issuer %s\n", issuer)
	return nil
}

// redeployProvisioner deploys the provisioner stack once more after the
// stacks' delete, as a user does later (or in another region of the
// account): its federation resource finds the federation on, leaves it on
// and reports the same issuer.
func (r *runner) redeployProvisioner(ctx context.Context) error {
	if err := r.checkFederation("the stacks' delete"); err != nil {
		return err
	}
	s, err := r.provisionerStack()
	if err != nil {
		return err
	}
	const enable = "iam:EnableOutboundWebIdentityFederation"
	enables := r.emu.Calls(enable)
	out, err := r.cloud.deploy(ctx, s)
	if err != nil {
		return err
	}
	if n := r.emu.Calls(enable) - enables; n != 0 {
		return fmt.Errorf("the later deploy of the provisioner stack called %s %d times, want none: the federation was on", enable, n)
	}
	r.laterDeploys++
	if out[truststep.OutputWebIdentityIssuer] != r.res.FederationIssuer {
		return fmt.Errorf("the later deploy's %s output is %q, want the issuer of the first deploy %q", truststep.OutputWebIdentityIssuer, out[truststep.OutputWebIdentityIssuer], r.res.FederationIssuer)
	}
	return r.checkFederation("the later deploy of the provisioner stack")
}

// checkFederation checks the account's outbound identity federation after
// the named event: in the web-identity mode on, with the issuer the first
// provisioner deploy enabled; in the caller-identity mode never enabled.
func (r *runner) checkFederation(after string) error {
	issuer, on := r.emu.WebIdentityFederation(localAccount)
	switch {
	case !r.web && (on || issuer != ""):
		return fmt.Errorf("after %s the account's outbound identity federation is on (issuer %q): the caller-identity mode must leave the account setting alone", after, issuer)
	case r.web && !on:
		return fmt.Errorf("after %s the account's outbound identity federation is off (issuer %q): the stacks must never disable it", after, issuer)
	case r.web && issuer != r.res.FederationIssuer:
		return fmt.Errorf("after %s the account's federation issuer is %q, want %q (the issuer the first deploy enabled)", after, issuer, r.res.FederationIssuer)
	}
	return nil
}

// trustStep creates the provisioner's identity from the provisioner
// stack's outputs, as the user does once with chainctl. The end state is
// checked against the emulator's state just before it.
func (r *runner) trustStep(ctx context.Context) error {
	r.preState = r.emu.State()
	req, err := truststep.FromOutputs(r.provOutputs)
	if err != nil {
		return err
	}
	if cm := req.Identity.GetClaimMatch(); cm != nil {
		if !r.web {
			return fmt.Errorf("output %s is a claim_match identity in the caller-identity mode", truststep.OutputTrustSpec)
		}
		if cm.GetIssuer() != r.res.FederationIssuer {
			return fmt.Errorf("output %s trusts issuer %q, want the account's federation issuer %q", truststep.OutputTrustSpec, cm.GetIssuer(), r.res.FederationIssuer)
		}
	} else if r.web {
		return fmt.Errorf("output %s is an aws_identity in the web-identity mode, want a claim_match", truststep.OutputTrustSpec)
	}
	id, err := truststep.Create(ctx, r.emu.APIURL(), r.adminToken, req)
	if err != nil {
		return err
	}
	r.res.ProvisionerIdentity = id
	r.trustedAt = time.Now()
	trusts := "aws_identity " + req.Identity.GetAwsIdentity().GetArn()
	if cm := req.Identity.GetClaimMatch(); cm != nil {
		trusts = fmt.Sprintf("claim_match issuer %s, subject %s, audience %s", cm.GetIssuer(), cm.GetSubject(), cm.GetAudience())
	}
	fmt.Fprintf(r.out, "     provisioner identity %s (%s on %s; %s)\n", id, req.Role, req.Parent, trusts)
	return nil
}

// deployFirst is the first deploy of the identity stacks after the trust
// step: it records how it met the propagation of the provisioner identity.
func (r *runner) deployFirst(ctx context.Context) error {
	const exchange = oidc.SecurityTokenService_Exchange_FullMethodName
	r.res.FirstDeploy.SinceTrustStep = time.Since(r.trustedAt)
	before := r.emu.Calls(exchange)
	if err := r.deployAll(ctx); err != nil {
		return err
	}
	r.res.FirstDeploy.Exchanges = r.emu.Calls(exchange) - before
	r.res.TrustCheck = r.lastCheck
	met := "after"
	if r.res.FirstDeploy.SinceTrustStep < r.emu.PropagationDelay() {
		met = "before"
	}
	fmt.Fprintf(r.out, "     started %s after the trust step, %s its identity propagated; the provisioner made %d token exchanges\n",
		r.res.FirstDeploy.SinceTrustStep.Round(time.Millisecond), met, r.res.FirstDeploy.Exchanges)
	return r.checkFederation("the first deploy of the identity stacks")
}

// deployAll deploys (or updates) every stack of the assembly in order, and
// reports the deploy's trust check.
func (r *runner) deployAll(ctx context.Context) error {
	events, invocations := len(r.cloud.events), r.lambda.invocations.Load()
	defer func() {
		r.changedAt = time.Now()
		if sent := r.cloud.events[events:]; len(sent) > 0 {
			r.changedAt = time.Time{}
			for _, e := range sent {
				if e.typ != stacks.TrustCheckResourceType && e.end.After(r.changedAt) {
					r.changedAt = e.end
				}
			}
		}
	}()
	for _, s := range r.assembly.Stacks {
		out, err := r.cloud.deploy(ctx, s)
		if err != nil {
			return err
		}
		if _, ok := out[outputIdentityID]; ok {
			r.identityOutputs = out
		}
	}
	if r.identityOutputs == nil {
		return fmt.Errorf("no stack has an %s output (the aws-auth stack)", outputIdentityID)
	}
	return r.reportCheck(r.cloud.events[events:], int(r.lambda.invocations.Load()-invocations))
}

// Outputs of the aws-auth stack the run checks (the provisioner stack's are
// chainguard/truststep's: Output...).
const (
	outputIdentityID   = "IdentityId"
	outputGroupID      = "GroupId"
	outputFunctionName = "FunctionName"
)

// reposPackage is the Go main package of the repos function.
const reposPackage = "lambda/repos"

// reposFunction is the repos function of the deployment: the function the
// aws-auth stack's FunctionName output names, which must run a bootstrap
// built from lambda/repos.
func (r *runner) reposFunction() (*function, error) {
	name := r.identityOutputs[outputFunctionName]
	fn, ok := r.fns.byName(name)
	if !ok {
		return nil, fmt.Errorf("the aws-auth stack's %s output names %q, which is not a function of the deployment", outputFunctionName, name)
	}
	if !strings.HasSuffix(fn.pkg, "/"+reposPackage) {
		return nil, fmt.Errorf("function %s (output %s) runs a bootstrap built from %s, want .../%s: the stack bundled the wrong package",
			name, outputFunctionName, fn.pkg, reposPackage)
	}
	return fn, nil
}

// checkCreated checks the emulator holds the identity the stack asked for:
// trusting exactly the repos function's principal, bound to viewer on the
// group, and the group itself.
func (r *runner) checkCreated(context.Context) error {
	r.res.Identity = r.identityOutputs[outputIdentityID]
	r.res.Group = r.identityOutputs[outputGroupID]
	fn, err := r.reposFunction()
	if err != nil {
		return err
	}
	st := r.emu.State()
	g, ok := findGroup(st, r.res.Group)
	switch {
	case !ok:
		return fmt.Errorf("group %s (output %s) is not in the emulator", r.res.Group, outputGroupID)
	case r.opts.CreateGroup && (g.Name != groupName || uidp.Parent(g.ID) != r.group):
		return fmt.Errorf("created group %s is named %q under %s, want %q under %s", g.ID, g.Name, uidp.Parent(g.ID), groupName, r.group)
	case !r.opts.CreateGroup && g.ID != r.group:
		return fmt.Errorf("the stack uses group %s, want the pre-existing %s", g.ID, r.group)
	}
	id, ok := findIdentity(st, r.res.Identity)
	if !ok {
		return fmt.Errorf("identity %s (output %s) is not in the emulator", r.res.Identity, outputIdentityID)
	}
	if uidp.Parent(id.ID) != r.res.Group {
		return fmt.Errorf("identity %s is not in group %s", id.ID, r.res.Group)
	}
	if err := r.checkTrust(id, fn.principal); err != nil {
		return err
	}
	return checkRoles(st, id.ID, r.res.Group, initialRole)
}

// checkTrust checks the workload identity trusts exactly the repos
// function: in the caller-identity mode its assumed-role principal
// (aws_identity), in the web-identity mode the web identity tokens of its
// role for the emulator's issuer (claim_match: the account's federation
// issuer, subject the role's ARN with its path, audience the Chainguard
// issuer), and nothing else.
func (r *runner) checkTrust(id emulator.Identity, p Principal) error {
	if r.web {
		want := &iam.Identity_ClaimMatch{
			Iss: &iam.Identity_ClaimMatch_Issuer{Issuer: r.res.FederationIssuer},
			Sub: &iam.Identity_ClaimMatch_Subject{Subject: p.RoleARN},
			Aud: &iam.Identity_ClaimMatch_Audience{Audience: r.emu.IssuerURL()},
		}
		if id.AWS != nil || !proto.Equal(id.ClaimMatch, want) {
			return fmt.Errorf("identity %s trusts aws_identity %v, claim_match %v; want exactly the claim_match %v (the repos function's role)",
				id.ID, id.AWS, id.ClaimMatch, want)
		}
		return nil
	}
	aws := id.AWS
	if id.ClaimMatch != nil || aws == nil || aws.GetAwsAccount() != p.Account || aws.GetArn() != p.ARN || aws.GetUserId() != p.UserID {
		return fmt.Errorf("identity %s trusts aws_identity %v, claim_match %v; want exactly the repos function's principal (account %s, arn %s, user_id %s)",
			id.ID, aws, id.ClaimMatch, p.Account, p.ARN, p.UserID)
	}
	return nil
}

// pushRepo plays the user pushing an image to the group the stack
// created: its repo appears in the group.
func (r *runner) pushRepo(context.Context) error {
	r.pushedRepoID = r.emu.SeedRepo(r.res.Group, pushedRepo)
	fmt.Fprintf(r.out, "     repo %s %s\n", pushedRepo, r.pushedRepoID)
	return nil
}

// deletePushedRepo plays the user deleting their image, which the stack's
// Delete of the group it created needs: a group that holds a repo is not
// deleted.
func (r *runner) deletePushedRepo(context.Context) error {
	r.emu.DeleteRepo(r.pushedRepoID)
	r.pushedRepoID = ""
	return nil
}

// invokeRepos invokes the repos function and checks it lists exactly the
// repos of the group: the seeded ones, or the one pushed to the created
// group.
func (r *runner) invokeRepos(ctx context.Context) error {
	if err := r.awaitPropagation(ctx); err != nil {
		return err
	}
	names, err := r.listRepos(ctx)
	if err != nil {
		return err
	}
	r.res.Repos = names
	fmt.Fprintf(r.out, "     repos of group %s: [%s]\n", r.res.Group, strings.Join(names, ", "))
	want := seededRepos
	if r.opts.CreateGroup {
		want = []string{pushedRepo}
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		return fmt.Errorf("the function listed repos %q, want %q", names, want)
	}
	return nil
}

// listRepos invokes the repos function and checks its answer.
func (r *runner) listRepos(ctx context.Context) ([]string, error) {
	fn, err := r.reposFunction()
	if err != nil {
		return nil, err
	}
	out, err := r.fns.invoke(ctx, fn.arn, []byte(`{}`))
	if err != nil {
		return nil, err
	}
	var resp struct {
		Identity string `json:"identity"`
		Group    string `json:"group"`
		Count    int    `json:"count"`
		Repos    []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"repos"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("the repos function answered %q: %w", out, err)
	}
	if resp.Identity != r.res.Identity || resp.Group != r.res.Group || resp.Count != len(resp.Repos) {
		return nil, fmt.Errorf("the repos function answered identity %s, group %s, count %d for %d repos; want identity %s, group %s",
			resp.Identity, resp.Group, resp.Count, len(resp.Repos), r.res.Identity, r.res.Group)
	}
	names := make([]string, 0, len(resp.Repos))
	for _, rp := range resp.Repos {
		names = append(names, rp.Name)
	}
	return names, nil
}

// checkUpdated checks the update changed the binding on the same identity
// and that the function still lists the repos. The update also changed the
// function's configuration (CHAINGUARD_ROLES carries the identity's Roles
// attribute), so, as on Lambda, its next invocation runs in a new execution
// environment, which exchanges a token carrying the new binding. A token
// exchanged before the update would list nothing here: it carries the
// bindings of its exchange, and the emulator no longer counts the deleted
// viewer binding (its strict reading), so a pass also shows the function
// was recycled.
func (r *runner) checkUpdated(ctx context.Context) error {
	if got := r.identityOutputs[outputIdentityID]; got != r.res.Identity {
		return fmt.Errorf("the update replaced identity %s with %s, want an update in place", r.res.Identity, got)
	}
	if err := checkRoles(r.emu.State(), r.res.Identity, r.res.Group, updatedRole); err != nil {
		return err
	}
	// The update deployed the provisioner stack too (unchanged).
	if err := r.checkFederation("the update"); err != nil {
		return err
	}
	r.res.TrustCheckUpdate = r.lastCheck
	if err := r.awaitPropagation(ctx); err != nil {
		return err
	}
	names, err := r.listRepos(ctx)
	if err != nil {
		return fmt.Errorf("after the update: %w", err)
	}
	if strings.Join(names, ",") != strings.Join(r.res.Repos, ",") {
		return fmt.Errorf("after the update the function listed %q, before %q (a function whose configuration did not change keeps the token of its last exchange, without the new binding)", names, r.res.Repos)
	}
	return nil
}

// awaitPropagation waits, as a user would before trying the function, until
// the changes of the last deploy are effective at the STS: the propagation
// delay after its last Chainguard change. After the first deploy the trust
// check has waited for the identity already (it runs after the identity
// and its binding were created, and passes once they propagated). A
// passing check does not make the wait unnecessary, though: it proves the
// identity's trust, but a listing is filtered by the token's bindings,
// never refused, so a check that ran before a new binding applied lists
// nothing and passes (as it does right after the roles' update).
func (r *runner) awaitPropagation(ctx context.Context) error {
	wait := time.Until(r.changedAt.Add(r.emu.PropagationDelay()))
	if wait <= 0 {
		return nil
	}
	fmt.Fprintf(r.out, "     waiting %s for the deploy's changes to propagate\n", wait.Round(time.Millisecond))
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the deploy's changes to propagate: %w", ctx.Err())
	}
}

func (r *runner) destroy(ctx context.Context) error {
	if err := r.cloud.destroy(ctx); err != nil {
		return err
	}
	return r.checkFederation("the delete")
}

// deleteProvisionerIdentity performs the README's last destroy step,
// `chainctl iam identities delete <provisioner identity>`, as the user who
// did the trust step, through the SDK's IAM client: the identity's role
// bindings, then the identity.
func (r *runner) deleteProvisionerIdentity(ctx context.Context) error {
	p, closeConn, err := provision.Dial(ctx, r.emu.APIURL(), r.adminToken)
	if err != nil {
		return err
	}
	defer func() { _ = closeConn() }()
	if err := p.DeleteIdentity(ctx, r.res.ProvisionerIdentity); err != nil {
		return fmt.Errorf("delete the provisioner identity %s: %w", r.res.ProvisionerIdentity, err)
	}
	if _, ok := findIdentity(r.emu.State(), r.res.ProvisionerIdentity); ok {
		return fmt.Errorf("the provisioner identity %s is still there after its delete", r.res.ProvisionerIdentity)
	}
	fmt.Fprintf(r.out, "     deleted provisioner identity %s and its role bindings\n", r.res.ProvisionerIdentity)
	return nil
}

// checkEnd checks the emulator holds exactly what it held before the trust
// step: the group survives if it pre-existed and is gone if the stack
// created it, and nothing the run created (the provisioner identity and its
// binding, the stacks' objects, the pushed repo) is left.
func (r *runner) checkEnd(context.Context) error {
	st := r.emu.State()
	_, groupLeft := findGroup(st, r.res.Group)
	if r.opts.CreateGroup && groupLeft {
		return fmt.Errorf("group %s, created by the stack, is still there", r.res.Group)
	}
	if !r.opts.CreateGroup && !groupLeft {
		return fmt.Errorf("the pre-existing group %s was deleted", r.res.Group)
	}
	if diff := diffState(r.preState, st); diff != "" {
		return fmt.Errorf("the emulator does not hold what it held before the trust step: %s", diff)
	}
	if err := r.checkFederation("the destroy"); err != nil {
		return err
	}
	if r.web {
		fmt.Fprintf(r.out, "     outbound identity federation: off before the provisioner stack's first deploy, enabled by it (issuer %s), "+
			"found on and left on by %d later deploy(s), still enabled after destroy (never disabled)\n", r.res.FederationIssuer, r.laterDeploys)
	} else {
		fmt.Fprintf(r.out, "     outbound identity federation: never enabled (the caller-identity mode leaves the account setting alone)\n")
	}
	return nil
}

func findGroup(st emulator.State, id string) (emulator.Group, bool) {
	for _, g := range st.Groups {
		if g.ID == id {
			return g, true
		}
	}
	return emulator.Group{}, false
}

func findIdentity(st emulator.State, id string) (emulator.Identity, bool) {
	for _, i := range st.Identities {
		if i.ID == id {
			return i, true
		}
	}
	return emulator.Identity{}, false
}

// checkRoles checks identity holds exactly the role named want, on group.
func checkRoles(st emulator.State, identity, group, want string) error {
	var got []string
	for _, b := range st.RoleBindings {
		if b.Identity == identity {
			got = append(got, b.RoleName+" on "+b.Group)
		}
	}
	if len(got) != 1 || got[0] != want+" on "+group {
		return fmt.Errorf("identity %s has role bindings %q, want exactly [%s on %s]", identity, got, want, group)
	}
	return nil
}

// diffState lists the groups, identities, role bindings and repos that
// differ between two states ("" if none).
func diffState(before, after emulator.State) string {
	ids := func(st emulator.State) map[string]string {
		m := map[string]string{}
		for _, g := range st.Groups {
			m[g.ID] = "group " + g.Name
		}
		for _, i := range st.Identities {
			m[i.ID] = "identity " + i.Name
		}
		for _, b := range st.RoleBindings {
			m[b.ID] = "binding " + b.RoleName + " of " + b.Identity + " on " + b.Group
		}
		for _, rp := range st.Repos {
			m[rp.ID] = "repo " + rp.Name
		}
		return m
	}
	b, a := ids(before), ids(after)
	var diffs []string
	for id, what := range a {
		if _, ok := b[id]; !ok {
			diffs = append(diffs, "left over: "+what+" "+id)
		}
	}
	for id, what := range b {
		if _, ok := a[id]; !ok {
			diffs = append(diffs, "missing: "+what+" "+id)
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}
