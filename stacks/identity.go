package stacks

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
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
)

// Trust says which principal may assume the identity. Build one with
// ExactSession or SessionPattern. The interface is sealed so that more kinds
// (such as Chainguard's claim_match for AWS outbound identity federation) can
// be added later without breaking existing code.
type Trust interface {
	// properties returns the trust's custom-resource properties for the
	// principal, recording problems under the property name "Trust".
	properties(pr principal, p *problems) map[string]interface{}
}

// principal is what a Trust needs to know about the role being trusted.
type principal struct {
	partition, account, roleName, roleID string
}

// ExactSession trusts exactly one session of the role:
// arn:<partition>:sts::<account>:assumed-role/<role>/<session> and user ID
// <role unique ID>:<session>. For a Lambda function the session name is the
// function name (so name the function explicitly).
func ExactSession(session string) Trust { return exactSession{session: session} }

// SessionPattern trusts the sessions of the role whose name matches pattern,
// a regular expression for the session name alone, without anchors (no ^,
// $, \A or \z; a literal \$ or a negated class like [^/] is fine): the
// construct anchors it and pins the account, the role name and the role's
// unique ID.
// For workloads whose session varies: ECS task roles (the task ID,
// `[0-9a-f]{32}`), EKS pod identities (`eks-mycluster-.+`), EC2 instance
// roles (the instance ID, `i-[0-9a-f]{8,17}`).
func SessionPattern(pattern string) Trust { return sessionPattern{pattern: pattern} }

type exactSession struct{ session string }

func (t exactSession) properties(pr principal, p *problems) map[string]interface{} {
	p.add("Trust", check(t.session, validate.SessionName))
	arn := fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", pr.partition, pr.account, pr.roleName, t.session)
	userID := pr.roleID + ":" + t.session
	probe := trust.AWS{Account: example(pr.account, probeAccount), UserID: example(pr.roleID, probeRoleID) + ":" + example(t.session, probeSession),
		ARN: fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", example(pr.partition, "aws"), example(pr.account, probeAccount), example(pr.roleName, probeRole), example(t.session, probeSession))}
	p.add("Trust", probe.Validate())
	return map[string]interface{}{"AwsArn": arn, "AwsUserId": userID}
}

type sessionPattern struct{ pattern string }

func (t sessionPattern) properties(pr principal, p *problems) map[string]interface{} {
	if err := checkSessionPattern(t.pattern); err != nil {
		p.add("Trust", err)
	}
	group := "(?:" + t.pattern + ")"
	arn := fmt.Sprintf("^arn:%s:sts::%s:assumed-role/%s/%s$", pr.partition, pr.account, quoteMeta(pr.roleName), group)
	userID := fmt.Sprintf("^%s:%s$", pr.roleID, group)
	probe := trust.AWS{Account: example(pr.account, probeAccount),
		ARNPattern:    fmt.Sprintf("^arn:%s:sts::%s:assumed-role/%s/%s$", example(pr.partition, "aws"), example(pr.account, probeAccount), regexp.QuoteMeta(example(pr.roleName, probeRole)), group),
		UserIDPattern: fmt.Sprintf("^%s:%s$", example(pr.roleID, probeRoleID), group)}
	p.add("Trust", probe.Validate())
	return map[string]interface{}{"AwsArnPattern": arn, "AwsUserIdPattern": userID}
}

// Stand-ins for deploy-time values, so that the trust built around them is
// checked by the Chainguard layer's validators at synth time.
const (
	probeAccount = "111122223333"
	probeRole    = "example-role"
	probeRoleID  = "AROAEXAMPLE0EXAMPLE01"
	probeSession = "example-session"
)

// example returns v, or stand when v is a deploy-time token.
func example(v, stand string) string {
	if unresolved(v) {
		return stand
	}
	return v
}

// quoteMeta quotes a role name for a pattern. A deploy-time role name (a
// CloudFormation-generated one: letters, digits and "-") is left as is.
func quoteMeta(v string) string {
	if unresolved(v) {
		return v
	}
	return regexp.QuoteMeta(v)
}

// checkSessionPattern checks a session pattern on its own before it is
// embedded: it must compile alone (so it cannot close the construct's group
// and escape the anchors) and must not anchor itself. Anchors are found in
// the parsed pattern, so a literal `\$` or a negated class such as `[^/]` is
// fine while `^`, `$`, `\A`, `\z` and their multi-line (?m) forms are not.
func checkSessionPattern(pattern string) error {
	const want = "give a regular expression for the session name only, e.g. `[0-9a-f]{32}` for ECS task IDs"
	if pattern == "" {
		return fmt.Errorf("the session pattern is empty: %s", want)
	}
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return fmt.Errorf("the session pattern %q does not compile (%v): %s", pattern, err, want)
	}
	if hasAnchor(tree) {
		return fmt.Errorf("the session pattern %q has an anchor: leave out ^ and $ (and \\A, \\z, (?m)), the construct anchors the whole pattern and pins the account, role and role unique ID; %s", pattern, want)
	}
	return nil
}

