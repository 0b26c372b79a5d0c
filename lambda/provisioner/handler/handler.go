// Package handler is the provisioner's logic: a CloudFormation custom
// resource handler (wrapped by aws-lambda-go's cfn.LambdaWrap, which sends the
// response) that creates, updates and deletes Chainguard groups and assumable
// identities through package chainguard/provision.
//
// # Credentials
//
// The provisioner is itself a Chainguard assumable identity. For every event
// it exchanges its own AWS role credentials for a fresh Chainguard token
// (chainguard/token) acting as the event's ProvisionerIdentity, uses it for
// that event only and stores nothing.
//
// # Property contract
//
// Property names are PascalCase. CloudFormation passes every value as a
// string: booleans are "true" or "false", lists are comma-separated
// ("viewer,registry.pull"; blanks around items are ignored). A property that
// is not in the contract, or a value of another JSON type, fails the event
// with a reason naming the property. ServiceToken and ServiceTimeout
// (CloudFormation's own) are ignored.
//
// Every event:
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
//	Owned        "true": the stack owns the group and deletes it on stack delete
//	             (refused while it still holds anything); "false" (default): it is
//	             left in place
//
// Custom::ChainguardIdentity:
//
//	Name                 identity name (required; a change renames the identity in place)
//	Description          optional
//	Group                UIDP of the group the identity lives in and is bound on
//	                     (required; a change replaces the identity)
//	Roles                role names bound on Group, comma-separated, e.g. "viewer"
//	AwsAccount           12-digit AWS account of the trusted principal (required)
//	AwsArn               exact principal ARN, or
//	AwsArnPattern        anchored regular expression (exactly one of the two)
//	AwsUserId            exact user ID "AROA...:session", or
//	AwsUserIdPattern     anchored regular expression (exactly one of the two)
//	AllowUnpinnedUserId  "true" accepts an AwsUserIdPattern that does not pin a
//	                     role unique ID (default "false")
//
// # Responses
//
// The physical resource ID is the object's UIDP. Data holds Id and Name, and
// for identities Roles (comma-separated role names actually bound). Create
// looks the object up by Name under its parent before creating it, so a
// replayed Create never makes a duplicate. Update changes the object the
// physical ID names in place (Name, Description, trust, Roles) and answers
// the same physical ID; a new Name that another object under the same parent
// already has fails the event. Only a change of Parent or Group is a
// replacement: the object is ensured by Name under the new parent, its new
// UIDP is answered, and CloudFormation then deletes the old object. An Update
// whose object is gone ensures it by Name (creating it). Delete of an ID that
// is not a UIDP (left by a failed Create) succeeds without any call, not even
// the token exchange.
//
// The handler always answers: the work runs under a deadline a margin
// (PROVISIONER_DEADLINE_MARGIN, a Go duration, default 10s) before the
// function's own, and if it is not done by then the event fails with a reason
// that names the unfinished step. A panic fails the event too.
package handler

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
)

// EnvDeadlineMargin names the variable that sets Config.Margin.
const EnvDeadlineMargin = "PROVISIONER_DEADLINE_MARGIN"

// DefaultMargin is how long before the function's deadline the handler gives
// up and answers FAILED.
const DefaultMargin = 10 * time.Second

// Config configures a Handler.
type Config struct {
	// Credentials are the function's own AWS credentials (its role).
	Credentials aws.CredentialsProvider
	// Margin before the function's deadline at which unfinished work is
	// abandoned and FAILED is sent; zero means DefaultMargin.
	Margin time.Duration
	// Logger receives JSON logs; nil discards them.
	Logger *slog.Logger
	// Options are passed to provision.Dial (retry schedules, RPC timeout).
	Options []provision.Option
}

// MarginFromEnv reads EnvDeadlineMargin through lookup (os.LookupEnv in the
// function); unset means DefaultMargin.
func MarginFromEnv(lookup func(string) (string, bool)) (time.Duration, error) {
	v, ok := lookup(EnvDeadlineMargin)
	if !ok || v == "" {
		return DefaultMargin, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive Go duration: use e.g. \"10s\" or \"1500ms\"", EnvDeadlineMargin, v)
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
	return &Handler{cfg: cfg, setupErr: setupErr}
}

