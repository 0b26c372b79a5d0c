package stacks

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// CDK context keys read by NewApp (set them in cdk.json or with -c key=value).
const (
	CtxGroup                   = "group"
	CtxProvisionerIdentity     = "provisionerIdentity"
	CtxIssuer                  = "issuer"
	CtxAPIURL                  = "apiUrl"
	CtxServiceTokenParameter   = "serviceTokenParameter"
	CtxProvisionerStackName    = "provisionerStackName"
	CtxProvisionerIdentityName = "provisionerIdentityName"
	CtxAwsAuthStackName        = "awsAuthStackName"
	CtxCreateGroup             = "createGroup"
	CtxGroupName               = "groupName"
	CtxGroupDescription        = "groupDescription"
	CtxIdentityName            = "identityName"
	CtxIdentityRoles           = "identityRoles"
	CtxRoleName                = "roleName"
	CtxFunctionName            = "functionName"
	// CtxTrust is the trust mode: callerIdentity (TrustCallerIdentity, the
	// default) or webIdentity (TrustWebIdentity).
	CtxTrust = "trust"
	// CtxWebIdentityIssuerParameter is the SSM parameter that publishes the
	// account's web-identity issuer (DefaultWebIdentityIssuerParameter).
	CtxWebIdentityIssuerParameter = "webIdentityIssuerParameter"
	// CtxArchitecture is the architecture of the app's functions (the
	// provisioner and the repos function): arm64 (ArchitectureARM64, the
	// default) or x86_64 (ArchitectureX86_64).
	CtxArchitecture = "architecture"
	// CtxTrustCheck (default true) turns the aws-auth stack's deploy-time
	// trust check on or off (AwsAuthStackProps.SkipTrustCheck).
	CtxTrustCheck = "trustCheck"
	// CtxProvisionerRoleArnParameter is the SSM parameter that publishes
	// the provisioner role's ARN (DefaultRoleArnParameter), which the trust
	// checks read.
	CtxProvisionerRoleArnParameter = "provisionerRoleArnParameter"
)

// Default stack names.
const (
	DefaultProvisionerStackName = "ChainguardProvisioner"
	DefaultAwsAuthStackName     = "ChainguardAwsAuth"
)

// AppConfig is the validated configuration of the app. Empty Group or
// Provisioner.Identity mean "not given yet" (see NewApp).
type AppConfig struct {
	ProvisionerStackName    string
	AwsAuthStackName        string
	Group                   string
	Provisioner             ProvisionerSettings
	ProvisionerIdentityName string
	CreateGroup             bool
	GroupName               string
	GroupDescription        string
	IdentityName            string
	IdentityRoles           []string
	RoleName                string
	FunctionName            string
	Trust                   TrustMode
	Architecture            Architecture
	TrustCheck              bool
}

// contextReader reads typed values from the CDK context and collects the
// problems, each naming its key.
type contextReader struct {
	node constructs.Node
	errs []error
}

func (r *contextReader) fail(key string, err error) {
	r.errs = append(r.errs, fmt.Errorf("context key %q: %w", key, err))
}

// str reads a string; numbers are rejected (a UIDP or name is never one).
func (r *contextReader) str(key, def string) string {
	switch v := r.node.TryGetContext(jsii.String(key)).(type) {
	case nil:
		return def
	case string:
		return strings.TrimSpace(v)
	default:
		r.fail(key, fmt.Errorf("expected a string, got %v (%T): quote it in cdk.json", v, v))
		return def
	}
}

// boolean reads true/false (JSON booleans from cdk.json, strings from -c).
func (r *contextReader) boolean(key string, def bool) bool {
	switch v := r.node.TryGetContext(jsii.String(key)).(type) {
	case nil:
		return def
	case bool:
		return v
	case string:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			r.fail(key, fmt.Errorf("%q is not a boolean: use true or false", v))
			return def
		}
		return b
	default:
		r.fail(key, fmt.Errorf("expected true or false, got %v (%T)", v, v))
		return def
	}
}

