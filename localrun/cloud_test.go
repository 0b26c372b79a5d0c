package localrun

import (
	"context"
	"io"
	"reflect"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/localrun/template"
)

// TestDeployRules checks that deploy evaluates the template's rules before
// it creates anything, as CloudFormation does: a failing assertion refuses
// the stack with its description, and no role, function or custom resource
// event comes of it.
func TestDeployRules(t *testing.T) {
	const partitionDescription = "Chainguard assumable identities work only in the aws partition."
	// The rules as synthesized for an environment-agnostic stack
	// (stacks/partition.go and CDK's CheckBootstrapVersion).
	const rules = `"Rules": {
	  "ChainguardPartition": {"Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws"]}, "AssertDescription": "` + partitionDescription + `"}]},
	  "CheckBootstrapVersion": {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Contains": [["1", "2", "3", "4", "5"], {"Ref": "BootstrapVersion"}]}]}, "AssertDescription": "CDK bootstrap stack version 6 required."}]}
	},
	"Parameters": {"BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version"}}`
	const passing = `{` + rules + `,
	  "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "r"}}, "Policy": {"Type": "AWS::IAM::Policy"}},
	  "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}}}
	}`
	// A stack with a function and a custom resource: if the rules did not
	// stop it, the function would be defined (and fail: it has no asset) or
	// the event sent (and fail: there is no response server).
	const withFunction = `{` + rules + `,
	  "Resources": {
	    "Role": {"Type": "AWS::IAM::Role"},
	    "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Runtime": "provided.al2023", "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Code": {"S3Bucket": "b", "S3Key": "k.zip"}}},
	    "Ident": {"Type": "Custom::ChainguardIdentity", "Properties": {"ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]}}}
	  }
	}`
	tests := []struct {
		name      string
		template  string
		env       template.Env
		bootstrap string // the bootstrap version in SSM
		want      map[string]string
		wantErr   string
	}{
		{name: "aws partition", template: passing, env: localEnv(), bootstrap: bootstrapVersion, want: map[string]string{"RoleArn": "arn:aws:iam::111122223333:role/r"}},
		{
			name: "other partition", template: withFunction, env: template.Env{Account: localAccount, Region: "cn-north-1", Partition: "aws-cn"}, bootstrap: bootstrapVersion,
			wantErr: "stack S: rule ChainguardPartition refuses the deployment: " + partitionDescription,
		},
		{
			name: "old bootstrap", template: withFunction, env: localEnv(), bootstrap: "5",
			wantErr: "stack S: rule CheckBootstrapVersion refuses the deployment: CDK bootstrap stack version 6 required.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := template.ParseTemplate([]byte(tt.template))
			if err != nil {
				t.Fatal(err)
			}
			fns := newFunctions(t.TempDir(), t.TempDir(), "", nil, nil, io.Discard)
			c := newCloud(tt.env, fns, nil, io.Discard)
			c.ssm[bootstrapVersionParameter] = ssmParameter{value: tt.bootstrap}
			out, err := c.deploy(context.Background(), &template.Stack{ID: "S", Name: "S", Template: tmpl})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("deploy err = %v, want %q", err, tt.wantErr)
				}
				if len(c.roles) != 0 || len(fns.byARN) != 0 || len(c.deployed) != 0 {
					t.Fatalf("a refused stack created roles %v, functions %v, stacks %v", c.roles, fns.byARN, c.deployed)
				}
				return
			}
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			if !reflect.DeepEqual(out, tt.want) {
				t.Fatalf("outputs = %v, want %v", out, tt.want)
			}
		})
	}
}
