package stacks

import (
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

func TestAwsAuthStackCreatesGroup(t *testing.T) {
	// given the reference setup with a new child group
	app := newTestApp(t, false, nil)
	stack := NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{
		Provisioner:  *testSettings(),
		Group:        testGroup,
		NewGroupName: DefaultGroupName,
	})

	// when it is synthesized
	tpl := templateOf(t, stack)
	d := docOf(t, tpl)

	// then the role trusts Lambda and is named after the stack and region
	roleID, role := d.one(t, "AWS::IAM::Role")
	if got, want := render(role["RoleName"]), "Auth-{AWS::Region}"; got != want {
		t.Errorf("role name = %s, want %s", got, want)
	}
	if got := render(role["AssumeRolePolicyDocument"].(map[string]interface{})["Statement"].([]interface{})[0].(map[string]interface{})["Principal"].(map[string]interface{})["Service"]); got != "lambda.amazonaws.com" {
		t.Errorf("role trusts %s, want lambda.amazonaws.com", got)
	}
	// and the group is created and owned by the stack
	groupID, group := d.one(t, GroupResourceType)
	wantGroup := map[string]string{
		"Name": DefaultGroupName, "Parent": testGroup, "Owned": "true", "Description": "Managed by CDK: Auth/Group",
	}
	for k, want := range wantGroup {
		if got := render(group[k]); got != want {
			t.Errorf("group %s = %q, want %q", k, got, want)
		}
	}
	// and the identity trusts exactly the function's assumed-role principal, pinned to the role's unique ID
	identityID, identity := d.one(t, IdentityResourceType)
	wantIdentity := map[string]string{
		"Name":         DefaultIdentityName,
		"Group":        "{" + groupID + "}",
		"Roles":        "viewer",
		"AwsAccount":   "{AWS::AccountId}",
		"AwsPartition": "{AWS::Partition}",
		"AwsRoleName":  "{" + roleID + "}",
		"AwsRoleId":    "{" + roleID + ".RoleId}",
		"AwsSession":   "Auth",
		"Trust":        "CallerIdentity",
	}
	for k, want := range wantIdentity {
		if got := render(identity[k]); got != want {
			t.Errorf("identity %s = %q, want %q", k, got, want)
		}
	}
	if v, ok := identity["AwsSessionPattern"]; ok {
		t.Errorf("identity has AwsSessionPattern = %v; want only the exact session", v)
	}
	// and both custom resources reach the provisioner through the SSM parameter, with a short ServiceTimeout
	params, _ := d["Parameters"].(map[string]interface{})
	var tokenParam string
	for id, p := range params {
		if p.(map[string]interface{})["Default"] == DefaultServiceTokenParameter {
			tokenParam = id
		}
	}
	if tokenParam == "" {
		t.Fatalf("no SSM parameter for %s in %v", DefaultServiceTokenParameter, keys(params))
	}
	for name, props := range map[string]map[string]interface{}{"group": group, "identity": identity} {
		for k, want := range map[string]string{
			"ServiceToken": "{" + tokenParam + "}", "ServiceTimeout": "180",
			"ProvisionerIdentity": testProvisioner, "Issuer": DefaultIssuer, "ApiUrl": DefaultAPIURL,
		} {
			if got := render(props[k]); got != want {
				t.Errorf("%s %s = %q, want %q", name, k, got, want)
			}
		}
	}
	// and both are deleted with the stack
	must(t, "deletion", func() {
		tpl.HasResource(jsii.String(IdentityResourceType), map[string]interface{}{"DeletionPolicy": "Delete"})
		tpl.HasResource(jsii.String(GroupResourceType), map[string]interface{}{"DeletionPolicy": "Delete"})
	})
	// and the function has its fixed name, runtime, architecture and wired environment
	_, fn := d.one(t, "AWS::Lambda::Function")
	for k, want := range map[string]string{
		"FunctionName": "Auth", "Runtime": "provided.al2023", "Handler": "bootstrap", "Architectures": "[arm64]",
		"Role": "{" + roleID + ".Arn}",
	} {
		if got := render(fn[k]); got != want {
			t.Errorf("function %s = %q, want %q", k, got, want)
		}
	}
	env := fn["Environment"].(map[string]interface{})["Variables"].(map[string]interface{})
	for k, want := range map[string]string{
		EnvIdentity: "{" + identityID + "}", EnvGroup: "{" + groupID + "}", EnvIssuer: DefaultIssuer, EnvAPI: DefaultAPIURL,
		EnvRoles: "{" + identityID + ".Roles}",
	} {
		if got := render(env[k]); got != want {
			t.Errorf("environment %s = %q, want %q", k, got, want)
		}
	}
	if len(env) != 5 {
		t.Errorf("environment = %v, want exactly the 5 CHAINGUARD_ variables", env)
	}
	// and the outputs say what was created and how to invoke it
	fnID, _ := d.one(t, "AWS::Lambda::Function")
	for name, want := range map[string]string{
		"IdentityId":    "{" + identityID + "}",
		"GroupId":       "{" + groupID + "}",
		"FunctionName":  "{" + fnID + "}",
		"InvokeCommand": "aws lambda invoke --region {AWS::Region} --function-name {" + fnID + "} response.json && cat response.json",
	} {
		if got := d.output(t, name); got != want {
			t.Errorf("output %s = %q, want %q", name, got, want)
		}
	}
	// and there is no public endpoint
	must(t, "no function URL", func() { tpl.ResourceCountIs(jsii.String("AWS::Lambda::Url"), jsii.Number(0)) })
}

func TestAwsAuthStackExistingGroup(t *testing.T) {
	// given the reference setup on an existing group, in a concrete environment, with its own names
	app := newTestApp(t, false, nil)
	stack := NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{
		StackProps:    awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("eu-west-1")}},
		Provisioner:   *testSettings(),
		Group:         testGroup,
		IdentityRoles: []string{"viewer", "registry.pull"},
		RoleName:      "aws-auth",
		FunctionName:  "aws-auth-fn",
	})

	// when it is synthesized
	tpl := templateOf(t, stack)
	d := docOf(t, tpl)

	// then no group is created (so none is deleted) and the identity lives in the given group
	must(t, "no group", func() { tpl.ResourceCountIs(jsii.String(GroupResourceType), jsii.Number(0)) })
	roleID, role := d.one(t, "AWS::IAM::Role")
	if role["RoleName"] != "aws-auth" {
		t.Errorf("role name = %v, want aws-auth", role["RoleName"])
	}
	_, identity := d.one(t, IdentityResourceType)
	for k, want := range map[string]string{
		"Group":       testGroup,
		"Roles":       "viewer,registry.pull",
		"AwsAccount":  testAccount,
		"AwsRoleName": "{" + roleID + "}", // Ref of the role named aws-auth
		"AwsRoleId":   "{" + roleID + ".RoleId}",
		"AwsSession":  "aws-auth-fn",
		"Trust":       "CallerIdentity",
	} {
		if got := render(identity[k]); got != want {
			t.Errorf("identity %s = %q, want %q", k, got, want)
		}
	}
	_, fn := d.one(t, "AWS::Lambda::Function")
	if got := render(fn["Environment"].(map[string]interface{})["Variables"].(map[string]interface{})[EnvGroup]); got != testGroup {
		t.Errorf("%s = %q, want %q", EnvGroup, got, testGroup)
	}
	if got := d.output(t, "GroupId"); got != testGroup {
		t.Errorf("output GroupId = %q, want %q", got, testGroup)
	}
}
