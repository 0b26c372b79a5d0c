package stacks

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Reference names of the aws-auth setup.
const (
	DefaultGroupName    = "example-group"
	DefaultIdentityName = "aws-auth-identity"
)

// Sizing of the repos function: one token exchange per cold start and one
// ListRepos per invocation.
const (
	reposMemoryMiB = 256
	reposTimeout   = 30 // seconds
)

// AwsAuthStackProps configures NewAwsAuthStack.
type AwsAuthStackProps struct {
	awscdk.StackProps
	// Provisioner settings (at least Identity). Required.
	Provisioner ProvisionerSettings
	// Group is a Chainguard group UIDP: the group the identity lives in, or,
	// with NewGroupName set, the parent of the group the stack creates.
	// Required.
	Group string
	// NewGroupName, when set, makes the stack create a child group of Group
	// with this name (the reference uses DefaultGroupName) and delete it on
	// `cdk destroy`. Empty: use Group itself, which the stack never deletes.
	NewGroupName string
	// NewGroupDescription describes the created group.
	NewGroupDescription string
	// IdentityName of the function's identity. Default DefaultIdentityName.
	IdentityName string
	// IdentityDescription of the function's identity.
	IdentityDescription string
	// IdentityRoles are the Chainguard roles bound on the group. Default
	// viewer.
	IdentityRoles []string
	// RoleName of the function's IAM role. Default "<stack name>-<region>"
	// (IAM names are global: the region keeps two regions' stacks apart).
	RoleName string
	// FunctionName of the repos function, also its role session name, which
	// the identity's trust pins. Default the stack name.
	FunctionName string
	// LogRetention of the function's log group. Default one month.
	LogRetention awslogs.RetentionDays
	// Trust is how the function proves its AWS identity. Default
	// TrustCallerIdentity: the identity trusts exactly the function's
	// assumed-role principal, pinned to the role's unique ID
	// (ExactSession). TrustWebIdentity: the identity trusts the role's web
	// identity tokens (WebIdentity, issuer read from the provisioner
	// stack's parameter), and the role may request them for the Chainguard
	// issuer only.
	Trust TrustMode
	// SkipTrustCheck leaves out the deploy-time trust check of the function
	// (AssumableIdentityProps.Check), which is on by default: for a
	// CloudFormation engine whose functions cannot reach the provisioner's
	// Lambda Invoke, or that gives them other credentials during the deploy.
	SkipTrustCheck bool
	// Architecture of the repos function; its bootstrap is built for the
	// matching GOARCH. Default ArchitectureARM64; ArchitectureX86_64 for
	// accounts or CloudFormation engines that run only x86_64.
	Architecture Architecture
}

