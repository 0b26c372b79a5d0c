// Package handler is the provisioner's logic: a CloudFormation custom
// resource handler (wrapped by Wrap, which sends the response) that creates,
// updates and deletes Chainguard groups and assumable identities through
// package chainguard/provision.
//
// # Credentials
//
// The provisioner is itself a Chainguard assumable identity. For every event
// it exchanges its own AWS role credentials for a fresh Chainguard token
// (chainguard/token) acting as the event's ProvisionerIdentity, uses it for
// that event only and stores nothing. It calls IAM v2 at the event's ApiUrl
// (see package chainguard/provision, "API version").
//
// # Property contract
//
// Property names are PascalCase. CloudFormation passes every value as a
// string: booleans are "true" or "false", lists are comma-separated
// ("viewer,registry.pull"; blanks around items are ignored). On Create and
// Update, a property that is not in the contract, or a value of another JSON
// type, fails the event with a reason naming the property. ServiceToken and
// ServiceTimeout (CloudFormation's own) are ignored. Delete reads only what
// it needs (ProvisionerIdentity, Issuer, ApiUrl, and Owned for groups) and
// ignores every other property, so a stricter validation or a new property
// in a later version never leaves a stack unable to delete.
//
// Every event of a Chainguard resource type (Custom::AwsOutboundWebIdentityFederation,
// which calls AWS alone, takes no property: see TypeFederation; for
// Custom::ChainguardTrustCheck, which invokes a workload function, see
// TypeTrustCheck):
//
//	ProvisionerIdentity  UIDP of the provisioner's assumable identity (owner on the target groups)
//	Issuer               Chainguard STS URL, e.g. https://issuer.enforce.dev
//	ApiUrl               Chainguard API URL, e.g. https://console-api.enforce.dev
//
// Custom::ChainguardGroup:
//
//	Name         group name (required; a change renames the group in place)
//	Description  optional
//	Parent       UIDP of the parent group (required; a change replaces the group)
//	Owned        "true": the stack deletes the group on stack delete, if the stack
//	             created it (it carries the stack's marker) and it holds
//	             nothing; "false" (default), or anything else on Delete: it is
//	             left in place
//
// Custom::ChainguardIdentity:
//
//	Name                 identity name (required; a change renames the identity in place)
//	Description          optional
//	Group                UIDP of the group the identity lives in and is bound on
//	                     (required; a change replaces the identity)
//	Roles                role names bound on Group, comma-separated, e.g. "viewer"
//	Trust                "CallerIdentity" (default) or "WebIdentity"; a change
//	                     replaces the identity (as Chainguard's Terraform
//	                     provider does): the new one is made beside the old,
//	                     which CloudFormation then deletes
//	AwsAccount           12-digit AWS account of the trusted role (required)
//	AwsPartition         "aws", the only partition Chainguard verifies (required)
//	AwsRoleName          IAM role name (required)
//
// With Trust CallerIdentity (aws_identity):
//
//	AwsRoleId            the role's unique ID, AROA... (required)
//	AwsSession           one session name, or
//	AwsSessionPattern    a regular expression for the session name alone, without
//	                     anchors (exactly one of the two); the provisioner builds
//	                     the anchored arn_pattern and user_id_pattern around it
//
// With Trust WebIdentity (claim_match: issuer, subject = the role ARN,
// audience = the event's Issuer, all exact):
//
//	AwsIssuer            the account's outbound identity federation issuer (required)
//	AwsRolePath          the role's IAM path (default "/"): part of its ARN
//
// # Ownership
//
// Every object the provisioner creates or updates is stamped as the stack's:
// its stored description is the Description followed by the marker
//
//	[managed by CloudFormation: <account>/<region>/<stack name>/<stack ID>/<LogicalResourceId>]
//
// all read from the StackId ARN (the stack ID is its final UUID). The whole
// StackId is in it, not the stack name alone: the same app deployed in
// another account or region against the same Chainguard group is another
// owner, and so is a stack deleted and created again under the same name
// (its ID differs: what its predecessor made was deleted with it, or is not
// its own). A Description too long to take the marker (512 characters in
// all) fails the event, saying how short it must be. Looked up by Name, an
// object carrying the stack's marker is the stack's own (a replay: adopted
// and updated). An identity of the same Name without the marker is refused:
// the stack never takes over, re-trusts or deletes an identity it did not
// create. A group of the same Name without the marker is adopted as it is
// (never renamed, re-described or stamped) and never deleted, whatever Owned
// says; a Name change on such a group ensures a group of the new Name
// instead of renaming it.
//
// # Responses
//
// The physical resource ID is the object's UIDP. Data holds Id and Name, and
// for identities Roles (comma-separated role names actually bound). Create
// looks the object up by Name under its parent before creating it, so a
// replayed Create finds what an earlier delivery made; identity names are
// not unique in a group, so when two deliveries created one each at the same
// time, the oldest is kept and the other deleted, and the event still
// succeeds. Update changes the object the
// physical ID names in place (Name, Description, trust, Roles) and answers
// the same physical ID; a new Name that another object under the same parent
// already has fails the event. Only a change of Parent or Group is a
// replacement: the object is ensured by Name under the new parent, its new
// UIDP is answered, and CloudFormation then deletes the old object. An Update
// whose object is gone ensures it by Name (creating it). Delete of an
// identity deletes it (after its role bindings) by its physical ID; Delete of
// a group deletes it only as described under Owned and Ownership; a group
// the provisioner cannot see at all (neither it nor a group above it is
// listed) fails the Delete rather than count as gone. Delete of
// an ID that is not a UIDP (left by a Create that failed before making
// anything) succeeds without any call, not even the token exchange, and so
// does Delete of a resource type this provisioner does not serve (for
// example one a later version renamed), with a warning in the log naming the
// type and the physical ID: the object, if any, is left for a person to
// delete, and the stack is not stuck in DELETE_FAILED. Create and Update of
// such a type fail.
//
// The response is PUT to the event's pre-signed ResponseURL. Its query string
// is a credential: no log line or error holds it, only scheme://host/path
// (see Wrap). The body is kept within CloudFormation's 4096 bytes: a longer
// reason is logged in full and cut (see Wrap).
//
// A FAILED Create carries the UIDP of the object it was working on as soon
// as that is known, even when it failed or timed out after the object was
// created (for example while binding roles): CloudFormation's rollback then
// sends Delete with that UIDP and the object is removed instead of being
// left behind. When no object is known yet, it answers the request ID
// (Wrap's fallback, as cfn.LambdaWrap's).
//
// A FAILED Update always answers the event's own physical ID: whether
// CloudFormation honours another on a FAILED Update is not documented, and
// if it did not, a new object would be left behind (an identity already
// trusting the role). So when a failed Update had settled on an object
// other than the one its physical ID names (a replacement, or an object
// re-made because the old one was gone), that object is deleted first, best
// effort: an identity with its role bindings, a group only if it carries the
// stack's marker and is empty. This runs even when the Update timed out,
// for up to a quarter of the safety margin more. If the deletion fails, or
// cannot finish in time, the reason says so and names the object left
// behind (and the log too), for a person to delete.
//
// PermissionDenied is retried for up to DefaultPermissionDeniedBudget per
// step (within the event's deadline), each retry with a freshly exchanged
// token: the provisioner identity and its own owner binding, made by the
// trust step just before the first deployment, take a few seconds to reach
// the STS, and a token carries the rights its identity had when it was
// exchanged. A refused exchange (the identity not known yet) is retried the
// same way. See package chainguard/provision for the whole retry policy.
//
// The handler always answers: the work runs under a deadline a margin
// (PROVISIONER_DEADLINE_MARGIN, a Go duration, default 10s) before the
// function's own, which every call in it honours; when it passes, the event
// fails with a reason that names the unfinished step. Should a call ignore
// it, Wrap answers FAILED at half the margin before the function's deadline.
// A panic fails the event too. Either way a failed Create names the object
// it had got to (recorded as soon as provision settles on it), so the
// rollback removes it.
package handler

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
)

