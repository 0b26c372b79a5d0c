package stacks

import (
	"maps"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// IdentityResourceType is the custom-resource type of a Chainguard identity.
const IdentityResourceType = "Custom::ChainguardIdentity"

// DefaultRoles returns the Chainguard roles an identity gets on its group
// unless AssumableIdentityProps.Roles says otherwise: viewer. Each call
// returns a fresh slice, so a caller may change it freely.
func DefaultRoles() []string { return []string{"viewer"} }

// Environment variables the repos function (and any workload using the
// project's token package) reads; see AssumableIdentity.Environment.
const (
	EnvIdentity = "CHAINGUARD_IDENTITY"
	EnvGroup    = "CHAINGUARD_GROUP"
	EnvIssuer   = "CHAINGUARD_ISSUER"
	EnvAPI      = "CHAINGUARD_API"
	// EnvRoles holds the roles actually bound (the identity's Roles
	// attribute, comma-separated). Workloads need not read it: it is there
	// so that a change of roles changes the workload's configuration. A
	// Chainguard token carries the bindings in effect when it was
	// exchanged, and a workload caches its token for most of an hour; a
	// changed configuration makes Lambda (or ECS, for a task definition)
	// start new environments, which exchange a token with the new roles.
	EnvRoles = "CHAINGUARD_ROLES"
	// EnvTrust tells the workload which trust mode to use:
	// EnvTrustCallerIdentity (the default when unset) or
	// EnvTrustWebIdentity.
	EnvTrust = "CHAINGUARD_TRUST"
)

// Trust says whom the identity trusts and how the workload proves it: one
// of ExactSession and SessionPattern (trust mode caller identity: a signed
// GetCallerIdentity request, pinned to the role's unique ID and a session)
// or WebIdentity (AWS outbound identity federation: a JWT whose subject is
// the role's ARN). The interface is sealed so that more kinds can be added
// without breaking existing code.
type Trust interface {
	// mode is the trust mode the workload uses.
	mode() TrustMode
	// properties validates the trust for the identity being built and
	// returns its custom-resource properties beside the role's
	// (AwsAccount, AwsPartition, AwsRoleName): Trust and the kind's own.
	properties(in trustInput) map[string]interface{}
}

// trustInput is what a Trust needs to know of the identity being built.
type trustInput struct {
	props  *AssumableIdentityProps
	role   awsiam.IRole // props.Role; nil when missing (already reported)
	wiring *provisionerWiring
	p      *problems
}

// ExactSession trusts exactly one session of the role:
// arn:aws:sts::<account>:assumed-role/<role>/<session> and user ID
// <role unique ID>:<session>. For a Lambda function the session name is the
// function name (so name the function explicitly).
func ExactSession(session string) Trust { return exactSession{session: session} }

// SessionPattern trusts the sessions of the role whose name matches pattern,
// a regular expression for the session name alone, without anchors (no ^,
// $, \A or \z; a literal \$ or a negated class like [^/] is fine): the
// provisioner anchors it and pins the account, the role name (regexp-quoted)
// and the role's unique ID, so it cannot admit another role or account.
// For workloads whose session varies: ECS task roles (the task ID,
// `[0-9a-f]{32}`), EKS pod identities (`eks-mycluster-.+`), EC2 instance
// roles (the instance ID, `i-[0-9a-f]{8,17}`).
//
// The pattern must match at least one valid session name (2 to 64
// characters from letters, digits and "+=,.@_-").
func SessionPattern(pattern string) Trust { return sessionPattern{pattern: pattern} }

type exactSession struct{ session string }

func (exactSession) mode() TrustMode { return TrustCallerIdentity }

func (t exactSession) properties(in trustInput) map[string]interface{} {
	in.p.add("Trust", check(t.session, validate.SessionName))
	return callerIdentityProperties(in, "AwsSession", t.session)
}

type sessionPattern struct{ pattern string }

func (sessionPattern) mode() TrustMode { return TrustCallerIdentity }

func (t sessionPattern) properties(in trustInput) map[string]interface{} {
	in.p.add("Trust", validate.SessionPattern(t.pattern))
	return callerIdentityProperties(in, "AwsSessionPattern", t.pattern)
}

// callerIdentityProperties are the properties of the caller-identity kinds:
// Trust, the role's unique ID to pin, and the session property.
func callerIdentityProperties(in trustInput, sessionProp, session string) map[string]interface{} {
	roleID := ""
	if in.role != nil {
		roleID = roleUniqueID(*in.props, in.p)
	}
	return map[string]interface{}{
		"Trust":     trustPropCallerIdentity,
		"AwsRoleId": roleID,
		sessionProp: session,
	}
}

// AssumableIdentityProps configures NewAssumableIdentity.
type AssumableIdentityProps struct {
	// Role is the AWS IAM role whose sessions may assume the identity.
	// Required.
	Role awsiam.IRole
	// RoleUniqueID is the role's unique ID (AROA...), required with
	// ExactSession or SessionPattern when Role is imported (not an
	// awsiam.Role defined in this app), e.g. from
	// `aws iam get-role --role-name ROLE --query Role.RoleId`. For roles of
	// the app it comes from Fn::GetAtt Role.RoleId. The identity trusts only
	// this ID: a role deleted and re-created under the same name cannot
	// assume it. Leave it empty with WebIdentity, which cannot pin it.
	RoleUniqueID string
	// Group is the UIDP of the group the identity lives in and its role
	// bindings apply to (e.g. Group.GroupId()). Required.
	Group string
	// Name of the identity. Required.
	Name string
	// Description of the identity. Default: names the construct path.
	Description string
	// Roles are the names of the Chainguard roles bound on Group. Default
	// DefaultRoles() (viewer).
	Roles []string
	// Trust says which sessions of Role may assume the identity and how
	// they prove it. Required: ExactSession(functionName) for a Lambda
	// function, SessionPattern for ECS, EKS or EC2 (both: trust mode caller
	// identity), or WebIdentity (AWS outbound identity federation) for any
	// of them.
	Trust Trust
	// Provisioner settings; may be nil when an earlier Chainguard construct
	// of the stack set them.
	Provisioner *ProvisionerSettings
	// Check adds a deploy-time trust check for each Lambda function
	// ConfigureFunction configures: the deployment fails unless the
	// function itself, with its own credentials and trust mode, can act as
	// the identity (a fresh token exchange) and, when its roles allow
	// reading (viewer, registry.pull, editor, owner, ...), list the group's
	// repos once. The reason names what the function presented and what
	// the identity trusts. Rights take seconds to apply: the check retries
	// for up to a minute. The function's handler must be wrapped with
	// chainguard/trustcheck.Wrap (one line; a function that is not fails
	// the check within seconds, saying so).
	//
	// The check is a Custom::ChainguardTrustCheck served by the
	// provisioner, which invokes the function: the function gets a
	// resource-based permission (AWS::Lambda::Permission) for the
	// provisioner role's ARN alone, read from the SSM parameter the
	// provisioner stack publishes (ProvisionerSettings.RoleArnParameter);
	// no identity-based policy is added anywhere. Default false.
	Check bool
}

// AssumableIdentity is a Chainguard identity that a role's sessions may
// assume.
type AssumableIdentity interface {
	constructs.Construct
	// IdentityId is the identity's UIDP (a deploy-time token).
	IdentityId() *string
	// GroupId is the UIDP of the identity's group.
	GroupId() *string
	// Environment is what a workload needs to exchange its AWS credentials
	// for a Chainguard token: CHAINGUARD_IDENTITY, CHAINGUARD_GROUP,
	// CHAINGUARD_ISSUER, CHAINGUARD_API (e.g. for an ECS container),
	// CHAINGUARD_ROLES, which changes when the roles do (see EnvRoles), and
	// for a WebIdentity trust CHAINGUARD_TRUST=web-identity (see EnvTrust).
	Environment() *map[string]*string
	// Grant gives grantee (the workload's role) the AWS permission its trust
	// mode needs, least privilege. For WebIdentity: one statement allowing
	// sts:GetWebIdentityToken on "*" (the action has no resource-level
	// permissions) only for the Chainguard issuer as audience, at most 300
	// seconds and ES384 (never sts:TagGetWebIdentityToken), in a policy of
	// its own attached to grantee's role, user or group. For ExactSession
	// and SessionPattern nothing: sts:GetCallerIdentity needs no permission
	// (AWS STS API reference, GetCallerIdentity: "No permissions are
	// required to perform this operation"; even an explicit deny does not
	// stop it).
	Grant(grantee awsiam.IGrantable)
	// ConfigureFunction adds Environment to a Lambda function and grants its
	// role what Grant grants; with Check, it also adds the function's
	// deploy-time trust check.
	ConfigureFunction(fn awslambda.Function)
}

type assumableIdentity struct {
	constructs.Construct
	id, group, roles *string
	issuer, apiURL   string
	mode             TrustMode
	p                *problems
	wiring           *provisionerWiring
	// crProps are the identity resource's own properties, and roleNames
	// the roles requested, for the trust checks.
	crProps   map[string]interface{}
	roleNames []string
	// check is AssumableIdentityProps.Check; checked holds the construct
	// paths of the functions checked.
	check   bool
	checked []string
	// grants are the policies Grant made, by the grantee principal's
	// construct path, so that granting one principal twice adds nothing.
	grants map[string]awsiam.Policy
}

func (a *assumableIdentity) IdentityId() *string { return a.id }
func (a *assumableIdentity) GroupId() *string    { return a.group }

// Environment implements AssumableIdentity. CHAINGUARD_TRUST is set only
// for web identity: unset means caller identity (the workload's default),
// so the environment of the caller-identity kinds stays what it was before
// the second mode existed.
func (a *assumableIdentity) Environment() *map[string]*string {
	env := map[string]*string{
		EnvIdentity: a.id,
		EnvGroup:    a.group,
		EnvIssuer:   jsii.String(a.issuer),
		EnvAPI:      jsii.String(a.apiURL),
		EnvRoles:    a.roles,
	}
	if a.mode == TrustWebIdentity {
		env[EnvTrust] = jsii.String(EnvTrustWebIdentity)
	}
	return &env
}

// Grant implements AssumableIdentity.
func (a *assumableIdentity) Grant(grantee awsiam.IGrantable) { a.grant(grantee) }

// grant does Grant and returns the policy that holds the grant (nil when
// there is none, or the principal's own policy took it).
func (a *assumableIdentity) grant(grantee awsiam.IGrantable) awsiam.Policy {
	if a.mode != TrustWebIdentity {
		return nil
	}
	if grantee == nil {
		a.p.addf("Grant", "no grantee: pass the workload's role (or a function, whose role is used)")
		return nil
	}
	key := ""
	if c, ok := grantee.GrantPrincipal().(constructs.IConstruct); ok {
		key = *c.Node().Path()
		if policy, ok := a.grants[key]; ok {
			return policy
		}
	}
	id := "WebIdentityTokenPolicy"
	if n := len(a.grants); n > 0 {
		id += strconv.Itoa(n + 1)
	}
	policy := newGrantPolicy(a.Construct, id, grantee, webIdentityTokenStatement(a.issuer), webIdentityTokenNagReason, a.p, "Grant")
	if policy != nil && key != "" {
		a.grants[key] = policy
	}
	return policy
}

// ConfigureFunction implements AssumableIdentity. The function depends on
// the grant's policy, so that it runs only once it may request its token.
func (a *assumableIdentity) ConfigureFunction(fn awslambda.Function) {
	if fn == nil {
		a.p.addf("ConfigureFunction", "no function: pass the Lambda function that acts as the identity")
		return
	}
	for k, v := range *a.Environment() {
		fn.AddEnvironment(jsii.String(k), v, nil)
	}
	policy := a.grant(fn)
	if policy != nil {
		fn.Node().AddDependency(policy)
	}
	if a.check {
		a.addTrustCheck(fn, policy)
	}
}

// NewAssumableIdentity makes props.Role assumable as a Chainguard identity
// (Custom::ChainguardIdentity) in props.Group, bound to props.Roles there.
// All identities of a stack share the stack's provisioner wiring. Bad props
// fail `cdk synth` with a message naming this construct and the property.
func NewAssumableIdentity(scope constructs.Construct, id string, props *AssumableIdentityProps) AssumableIdentity {
	var ip AssumableIdentityProps
	if props != nil {
		ip = *props
	}
	this := constructs.NewConstruct(scope, &id)
	p := newProblems(this)
	w := wiringFor(this, ip.Provisioner, p)
	stack := awscdk.Stack_Of(this)

	description := orDefault(ip.Description, "Managed by CDK: "+*this.Node().Path())
	roles := ip.Roles
	if len(roles) == 0 {
		roles = DefaultRoles()
	}
	p.add("Group", check(ip.Group, func(v string) error { return validate.UIDP("group", v) }))
	p.add("Name", check(ip.Name, func(v string) error { return validate.Name("identity name", v) }))
	p.add("Description", check(description, validate.Description))
	for _, r := range roles {
		p.add("Roles", validate.RoleName(r))
	}

	account, roleName := *stack.Account(), ""
	switch {
	case ip.Role == nil:
		p.addf("Role", "no role: set Role to the IAM role whose sessions may assume the identity (an awsiam.Role, or an imported role with RoleUniqueID)")
	default:
		if env := ip.Role.Env(); env != nil && env.Account != nil {
			account = *env.Account
		}
		roleName = *ip.Role.RoleName()
		p.add("Role", check(roleName, validate.IAMRoleName))
	}
	p.add("Role", check(account, validate.AWSAccount))
	crProps := map[string]interface{}{
		"Name":         ip.Name,
		"Description":  description,
		"Group":        ip.Group,
		"Roles":        strings.Join(roles, ","),
		"AwsAccount":   account,
		"AwsPartition": *stack.Partition(),
		"AwsRoleName":  roleName,
	}
	mode := TrustCallerIdentity
	if ip.Trust == nil {
		p.addf("Trust", "no trust: set Trust to stacks.ExactSession(<session name>) (for a Lambda function, its name) or stacks.SessionPattern(<regexp>) for sessions that vary, or stacks.WebIdentity(nil) for AWS outbound identity federation")
	} else {
		mode = ip.Trust.mode()
		maps.Copy(crProps, ip.Trust.properties(trustInput{props: &ip, role: ip.Role, wiring: w, p: p}))
	}
	res := newChainguardResource(this, "Resource", IdentityResourceType, w, crProps)
	checkDescriptionFits(this, res, description)
	a := &assumableIdentity{
		Construct: this, id: res.Ref(), group: jsii.String(ip.Group), roles: res.GetAttString(jsii.String("Roles")),
		issuer: w.settings.Issuer, apiURL: w.settings.APIURL, mode: mode, p: p, grants: map[string]awsiam.Policy{},
		wiring: w, crProps: crProps, roleNames: roles, check: ip.Check,
	}
	if ip.Check {
		this.Node().AddValidation(&checkWiring{a})
	}
	return a
}

// roleUniqueID returns the unique ID to pin: RoleUniqueID when given, else
// Fn::GetAtt Role.RoleId of a role defined in the app.
func roleUniqueID(ip AssumableIdentityProps, p *problems) string {
	if ip.RoleUniqueID != "" {
		p.add("RoleUniqueID", check(ip.RoleUniqueID, validate.RoleID))
		return ip.RoleUniqueID
	}
	if r, ok := ip.Role.(awsiam.Role); ok {
		return *r.RoleId()
	}
	p.addf("RoleUniqueID", "the role %s is imported, so its unique ID is unknown: set RoleUniqueID (aws iam get-role --role-name ROLE --query Role.RoleId); the identity pins it so that a re-created role with the same name cannot assume it", *ip.Role.RoleName())
	return ""
}