// list reads a comma-separated string or a JSON list of strings.
func (r *contextReader) list(key string, def []string) []string {
	var items []string
	switch v := r.node.TryGetContext(jsii.String(key)).(type) {
	case nil:
		return def
	case string:
		items = strings.Split(v, ",")
	case []interface{}:
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				r.fail(key, fmt.Errorf("list element %v (%T) is not a string: e.g. [\"viewer\", \"registry.pull\"]", e, e))
				return def
			}
			items = append(items, s)
		}
	default:
		r.fail(key, fmt.Errorf("expected a comma-separated string or a list of strings, got %v (%T)", v, v))
		return def
	}
	out := make([]string, 0, len(items))
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		r.fail(key, errors.New("the list is empty: name at least one role, e.g. viewer"))
		return def
	}
	return out
}

// validate applies fn to the value of key when it is set.
func (r *contextReader) validate(key, v string, fn func(string) error) {
	if v == "" {
		return
	}
	if err := fn(v); err != nil {
		r.fail(key, err)
	}
}

// ConfigFromContext reads and validates the app configuration from the CDK
// context of node. Each malformed value is reported with its context key;
// missing required values (group, provisionerIdentity) are not errors here
// (NewApp reports them on the stacks that need them).
func ConfigFromContext(node constructs.Node) (AppConfig, error) {
	r := &contextReader{node: node}
	cfg := AppConfig{
		ProvisionerStackName:    r.str(CtxProvisionerStackName, DefaultProvisionerStackName),
		AwsAuthStackName:        r.str(CtxAwsAuthStackName, DefaultAwsAuthStackName),
		Group:                   r.str(CtxGroup, ""),
		ProvisionerIdentityName: r.str(CtxProvisionerIdentityName, DefaultProvisionerIdentityName),
		CreateGroup:             r.boolean(CtxCreateGroup, true),
		GroupName:               r.str(CtxGroupName, DefaultGroupName),
		GroupDescription:        r.str(CtxGroupDescription, ""),
		IdentityName:            r.str(CtxIdentityName, DefaultIdentityName),
		IdentityRoles:           r.list(CtxIdentityRoles, DefaultRoles()),
		RoleName:                r.str(CtxRoleName, ""),
		FunctionName:            r.str(CtxFunctionName, ""),
		Trust:                   TrustMode(r.str(CtxTrust, string(TrustCallerIdentity))),
		Architecture:            Architecture(r.str(CtxArchitecture, string(ArchitectureARM64))),
		TrustCheck:              r.boolean(CtxTrustCheck, true),
		Provisioner: ProvisionerSettings{
			Identity:                   r.str(CtxProvisionerIdentity, ""),
			Issuer:                     r.str(CtxIssuer, DefaultIssuer),
			APIURL:                     r.str(CtxAPIURL, DefaultAPIURL),
			ServiceTokenParameter:      r.str(CtxServiceTokenParameter, DefaultServiceTokenParameter),
			WebIdentityIssuerParameter: r.str(CtxWebIdentityIssuerParameter, DefaultWebIdentityIssuerParameter),
			RoleArnParameter:           r.str(CtxProvisionerRoleArnParameter, DefaultRoleArnParameter),
		},
	}
	if err := cfg.Trust.validate(); err != nil {
		r.fail(CtxTrust, err)
		cfg.Trust = TrustCallerIdentity
	}
	if err := cfg.Architecture.validate(); err != nil {
		r.fail(CtxArchitecture, err)
		cfg.Architecture = ArchitectureARM64
	}
	r.validate(CtxProvisionerStackName, cfg.ProvisionerStackName, validateStackName)
	r.validate(CtxAwsAuthStackName, cfg.AwsAuthStackName, validateStackName)
	r.validate(CtxGroup, cfg.Group, func(v string) error {
		return withHint(validate.UIDP("group", v), "list your organizations with `chainctl iam organizations list -o table` (an organization's ID is its root group) and folders with `chainctl iam folders list`")
	})
	r.validate(CtxProvisionerIdentity, cfg.Provisioner.Identity, func(v string) error {
		return withHint(validate.UIDP("provisioner identity", v), "use the ID printed by the command in the "+cfg.ProvisionerStackName+" stack's TrustCommand output")
	})
	r.validate(CtxIssuer, cfg.Provisioner.Issuer, func(v string) error { return validate.ServiceURL("issuer URL", v) })
	r.validate(CtxAPIURL, cfg.Provisioner.APIURL, func(v string) error { return validate.ServiceURL("API URL", v) })
	r.validate(CtxServiceTokenParameter, cfg.Provisioner.ServiceTokenParameter, validateParameterName)
	r.validate(CtxWebIdentityIssuerParameter, cfg.Provisioner.WebIdentityIssuerParameter, validateParameterName)
	r.validate(CtxProvisionerRoleArnParameter, cfg.Provisioner.RoleArnParameter, validateParameterName)
	r.validate(CtxProvisionerIdentityName, cfg.ProvisionerIdentityName, func(v string) error { return validate.Name("provisioner identity name", v) })
	if cfg.CreateGroup {
		r.validate(CtxGroupName, cfg.GroupName, func(v string) error { return validate.Name("group name", v) })
	}
	r.validate(CtxGroupDescription, cfg.GroupDescription, validate.Description)
	r.validate(CtxIdentityName, cfg.IdentityName, func(v string) error { return validate.Name("identity name", v) })
	for _, role := range cfg.IdentityRoles {
		r.validate(CtxIdentityRoles, role, validate.RoleName)
	}
	r.validate(CtxRoleName, cfg.RoleName, validate.IAMRoleName)
	r.validate(CtxFunctionName, cfg.FunctionName, validateFunctionName)
	if cfg.CreateGroup && cfg.GroupName == "" {
		r.fail(CtxGroupName, errors.New("is empty while createGroup is true: name the group to create (e.g. example-group), or set createGroup to false to use the group itself"))
	}
	return cfg, errors.Join(r.errs...)
}