// EnvDeadlineMargin names the variable that sets Config.Margin.
const EnvDeadlineMargin = "PROVISIONER_DEADLINE_MARGIN"

// EnvTrust names the variable that sets Config.Trust: "caller-identity"
// (default) or "web-identity" (token.ParseTrust).
const EnvTrust = "CHAINGUARD_TRUST"

// DefaultMargin is how long before the function's deadline the handler gives
// up and answers FAILED.
const DefaultMargin = 10 * time.Second

// DefaultPermissionDeniedBudget is how long one step retries
// PermissionDenied (provision.WithPermissionDeniedBudget): 4 retries after
// waits of exactly 2s, 4s, 8s and what is left of the 30s (about 16s less
// the attempts' time). Config.Options can override it.
const DefaultPermissionDeniedBudget = 30 * time.Second

// Config configures a Handler.
type Config struct {
	// Credentials are the function's own AWS credentials (its role), which
	// the caller-identity trust signs with.
	Credentials aws.CredentialsProvider
	// Trust is how the provisioner proves its own AWS principal to
	// Chainguard (EnvTrust); "" means token.CallerIdentity.
	Trust token.Trust
	// STS asks AWS for web identity tokens (the web-identity trust), e.g.
	// sts.NewFromConfig of the function's AWS configuration.
	STS token.WebIdentityTokenAPI
	// Federation serves Custom::AwsOutboundWebIdentityFederation, e.g.
	// iam.NewFromConfig of the function's AWS configuration.
	Federation FederationAPI
	// Lambda invokes the functions Custom::ChainguardTrustCheck checks,
	// e.g. lambda.NewFromConfig of the function's AWS configuration.
	Lambda LambdaAPI
	// TrustCheckBudget is how long a trust check retries a refused or
	// unreachable result; zero means DefaultTrustCheckBudget.
	TrustCheckBudget time.Duration
	// Margin before the function's deadline by which the work must be
	// done, or fail; zero means DefaultMargin. Give Wrap the same.
	Margin time.Duration
	// Logger receives JSON logs; nil discards them.
	Logger *slog.Logger
	// Options are passed to provision.New (retry schedules, RPC timeout,
	// PermissionDenied budget), after the handler's own.
	Options []provision.Option
	// Connect returns IAM v2 clients that act as the event's provisioner
	// identity (Target) with a token obtained now; the provisioner calls it
	// again for a fresh token after PermissionDenied (see
	// provision.Connector). Nil means ExchangeConnect(Trust, Credentials,
	// STS): exchange the function's AWS proof at the event's Issuer.
	Connect func(ctx context.Context, t Target) (iam.Clients, error)
}

