package stacks

import (
	"fmt"
	"regexp"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsssm"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Defaults of the provisioner settings.
const (
	// DefaultServiceTokenParameter is the SSM parameter under which the
	// provisioner stack publishes its function ARN (the custom resources'
	// ServiceToken) and where identity stacks read it at deploy time.
	DefaultServiceTokenParameter = "/chainguard-cdk/provisioner/service-token"
	// DefaultRoleArnParameter is the SSM parameter under which the
	// provisioner stack publishes its role's ARN, and where identity stacks
	// with a trust check read it at deploy time: each checked function
	// lets that role, and only it, invoke it (AWS::Lambda::Permission).
	DefaultRoleArnParameter = "/chainguard-cdk/provisioner/role-arn"
	// DefaultIssuer is Chainguard's STS.
	DefaultIssuer = "https://issuer.enforce.dev"
	// DefaultAPIURL is Chainguard's API.
	DefaultAPIURL = "https://console-api.enforce.dev"
	// DefaultProvisionerIdentityName is the name of the provisioner's
	// Chainguard identity in the printed trust step.
	DefaultProvisionerIdentityName = "cdk-provisioner"
)

// Provisioner function sizing. The handler answers CloudFormation well before
// its own deadline (FAILED with a reason rather than silence); the timeout
// leaves room for the provisioning retries (a 30 s budget for PermissionDenied
// while a fresh role binding propagates, plus backoff on Unavailable).
// CustomResourceServiceTimeout is how
// long CloudFormation waits for an answer at most: two function timeouts, so
// a crashed invocation that Lambda retries once can still answer, and far
// below CloudFormation's default of one hour.
const (
	provisionerMemoryMiB         = 256
	provisionerTimeout           = 90  // seconds
	CustomResourceServiceTimeout = 180 // seconds; at most 300 by design
)

// ProvisionerSettings says how a stack's Chainguard custom resources reach
// the provisioner. Every custom resource carries Identity, Issuer and APIURL;
// the service token is read at deploy time from the SSM parameter the
// provisioner stack publishes (or given directly).
type ProvisionerSettings struct {
	// Identity is the UIDP of the provisioner's Chainguard identity: the ID
	// printed by the one-time trust step (the provisioner stack's
	// TrustCommand output). Required.
	Identity string
	// Issuer is the Chainguard STS URL. Default DefaultIssuer.
	Issuer string
	// APIURL is the Chainguard API URL. Default DefaultAPIURL.
	APIURL string
	// ServiceTokenParameter is the SSM parameter holding the provisioner's
	// function ARN. Default DefaultServiceTokenParameter.
	ServiceTokenParameter string
	// ServiceToken is the provisioner's function ARN. When set, it is used
	// instead of ServiceTokenParameter.
	ServiceToken string
	// WebIdentityIssuerParameter is the SSM parameter holding the issuer URL
	// of the account's outbound identity federation, which the provisioner
	// stack publishes in web-identity mode; WebIdentity trusts without an
	// Issuer read it (once per stack). Default
	// DefaultWebIdentityIssuerParameter.
	WebIdentityIssuerParameter string
	// RoleArnParameter is the SSM parameter holding the provisioner role's
	// ARN, which identities with a trust check (AssumableIdentityProps.Check)
	// read (once per stack) to let the provisioner invoke the checked
	// function. Default DefaultRoleArnParameter.
	RoleArnParameter string
	// RoleArn is the provisioner role's ARN. When set, it is used instead
	// of RoleArnParameter.
	RoleArn string
}

// withDefaults fills in the default URLs and parameter name.
func (s ProvisionerSettings) withDefaults() ProvisionerSettings {
	s.Issuer = orDefault(s.Issuer, DefaultIssuer)
	s.APIURL = orDefault(s.APIURL, DefaultAPIURL)
	if s.ServiceToken == "" {
		s.ServiceTokenParameter = orDefault(s.ServiceTokenParameter, DefaultServiceTokenParameter)
	}
	s.WebIdentityIssuerParameter = orDefault(s.WebIdentityIssuerParameter, DefaultWebIdentityIssuerParameter)
	if s.RoleArn == "" {
		s.RoleArnParameter = orDefault(s.RoleArnParameter, DefaultRoleArnParameter)
	}
	return s
}

var (
	ssmParameterNameRE   = regexp.MustCompile(`^(/[a-zA-Z0-9_.-]+)+$`)
	iamRoleARNRE         = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/([\x21-\x7e]+/)?[\w+=,.@-]{1,64}$`)
	lambdaARNRE          = regexp.MustCompile(`^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9_-]{1,64}$`)
	lambdaFunctionNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{2,64}$`)
	stackNameRE          = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,127}$`)
)

// validate reports the problems of s (after withDefaults) under the property
// name prop.
func (s ProvisionerSettings) validate(p *problems, prop string) {
	if s.Identity == "" {
		p.addf(prop+".Identity", "the provisioner identity is not set: deploy the provisioner stack, run the command in its TrustCommand output once, and pass the printed ID (e.g. -c provisionerIdentity=<id>)")
	} else {
		p.add(prop+".Identity", check(s.Identity, func(v string) error { return validate.UIDP("provisioner identity", v) }))
	}
	p.add(prop+".Issuer", check(s.Issuer, func(v string) error { return validate.ServiceURL("issuer URL", v) }))
	p.add(prop+".APIURL", check(s.APIURL, func(v string) error { return validate.ServiceURL("API URL", v) }))
	checkValueOrParameter(p, prop, "ServiceToken", s.ServiceToken, lambdaARNRE, "a Lambda function ARN",
		`"arn:aws:lambda:us-east-1:111122223333:function:my-provisioner"`, s.ServiceTokenParameter, DefaultServiceTokenParameter)
	p.add(prop+".WebIdentityIssuerParameter", check(s.WebIdentityIssuerParameter, validateParameterName))
	checkValueOrParameter(p, prop, "RoleArn", s.RoleArn, iamRoleARNRE, "an IAM role ARN",
		`"arn:aws:iam::111122223333:role/ChainguardProvisioner-Role1ABCDEF" (the provisioner stack's ProvisionerRoleArn output)`, s.RoleArnParameter, DefaultRoleArnParameter)
}