// withHint appends how to obtain a valid value to err.
func withHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w; %s", err, hint)
}

// validateStackName checks a CloudFormation stack name.
func validateStackName(v string) error {
	if stackNameRE.MatchString(v) {
		return nil
	}
	return fmt.Errorf("stack name %q is not valid: expected a letter followed by up to 127 letters, digits or \"-\", e.g. %q", v, DefaultAwsAuthStackName)
}

// NewApp builds the app from its CDK context: the provisioner stack and the
// aws-auth stack (which depends on it), with the cdk-nag AwsSolutions checks
// applied, both in the trust mode of the context key "trust" (CtxTrust):
// callerIdentity (the default) or webIdentity, which also turns the
// account's outbound identity federation on (and never off). Both functions
// run on the architecture of the context key "architecture"
// (CtxArchitecture): arm64 (the default) or x86_64. A malformed
// context value is an error (nothing is built). A missing required value
// fails only the stacks that need it, with an error annotation that says how
// to obtain it: the provisioner stack deploys before the provisioner
// identity exists (that is how it comes to exist).
func NewApp(app awscdk.App) error {
	cfg, err := ConfigFromContext(app.Node())
	if err != nil {
		return fmt.Errorf("invalid CDK context (cdk.json or -c key=value):\n%w", err)
	}
	env := environment()
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)

	missingGroup := fmt.Sprintf("context key %q is not set: pass the UIDP of the Chainguard group to work in, e.g. -c %s=%s (find it with `chainctl iam organizations list -o table`: an organization's ID is its root group; or `chainctl iam folders list`)",
		CtxGroup, CtxGroup, "0123456789abcdef0123456789abcdef01234567")
	missingIdentity := fmt.Sprintf("context key %q is not set: this stack needs the ID of the provisioner's Chainguard identity. Deploy the provisioner first (cdk deploy %s), run the command printed in its TrustCommand output once (it prints the ID), then pass it: -c %s=<id> (or set it in cdk.json)",
		CtxProvisionerIdentity, cfg.ProvisionerStackName, CtxProvisionerIdentity)
	stackProps := awscdk.StackProps{Env: env}

	var provisioner awscdk.Stack
	if cfg.Group == "" {
		provisioner = unbuiltStack(app, cfg.ProvisionerStackName, stackProps, missingGroup)
	} else {
		provisioner = NewProvisionerStack(app, cfg.ProvisionerStackName, &ProvisionerStackProps{
			StackProps:                 stackProps,
			Group:                      cfg.Group,
			IdentityName:               cfg.ProvisionerIdentityName,
			ServiceTokenParameter:      cfg.Provisioner.ServiceTokenParameter,
			Trust:                      cfg.Trust,
			Issuer:                     cfg.Provisioner.Issuer,
			WebIdentityIssuerParameter: cfg.Provisioner.WebIdentityIssuerParameter,
			Architecture:               cfg.Architecture,
			RoleArnParameter:           cfg.Provisioner.RoleArnParameter,
		})
	}

	var awsAuth awscdk.Stack
	switch {
	case cfg.Group == "" || cfg.Provisioner.Identity == "":
		var missing []string
		if cfg.Group == "" {
			missing = append(missing, missingGroup)
		}
		if cfg.Provisioner.Identity == "" {
			missing = append(missing, missingIdentity)
		}
		awsAuth = unbuiltStack(app, cfg.AwsAuthStackName, stackProps, missing...)
	default:
		props := &AwsAuthStackProps{
			StackProps:          stackProps,
			Provisioner:         cfg.Provisioner,
			Group:               cfg.Group,
			NewGroupDescription: cfg.GroupDescription,
			IdentityName:        cfg.IdentityName,
			IdentityRoles:       cfg.IdentityRoles,
			RoleName:            cfg.RoleName,
			FunctionName:        cfg.FunctionName,
			Trust:               cfg.Trust,
			Architecture:        cfg.Architecture,
			SkipTrustCheck:      !cfg.TrustCheck,
		}
		if cfg.CreateGroup {
			props.NewGroupName = cfg.GroupName
		}
		awsAuth = NewAwsAuthStack(app, cfg.AwsAuthStackName, props)
	}
	awsAuth.AddStackDependency(provisioner, jsii.String("its custom resources are served by the provisioner"))
	return nil
}