// ExchangeConnect returns the default Config.Connect: it exchanges the
// function's AWS proof (per trust: creds, or a web identity token from
// stsClient) for a fresh Chainguard token of the target's provisioner
// identity (chainguard/token) and dials the target's API with it
// (provision.NewClients).
func ExchangeConnect(trust token.Trust, creds aws.CredentialsProvider, stsClient token.WebIdentityTokenAPI) func(context.Context, Target) (iam.Clients, error) {
	return func(ctx context.Context, t Target) (iam.Clients, error) {
		tok, err := token.Exchange(ctx, token.Config{
			Issuer:      t.Issuer,
			APIURL:      t.APIURL,
			Identity:    t.Provisioner,
			Trust:       trust,
			Credentials: creds,
			STS:         stsClient,
		})
		if err != nil {
			return nil, err
		}
		return provision.NewClients(ctx, t.APIURL, tok.AccessToken)
	}
}

// MarginFromEnv reads EnvDeadlineMargin through lookup (os.LookupEnv in the
// function); unset means DefaultMargin.
func MarginFromEnv(lookup func(string) (string, bool)) (time.Duration, error) {
	return durationFromEnv(lookup, EnvDeadlineMargin, DefaultMargin, `"10s" or "1500ms"`)
}

// durationFromEnv reads the positive Go duration in the variable name
// through lookup; unset or empty means def. examples go in the error.
func durationFromEnv(lookup func(string) (string, bool), name string, def time.Duration, examples string) (time.Duration, error) {
	v, ok := lookup(name)
	if !ok || v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive Go duration: use e.g. %s", name, v, examples)
	}
	return d, nil
}

// Handler handles custom resource events; its Handle method is a
// cfn.CustomResourceFunction.
type Handler struct {
	cfg Config
	// setupErr, when set, fails every event: a provisioner that cannot start
	// must still answer CloudFormation, or the stack hangs.
	setupErr error
}

