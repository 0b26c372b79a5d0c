package stacks

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// TrustMode is how workloads (and the provisioner) prove their AWS identity
// to Chainguard. The zero value means TrustCallerIdentity.
type TrustMode string

// Trust modes, as the CDK context key "trust" (CtxTrust) names them.
const (
	// TrustCallerIdentity, the default: the workload signs an STS
	// GetCallerIdentity request, and the identity's aws_identity pins the
	// role's unique ID and a session (ExactSession, SessionPattern).
	TrustCallerIdentity TrustMode = "callerIdentity"
	// TrustWebIdentity: AWS outbound identity federation. The workload
	// presents a JWT from sts:GetWebIdentityToken, and the identity's
	// claim_match trusts the account's federation issuer and the role's
	// ARN (WebIdentity). The account's outbound identity federation must be
	// on: the provisioner stack turns it on in this mode (and never off).
	TrustWebIdentity TrustMode = "webIdentity"
)

// Values of EnvTrust, the variable that tells a workload which mode to use.
const (
	EnvTrustCallerIdentity = "caller-identity"
	EnvTrustWebIdentity    = "web-identity"
)

// orDefault returns m, or TrustCallerIdentity for the zero value.
func (m TrustMode) orDefault() TrustMode {
	if m == "" {
		return TrustCallerIdentity
	}
	return m
}

// validate checks that m (after orDefault) is a known mode.
func (m TrustMode) validate() error {
	switch m.orDefault() {
	case TrustCallerIdentity, TrustWebIdentity:
		return nil
	}
	return fmt.Errorf("%q is not a trust mode: use %q (the default: a signed GetCallerIdentity request, pinned to the role's unique ID) or %q (AWS outbound identity federation: a JWT from sts:GetWebIdentityToken)",
		string(m), TrustCallerIdentity, TrustWebIdentity)
}

// Custom-resource values of the Trust property of Custom::ChainguardIdentity.
const (
	trustPropCallerIdentity = "CallerIdentity"
	trustPropWebIdentity    = "WebIdentity"
)

// DefaultWebIdentityIssuerParameter is the SSM parameter under which the
// provisioner stack publishes, in web-identity mode, the issuer URL of the
// account's outbound identity federation; WebIdentity trusts without an
// Issuer read it at deploy time (one lookup per stack).
const DefaultWebIdentityIssuerParameter = "/chainguard-cdk/provisioner/web-identity-issuer"

// Parameters of the tokens the workload (and the provisioner) requests
// from sts:GetWebIdentityToken, which the grant enforces: Chainguard's AWS
// guide (chainguard-dev/edu, aws-identity-oidc) uses ES384 and at most
// 300 seconds; 300 is also STS's default duration.
const (
	webIdentitySigningAlgorithm = "ES384"
	webIdentityMaxDuration      = 300 // seconds
)

// webIdentityTokenNagReason says why the sts:GetWebIdentityToken statement
// names Resource "*" (cdk-nag AwsSolutions-IAM5).
const webIdentityTokenNagReason = "sts:GetWebIdentityToken supports no resource-level permissions: the AWS Service Authorization Reference " +
	"(https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecuritytokenservice.html) lists no resource type for it, " +
	"so Resource must be \"*\". The statement is confined by its conditions instead: the Chainguard issuer as the only audience, " +
	"at most 300 seconds, ES384."

// WebIdentityProps configures WebIdentity. Every field is optional.
type WebIdentityProps struct {
	// Issuer is the issuer URL of the account's outbound identity
	// federation, e.g. https://<uuid>.tokens.sts.global.api.aws
	// (IAM > Account settings, or `aws iam
	// get-outbound-web-identity-federation-info --query IssuerIdentifier`).
	// Default: read at deploy time from the SSM parameter the provisioner
	// stack publishes in web-identity mode
	// (ProvisionerSettings.WebIdentityIssuerParameter, default
	// DefaultWebIdentityIssuerParameter).
	Issuer string
	// RolePath is the IAM path of an imported role whose ARN does not show
	// it (e.g. a role imported by name with awsiam.Role_FromRoleName), such
	// as "/service-role/". The role's ARN, arn:aws:iam::ACCOUNT:role/PATH/NAME,
	// is the token's subject, so the path must be right. Default: for a role
	// of the app, its Path ("/" unless set); for an imported role, the path
	// its ARN shows when the ARN is known at synth time, else "/". Leave it
	// empty for a role of the app.
	RolePath string
}

