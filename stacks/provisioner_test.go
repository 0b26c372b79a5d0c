package stacks

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"
)

func TestProvisionerStack(t *testing.T) {
	// given a provisioner stack for a group
	app := newTestApp(t, false, nil)
	stack := NewProvisionerStack(app, "Prov", &ProvisionerStackProps{Group: testGroup})

	// when it is synthesized
	tpl := templateOf(t, stack)
	d := docOf(t, tpl)

	// then it holds exactly the role, its log policy, the log group, the function and the two parameters
	for typ, n := range map[string]int{
		"AWS::IAM::Role": 1, "AWS::IAM::Policy": 1, "AWS::Logs::LogGroup": 1,
		"AWS::Lambda::Function": 1, "AWS::SSM::Parameter": 2,
		"AWS::Lambda::Url": 0, "AWS::Lambda::Permission": 0,
	} {
		must(t, "count "+typ, func() { tpl.ResourceCountIs(jsii.String(typ), jsii.Number(n)) })
	}
	roleID, role := d.one(t, "AWS::IAM::Role")
	logID, _ := d.one(t, "AWS::Logs::LogGroup")
	fnID, _ := d.one(t, "AWS::Lambda::Function")

	// and the role trusts Lambda only, has no managed or inline policies
	must(t, "role", func() {
		tpl.HasResourceProperties(jsii.String("AWS::IAM::Role"), map[string]interface{}{
			"AssumeRolePolicyDocument": map[string]interface{}{
				"Statement": []interface{}{map[string]interface{}{
					"Action": "sts:AssumeRole", "Effect": "Allow",
					"Principal": map[string]interface{}{"Service": "lambda.amazonaws.com"},
				}},
			},
			"ManagedPolicyArns": assertions.Match_Absent(),
			"Policies":          assertions.Match_Absent(),
		})
	})
	if _, ok := role["RoleName"]; ok {
		t.Errorf("provisioner role has a fixed name %v; want a generated one", role["RoleName"])
	}
	// and its only permission is writing its own logs
	must(t, "policy", func() {
		tpl.HasResourceProperties(jsii.String("AWS::IAM::Policy"), map[string]interface{}{
			"PolicyDocument": map[string]interface{}{
				"Statement": []interface{}{map[string]interface{}{
					"Action":   []interface{}{"logs:CreateLogStream", "logs:PutLogEvents"},
					"Effect":   "Allow",
					"Resource": map[string]interface{}{"Fn::GetAtt": []interface{}{logID, "Arn"}},
				}},
			},
			"Roles": []interface{}{map[string]interface{}{"Ref": roleID}},
		})
	})
	// and the function is a provided.al2023 arm64 bootstrap with deliberate sizing and its log group
	must(t, "function", func() {
		tpl.HasResourceProperties(jsii.String("AWS::Lambda::Function"), map[string]interface{}{
			"Runtime":       "provided.al2023",
			"Architectures": []interface{}{"arm64"},
			"Handler":       "bootstrap",
			"MemorySize":    provisionerMemoryMiB,
			"Timeout":       provisionerTimeout,
			"Role":          map[string]interface{}{"Fn::GetAtt": []interface{}{roleID, "Arn"}},
			"LoggingConfig": map[string]interface{}{"LogGroup": map[string]interface{}{"Ref": logID}},
		})
	})
	if provisionerTimeout >= CustomResourceServiceTimeout || CustomResourceServiceTimeout > 300 {
		t.Errorf("function timeout %d s and ServiceTimeout %d s: want timeout < ServiceTimeout <= 300", provisionerTimeout, CustomResourceServiceTimeout)
	}
	must(t, "log group", func() {
		tpl.HasResource(jsii.String("AWS::Logs::LogGroup"), map[string]interface{}{
			"Properties":     map[string]interface{}{"RetentionInDays": 30},
			"DeletionPolicy": "Delete",
		})
	})
	// and the service token is published under the stable parameter name
	must(t, "parameter", func() {
		tpl.HasResourceProperties(jsii.String("AWS::SSM::Parameter"), map[string]interface{}{
			"Name":  DefaultServiceTokenParameter,
			"Type":  "String",
			"Value": map[string]interface{}{"Fn::GetAtt": []interface{}{fnID, "Arn"}},
		})
	})
	// and so is the role's ARN, which the trust checks of identity stacks let invoke the checked function
	must(t, "role ARN parameter", func() {
		tpl.HasResourceProperties(jsii.String("AWS::SSM::Parameter"), map[string]interface{}{
			"Name":  DefaultRoleArnParameter,
			"Type":  "String",
			"Value": map[string]interface{}{"Fn::GetAtt": []interface{}{roleID, "Arn"}},
		})
	})

	// and the outputs print the role, its unique ID and the trust step
	for name, want := range map[string]string{
		"ProvisionerRoleArn":      "{" + roleID + ".Arn}",
		"ProvisionerRoleId":       "{" + roleID + ".RoleId}",
		"ProvisionerFunctionName": "{" + fnID + "}",
		"ServiceTokenParameter":   DefaultServiceTokenParameter,
		"RoleArnParameter":        DefaultRoleArnParameter,
		"TrustCommand": "chainctl iam identities create aws role cdk-provisioner --parent=" + testGroup +
			" --aws-account-id={AWS::AccountId} --aws-partition={AWS::Partition} --aws-role-name={" + roleID +
			"} --aws-role-id={" + roleID + ".RoleId} --role=owner -o id",
	} {
		if got := d.output(t, name); got != want {
			t.Errorf("output %s:\n got %s\nwant %s", name, got, want)
		}
	}
	var spec struct {
		Name        string `json:"name"`
		AWSIdentity struct {
			Account string `json:"aws_account"`
			ARN     string `json:"arn"`
			UserID  string `json:"user_id"`
		} `json:"aws_identity"`
	}
	if err := json.Unmarshal([]byte(d.output(t, "TrustSpec")), &spec); err != nil {
		t.Fatalf("TrustSpec is not JSON: %v", err)
	}
	if spec.Name != DefaultProvisionerIdentityName ||
		spec.AWSIdentity.Account != "{AWS::AccountId}" ||
		spec.AWSIdentity.ARN != "arn:{AWS::Partition}:sts::{AWS::AccountId}:assumed-role/{"+roleID+"}/{"+fnID+"}" ||
		spec.AWSIdentity.UserID != "{"+roleID+".RoleId}:{"+fnID+"}" {
		t.Errorf("TrustSpec = %+v: want the exact assumed-role principal of the function", spec)
	}
}