// New returns a Handler. If setupErr is not nil (the function could not read
// its configuration), every event fails with it as the reason.
func New(cfg Config, setupErr error) *Handler {
	if cfg.Margin <= 0 {
		cfg.Margin = DefaultMargin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Connect == nil {
		cfg.Connect = ExchangeConnect(cfg.Trust, cfg.Credentials, cfg.STS)
	}
	return &Handler{cfg: cfg, setupErr: setupErr}
}

// Handle processes one event and returns the physical ID and Data for
// Wrap, which sends SUCCESS or (on error) FAILED with the error as
// the reason. On error the physical ID is the event's own, except on a
// Create: the UIDP of the object it got to (so CloudFormation's rollback
// Delete removes it), or empty when there is none (Wrap then sends the
// request ID, and the Delete CloudFormation sends for it touches nothing).
func (h *Handler) Handle(ctx context.Context, ev cfn.Event) (string, map[string]any, error) {
	log := h.cfg.Logger.With(
		"cfn_request_id", ev.RequestID,
		"request_type", string(ev.RequestType),
		"resource_type", ev.ResourceType,
		"logical_id", ev.LogicalResourceID,
	)
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	if settledIn(ctx) == nil { // called without Wrap
		ctx = context.WithValue(ctx, settledKey{}, &settled{})
	}
	start := time.Now()
	id, data, err := h.run(ctx, ev, log)
	if err != nil {
		log.Error("event failed", "duration_ms", ms(start), "error", err.Error())
		return id, nil, err
	}
	log.Info("event done", "duration_ms", ms(start), "physical_id", id)
	return id, data, nil
}

// run does the work under a deadline Margin before ctx's, which every call
// on the way honours: a failure it causes names the step in progress.
func (h *Handler) run(ctx context.Context, ev cfn.Event, log *slog.Logger) (id string, data map[string]any, err error) {
	if h.setupErr != nil {
		return "", nil, fmt.Errorf("the provisioner is misconfigured: %w", h.setupErr)
	}
	st := &steps{log: log, margin: h.cfg.Margin}
	work := ctx
	if deadline, ok := ctx.Deadline(); ok {
		if st.budget = time.Until(deadline) - h.cfg.Margin; st.budget <= 0 {
			return "", nil, fmt.Errorf("timed out before starting: the function has %s left, less than the %s safety margin (%s): raise the function timeout or lower the margin",
				time.Until(deadline).Round(time.Millisecond), h.cfg.Margin, EnvDeadlineMargin)
		}
		var cancel context.CancelFunc
		work, cancel = context.WithDeadline(ctx, deadline.Add(-h.cfg.Margin))
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic", "step", st.current(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error (panic) during %s; see the provisioner's log", st.current())
			id = settledIn(ctx).get() // what a Create got to, for the rollback
		}
		if err != nil {
			// Only a failed Create answers the object it got to; an Update
			// answers its own physical ID (having deleted a new object: see
			// undoReplacement), and so does a Delete.
			if ev.RequestType != cfn.RequestCreate {
				id = ev.PhysicalResourceID
			}
			data, err = nil, st.timedOut(work, err)
		}
	}()
	return h.dispatch(work, ev, st)
}

