package stacks

import (
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

// TrustCheckResourceType is the custom-resource type of a deploy-time trust
// check (see AssumableIdentityProps.Check).
const TrustCheckResourceType = "Custom::ChainguardTrustCheck"

// repoListRoles are the built-in Chainguard roles that may list registry
// repos (their capability sets hold repo.list, CAP_REPO_LIST, in
// chainguard.dev/sdk v0.1.212 proto/capabilities; a test keeps this list
// equal to the SDK's). A trust check lists the group's repos only when the
// identity has one of them: for other roles the exchange alone is checked.
var repoListRoles = []string{
	"owner", "editor", "viewer", "console_viewer",
	"registry.pull", "registry.push", "registry.pull_token_creator",
	"guardener.user", "guardener.admin",
}

// canListRepos reports whether any of roles may list repos.
func canListRepos(roles []string) bool {
	return slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(repoListRoles, r) })
}

// trustCheckInvokeAction is the one action the provisioner role is allowed
// on a checked function.
const trustCheckInvokeAction = "lambda:InvokeFunction"

// addTrustCheck adds the deploy-time trust check of fn (which
// ConfigureFunction just configured; policy is its grant, if any): a
// Custom::ChainguardTrustCheck served by the provisioner, which invokes fn
// with a check request, and the resource-based permission that lets the
// provisioner role, and only it, invoke fn. The check runs once the
// identity (with its role bindings), the permission, the grant and the
// function's configuration are in place; a fingerprint of the trust, the
// roles and the function's configuration makes CloudFormation send an
// Update, which runs the check again, exactly when one of them changes. A
// function configured twice is checked once.
func (a *assumableIdentity) addTrustCheck(fn awslambda.Function, policy awsiam.Policy) {
	key := *fn.Node().Path()
	if slices.Contains(a.checked, key) {
		return
	}
	a.checked = append(a.checked, key)
	suffix := ""
	if n := len(a.checked); n > 1 {
		suffix = strconv.Itoa(n)
	}
	cfnFn, _ := fn.Node().DefaultChild().(awslambda.CfnFunction)

	permission := awslambda.NewCfnPermission(a.Construct, jsii.String("TrustCheckPermission"+suffix), &awslambda.CfnPermissionProps{
		Action:       jsii.String(trustCheckInvokeAction),
		FunctionName: fn.FunctionArn(),
		Principal:    a.wiring.provisionerRoleArn(),
	})
	check := newChainguardResource(a.Construct, "TrustCheck"+suffix, TrustCheckResourceType, a.wiring, map[string]interface{}{
		"FunctionName": fn.FunctionArn(),
		"Identity":     a.id,
		"Group":        a.group,
		"ListRepos":    strconv.FormatBool(canListRepos(a.roleNames)),
		"Fingerprint":  a.fingerprint(cfnFn),
	})
	check.Node().AddDependency(permission)
	if policy != nil {
		check.Node().AddDependency(policy)
	}
	// Fn's ARN and the identity's ID already make the check wait for both
	// (the identity answers once its role bindings exist).
}

// fingerprint is the Fingerprint property of a trust check: the JSON, as
// deployed, of what the check proves: the identity (its UIDP), its trust
// and roles as requested, and fn's code, role, runtime, handler,
// architectures and the identity's environment (Environment(), which
// ConfigureFunction gave it). CloudFormation resolves the references in
// it at deploy time, so it changes when any of them does (a role
// re-created under the same name changes its unique ID), and only then.
// Other environment variables of fn are not in it: CDK renders the
// environment lazily, out of reach of Go code, and only these name what
// the check proves.
func (a *assumableIdentity) fingerprint(fn awslambda.CfnFunction) *string {
	trust := map[string]interface{}{}
	for k, v := range a.crProps {
		if k != "Name" && k != "Description" {
			trust[k] = v
		}
	}
	function := map[string]interface{}{}
	add := func(k string, v *string) {
		if v != nil {
			function[k] = *v
		}
	}
	if fn != nil {
		if code, ok := fn.Code().(*awslambda.CfnFunction_CodeProperty); ok && code != nil {
			add("S3Bucket", code.S3Bucket)
			add("S3Key", code.S3Key)
			add("S3ObjectVersion", code.S3ObjectVersion)
			add("ImageUri", code.ImageUri)
			add("ZipFile", code.ZipFile)
		}
		add("Role", fn.Role())
		add("Runtime", fn.Runtime())
		add("Handler", fn.Handler())
		if archs := fn.Architectures(); archs != nil {
			var names []string
			for _, arch := range *archs {
				if arch != nil {
					names = append(names, *arch)
				}
			}
			function["Architectures"] = strings.Join(names, ",")
		}
	}
	env := map[string]interface{}{}
	for k, v := range *a.Environment() {
		if v != nil {
			env[k] = *v
		}
	}
	function["Environment"] = env
	return awscdk.Stack_Of(a.Construct).ToJsonString(map[string]interface{}{
		"Identity": *a.id,
		"Trust":    trust,
		"Function": function,
	}, nil)
}

// checkWiring reports, at synth, an identity with Check whose
// ConfigureFunction was never called: nothing would be checked.
type checkWiring struct{ a *assumableIdentity }

// Validate implements constructs.IValidation.
func (v *checkWiring) Validate() *[]*string {
	if len(v.a.checked) > 0 {
		return jsii.Strings()
	}
	return jsii.Strings("Check: no function to check: call ConfigureFunction(fn) with the function that acts as the identity (its handler wrapped with chainguard/trustcheck.Wrap), or leave Check false")
}