// WebIdentity trusts the role through AWS outbound identity federation, the
// method Chainguard's documentation recommends since 2026-01: the workload
// calls sts:GetWebIdentityToken (on a regional endpoint) for the Chainguard
// issuer as audience and exchanges the JWT. The identity's claim_match
// trusts exactly issuer = the account's federation issuer and subject = the
// role's ARN (with its path), audience = the Chainguard issuer.
//
// Unlike ExactSession and SessionPattern it pins neither the role's unique
// ID (AWS's token does not carry it: a role deleted and re-created under the
// same name and path can assume the identity) nor a session (every session
// of the role can). The account's outbound identity federation must be on:
// deploy the provisioner stack in web-identity mode (context trust =
// webIdentity), which turns it on once and never off. props may be nil.
//
// The workload's role needs sts:GetWebIdentityToken:
// AssumableIdentity.ConfigureFunction (or Grant) adds it.
func WebIdentity(props *WebIdentityProps) Trust {
	var wp WebIdentityProps
	if props != nil {
		wp = *props
	}
	return webIdentity{props: wp}
}

type webIdentity struct{ props WebIdentityProps }

func (webIdentity) mode() TrustMode { return TrustWebIdentity }

func (t webIdentity) properties(in trustInput) map[string]interface{} {
	if in.props.RoleUniqueID != "" {
		in.p.addf("RoleUniqueID", "the web-identity trust cannot pin the role's unique ID: AWS's web identity tokens name the role by its ARN only (subject arn:aws:iam::<account>:role<path><name>), so a role re-created under the same name can assume the identity. Leave RoleUniqueID empty, or use stacks.ExactSession or stacks.SessionPattern, which pin it")
	}
	path := "/"
	if in.role != nil {
		path = rolePath(in.role, t.props.RolePath, in.p)
	}
	issuer := t.props.Issuer
	if issuer == "" {
		issuer = *in.wiring.webIdentityIssuer()
	} else {
		in.p.add("Trust.Issuer", check(issuer, validate.FederationIssuer))
	}
	return map[string]interface{}{
		"Trust":       trustPropWebIdentity,
		"AwsRolePath": path,
		"AwsIssuer":   issuer,
	}
}

// rolePath returns the IAM path of role (the part of the role's ARN
// between "role" and its name, "/" for none): given (the RolePath prop) when
// set, else the Path of a role of the app, else the path its ARN shows. A
// given path that contradicts a path known at synth is a problem.
func rolePath(role awsiam.IRole, given string, p *problems) string {
	known, source := "", ""
	if r, ok := role.(awsiam.Role); ok {
		known, source = "/", "the role is defined in this app with Path "
		if cfn, ok := r.Node().DefaultChild().(awsiam.CfnRole); ok && cfn.Path() != nil {
			known = *cfn.Path()
		}
	} else if path, ok := arnRolePath(*role.RoleArn()); ok && path != "/" {
		// An ARN without path may be one CDK formatted from a bare name
		// (awsiam.Role_FromRoleName): it proves nothing about the path.
		known, source = path, "the ARN of the imported role shows the path "
	}
	if given == "" {
		if known == "" {
			return "/"
		}
		p.add("Role", check(known, validate.IAMRolePath))
		return known
	}
	if err := check(given, validate.IAMRolePath); err != nil {
		p.add("Trust.RolePath", err)
		return given
	}
	if known != "" && !unresolved(known) && !unresolved(given) && known != given {
		p.addf("Trust.RolePath", "%q contradicts the role: %s%q; leave RolePath empty (it is for imported roles whose ARN does not show their path)", given, source, known)
	}
	return given
}