// dispatch routes the event to its resource type.
func (h *Handler) dispatch(ctx context.Context, ev cfn.Event, st *steps) (string, map[string]any, error) {
	props := properties(ev.ResourceProperties)
	switch ev.ResourceType {
	case TypeFederation:
		return h.federation(ctx, ev, st)
	case TypeTrustCheck:
		return h.trustCheck(ctx, ev, st)
	}
	if ev.RequestType == cfn.RequestDelete && !uidp.Valid(ev.PhysicalResourceID) {
		// Left by a failed Create (the request ID): nothing was made.
		st.log.Info("nothing to delete: the physical ID is not a UIDP", "physical_id", ev.PhysicalResourceID)
		return ev.PhysicalResourceID, nil, nil
	}
	switch ev.RequestType {
	case cfn.RequestCreate, cfn.RequestUpdate, cfn.RequestDelete:
	default:
		return "", nil, fmt.Errorf("request type %q is not one of Create, Update, Delete", ev.RequestType)
	}
	if ev.RequestType == cfn.RequestDelete && ev.ResourceType != TypeGroup && ev.ResourceType != TypeIdentity {
		// A type a later version renamed or dropped: failing would leave
		// the stack in DELETE_FAILED, and nothing says what the ID is.
		st.log.Warn("nothing deleted: the resource type is not served by this provisioner; delete the object by hand if it should go",
			"resource_type", ev.ResourceType, "physical_id", ev.PhysicalResourceID)
		return ev.PhysicalResourceID, nil, nil
	}
	switch ev.ResourceType {
	case TypeGroup:
		if ev.RequestType == cfn.RequestDelete {
			return h.deleteGroup(ctx, ev, props, st)
		}
		return h.group(ctx, ev, props, st)
	case TypeIdentity:
		if ev.RequestType == cfn.RequestDelete {
			return h.deleteIdentity(ctx, ev, props, st)
		}
		return h.identity(ctx, ev, props, st)
	}
	return "", nil, fmt.Errorf("resource type %q is not served by this provisioner (it serves %s, %s, %s and %s): fix the resource's Type in the template", ev.ResourceType, TypeGroup, TypeIdentity, TypeTrustCheck, TypeFederation)
}