// checkValueOrParameter checks a setting given either directly (prop.name,
// value: a synth-time value must match re) or as the SSM parameter that holds
// it (prop.nameParameter, param), whichever is used.
func checkValueOrParameter(p *problems, prop, name, value string, re *regexp.Regexp, what, example, param, defaultParam string) {
	if value == "" {
		p.add(prop+"."+name+"Parameter", check(param, validateParameterName))
		return
	}
	if !unresolved(value) && !re.MatchString(value) {
		p.addf(prop+"."+name, "%q is not %s: expected e.g. %s, or leave it empty to read the ARN from the SSM parameter %s",
			value, what, example, defaultParam)
	}
}

// validateParameterName checks an SSM parameter name of the form /a/b/c.
func validateParameterName(v string) error {
	if ssmParameterNameRE.MatchString(v) && len(v) <= 1011 {
		return nil
	}
	return fmt.Errorf("SSM parameter name %q is not valid: expected a path of letters, digits, \"_\", \".\" and \"-\" segments, each starting with \"/\", e.g. %q", v, DefaultServiceTokenParameter)
}

// provisionerWiringID is the ID of the one wiring construct per stack.
const provisionerWiringID = "ChainguardProvisioner"

// provisionerWiring is the stack's connection to the provisioner: the
// validated settings and the service token (one SSM parameter lookup,
// whatever the number of custom resources). There is at most one per stack;
// constructs find it with wiringFor.
type provisionerWiring struct {
	constructs.Construct
	settings     ProvisionerSettings
	serviceToken *string
}

