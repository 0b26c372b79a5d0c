// Package handler is the repos function's logic: it reads and validates its
// configuration from the environment, turns the function's own AWS
// credentials into a Chainguard token through a cached token source (one
// exchange serves every warm invocation until shortly before the token
// expires) and lists the registry repositories that are children of the
// configured group.
//
// Environment:
//
//	CHAINGUARD_IDENTITY  UIDP of the assumable identity to act as (required)
//	CHAINGUARD_GROUP     UIDP of the group whose repositories are listed (required)
//	CHAINGUARD_ISSUER    Chainguard STS URL (default https://issuer.enforce.dev)
//	CHAINGUARD_API       Chainguard API URL (default https://console-api.enforce.dev)
//	CHAINGUARD_TRUST     how the function proves its AWS identity: caller-identity
//	                     (default; a signed GetCallerIdentity request) or
//	                     web-identity (a JWT from sts:GetWebIdentityToken, asked
//	                     of the regional STS endpoint of AWS_REGION)
//
// Logs are JSON (log/slog) with the request ID, the step and its duration;
// they never hold a token or a credential.
package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/assumable-identity/cdk-chainguard/chainguard/repos"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator"
)

// Environment variable names and defaults: trustcheck's (the variables
// stacks.AssumableIdentity.ConfigureFunction sets), and the group.
const (
	EnvIdentity = trustcheck.EnvIdentity
	EnvGroup    = "CHAINGUARD_GROUP"
	EnvIssuer   = trustcheck.EnvIssuer
	EnvAPI      = trustcheck.EnvAPI
	EnvTrust    = trustcheck.EnvTrust

	DefaultIssuer = trustcheck.DefaultIssuer
	DefaultAPI    = trustcheck.DefaultAPI
)

// deadlineMargin is how long before the function's deadline the handler
// stops waiting and answers with an error that names the step, instead of
// being killed with a bare "Task timed out".
const deadlineMargin = 500 * time.Millisecond

// Config is the function's validated configuration.
type Config struct {
	Identity string // UIDP of the assumable identity
	Group    string // UIDP of the group whose repos are listed
	Issuer   string // Chainguard STS URL
	API      string // Chainguard API URL
	Trust    token.Trust
}

// ConfigFromEnv reads the configuration through lookup (os.LookupEnv in the
// function) and validates it. The error names the variable that is wrong and
// says what a valid value looks like.
func ConfigFromEnv(lookup func(string) (string, bool)) (Config, error) {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && v != "" {
			return v
		}
		return def
	}
	cfg := Config{
		Identity: get(EnvIdentity, ""),
		Group:    get(EnvGroup, ""),
		Issuer:   get(EnvIssuer, DefaultIssuer),
		API:      get(EnvAPI, DefaultAPI),
	}
	var errs []error
	trust, err := token.ParseTrust(get(EnvTrust, ""))
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", EnvTrust, err))
	}
	cfg.Trust = trust
	for _, uidp := range []struct{ name, value, what string }{
		{EnvIdentity, cfg.Identity, "the assumable identity this function acts as"},
		{EnvGroup, cfg.Group, "the group whose repositories are listed"},
	} {
		if uidp.value == "" {
			errs = append(errs, fmt.Errorf("%s is not set: set it to the UIDP of %s", uidp.name, uidp.what))
			continue
		}
		if err := locator.UIDP(uidp.name, uidp.value); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range []struct{ name, value string }{{EnvIssuer, cfg.Issuer}, {EnvAPI, cfg.API}} {
		if err := locator.ServiceURL(u.name, u.value); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	return cfg, nil
}

// Response is the function's result.
type Response struct {
	Identity string       `json:"identity"`
	Group    string       `json:"group"`
	Count    int          `json:"count"`
	Repos    []repos.Repo `json:"repos"`
}

// Handler serves invocations; build one per process with New so that the
// token source (and its cached token) lives across warm invocations.
type Handler struct {
	cfg    Config
	tokens *token.Source
	log    *slog.Logger
}

// New returns a Handler acting as cfg.Identity with the AWS configuration
// of awsCfg (the function's role credentials and region): the credentials
// sign the GetCallerIdentity request of the caller-identity trust, and an
// STS client built from awsCfg asks for the web-identity trust's tokens.
func New(cfg Config, awsCfg aws.Config, logger *slog.Logger) (*Handler, error) {
	tc := token.Config{
		Issuer:   cfg.Issuer,
		APIURL:   cfg.API,
		Identity: cfg.Identity,
		Trust:    cfg.Trust,
	}
	if cfg.Trust == token.WebIdentity {
		tc.STS = sts.NewFromConfig(awsCfg)
	} else {
		tc.Credentials = awsCfg.Credentials
	}
	src, err := token.NewSource(tc, token.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("set up the Chainguard token source: %w", err)
	}
	return &Handler{cfg: cfg, tokens: src, log: logger}, nil
}

// Handle lists the group's repositories. The payload is ignored. It answers
// before the function's deadline; an error says which step failed and why.
func (h *Handler) Handle(ctx context.Context) (Response, error) {
	log := h.log
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
		defer cancel()
	}
	start := time.Now()

	step := time.Now()
	tok, err := h.tokens.Token(ctx)
	if err != nil {
		err = fmt.Errorf("get a Chainguard token: %w", err)
		log.Error("step failed", "step", "token", "duration_ms", ms(step), "error", err.Error())
		return Response{}, err
	}
	log.Info("step done", "step", "token", "duration_ms", ms(step))

	step = time.Now()
	list, err := repos.List(ctx, h.cfg.API, tok, h.cfg.Group, 0)
	if err != nil {
		err = fmt.Errorf("list the repositories of group %s: %w", h.cfg.Group, err)
		log.Error("step failed", "step", "list repos", "duration_ms", ms(step), "error", err.Error())
		return Response{}, err
	}
	log.Info("step done", "step", "list repos", "duration_ms", ms(step), "count", len(list))

	if list == nil {
		list = []repos.Repo{}
	}
	log.Info("invocation done", "duration_ms", ms(start), "count", len(list))
	return Response{Identity: h.cfg.Identity, Group: h.cfg.Group, Count: len(list), Repos: list}, nil
}

// ms is the time since t in milliseconds, with microsecond resolution.
func ms(t time.Time) float64 {
	return float64(time.Since(t).Microseconds()) / 1000
}
