package stacks

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"
)

func TestAssumableIdentitySessionPattern(t *testing.T) {
	// given an imported ECS task role (session = task ID) made assumable with its unique ID
	app := newTestApp(t, false, nil)
	stack := awscdk.NewStack(app, jsii.String("Ecs"), &awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("us-east-1")}})
	role := awsiam.Role_FromRoleArn(stack, jsii.String("TaskRole"), jsii.String("arn:aws:iam::"+testAccount+":role/ecs.task"), nil)
	id := NewAssumableIdentity(stack, "TaskIdentity", &AssumableIdentityProps{
		Role:         role,
		RoleUniqueID: testRoleID,
		Group:        testGroup,
		Name:         "ecs-task",
		Roles:        []string{"registry.pull"},
		Trust:        SessionPattern(`[0-9a-f]{32}`),
		Provisioner:  testSettings(),
	})

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))

	// then the trust is two anchored patterns pinning account, role name (quoted) and unique ID
	_, identity := d.one(t, IdentityResourceType)
	wantARN := `^arn:{AWS::Partition}:sts::` + testAccount + `:assumed-role/ecs\.task/(?:[0-9a-f]{32})$`
	wantUserID := `^` + testRoleID + `:(?:[0-9a-f]{32})$`
	for k, want := range map[string]string{"AwsArnPattern": wantARN, "AwsUserIdPattern": wantUserID, "AwsAccount": testAccount, "Roles": "registry.pull"} {
		if got := render(identity[k]); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"AwsArn", "AwsUserId"} {
		if _, ok := identity[k]; ok {
			t.Errorf("identity has %s next to the pattern", k)
		}
	}
	// and the patterns admit a task of this role and nothing else
	arnRE := regexp.MustCompile(`^arn:aws:sts::` + testAccount + `:assumed-role/ecs\.task/(?:[0-9a-f]{32})$`)
	userRE := regexp.MustCompile(wantUserID)
	task := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		arn, userID string
		want        bool
	}{
		{"arn:aws:sts::" + testAccount + ":assumed-role/ecs.task/" + task, testRoleID + ":" + task, true},
		{"arn:aws:sts::" + testAccount + ":assumed-role/ecsXtask/" + task, testRoleID + ":" + task, false},
		{"arn:aws:sts::999999999999:assumed-role/ecs.task/" + task, "AROA9999999999ABCDEFG:" + task, false},
		{"arn:aws:sts::" + testAccount + ":assumed-role/ecs.task/not-a-task", testRoleID + ":not-a-task", false},
	} {
		if got := arnRE.MatchString(tc.arn) && userRE.MatchString(tc.userID); got != tc.want {
			t.Errorf("match(%s, %s) = %v, want %v", tc.arn, tc.userID, got, tc.want)
		}
	}
	// and the environment helper hands a workload what it needs
	env := *id.Environment()
	for k, want := range map[string]string{EnvGroup: testGroup, EnvIssuer: DefaultIssuer, EnvAPI: DefaultAPIURL} {
		if got := *env[k]; got != want {
			t.Errorf("Environment()[%s] = %q, want %q", k, got, want)
		}
	}
	if !unresolved(*env[EnvIdentity]) {
		t.Errorf("Environment()[%s] = %q, want the identity's deploy-time ID", EnvIdentity, *env[EnvIdentity])
	}
}

func TestIdentitiesShareOneProvisioner(t *testing.T) {
	// given one stack with three identities; only the first names the provisioner
	app := newTestApp(t, false, nil)
	stack := awscdk.NewStack(app, jsii.String("Many"), nil)
	for i := range 3 {
		var settings *ProvisionerSettings
		if i == 0 {
			settings = testSettings()
		}
		role := awsiam.NewRole(stack, jsii.String(fmt.Sprintf("Role%d", i)), &awsiam.RoleProps{
			AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		})
		NewAssumableIdentity(stack, fmt.Sprintf("Identity%d", i), &AssumableIdentityProps{
			Role: role, Group: testGroup, Name: fmt.Sprintf("identity-%d", i),
			Trust: ExactSession(fmt.Sprintf("fn-%d", i)), Provisioner: settings,
		})
	}

	// when it is synthesized
	tpl := templateOf(t, stack)
	d := docOf(t, tpl)

	// then there is no provisioner function in the stack and one service-token parameter serves all three
	must(t, "no function", func() { tpl.ResourceCountIs(jsii.String("AWS::Lambda::Function"), jsii.Number(0)) })
	ids, props := d.resources(IdentityResourceType)
	if len(ids) != 3 {
		t.Fatalf("want 3 identities, got %v", ids)
	}
	var ssmParams []string
	for id, p := range d["Parameters"].(map[string]interface{}) {
		if p.(map[string]interface{})["Default"] == DefaultServiceTokenParameter {
			ssmParams = append(ssmParams, id)
		}
	}
	if len(ssmParams) != 1 {
		t.Fatalf("service-token parameters = %v, want exactly one", ssmParams)
	}
	for i, p := range props {
		if got := render(p["ServiceToken"]); got != "{"+ssmParams[0]+"}" {
			t.Errorf("%s ServiceToken = %s, want {%s}", ids[i], got, ssmParams[0])
		}
		if got := render(p["ProvisionerIdentity"]); got != testProvisioner {
			t.Errorf("%s ProvisionerIdentity = %s, want %s", ids[i], got, testProvisioner)
		}
	}
}

func TestExplicitServiceToken(t *testing.T) {
	// given an identity whose provisioner is named by ARN instead of the SSM parameter
	app := newTestApp(t, false, nil)
	stack := awscdk.NewStack(app, jsii.String("Arn"), nil)
	arn := "arn:aws:lambda:us-east-1:" + testAccount + ":function:provisioner"
	role := awsiam.NewRole(stack, jsii.String("Role"), &awsiam.RoleProps{AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil)})
	NewAssumableIdentity(stack, "Identity", &AssumableIdentityProps{
		Role: role, Group: testGroup, Name: "identity", Trust: ExactSession("fn"),
		Provisioner: &ProvisionerSettings{Identity: testProvisioner, ServiceToken: arn, Issuer: "http://127.0.0.1:8080", APIURL: "http://127.0.0.1:8081"},
	})

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))

	// then the ARN is the service token, no parameter is read, and the local URLs pass through
	_, identity := d.one(t, IdentityResourceType)
	for k, want := range map[string]string{"ServiceToken": arn, "Issuer": "http://127.0.0.1:8080", "ApiUrl": "http://127.0.0.1:8081"} {
		if got := render(identity[k]); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for id, p := range d["Parameters"].(map[string]interface{}) {
		if p.(map[string]interface{})["Default"] == DefaultServiceTokenParameter {
			t.Errorf("parameter %s reads the service token although an ARN was given", id)
		}
	}
}