// ToString only returns Construct's own value. Why a Go construct type at
// all: the stack's later Chainguard constructs inherit these settings (a nil
// Provisioner) and are checked against them, so they must be found again as
// Go data. CDK's per-stack dedup of StringParameter_ValueForStringParameter
// shares the service token but keeps no settings, and TryFindChild on a
// plain construct returns a jsii proxy that holds none either. Only a
// struct made with NewConstruct_Override comes back as itself, and jsii
// refuses (panics on) such a struct without an overriding method: hence
// this one.
func (w *provisionerWiring) ToString() *string {
	return w.Construct.ToString()
}

// wiringFor returns the provisioner wiring of scope's stack, creating it from
// settings on first use. settings may be nil when the stack already has a
// wiring. Different settings for the same stack are a validation error of the
// caller (p), since one stack reaches one provisioner.
func wiringFor(scope constructs.Construct, settings *ProvisionerSettings, p *problems) *provisionerWiring {
	stack := awscdk.Stack_Of(scope)
	if found := stack.Node().TryFindChild(jsii.String(provisionerWiringID)); found != nil {
		w, ok := found.(*provisionerWiring)
		if !ok {
			p.addf("Provisioner", "the construct %s/%s is not the provisioner wiring: the ID %q is reserved, give your construct another ID",
				*stack.Node().Path(), provisionerWiringID, provisionerWiringID)
			return &provisionerWiring{serviceToken: jsii.String("")}
		}
		if settings != nil && settings.withDefaults() != w.settings {
			p.addf("Provisioner", "differs from the provisioner settings already used in stack %s (%+v): one stack reaches one provisioner; give every construct of the stack the same settings, or leave them out after the first",
				*stack.StackName(), w.settings)
		}
		return w
	}
	w := &provisionerWiring{}
	constructs.NewConstruct_Override(w, stack, jsii.String(provisionerWiringID))
	requireAWSPartition(stack)
	wp := newProblems(w)
	if settings == nil {
		wp.addf("Provisioner", "no provisioner settings: set Provisioner (at least Identity) on the first Chainguard construct of the stack")
		w.serviceToken = jsii.String("")
		return w
	}
	w.settings = settings.withDefaults()
	w.settings.validate(wp, "Provisioner")
	if w.settings.ServiceToken != "" {
		w.serviceToken = jsii.String(w.settings.ServiceToken)
	} else {
		w.serviceToken = awsssm.StringParameter_ValueForStringParameter(w, jsii.String(w.settings.ServiceTokenParameter), nil)
	}
	return w
}

// webIdentityIssuer returns the account's web-identity issuer as the
// provisioner stack publishes it. The SSM parameter is read on first use (a
// stack without WebIdentity trusts reads nothing), once per stack: CDK
// shares one template parameter per stack and parameter name.
func (w *provisionerWiring) webIdentityIssuer() *string {
	if w.settings.WebIdentityIssuerParameter == "" { // no settings: already reported
		return jsii.String("")
	}
	return awsssm.StringParameter_ValueForStringParameter(w, jsii.String(w.settings.WebIdentityIssuerParameter), nil)
}

// provisionerRoleArn returns the provisioner role's ARN: RoleArn, or the
// SSM parameter the provisioner stack publishes, read on first use (a stack
// without trust checks reads nothing), once per stack like
// webIdentityIssuer's.
func (w *provisionerWiring) provisionerRoleArn() *string {
	switch {
	case w.settings.RoleArn != "":
		return jsii.String(w.settings.RoleArn)
	case w.settings.RoleArnParameter == "": // no settings: already reported
		return jsii.String("")
	}
	return awsssm.StringParameter_ValueForStringParameter(w, jsii.String(w.settings.RoleArnParameter), nil)
}

// properties returns the custom-resource properties every Chainguard
// resource carries.
func (w *provisionerWiring) properties() map[string]interface{} {
	return map[string]interface{}{
		"ProvisionerIdentity": w.settings.Identity,
		"Issuer":              w.settings.Issuer,
		"ApiUrl":              w.settings.APIURL,
	}
}