// hasAnchor reports whether re holds a beginning or end of text or line.
func hasAnchor(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		return true
	}
	for _, s := range re.Sub {
		if hasAnchor(s) {
			return true
		}
	}
	return false
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
	// CHAINGUARD_ISSUER, CHAINGUARD_API (e.g. for an ECS container).
	Environment() *map[string]*string
	// ConfigureFunction adds Environment to a Lambda function.
	ConfigureFunction(fn awslambda.Function)
}

type assumableIdentity struct {
	constructs.Construct
	id, group      *string
	issuer, apiURL string
}

func (a *assumableIdentity) IdentityId() *string { return a.id }
func (a *assumableIdentity) GroupId() *string    { return a.group }

func (a *assumableIdentity) Environment() *map[string]*string {
	return &map[string]*string{
		EnvIdentity: a.id,
		EnvGroup:    a.group,
		EnvIssuer:   jsii.String(a.issuer),
		EnvAPI:      jsii.String(a.apiURL),
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

	pr := principal{partition: *stack.Partition(), account: *stack.Account()}
	switch {
	case ip.Role == nil:
		p.addf("Role", "no role: set Role to the IAM role whose sessions may assume the identity (an awsiam.Role, or an imported role with RoleUniqueID)")
	default:
		if env := ip.Role.Env(); env != nil && env.Account != nil {
			pr.account = *env.Account
		}
		pr.roleName = *ip.Role.RoleName()
		p.add("Role", check(pr.roleName, validate.IAMRoleName))
		pr.roleID = roleUniqueID(ip, p)
	}
	p.add("Role", check(pr.account, validate.AWSAccount))
	var trustProps map[string]interface{}
	if ip.Trust == nil {
		p.addf("Trust", "no trust: set Trust to stacks.ExactSession(<session name>) (for a Lambda function, its name) or stacks.SessionPattern(<regexp>) for sessions that vary")
	} else {
		trustProps = ip.Trust.properties(pr, p)
	}

	crProps := map[string]interface{}{
		"Name":                ip.Name,
		"Description":         description,
		"Group":               ip.Group,
		"Roles":               strings.Join(roles, ","),
		"AwsAccount":          pr.account,
		"AllowUnpinnedUserId": "false",
	}
	for k, v := range trustProps {
		crProps[k] = v
	}
	res := newChainguardResource(this, "Resource", IdentityResourceType, w, crProps)
	return &assumableIdentity{Construct: this, id: res.Ref(), group: jsii.String(ip.Group), issuer: w.settings.Issuer, apiURL: w.settings.APIURL}
}

// roleUniqueIDRE is the shape of an IAM role's unique ID.
var roleUniqueIDRE = regexp.MustCompile(`^AROA[A-Z0-9]{17}$`)

// roleUniqueID returns the unique ID to pin: RoleUniqueID when given, else
// Fn::GetAtt Role.RoleId of a role defined in the app.
func roleUniqueID(ip AssumableIdentityProps, p *problems) string {
	if ip.RoleUniqueID != "" {
		if !unresolved(ip.RoleUniqueID) && !roleUniqueIDRE.MatchString(ip.RoleUniqueID) {
			p.addf("RoleUniqueID", "%q is not an IAM role unique ID: expected \"AROA\" and 17 uppercase letters or digits, e.g. %q (aws iam get-role --role-name ROLE --query Role.RoleId)", ip.RoleUniqueID, probeRoleID)
		}
		return ip.RoleUniqueID
	}
	if r, ok := ip.Role.(awsiam.Role); ok {
		return *r.RoleId()
	}
	p.addf("RoleUniqueID", "the role %s is imported, so its unique ID is unknown: set RoleUniqueID (aws iam get-role --role-name ROLE --query Role.RoleId); the identity pins it so that a re-created role with the same name cannot assume it", *ip.Role.RoleName())
	return probeRoleID
}
