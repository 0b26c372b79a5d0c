package stacks

import (
	"maps"
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
)

// Trust says which sessions of the role may assume the identity. Build one
// with ExactSession or SessionPattern. The interface is sealed so that more
// kinds (such as Chainguard's claim_match for AWS outbound identity
// federation) can be added later without breaking existing code.
type Trust interface {
	// properties returns the trust's custom-resource properties beside the
	// role's (AwsAccount, AwsPartition, AwsRoleName, AwsRoleId), recording
	// problems under the property name "Trust".
	properties(p *problems) map[string]interface{}
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

func (t exactSession) properties(p *problems) map[string]interface{} {
	p.add("Trust", check(t.session, validate.SessionName))
	return map[string]interface{}{"AwsSession": t.session}
}

type sessionPattern struct{ pattern string }

func (t sessionPattern) properties(p *problems) map[string]interface{} {
	p.add("Trust", validate.SessionPattern(t.pattern))
	return map[string]interface{}{"AwsSessionPattern": t.pattern}
}

// AssumableIdentityProps configures NewAssumableIdentity.
type AssumableIdentityProps struct {
	// Role is the AWS IAM role whose sessions may assume the identity.
	// Required.
	Role awsiam.IRole
	// RoleUniqueID is the role's unique ID (AROA...), required when Role is
	// imported (not an awsiam.Role defined in this app), e.g. from
	// `aws iam get-role --role-name ROLE --query Role.RoleId`. For roles of
	// the app it comes from Fn::GetAtt Role.RoleId. The identity trusts only
	// this ID: a role deleted and re-created under the same name cannot
	// assume it.
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
	// Trust says which sessions of Role may assume the identity. Required:
	// ExactSession(functionName) for a Lambda function, SessionPattern for
	// ECS, EKS or EC2.
	Trust Trust
	// Provisioner settings; may be nil when an earlier Chainguard construct
	// of the stack set them.
	Provisioner *ProvisionerSettings
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
	// CHAINGUARD_ISSUER, CHAINGUARD_API (e.g. for an ECS container), and
	// CHAINGUARD_ROLES, which changes when the roles do (see EnvRoles).
	Environment() *map[string]*string
	// ConfigureFunction adds Environment to a Lambda function.
	ConfigureFunction(fn awslambda.Function)
}

type assumableIdentity struct {
	constructs.Construct
	id, group, roles *string
	issuer, apiURL   string
}

func (a *assumableIdentity) IdentityId() *string { return a.id }
func (a *assumableIdentity) GroupId() *string    { return a.group }

func (a *assumableIdentity) Environment() *map[string]*string {
	return &map[string]*string{
		EnvIdentity: a.id,
		EnvGroup:    a.group,
		EnvIssuer:   jsii.String(a.issuer),
		EnvAPI:      jsii.String(a.apiURL),
		EnvRoles:    a.roles,
	}
}

func (a *assumableIdentity) ConfigureFunction(fn awslambda.Function) {
	for k, v := range *a.Environment() {
		fn.AddEnvironment(jsii.String(k), v, nil)
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

	account, roleName, roleID := *stack.Account(), "", ""
	switch {
	case ip.Role == nil:
		p.addf("Role", "no role: set Role to the IAM role whose sessions may assume the identity (an awsiam.Role, or an imported role with RoleUniqueID)")
	default:
		if env := ip.Role.Env(); env != nil && env.Account != nil {
			account = *env.Account
		}
		roleName = *ip.Role.RoleName()
		p.add("Role", check(roleName, validate.IAMRoleName))
		roleID = roleUniqueID(ip, p)
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
		"AwsRoleId":    roleID,
	}
	if ip.Trust == nil {
		p.addf("Trust", "no trust: set Trust to stacks.ExactSession(<session name>) (for a Lambda function, its name) or stacks.SessionPattern(<regexp>) for sessions that vary")
	} else {
		maps.Copy(crProps, ip.Trust.properties(p))
	}
	res := newChainguardResource(this, "Resource", IdentityResourceType, w, crProps)
	checkDescriptionFits(this, res, description)
	return &assumableIdentity{
		Construct: this, id: res.Ref(), group: jsii.String(ip.Group), roles: res.GetAttString(jsii.String("Roles")),
		issuer: w.settings.Issuer, apiURL: w.settings.APIURL,
	}
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