// newChainguardResource creates a Chainguard custom resource of resourceType
// with props (plus the provisioner properties), a short ServiceTimeout and
// the default removal policy (destroy: CloudFormation sends Delete).
func newChainguardResource(scope constructs.Construct, id, resourceType string, w *provisionerWiring, props map[string]interface{}) awscdk.CustomResource {
	all := w.properties()
	for k, v := range props {
		all[k] = v
	}
	return awscdk.NewCustomResource(scope, jsii.String(id), &awscdk.CustomResourceProps{
		ServiceToken:   w.serviceToken,
		ResourceType:   jsii.String(resourceType),
		Properties:     &all,
		ServiceTimeout: awscdk.Duration_Seconds(jsii.Number(CustomResourceServiceTimeout)),
		RemovalPolicy:  awscdk.RemovalPolicy_DESTROY,
	})
}

// ProvisionerStackProps configures NewProvisionerStack.
type ProvisionerStackProps struct {
	awscdk.StackProps
	// Group is the UIDP of the Chainguard group in which the provisioner
	// identity is created and holds the owner role: the group identity stacks
	// work in (or its parent, when they create child groups). Required.
	Group string
	// IdentityName is the name of the provisioner identity in the printed
	// trust step. Default DefaultProvisionerIdentityName.
	IdentityName string
	// ServiceTokenParameter is the SSM parameter that publishes the
	// function's ARN. Default DefaultServiceTokenParameter.
	ServiceTokenParameter string
	// LogRetention of the function's log group. Default one month.
	LogRetention awslogs.RetentionDays
	// Trust is how the provisioner proves its AWS identity to Chainguard.
	// Default TrustCallerIdentity. TrustWebIdentity turns on the account's
	// outbound identity federation (OutboundWebIdentityFederation, never
	// turned off), publishes its issuer, lets the provisioner request web
	// identity tokens for Issuer, and prints a claim_match trust step.
	Trust TrustMode
	// Issuer is the Chainguard STS URL the provisioner exchanges its tokens
	// at: in web-identity mode the only audience it may request tokens for.
	// Default DefaultIssuer.
	Issuer string
	// WebIdentityIssuerParameter is the SSM parameter that publishes, in
	// web-identity mode, the issuer URL of the account's outbound identity
	// federation. Default DefaultWebIdentityIssuerParameter.
	WebIdentityIssuerParameter string
	// Architecture of the provisioner function; its bootstrap is built for
	// the matching GOARCH. Default ArchitectureARM64; ArchitectureX86_64
	// for accounts or CloudFormation engines that run only x86_64.
	Architecture Architecture
	// RoleArnParameter is the SSM parameter that publishes the role's ARN,
	// for the trust checks of identity stacks. Default
	// DefaultRoleArnParameter.
	RoleArnParameter string
}

