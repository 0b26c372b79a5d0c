package stacks

import (
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

func TestOnlyTheAWSPartition(t *testing.T) {
	identityStack := func(app awscdk.App, env *awscdk.Environment) awscdk.Stack {
		s := awscdk.NewStack(app, jsii.String("S"), &awscdk.StackProps{Env: env})
		NewAssumableIdentity(s, "Id", validIdentity(lambdaRole(s)))
		return s
	}
	provisionerStack := func(app awscdk.App, env *awscdk.Environment) awscdk.Stack {
		return NewProvisionerStack(app, "S", &ProvisionerStackProps{StackProps: awscdk.StackProps{Env: env}, Group: testGroup})
	}
	region := func(r string) *awscdk.Environment { return &awscdk.Environment{Region: jsii.String(r)} }
	tests := []struct {
		name  string
		stack func(app awscdk.App, env *awscdk.Environment) awscdk.Stack
		env   *awscdk.Environment
		// wantRule: the template guards the partition at deploy time.
		wantRule bool
		wantErr  []string
	}{
		{name: "identity stack in us-east-1", stack: identityStack, env: region("us-east-1")},
		{name: "identity stack in ap-southeast-2", stack: identityStack, env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("ap-southeast-2")}},
		{name: "provisioner stack in eu-west-1", stack: provisionerStack, env: region("eu-west-1")},
		{name: "environment-agnostic identity stack", stack: identityStack, wantRule: true},
		{name: "environment-agnostic provisioner stack", stack: provisionerStack, wantRule: true},
		{name: "identity stack in a region CDK does not know", stack: identityStack, env: region("xx-future-1"), wantRule: true},
		{
			name: "identity stack in China", stack: identityStack, env: region("cn-north-1"),
			wantErr: []string{"[S] Env: region cn-north-1 is in the AWS partition aws-cn", "sts.amazonaws.com", "us-east-1", "deploy to a region of the aws partition"},
		},
		{
			name: "identity stack in GovCloud", stack: identityStack, env: region("us-gov-west-1"),
			wantErr: []string{"[S] Env: region us-gov-west-1 is in the AWS partition aws-us-gov"},
		},
		{
			name: "provisioner stack in GovCloud", stack: provisionerStack, env: region("us-gov-east-1"),
			wantErr: []string{"[S] Env: region us-gov-east-1 is in the AWS partition aws-us-gov"},
		},
		{
			name: "identity stack in a China region CDK does not know", stack: identityStack, env: region("cn-south-9"),
			wantErr: []string{"[S] Env: region cn-south-9 is in the AWS partition aws-cn"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// given a stack with Chainguard resources (or the provisioner) in the environment
			app := newTestApp(t, false, nil)
			var stack awscdk.Stack
			must(t, "build", func() { stack = tt.stack(app, tt.env) })

			// when the app is synthesized
			err := Synth(app)

			// then a partition other than aws fails synth, saying why
			if (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("Synth() error = %v, wantErr %v", err, tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Synth() error does not contain %q:\n%v", want, err)
				}
			}
			if err != nil {
				return
			}

			// and where the partition is known only at deploy time, a rule refuses any but aws before a resource is made
			rules, _ := docOf(t, templateOf(t, stack))["Rules"].(map[string]interface{})
			rule, ok := rules[partitionRuleID].(map[string]interface{})
			if ok != tt.wantRule {
				t.Fatalf("rule %s present = %v, want %v (rules: %v)", partitionRuleID, ok, tt.wantRule, rules)
			}
			if !ok {
				return
			}
			assertions, _ := rule["Assertions"].([]interface{})
			if len(assertions) != 1 || rule["RuleCondition"] != nil {
				t.Fatalf("rule = %v, want one unconditional assertion", rule)
			}
			a := assertions[0].(map[string]interface{})
			eq, _ := a["Assert"].(map[string]interface{})["Fn::Equals"].([]interface{})
			if len(eq) != 2 || render(eq[0]) != "{AWS::Partition}" || eq[1] != "aws" {
				t.Errorf("assertion = %v, want Fn::Equals [{Ref: AWS::Partition}, aws]", a["Assert"])
			}
			if d, _ := a["AssertDescription"].(string); !strings.Contains(d, "only in the aws partition") || !strings.Contains(d, "sts.amazonaws.com") {
				t.Errorf("AssertDescription = %q, want the reason", d)
			}
		})
	}
}

func TestPartitionRuleOncePerStack(t *testing.T) {
	// given an environment-agnostic stack with a group and two identities
	app := newTestApp(t, false, nil)
	stack := awscdk.NewStack(app, jsii.String("S"), nil)
	NewGroup(stack, "G", &GroupProps{Parent: testGroup, Name: "group", Provisioner: testSettings()})
	for _, id := range []string{"A", "B"} {
		scope := constructs.NewConstruct(stack, jsii.String(id))
		p := validIdentity(lambdaRole(scope))
		p.Provisioner, p.Name = nil, "identity-"+strings.ToLower(id)
		NewAssumableIdentity(scope, "Identity", p)
	}

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))

	// then it has one partition rule
	rules, _ := d["Rules"].(map[string]interface{})
	n := 0
	for id := range rules {
		if strings.HasPrefix(id, partitionRuleID) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d partition rules, want 1: %v", n, keys(rules))
	}
}