func TestProvisionerStackSettings(t *testing.T) {
	// given a provisioner stack in a concrete environment with its own names
	app := newTestApp(t, false, nil)
	stack := NewProvisionerStack(app, "Prov", &ProvisionerStackProps{
		StackProps:            awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("eu-central-1")}},
		Group:                 testGroup,
		IdentityName:          "team-provisioner",
		ServiceTokenParameter: "/team/provisioner",
		RoleArnParameter:      "/team/provisioner-role",
		LogRetention:          awslogs.RetentionDays_ONE_WEEK,
	})

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))

	// then the names and the account are the given ones (the partition resolves at deploy time)
	_, params := d.resources("AWS::SSM::Parameter")
	var names []interface{}
	for _, p := range params {
		names = append(names, p["Name"])
	}
	if len(names) != 2 || names[0] != "/team/provisioner-role" || names[1] != "/team/provisioner" {
		t.Errorf("parameter names = %v, want /team/provisioner-role (the role ARN) and /team/provisioner (the service token)", names)
	}
	_, lg := d.one(t, "AWS::Logs::LogGroup")
	if lg["RetentionInDays"] != float64(7) {
		t.Errorf("retention = %v, want 7", lg["RetentionInDays"])
	}
	roleID, _ := d.one(t, "AWS::IAM::Role")
	want := "chainctl iam identities create aws role team-provisioner --parent=" + testGroup +
		" --aws-account-id=" + testAccount + " --aws-partition={AWS::Partition} --aws-role-name={" + roleID +
		"} --aws-role-id={" + roleID + ".RoleId} --role=owner -o id"
	if got := d.output(t, "TrustCommand"); got != want {
		t.Errorf("TrustCommand:\n got %s\nwant %s", got, want)
	}
}