// NewProvisionerStack creates the provisioner: an IAM role that Lambda may
// assume and that may only write its own logs, the provisioner function
// (provided.al2023; arm64, or x86_64 with Architecture) with a log group, the
// SSM parameter publishing the function ARN, and outputs that print the
// one-time trust step.
//
// The provisioner makes no Chainguard call until an identity stack sends it
// a custom-resource event; it then proves it is its own role's assumed-role
// principal to Chainguard, which is why the trust step must run first.
//
// With Trust TrustWebIdentity the provisioner proves instead that it is its
// role through AWS outbound identity federation. The stack then also turns
// the account's federation on (OutboundWebIdentityFederation: the role may
// in addition read and enable it, nothing else; it is never turned off),
// publishes the federation's issuer (SSM parameter
// WebIdentityIssuerParameter, output WebIdentityIssuer), lets the role
// request web identity tokens for Issuer only, sets CHAINGUARD_TRUST on the
// function, and prints the trust step as a claim_match identity (issuer =
// the account's federation issuer, subject = the role's ARN).
func NewProvisionerStack(scope constructs.Construct, id string, props *ProvisionerStackProps) awscdk.Stack {
	var sprops ProvisionerStackProps
	if props != nil {
		sprops = *props
	}
	stack := awscdk.NewStack(scope, &id, &sprops.StackProps)
	requireAWSPartition(stack)
	p := newProblems(stack)
	p.add("Group", validate.UIDP("group", sprops.Group))
	name := orDefault(sprops.IdentityName, DefaultProvisionerIdentityName)
	p.add("IdentityName", validate.Name("provisioner identity name", name))
	param := orDefault(sprops.ServiceTokenParameter, DefaultServiceTokenParameter)
	p.add("ServiceTokenParameter", validateParameterName(param))
	p.add("Trust", sprops.Trust.validate())
	web := sprops.Trust.orDefault() == TrustWebIdentity
	issuer := orDefault(sprops.Issuer, DefaultIssuer)
	p.add("Issuer", check(issuer, func(v string) error { return validate.ServiceURL("issuer URL", v) }))
	issuerParam := orDefault(sprops.WebIdentityIssuerParameter, DefaultWebIdentityIssuerParameter)
	p.add("WebIdentityIssuerParameter", validateParameterName(issuerParam))
	arch := checkedArchitecture(p, "Architecture", sprops.Architecture)
	roleParam := orDefault(sprops.RoleArnParameter, DefaultRoleArnParameter)
	p.add("RoleArnParameter", validateParameterName(roleParam))
	retention := sprops.LogRetention
	if retention == "" {
		retention = awslogs.RetentionDays_ONE_MONTH
	}

	roleDescription := "Chainguard provisioner: assumable as a Chainguard identity; may only write its own logs (and invoke the functions whose trust checks allow it)"
	fnDescription := "Chainguard provisioner: custom resources Custom::ChainguardGroup, Custom::ChainguardIdentity and " + TrustCheckResourceType
	if web {
		roleDescription = "Chainguard provisioner: assumable as a Chainguard identity by web identity; may write its own logs, request web identity tokens for Chainguard, and read and enable the account's outbound identity federation (and invoke the functions whose trust checks allow it)"
		fnDescription = "Chainguard provisioner: custom resources Custom::ChainguardGroup, Custom::ChainguardIdentity, " + TrustCheckResourceType + " and " + OutboundWebIdentityFederationResourceType
	}
	role := awsiam.NewRole(stack, jsii.String("Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String(roleDescription),
	})
	logGroup := awslogs.NewLogGroup(stack, jsii.String("LogGroup"), &awslogs.LogGroupProps{
		Retention:     retention,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	logGroup.GrantWrite(role)
	fnProps := awslambda.FunctionProps{
		Description: jsii.String(fnDescription),
		Role:        role,
		MemorySize:  jsii.Number(provisionerMemoryMiB),
		Timeout:     awscdk.Duration_Seconds(jsii.Number(provisionerTimeout)),
		LogGroup:    logGroup,
	}
	if web {
		fnProps.Environment = &map[string]*string{EnvTrust: jsii.String(EnvTrustWebIdentity)}
	}
	fn := newGoFunction(stack, "Function", goFunctionProps{pkg: ProvisionerPackage, arch: arch, props: fnProps})
	awsssm.NewStringParameter(stack, jsii.String("ServiceToken"), &awsssm.StringParameterProps{
		ParameterName: jsii.String(param),
		StringValue:   fn.FunctionArn(),
		Description:   jsii.String("ServiceToken (function ARN) of the Chainguard provisioner, read by identity stacks"),
	})
	awsssm.NewStringParameter(stack, jsii.String("RoleArn"), &awsssm.StringParameterProps{
		ParameterName: jsii.String(roleParam),
		StringValue:   role.RoleArn(),
		Description:   jsii.String("ARN of the Chainguard provisioner's role, read by identity stacks whose trust checks let it invoke the checked function"),
	})

	account, partition := *stack.Account(), *stack.Partition()
	roleName, roleID, fnName := *role.RoleName(), *role.RoleId(), *fn.FunctionName()
	output(stack, "ProvisionerRoleArn", *role.RoleArn(), "ARN of the provisioner role")
	if !web {
		output(stack, "ProvisionerRoleId", roleID, "unique ID of the provisioner role (pinned by the trust step)")
	}
	output(stack, "ProvisionerFunctionName", fnName, "name of the provisioner function (its role session name)")
	output(stack, "ServiceTokenParameter", param, "SSM parameter holding the provisioner's ServiceToken")
	output(stack, "RoleArnParameter", roleParam, "SSM parameter holding the provisioner role's ARN (for trust checks)")
	if web {
		provisionerWebIdentity(stack, role, fn, name, sprops.Group, issuer, issuerParam, p)
		return stack
	}
	output(stack, "TrustCommand", fmt.Sprintf(
		"chainctl iam identities create aws role %s --parent=%s --aws-account-id=%s --aws-partition=%s --aws-role-name=%s --aws-role-id=%s --role=owner -o id",
		name, sprops.Group, account, partition, roleName, roleID),
		"run once: creates the provisioner's Chainguard identity and prints its ID; pass it as -c provisionerIdentity=<id>")
	output(stack, "TrustSpec", fmt.Sprintf(
		`{"name":"%s","description":"CDK provisioner (assumed-role principal of its Lambda function)","aws_identity":{"aws_account":"%s","arn":"arn:%s:sts::%s:assumed-role/%s/%s","user_id":"%s:%s"}}`,
		name, account, partition, account, roleName, fnName, roleID, fnName),
		"the same trust as a JSON identity spec, pinned to the function's exact principal: chainctl iam identities create "+name+" --filename=<file> --parent=<group> --role=owner -o id")
	return stack
}

// provisionerWebIdentity adds the web-identity mode to the provisioner
// stack: the account's federation turned on, its issuer published, the
// role's permission to request tokens for audience (the Chainguard issuer),
// and the claim_match trust step (identity name, parent group).
func provisionerWebIdentity(stack awscdk.Stack, role awsiam.Role, fn awslambda.Function, name, group, audience, issuerParam string, p *problems) {
	federation := NewOutboundWebIdentityFederation(stack, "OutboundWebIdentityFederation", &OutboundWebIdentityFederationProps{Provisioner: fn})
	issuer := *federation.IssuerIdentifier()
	awsssm.NewStringParameter(stack, jsii.String("WebIdentityIssuerParameter"), &awsssm.StringParameterProps{
		ParameterName: jsii.String(issuerParam),
		StringValue:   jsii.String(issuer),
		Description:   jsii.String("Issuer URL of the account's AWS outbound identity federation, read by identity stacks with web-identity trusts"),
	})
	output(stack, "WebIdentityIssuer", issuer, "issuer URL of the account's AWS outbound identity federation (on; the stack never turns it off)")
	if policy := newGrantPolicy(stack, "WebIdentityTokenPolicy", role, webIdentityTokenStatement(audience), webIdentityTokenNagReason, p, "Trust"); policy != nil {
		fn.Node().AddDependency(policy)
	}

	subject := *role.RoleArn()
	output(stack, "TrustCommand", fmt.Sprintf(
		"chainctl iam identities create %s --identity-issuer=%s --subject=%s --parent=%s --role=owner -o id",
		name, issuer, subject, group),
		"run once: creates the provisioner's Chainguard identity (trusting the web identity tokens of its role) and prints its ID; pass it as -c provisionerIdentity=<id>")
	output(stack, "TrustSpec", fmt.Sprintf(
		`{"name":"%s","description":"CDK provisioner (web identity of its IAM role)","claim_match":{"issuer":"%s","subject":"%s","audience":"%s"}}`,
		name, issuer, subject, audience),
		"the same trust as a JSON identity spec, with the audience named: chainctl iam identities create "+name+" --filename=<file> --parent=<group> --role=owner -o id")
}

// output adds a CloudFormation output.
func output(scope constructs.Construct, id, value, description string) {
	awscdk.NewCfnOutput(scope, jsii.String(id), &awscdk.CfnOutputProps{
		Value:       jsii.String(value),
		Description: jsii.String(description),
	})
}