// Handle processes one event and returns the physical ID and Data for
// cfn.LambdaWrap, which sends SUCCESS or (on error) FAILED with the error as
// the reason. On a failed Create the physical ID is empty, so the request ID
// is sent; the Delete CloudFormation sends for it touches nothing.
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
	start := time.Now()
	id, data, err := h.run(ctx, ev, log)
	if err != nil {
		log.Error("event failed", "duration_ms", ms(start), "error", err.Error())
		return id, nil, err
	}
	log.Info("event done", "duration_ms", ms(start), "physical_id", id)
	return id, data, nil
}

// run does the work under a deadline Margin before ctx's and answers when
// that deadline passes, even if the work has not returned.
func (h *Handler) run(ctx context.Context, ev cfn.Event, log *slog.Logger) (string, map[string]any, error) {
	if h.setupErr != nil {
		return "", nil, fmt.Errorf("the provisioner is misconfigured: %w", h.setupErr)
	}
	work, cancel := ctx, context.CancelFunc(func() {})
	budget := time.Duration(0)
	if deadline, ok := ctx.Deadline(); ok {
		budget = time.Until(deadline) - h.cfg.Margin
		if budget <= 0 {
			return "", nil, fmt.Errorf("timed out before starting: the function has %s left, less than the %s safety margin (%s): raise the function timeout or lower the margin",
				time.Until(deadline).Round(time.Millisecond), h.cfg.Margin, EnvDeadlineMargin)
		}
		work, cancel = context.WithDeadline(ctx, deadline.Add(-h.cfg.Margin))
	}
	defer cancel()

	st := &steps{log: log}
	type result struct {
		id   string
		data map[string]any
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic", "step", st.current(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				done <- result{err: fmt.Errorf("internal error (panic) during %s; see the provisioner's log", st.current())}
			}
		}()
		id, data, err := h.dispatch(work, ev, st)
		done <- result{id, data, err}
	}()
	timedOut := func() error {
		return fmt.Errorf("timed out: %s did not finish within %s (the function's deadline minus a %s safety margin, %s)",
			st.current(), budget.Round(time.Millisecond), h.cfg.Margin, EnvDeadlineMargin)
	}
	select {
	case r := <-done:
		if r.err != nil && work.Err() != nil && ctx.Err() == nil {
			return r.id, nil, fmt.Errorf("%w: %w", timedOut(), r.err)
		}
		return r.id, r.data, r.err
	case <-work.Done():
		if ctx.Err() != nil {
			return "", nil, fmt.Errorf("%s was cancelled: %w", st.current(), ctx.Err())
		}
		return "", nil, timedOut()
	}
}

// dispatch routes the event to its resource type.
func (h *Handler) dispatch(ctx context.Context, ev cfn.Event, st *steps) (string, map[string]any, error) {
	props := properties(ev.ResourceProperties)
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
	switch ev.ResourceType {
	case TypeGroup:
		return h.group(ctx, ev, props, st)
	case TypeIdentity:
		return h.identity(ctx, ev, props, st)
	}
	return "", nil, fmt.Errorf("resource type %q is not served by this provisioner: use %s or %s", ev.ResourceType, TypeGroup, TypeIdentity)
}

func (h *Handler) group(ctx context.Context, ev cfn.Event, props properties, st *steps) (string, map[string]any, error) {
	st.begin("read properties")
	g, err := parseGroup(props)
	if err != nil {
		return "", nil, err
	}
	tgt, err := parseTarget(props)
	if err != nil {
		return "", nil, err
	}
	if ev.RequestType == cfn.RequestDelete && !g.Owned {
		st.log.Info("group left in place: not owned by the stack", "physical_id", ev.PhysicalResourceID)
		return ev.PhysicalResourceID, nil, nil
	}
	p, closeFn, err := h.dial(ctx, tgt, st)
	if err != nil {
		return "", nil, err
	}
	defer closeFn()

	if ev.RequestType == cfn.RequestDelete {
		st.begin("delete group " + ev.PhysicalResourceID)
		if err := p.DeleteGroup(ctx, ev.PhysicalResourceID); err != nil {
			return "", nil, err
		}
		st.end()
		return ev.PhysicalResourceID, nil, nil
	}
	g.Spec.ID = currentID(ev)
	st.begin(fmt.Sprintf("ensure group %q under %s", g.Spec.Name, g.Spec.Parent))
	out, err := p.EnsureGroup(ctx, g.Spec)
	if err != nil {
		return "", nil, err
	}
	st.end("id", out.ID, "created", out.Created)
	h.noteReplacement(ev, out.ID, st)
	return out.ID, map[string]any{"Id": out.ID, "Name": out.Name}, nil
}

