package stacks

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
)

func TestAssumableIdentitySessionPattern(t *testing.T) {
	const ecsTask = `[0-9a-f]{32}`
	tests := []struct {
		name string
		// pattern is the session pattern and session a session it admits.
		pattern, session string
		// role adds the role to stack, returning it, its RoleUniqueID prop
		// and its logical ID ("" for an imported role).
		role func(stack awscdk.Stack) (awsiam.IRole, string, string)
		// roleName is the role's name at deploy time; otherRole another
		// role's, which the patterns must not admit.
		roleName, otherRole string
		// wantRoleName and wantRoleID are the rendered AwsRoleName and
		// AwsRoleId; LOGICAL stands for the role's logical ID. wantARN is
		// the arn_pattern the provisioner builds once they are deployed.
		wantRoleName, wantRoleID, wantARN string
	}{
		{
			name:    "imported role with its unique ID",
			pattern: ecsTask,
			session: "0123456789abcdef0123456789abcdef",
			role: func(stack awscdk.Stack) (awsiam.IRole, string, string) {
				return awsiam.Role_FromRoleArn(stack, jsii.String("TaskRole"), jsii.String("arn:aws:iam::"+testAccount+":role/ecs.task"), nil), testRoleID, ""
			},
			roleName:     "ecs.task",
			otherRole:    "ecsXtask",
			wantRoleName: "ecs.task",
			wantRoleID:   testRoleID,
			wantARN:      `^arn:aws:sts::` + testAccount + `:assumed-role/ecs\.task/(?:[0-9a-f]{32})$`,
		},
		{
			name:    "role of the app (generated name, unique ID from Fn::GetAtt)",
			pattern: ecsTask,
			session: "0123456789abcdef0123456789abcdef",
			role: func(stack awscdk.Stack) (awsiam.IRole, string, string) {
				r := awsiam.NewRole(stack, jsii.String("TaskRole"), &awsiam.RoleProps{AssumedBy: awsiam.NewServicePrincipal(jsii.String("ecs-tasks.amazonaws.com"), nil)})
				return r, "", *stack.GetLogicalId(r.Node().DefaultChild().(awsiam.CfnRole))
			},
			roleName:     "Ecs-TaskRole-1A2B3C4D5E6F",
			otherRole:    "Ecs-OtherRole-1A2B3C4D5E6F",
			wantRoleName: "{LOGICAL}",
			wantRoleID:   "{LOGICAL.RoleId}",
			wantARN:      `^arn:aws:sts::` + testAccount + `:assumed-role/Ecs-TaskRole-1A2B3C4D5E6F/(?:[0-9a-f]{32})$`,
		},
		{
			// the provisioner regexp-quotes the deployed name: "." is no
			// wildcard
			name:    "role of the app with an explicit name",
			pattern: ecsTask,
			session: "0123456789abcdef0123456789abcdef",
			role: func(stack awscdk.Stack) (awsiam.IRole, string, string) {
				r := awsiam.NewRole(stack, jsii.String("TaskRole"), &awsiam.RoleProps{RoleName: jsii.String("ecs.task"), AssumedBy: awsiam.NewServicePrincipal(jsii.String("ecs-tasks.amazonaws.com"), nil)})
				return r, "", *stack.GetLogicalId(r.Node().DefaultChild().(awsiam.CfnRole))
			},
			roleName:     "ecs.task",
			otherRole:    "ecsXtask",
			wantRoleName: "{LOGICAL}",
			wantRoleID:   "{LOGICAL.RoleId}",
			wantARN:      `^arn:aws:sts::` + testAccount + `:assumed-role/ecs\.task/(?:[0-9a-f]{32})$`,
		},
		{
			// an alternation stays inside the anchors: its last branch
			// alone must not admit another account or role
			name:    "imported role, pattern with alternatives",
			pattern: ecsTask + `|i-[0-9a-f]{17}`,
			session: "i-0123456789abcdef0",
			role: func(stack awscdk.Stack) (awsiam.IRole, string, string) {
				return awsiam.Role_FromRoleArn(stack, jsii.String("TaskRole"), jsii.String("arn:aws:iam::"+testAccount+":role/ecs.task"), nil), testRoleID, ""
			},
			roleName:     "ecs.task",
			otherRole:    "ecsXtask",
			wantRoleName: "ecs.task",
			wantRoleID:   testRoleID,
			wantARN:      `^arn:aws:sts::` + testAccount + `:assumed-role/ecs\.task/(?:[0-9a-f]{32}|i-[0-9a-f]{17})$`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// given a role whose sessions vary (ECS task: session = task ID) made assumable with its unique ID
			app := newTestApp(t, false, nil)
			stack := awscdk.NewStack(app, jsii.String("Ecs"), &awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("us-east-1")}})
			role, uniqueID, logical := tt.role(stack)
			id := NewAssumableIdentity(stack, "TaskIdentity", &AssumableIdentityProps{
				Role:         role,
				RoleUniqueID: uniqueID,
				Group:        testGroup,
				Name:         "ecs-task",
				Roles:        []string{"registry.pull"},
				Trust:        SessionPattern(tt.pattern),
				Provisioner:  testSettings(),
			})

			// when it is synthesized
			d := docOf(t, templateOf(t, stack))

			// then the trust is structured: account, partition, role name and unique ID, and the session pattern as given
			_, identity := d.one(t, IdentityResourceType)
			for k, want := range map[string]string{
				"AwsAccount": testAccount, "AwsPartition": "{AWS::Partition}", "AwsSessionPattern": tt.pattern, "Roles": "registry.pull", "Trust": "CallerIdentity",
				"AwsRoleName": strings.ReplaceAll(tt.wantRoleName, "LOGICAL", logical), "AwsRoleId": strings.ReplaceAll(tt.wantRoleID, "LOGICAL", logical),
			} {
				if got := render(identity[k]); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if _, ok := identity["AwsSession"]; ok {
				t.Errorf("identity has AwsSession next to the pattern")
			}

			// and the trust, as deployed, passes the provisioner's validation and admits a task of this role and nothing else
			deployed := map[string]string{"AWS::Partition": "aws", logical: tt.roleName, logical + ".RoleId": testRoleID}
			tr := trust.AWS{SessionPattern: tt.pattern}
			for _, f := range []struct {
				dst  *string
				prop string
			}{{&tr.Account, "AwsAccount"}, {&tr.Partition, "AwsPartition"}, {&tr.RoleName, "AwsRoleName"}, {&tr.RoleID, "AwsRoleId"}} {
				*f.dst = resolve(t, identity[f.prop], deployed)
			}
			if err := tr.Validate(); err != nil {
				t.Fatalf("the deployed trust would be refused by the provisioner: %v", err)
			}
			arnPattern, userIDPattern := tr.AWSIdentity().GetArnPattern(), tr.AWSIdentity().GetUserIdPattern()
			if arnPattern != tt.wantARN {
				t.Errorf("built arn_pattern = %q, want %q", arnPattern, tt.wantARN)
			}
			arnRE := regexp.MustCompile(arnPattern)
			userRE := regexp.MustCompile(userIDPattern)
			task := tt.session
			for _, tc := range []struct {
				name, arn, userID string
				want              bool
			}{
				{"this role's task", "arn:aws:sts::" + testAccount + ":assumed-role/" + tt.roleName + "/" + task, testRoleID + ":" + task, true},
				{"another role", "arn:aws:sts::" + testAccount + ":assumed-role/" + tt.otherRole + "/" + task, testRoleID + ":" + task, false},
				{"another partition", "arn:aws-cn:sts::" + testAccount + ":assumed-role/" + tt.roleName + "/" + task, testRoleID + ":" + task, false},
				{"another account", "arn:aws:sts::999999999999:assumed-role/" + tt.roleName + "/" + task, "AROA9999999999ABCDEFG:" + task, false},
				{"a re-created role (new unique ID)", "arn:aws:sts::" + testAccount + ":assumed-role/" + tt.roleName + "/" + task, "AROA9999999999ABCDEFG:" + task, false},
				{"a session that is no task ID", "arn:aws:sts::" + testAccount + ":assumed-role/" + tt.roleName + "/not-a-task", testRoleID + ":not-a-task", false},
				{"a task ID with a suffix", "arn:aws:sts::" + testAccount + ":assumed-role/" + tt.roleName + "/" + task + "x", testRoleID + ":" + task + "x", false},
			} {
				if got := arnRE.MatchString(tc.arn) && userRE.MatchString(tc.userID); got != tc.want {
					t.Errorf("%s: match(%s, %s) = %v, want %v (patterns %s and %s)", tc.name, tc.arn, tc.userID, got, tc.want, arnRE, userRE)
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
		})
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
