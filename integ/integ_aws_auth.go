// Command integ_aws_auth is the integration test case of the aws-auth stack,
// in the CDK integ-tests way: a CDK app, run as `go run
// integ/integ_aws_auth.go` (integ-runner's Go preset runs files named
// integ_*.go that way), whose IntegTest deploys the reference setup (the
// repos function and its role, a new Chainguard group, the function's
// assumable identity bound to viewer on it), then, from the assertion stack,
// invokes the function and expects its JSON answer: the identity and the
// group it was given, and the group's repositories (none: the group is new).
//
// Offline (CI), `go test ./integ` synthesizes the case and compares it with
// the committed snapshot in integ_aws_auth.go.snapshot/ (integ-runner's
// layout; the runner itself cannot read this CDK version's output yet).
// Against a real account the pinned CDK CLI deploys it, the assertion runs,
// and the CLI destroys it: see README.md, "Integration tests". The case needs
// the provisioner stack already deployed and trusted in that account and
// region (the one-time trust step), like any identity stack, and reads the
// values a user would pass as context from the environment:
//
//	CHAINGUARD_INTEG_GROUP                 UIDP of the group to create the test group in
//	CHAINGUARD_INTEG_PROVISIONER_IDENTITY  UIDP of the provisioner's identity
//
// Unset (as in the snapshot), both are placeholders. Everything else comes
// from cdk.json's context, feature flags included.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/internal/integtests"
	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/stacks"
)

// Names of the case: its own, so that it never touches a user's aws-auth
// stack in the same account.
const (
	caseStackName = "ChainguardAwsAuthInteg"
	caseGroupName = "aws-auth-integ"
	testID        = "AwsAuth"
)

// Environment variables that carry the real values for a run against an
// account, and the placeholders used without them.
const (
	EnvGroup               = "CHAINGUARD_INTEG_GROUP"
	EnvProvisionerIdentity = "CHAINGUARD_INTEG_PROVISIONER_IDENTITY"

	placeholderGroup               = "0123456789abcdef0123456789abcdef01234567"
	placeholderProvisionerIdentity = placeholderGroup + "/0123456789abcdef"
)

func main() {
	err := run()
	jsii.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	if err := integtests.Load(); err != nil {
		return err
	}
	context, err := projectContext()
	if err != nil {
		return err
	}
	app := awscdk.NewApp(&awscdk.AppProps{Context: &context})
	if _, err := newCase(app, os.LookupEnv); err != nil {
		return err
	}
	return stacks.Synth(app)
}

// awsAuthCase is the case as built: the stack under test, the test and the
// invocation whose answer is asserted.
type awsAuthCase struct {
	Stack  awscdk.Stack
	Test   integtests.IntegTest
	Invoke integtests.IApiCall
}

// newCase adds the case to app, whose context holds cdk.json's. lookup reads
// the environment (EnvGroup, EnvProvisionerIdentity).
func newCase(app awscdk.App, lookup func(string) (string, bool)) (*awsAuthCase, error) {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && v != "" {
			return v
		}
		return def
	}
	app.Node().SetContext(jsii.String(stacks.CtxGroup), get(EnvGroup, placeholderGroup))
	app.Node().SetContext(jsii.String(stacks.CtxProvisionerIdentity), get(EnvProvisionerIdentity, placeholderProvisionerIdentity))
	cfg, err := stacks.ConfigFromContext(app.Node())
	if err != nil {
		return nil, fmt.Errorf("invalid configuration (cdk.json or %s / %s):\n%w", EnvGroup, EnvProvisionerIdentity, err)
	}

	// The stack under test: the reference setup, environment-agnostic (the
	// snapshot is the same on every machine), with a group of its own that
	// it deletes with it.
	stack := stacks.NewAwsAuthStack(app, caseStackName, &stacks.AwsAuthStackProps{
		Provisioner:   cfg.Provisioner,
		Group:         cfg.Group,
		NewGroupName:  caseGroupName,
		IdentityName:  cfg.IdentityName,
		IdentityRoles: cfg.IdentityRoles,
		Trust:         cfg.Trust,
	})
	test := integtests.NewIntegTest(app, jsii.String(testID), &integtests.IntegTestProps{
		TestCases: &[]awscdk.Stack{stack},
		// The committed snapshot holds placeholders, so it cannot be
		// deployed first: each run deploys the case afresh (this also keeps
		// the function's binary out of the snapshot).
		StackUpdateWorkflow: jsii.Bool(false),
	})

	// The assertion: the function answers with the identity and group it
	// was given and the group's repositories (a new group has none).
	invoke := test.Assertions().InvokeFunction(&integtests.LambdaInvokeFunctionProps{
		FunctionName: outputValue(stack, "FunctionName"),
	})
	invoke.Expect(integtests.ExpectedResult_ObjectLike(&map[string]interface{}{
		"StatusCode": 200,
		"Payload": integtests.Match_SerializedJson(&map[string]interface{}{
			"identity": outputValue(stack, "IdentityId"),
			"group":    outputValue(stack, "GroupId"),
			"count":    0,
			"repos":    []interface{}{},
		}),
	}))
	return &awsAuthCase{Stack: stack, Test: test, Invoke: invoke}, nil
}

// outputValue returns the value of the stack's output id (a reference to the
// resource it reports, which the assertion stack imports).
func outputValue(stack awscdk.Stack, id string) *string {
	out, ok := stack.Node().FindChild(jsii.String(id)).(awscdk.CfnOutput)
	if !ok {
		panic(fmt.Sprintf("stack %s has no output %s", *stack.StackName(), id))
	}
	switch v := out.Value().(type) {
	case string:
		return &v
	case *string:
		return v
	default:
		panic(fmt.Sprintf("output %s of stack %s is a %T, not a string", id, *stack.StackName(), v))
	}
}

// projectContext returns the context of the project's cdk.json: the app's
// settings and the feature flags the app is synthesized with. integ-runner
// does not read cdk.json; it passes only its own context.
func projectContext() (map[string]interface{}, error) {
	root, err := lambdabuild.ModuleRoot()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(root, "cdk.json"))
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Context map[string]interface{} `json:"context"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("cdk.json: %w", err)
	}
	return cfg.Context, nil
}