func (h *Handler) group(ctx context.Context, ev cfn.Event, props properties, st *steps) (string, map[string]any, error) {
	var g groupProps
	p, closeFn, owner, err := h.connect(ctx, ev, props, st, func(owner string) (err error) {
		g, err = parseGroup(props, owner)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	defer closeFn()

	g.Spec.ID = currentID(ev)
	st.begin(fmt.Sprintf("ensure group %q under %s", g.Spec.Name, g.Spec.Parent))
	out, err := p.EnsureGroup(ctx, g.Spec)
	if err != nil {
		return out.ID, nil, undoReplacement(ctx, ev, "group", out.ID, st, err, func(ctx context.Context) error {
			// Only the stack's own group, and only while it is empty.
			_, err := p.DeleteGroup(ctx, out.ID, owner)
			return err
		})
	}
	st.end("id", out.ID, "created", out.Created, "adopted_as_is", out.Foreign)
	h.noteReplacement(ev, out.ID, st)
	return out.ID, map[string]any{"Id": out.ID, "Name": out.Name}, nil
}

// deleteGroup deletes the group the physical ID names if Owned is "true"
// and the group carries the stack's marker; it reads no other property.
func (h *Handler) deleteGroup(ctx context.Context, ev cfn.Event, props properties, st *steps) (string, map[string]any, error) {
	st.begin("read properties")
	if owned, _ := props.optional(PropOwned); owned != "true" {
		st.log.Info("group left in place: Owned is not \"true\"", "physical_id", ev.PhysicalResourceID)
		return ev.PhysicalResourceID, nil, nil
	}
	owner, err := managedBy(ev)
	if err != nil {
		st.log.Warn("group left in place: the stack's marker is unknown", "physical_id", ev.PhysicalResourceID, "error", err.Error())
		return ev.PhysicalResourceID, nil, nil
	}
	p, closeFn, err := h.dialTarget(ctx, props, st)
	if err != nil {
		return "", nil, err
	}
	defer closeFn()
	st.begin("delete group " + ev.PhysicalResourceID)
	left, err := p.DeleteGroup(ctx, ev.PhysicalResourceID, owner)
	if err != nil {
		return "", nil, err
	}
	if left {
		st.log.Info("group left in place: the stack did not create it (it lacks the stack's marker)", "physical_id", ev.PhysicalResourceID, "managed_by", owner)
	}
	st.end("left", left)
	return ev.PhysicalResourceID, nil, nil
}

func (h *Handler) identity(ctx context.Context, ev cfn.Event, props properties, st *steps) (string, map[string]any, error) {
	var spec provision.IdentitySpec
	p, closeFn, _, err := h.connect(ctx, ev, props, st, func(owner string) (err error) {
		spec, err = parseIdentity(props, owner)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	defer closeFn()

	spec.ID = currentID(ev)
	st.begin(fmt.Sprintf("ensure identity %q in group %s", spec.Name, spec.Group))
	out, err := p.EnsureIdentity(ctx, spec)
	if err != nil {
		return out.ID, nil, undoReplacement(ctx, ev, "identity", out.ID, st, err, func(ctx context.Context) error {
			return p.DeleteIdentity(ctx, out.ID)
		})
	}
	st.end("id", out.ID, "created", out.Created)
	h.noteReplacement(ev, out.ID, st)
	return out.ID, map[string]any{"Id": out.ID, "Name": out.Name, "Roles": strings.Join(out.Roles, ",")}, nil
}

// deleteIdentity deletes the identity the physical ID names (only the
// stack's own can have it: another is never adopted); it reads no property
// but the target's.
func (h *Handler) deleteIdentity(ctx context.Context, ev cfn.Event, props properties, st *steps) (string, map[string]any, error) {
	st.begin("read properties")
	p, closeFn, err := h.dialTarget(ctx, props, st)
	if err != nil {
		return "", nil, err
	}
	defer closeFn()
	st.begin("delete identity " + ev.PhysicalResourceID)
	if err := p.DeleteIdentity(ctx, ev.PhysicalResourceID); err != nil {
		return "", nil, err
	}
	st.end()
	return ev.PhysicalResourceID, nil, nil
}

// connect does what every Create and Update starts with: it reads the
// stack's ownership marker, the resource's own properties (parse) and the
// provisioner target, then exchanges a token and dials Chainguard.
func (h *Handler) connect(ctx context.Context, ev cfn.Event, props properties, st *steps, parse func(owner string) error) (*provision.Provisioner, func(), string, error) {
	st.begin("read properties")
	owner, err := managedBy(ev)
	if err != nil {
		return nil, nil, "", err
	}
	if err := parse(owner); err != nil {
		return nil, nil, "", err
	}
	p, closeFn, err := h.dialTarget(ctx, props, st)
	if err != nil {
		return nil, nil, "", err
	}
	return p, closeFn, owner, nil
}

// dialTarget reads the provisioner target from props and dials it.
func (h *Handler) dialTarget(ctx context.Context, props properties, st *steps) (*provision.Provisioner, func(), error) {
	tgt, err := parseTarget(props)
	if err != nil {
		return nil, nil, err
	}
	return h.dial(ctx, tgt, st)
}

// dial connects a provisioner for the event's target (a token exchange),
// which reconnects for a fresh token when it needs one.
func (h *Handler) dial(ctx context.Context, tgt Target, st *steps) (*provision.Provisioner, func(), error) {
	opts := []provision.Option{provision.WithPermissionDeniedBudget(DefaultPermissionDeniedBudget), provision.WithIDHook(settledIn(ctx).set)}
	p := provision.New(provision.ConnectFunc(func(ctx context.Context) (iam.Clients, error) {
		return h.cfg.Connect(ctx, tgt)
	}), append(opts, h.cfg.Options...)...)
	closeFn := func() {
		if err := p.Close(); err != nil {
			st.log.Warn("close the Chainguard API connection", "error", err.Error())
		}
	}
	st.begin(fmt.Sprintf("token exchange for provisioner identity %s at %s", tgt.Provisioner, tgt.Issuer))
	if err := p.Connect(ctx); err != nil {
		closeFn()
		return nil, nil, err
	}
	st.end()
	return p, closeFn, nil
}

// managedBy names the stack's ownership of the event's object:
// "<account>/<region>/<stack name>/<stack ID>/<LogicalResourceId>", read from
// the StackId ARN (arn:<partition>:cloudformation:<region>:<account>:stack/<stack name>/<stack ID>).
// The stack's own ID (a UUID) tells apart two stacks of the same name in
// one account and region one after the other, and the account and region
// stacks of that name elsewhere (the partition follows from the region).
func managedBy(ev cfn.Event) (string, error) {
	var account, region, name, id string
	if parts := strings.SplitN(ev.StackID, ":", 6); len(parts) == 6 && parts[0] == "arn" && parts[2] == "cloudformation" {
		if seg := strings.Split(parts[5], "/"); len(seg) == 3 && seg[0] == "stack" {
			region, account, name, id = parts[3], parts[4], seg[1], seg[2]
		}
	}
	if account == "" || region == "" || name == "" || id == "" {
		return "", fmt.Errorf("StackId %q is not a CloudFormation stack ARN (arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>): the provisioner needs it to mark what it creates", ev.StackID)
	}
	if ev.LogicalResourceID == "" {
		return "", fmt.Errorf("LogicalResourceId is empty: the provisioner needs it to mark what it creates")
	}
	return strings.Join([]string{account, region, name, id, ev.LogicalResourceID}, "/"), nil
}

// currentID is the UIDP of the object an Update changes in place: its
// physical ID. Package provision uses it only while it is directly under the
// spec's Group or Parent, so a changed Group or Parent (and a Create, which
// has no physical ID) ensures the object by name instead: a replacement.
func currentID(ev cfn.Event) string {
	if ev.RequestType != cfn.RequestUpdate {
		return ""
	}
	return ev.PhysicalResourceID
}

// undoReplacement deletes, best effort, the object id a failed Update
// settled on in place of the one its physical ID names (a replacement, or
// an object re-made because the old one was gone), so that FAILED answers
// the old physical ID without leaving the new object behind: whether
// CloudFormation would honour a physical ID on a FAILED Update is not
// documented. The deletion outlives ctx, the work's: it may take what is
// left of the work's time and a quarter of the margin more. It returns
// err (said to be the timeout's if it is: see steps.timedOut), extended
// with what became of the new object. Nothing is done for other events.
func undoReplacement(ctx context.Context, ev cfn.Event, kind, id string, st *steps, err error, del func(context.Context) error) error {
	if ev.RequestType != cfn.RequestUpdate || id == "" || id == ev.PhysicalResourceID {
		return err
	}
	err = st.timedOut(ctx, err) // now: the deletion may outlast the work's deadline
	end := time.Now()
	if d, ok := ctx.Deadline(); ok && d.After(end) {
		end = d
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), end.Add(st.margin/4))
	defer cancel()
	start := time.Now()
	if derr := del(ctx); derr != nil {
		st.log.Error("the new object of a failed update is left behind: delete it by hand",
			"kind", kind, "orphan_id", id, "old_physical_id", ev.PhysicalResourceID, "error", derr.Error())
		return fmt.Errorf("%w; then the new %s %s this update made could not be deleted and is left behind (delete it by hand): %w", err, kind, id, derr)
	}
	st.log.Info("deleted the new object of a failed update", "kind", kind, "id", id,
		"old_physical_id", ev.PhysicalResourceID, "duration_ms", ms(start))
	return fmt.Errorf("%w; the new %s %s this update made was deleted", err, kind, id)
}

func (h *Handler) noteReplacement(ev cfn.Event, id string, st *steps) {
	if ev.RequestType == cfn.RequestUpdate && id != ev.PhysicalResourceID {
		st.log.Info("replacement: CloudFormation will delete the old object", "old_physical_id", ev.PhysicalResourceID, "physical_id", id)
	}
}

// steps follows one event's work: the step in progress, for logs and for
// the reason of a failure.
type steps struct {
	log    *slog.Logger
	budget time.Duration // the work's time (zero: no deadline)
	margin time.Duration // Config.Margin
	name   string
	start  time.Time
	late   bool // a failure was said to be the timeout's
}

func (s *steps) begin(name string) {
	s.name, s.start = name, time.Now()
}

func (s *steps) end(attrs ...any) {
	s.log.Info("step done", append([]any{"step", s.name, "duration_ms", ms(s.start)}, attrs...)...)
}

func (s *steps) current() string {
	if s.name == "" {
		return "the event"
	}
	return s.name
}

// timedOut returns err said to be the timeout's, naming the step in
// progress, once ctx's deadline (the work's) has passed by the clock: a
// service's DeadlineExceeded, sent when its copy of that deadline expires,
// can arrive before ctx's own timer has fired. It does so once: a later call
// returns err as it is.
func (s *steps) timedOut(ctx context.Context, err error) error {
	if d, ok := ctx.Deadline(); s.late || !ok || time.Now().Before(d) {
		return err
	}
	s.late = true
	return fmt.Errorf("timed out: %s did not finish within %s (the function's deadline minus a %s safety margin, %s): %w",
		s.current(), s.budget.Round(time.Millisecond), s.margin, EnvDeadlineMargin, err)
}

// ms is the time since t in milliseconds, with microsecond resolution.
func ms(t time.Time) float64 {
	return float64(time.Since(t).Microseconds()) / 1000
}