// unbuiltStack is a stack that cannot be built for lack of configuration:
// it holds only error annotations, so that deploying or synthesizing it
// fails with the messages while other stacks of the app still deploy.
func unbuiltStack(app awscdk.App, id string, props awscdk.StackProps, msgs ...string) awscdk.Stack {
	stack := awscdk.NewStack(app, jsii.String(id), &props)
	for _, m := range msgs {
		awscdk.Annotations_Of(stack).AddError(jsii.String(m))
	}
	return stack
}

// environment returns the account and region the CDK CLI resolved from the
// caller's credentials (CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION), or nil for
// an environment-agnostic app (offline synth): the values then come from
// CloudFormation at deploy time.
func environment() *awscdk.Environment {
	account, region := os.Getenv("CDK_DEFAULT_ACCOUNT"), os.Getenv("CDK_DEFAULT_REGION")
	if account == "" || region == "" {
		return nil
	}
	return &awscdk.Environment{Account: jsii.String(account), Region: jsii.String(region)}
}

// Synth synthesizes app. CDK reports failed validations by throwing, which
// jsii turns into a Go panic; Synth returns it as an error instead, so that
// the CLI shows the message (construct path, property, fix) without a Go
// stack dump.
func Synth(app awscdk.App) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	app.Synth(nil)
	return nil
}