// NewAwsAuthStack creates the reference setup: an IAM role that Lambda may
// assume, the repos function (provided.al2023; arm64, or x86_64 with
// Architecture) with a deterministic name running as that role, optionally
// a new Chainguard group, and an AssumableIdentity trusting exactly the
// function's assumed-role principal
// (arn:<partition>:sts::<account>:assumed-role/<role>/<function>, user ID
// <role unique ID>:<function>), bound to viewer on the group, with a
// deploy-time trust check of the function (AssumableIdentityProps.Check).
// With Trust TrustWebIdentity the identity trusts the role's web identity
// tokens instead (subject arn:<partition>:iam::<account>:role/<role>).
func NewAwsAuthStack(scope constructs.Construct, id string, props *AwsAuthStackProps) awscdk.Stack {
	var sp AwsAuthStackProps
	if props != nil {
		sp = *props
	}
	stack := awscdk.NewStack(scope, &id, &sp.StackProps)
	p := newProblems(stack)
	fnName := orDefault(sp.FunctionName, *stack.StackName())
	roleName := sp.RoleName
	if roleName == "" {
		roleName = *stack.StackName() + "-" + *stack.Region()
	}
	// CDK throws (a Go panic) on some invalid names: report them through
	// validation and build with stand-ins, so synth fails with the message.
	if err := check(fnName, validateFunctionName); err != nil {
		p.add("FunctionName", err)
		fnName = "invalid-function-name"
	}
	if err := check(roleName, validate.IAMRoleName); err != nil {
		p.add("RoleName", err)
		roleName = "invalid-role-name"
	}
	p.add("Group", validate.UIDP("group", sp.Group))
	p.add("Trust", sp.Trust.validate())
	arch := checkedArchitecture(p, "Architecture", sp.Architecture)
	retention := sp.LogRetention
	if retention == "" {
		retention = awslogs.RetentionDays_ONE_MONTH
	}

	role := awsiam.NewRole(stack, jsii.String("Role"), &awsiam.RoleProps{
		RoleName:    jsii.String(roleName),
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("Runs the " + fnName + " function; assumable as a Chainguard identity"),
	})
	logGroup := awslogs.NewLogGroup(stack, jsii.String("LogGroup"), &awslogs.LogGroupProps{
		Retention:     retention,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	// Basic execution, scoped to the function's own log group.
	logGroup.GrantWrite(role)

	groupID := sp.Group
	if sp.NewGroupName != "" {
		g := NewGroup(stack, "Group", &GroupProps{
			Parent:      sp.Group,
			Name:        sp.NewGroupName,
			Description: sp.NewGroupDescription,
			Provisioner: &sp.Provisioner,
		})
		groupID = *g.GroupId()
	}
	identity := NewAssumableIdentity(stack, "Identity", &AssumableIdentityProps{
		Role:        role,
		Group:       groupID,
		Name:        orDefault(sp.IdentityName, DefaultIdentityName),
		Description: sp.IdentityDescription,
		Roles:       sp.IdentityRoles,
		Trust:       trustFor(sp.Trust, fnName),
		Provisioner: &sp.Provisioner,
		// The repos function answers the check (lambda/repos wraps its
		// handler with chainguard/trustcheck).
		Check: !sp.SkipTrustCheck,
	})
	fn := newGoFunction(stack, "Function", goFunctionProps{
		pkg:  ReposPackage,
		arch: arch,
		props: awslambda.FunctionProps{
			FunctionName: jsii.String(fnName),
			Description:  jsii.String("Lists the Chainguard registry repos of a group, as its own Chainguard identity"),
			Role:         role,
			MemorySize:   jsii.Number(reposMemoryMiB),
			Timeout:      awscdk.Duration_Seconds(jsii.Number(reposTimeout)),
			LogGroup:     logGroup,
		},
	})
	identity.ConfigureFunction(fn)

	output(stack, "IdentityId", *identity.IdentityId(), "UIDP of the function's Chainguard identity")
	output(stack, "GroupId", groupID, "UIDP of the Chainguard group")
	output(stack, "FunctionName", *fn.FunctionName(), "name of the repos function (its role session name)")
	output(stack, "InvokeCommand", fmt.Sprintf("aws lambda invoke --region %s --function-name %s response.json && cat response.json", *stack.Region(), *fn.FunctionName()),
		"invoke the function: it lists the group's repos as its own Chainguard identity")
	return stack
}

// trustFor returns the trust of the aws-auth function in mode: its exact
// session, or web identity.
func trustFor(mode TrustMode, fnName string) Trust {
	if mode == TrustWebIdentity {
		return WebIdentity(nil)
	}
	return ExactSession(fnName)
}

// validateFunctionName checks a Lambda function name (1-64 of letters,
// digits, "-" and "_"); as the role session name it must also be 2-64 of the
// session name characters.
func validateFunctionName(v string) error {
	if !lambdaFunctionNameRE.MatchString(v) {
		return fmt.Errorf("function name %q is not valid: expected 2 to 64 letters, digits, \"-\" or \"_\", e.g. %q", v, "aws-auth")
	}
	return validate.SessionName(v)
}