// arnRolePath returns the path an IAM role ARN shows
// (arn:PARTITION:iam::ACCOUNT:role/PATH/NAME -> "/PATH/"; "/" for none) when
// that part of the ARN is known at synth time.
func arnRolePath(arn string) (string, bool) {
	i := strings.Index(arn, ":role/")
	if i < 0 {
		return "", false
	}
	rest := arn[i+len(":role"):] // "/PATH/NAME" or "/NAME"
	if unresolved(rest) {
		return "", false
	}
	return rest[:strings.LastIndex(rest, "/")+1], true
}

// webIdentityTokenStatement allows sts:GetWebIdentityToken for audience
// (the Chainguard issuer URL) only: every requested audience must equal it
// and at least one must be given, the token lives at most
// webIdentityMaxDuration seconds and is signed with ES384. Resource is "*":
// the action supports no resource-level permissions (AWS Service
// Authorization Reference, AWS Security Token Service: GetWebIdentityToken
// lists no resource type; its condition keys are aws:RequestTag,
// aws:TagKeys, sts:DurationSeconds, sts:IdentityTokenAudience and
// sts:SigningAlgorithm). It never grants sts:TagGetWebIdentityToken, which
// passing tags would need (IAM User Guide, id_roles_providers_outbound_policies):
// the workloads request no tags.
//
// The workload must send DurationSeconds (the project's token source sends
// 300): a condition on a key the request lacks does not match.
func webIdentityTokenStatement(audience string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Effect:    awsiam.Effect_ALLOW,
		Actions:   jsii.Strings("sts:GetWebIdentityToken"),
		Resources: jsii.Strings("*"),
		Conditions: &map[string]interface{}{
			"ForAllValues:StringEquals": map[string]interface{}{"sts:IdentityTokenAudience": audience},
			"Null":                      map[string]interface{}{"sts:IdentityTokenAudience": "false"},
			"NumericLessThanEquals":     map[string]interface{}{"sts:DurationSeconds": webIdentityMaxDuration},
			"StringEquals":              map[string]interface{}{"sts:SigningAlgorithm": webIdentitySigningAlgorithm},
		},
	})
}

// newGrantPolicy adds stmt for grantee in a policy of its own (scope/id), so
// that the cdk-nag suppression of its Resource "*" (AwsSolutions-IAM5, for
// reason) covers that statement alone, never a statement of the grantee's
// default policy. It returns the
// policy, or nil when grantee's principal is no role, user or group: the
// statement then goes to the principal's own policy (awsiam.IPrincipal
// AddToPrincipalPolicy), and p records under prop when the principal holds
// none.
func newGrantPolicy(scope constructs.Construct, id string, grantee awsiam.IGrantable, stmt awsiam.PolicyStatement, reason string, p *problems, prop string) awsiam.Policy {
	props := &awsiam.PolicyProps{Statements: &[]awsiam.PolicyStatement{stmt}}
	switch principal := grantee.GrantPrincipal().(type) {
	case awsiam.IRole:
		props.Roles = &[]awsiam.IRole{principal}
	case awsiam.IUser:
		props.Users = &[]awsiam.IUser{principal}
	case awsiam.IGroup:
		props.Groups = &[]awsiam.IGroup{principal}
	default:
		if res := principal.AddToPrincipalPolicy(stmt); res == nil || res.StatementAdded == nil || !*res.StatementAdded {
			p.addf(prop, "the principal to grant to has no identity policy to take the permission: grant to an IAM role, user or group, or to a function of this app")
		}
		return nil
	}
	policy := awsiam.NewPolicy(scope, jsii.String(id), props)
	cdknag.NagSuppressions_AddResourceSuppressions(policy, &[]*cdknag.NagPackSuppression{{
		Id:        jsii.String("AwsSolutions-IAM5"),
		Reason:    jsii.String(reason),
		AppliesTo: &[]interface{}{"Resource::*"},
	}}, jsii.Bool(true))
	return policy
}