func (h *Handler) identity(ctx context.Context, ev cfn.Event, props properties, st *steps) (string, map[string]any, error) {
	st.begin("read properties")
	spec, err := parseIdentity(props)
	if err != nil {
		return "", nil, err
	}
	tgt, err := parseTarget(props)
	if err != nil {
		return "", nil, err
	}
	p, closeFn, err := h.dial(ctx, tgt, st)
	if err != nil {
		return "", nil, err
	}
	defer closeFn()

	if ev.RequestType == cfn.RequestDelete {
		st.begin("delete identity " + ev.PhysicalResourceID)
		if err := p.DeleteIdentity(ctx, ev.PhysicalResourceID); err != nil {
			return "", nil, err
		}
		st.end()
		return ev.PhysicalResourceID, nil, nil
	}
	spec.ID = currentID(ev)
	st.begin(fmt.Sprintf("ensure identity %q in group %s", spec.Name, spec.Group))
	out, err := p.EnsureIdentity(ctx, spec)
	if err != nil {
		return "", nil, err
	}
	st.end("id", out.ID, "created", out.Created)
	h.noteReplacement(ev, out.ID, st)
	return out.ID, map[string]any{"Id": out.ID, "Name": out.Name, "Roles": strings.Join(out.Roles, ",")}, nil
}

// dial mints a fresh token for the event and connects the provisioner.
func (h *Handler) dial(ctx context.Context, tgt target, st *steps) (*provision.Provisioner, func(), error) {
	st.begin(fmt.Sprintf("token exchange for provisioner identity %s at %s", tgt.Provisioner, tgt.Issuer))
	tok, err := token.Exchange(ctx, token.Config{
		Issuer:      tgt.Issuer,
		APIURL:      tgt.APIURL,
		Identity:    tgt.Provisioner,
		Credentials: h.cfg.Credentials,
	})
	if err != nil {
		return nil, nil, err
	}
	st.end()
	st.begin("connect to " + tgt.APIURL)
	p, closeFn, err := provision.Dial(ctx, tgt.APIURL, tok.AccessToken, h.cfg.Options...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to the Chainguard API at %s: %w", tgt.APIURL, err)
	}
	st.end()
	return p, func() {
		if err := closeFn(); err != nil {
			st.log.Warn("close the Chainguard API connection", "error", err.Error())
		}
	}, nil
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

func (h *Handler) noteReplacement(ev cfn.Event, id string, st *steps) {
	if ev.RequestType == cfn.RequestUpdate && id != ev.PhysicalResourceID {
		st.log.Info("replacement: CloudFormation will delete the old object", "old_physical_id", ev.PhysicalResourceID, "physical_id", id)
	}
}

// steps tracks the step in progress, for logs and for the reason of a
// timeout (read from another goroutine).
type steps struct {
	log   *slog.Logger
	mu    sync.Mutex
	name  string
	start time.Time
}

func (s *steps) begin(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name, s.start = name, time.Now()
}

func (s *steps) end(attrs ...any) {
	s.mu.Lock()
	name, start := s.name, s.start
	s.mu.Unlock()
	s.log.Info("step done", append([]any{"step", name, "duration_ms", ms(start)}, attrs...)...)
}

func (s *steps) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.name == "" {
		return "the event"
	}
	return s.name
}

// ms is the time since t in milliseconds, with microsecond resolution.
func ms(t time.Time) float64 {
	return float64(time.Since(t).Microseconds()) / 1000
}
