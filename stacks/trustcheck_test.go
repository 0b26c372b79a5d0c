package stacks

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"chainguard.dev/sdk/proto/capabilities"
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// checkedStack is a stack with a role, a function running as it, and an
// identity of the role configured on the function, with Check as given.
func checkedStack(t testing.TB, check bool, tr Trust, roles []string, settings *ProvisionerSettings) (awscdk.Stack, AssumableIdentity, awslambda.Function) {
	t.Helper()
	app := newTestApp(t, false, nil)
	stack := awscdk.NewStack(app, jsii.String("Checked"), &awscdk.StackProps{Env: testEnv})
	role := lambdaRole(stack)
	id := NewAssumableIdentity(stack, "Identity", &AssumableIdentityProps{
		Role: role, Group: testGroup, Name: "checked", Trust: tr, Roles: roles, Provisioner: settings, Check: check,
	})
	fn := awslambda.NewFunction(stack, jsii.String("Fn"), &awslambda.FunctionProps{
		FunctionName: jsii.String("my-function"),
		Runtime:      awslambda.Runtime_NODEJS_22_X(), Handler: jsii.String("index.handler"), Role: role,
		Code: awslambda.Code_FromInline(jsii.String("unused")),
	})
	id.ConfigureFunction(fn)
	return stack, id, fn
}

func TestAwsAuthStackSkipTrustCheck(t *testing.T) {
	// given the reference setup told to skip the check (as for an engine
	// whose functions cannot answer it during the deploy)
	app := newTestApp(t, false, nil)
	stack := NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup, SkipTrustCheck: true})

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))

	// then it has no check, no Lambda permission and no role-ARN lookup, and the identity is still there
	for _, typ := range []string{TrustCheckResourceType, "AWS::Lambda::Permission"} {
		if ids, _ := d.resources(typ); len(ids) != 0 {
			t.Errorf("%s resources with SkipTrustCheck: %v", typ, ids)
		}
	}
	if ids := d.ssmLookups(DefaultRoleArnParameter); len(ids) != 0 {
		t.Errorf("the provisioner role ARN is read with SkipTrustCheck: %v", ids)
	}
	d.one(t, IdentityResourceType)
}

func TestAwsAuthStackChecksItsFunction(t *testing.T) {
	// given the reference setup
	app := newTestApp(t, false, nil)
	stack := NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup})

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))

	// then the function is checked as the identity, through the provisioner, listing the group's repos (viewer may)
	checkID, check := d.one(t, TrustCheckResourceType)
	identityID, _ := d.one(t, IdentityResourceType)
	fnID, _ := d.one(t, "AWS::Lambda::Function")
	tokenParam := d.ssmLookups(DefaultServiceTokenParameter)
	for k, want := range map[string]string{
		"FunctionName":        "{" + fnID + ".Arn}",
		"Identity":            "{" + identityID + "}",
		"Group":               testGroup,
		"ListRepos":           "true",
		"ServiceToken":        "{" + tokenParam[0] + "}",
		"ServiceTimeout":      "180",
		"ProvisionerIdentity": testProvisioner,
		"Issuer":              DefaultIssuer,
		"ApiUrl":              DefaultAPIURL,
	} {
		if got := render(check[k]); got != want {
			t.Errorf("check %s = %q, want %q", k, got, want)
		}
	}
	// and the provisioner role, read once from the provisioner stack's parameter, may invoke that function alone
	roleParam := d.ssmLookups(DefaultRoleArnParameter)
	if len(roleParam) != 1 {
		t.Fatalf("lookups of %s = %v, want one", DefaultRoleArnParameter, roleParam)
	}
	permID, perm := d.one(t, "AWS::Lambda::Permission")
	if want := map[string]interface{}{
		"Action":       "lambda:InvokeFunction",
		"FunctionName": map[string]interface{}{"Fn::GetAtt": []interface{}{fnID, "Arn"}},
		"Principal":    map[string]interface{}{"Ref": roleParam[0]},
	}; !reflect.DeepEqual(perm, want) {
		t.Errorf("permission = %v, want exactly %v", perm, want)
	}
	// and the check runs once the permission exists (the identity and the function through its references)
	if !d.dependsOn(t, checkID, permID) {
		t.Errorf("%s does not depend on %s", checkID, permID)
	}
	// and it is deleted with the stack (the provisioner answers Delete without a call)
	if got := d.resource(t, checkID)["DeletionPolicy"]; got != "Delete" {
		t.Errorf("DeletionPolicy = %v, want Delete", got)
	}
}

func TestTrustCheckAddsNoIdentityPolicy(t *testing.T) {
	for name, tr := range map[string]Trust{"caller identity": ExactSession("my-function"), "web identity": WebIdentity(&WebIdentityProps{Issuer: testFederationIssuer})} {
		t.Run(name, func(t *testing.T) {
			// given the same function and identity without and with the check
			without, _, _ := checkedStack(t, false, tr, nil, testSettings())
			with, _, _ := checkedStack(t, true, tr, nil, testSettings())

			// when both are synthesized
			dw, dc := docOf(t, templateOf(t, without)), docOf(t, templateOf(t, with))

			// then the check adds no identity-based policy and changes no role
			for _, typ := range []string{"AWS::IAM::Policy", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy"} {
				ids, props := dw.resources(typ)
				idsC, propsC := dc.resources(typ)
				if !reflect.DeepEqual(ids, idsC) || !reflect.DeepEqual(props, propsC) {
					t.Errorf("%s differ with the check:\nwithout %v %v\nwith    %v %v", typ, ids, props, idsC, propsC)
				}
			}
			// and adds exactly the check and one resource-based permission
			if ids, _ := dw.resources(TrustCheckResourceType); len(ids) != 0 {
				t.Errorf("checks without Check = %v", ids)
			}
			if ids, _ := dw.resources("AWS::Lambda::Permission"); len(ids) != 0 {
				t.Errorf("permissions without Check = %v", ids)
			}
			if ids := dw.ssmLookups(DefaultRoleArnParameter); len(ids) != 0 {
				t.Errorf("the provisioner role ARN is read without Check: %v", ids)
			}
			dc.one(t, TrustCheckResourceType)
			dc.one(t, "AWS::Lambda::Permission")
			// and with web identity, the check also waits for the function's token grant
			if policies, _ := dc.policiesWithAction("sts:GetWebIdentityToken"); len(policies) == 1 {
				checkID, _ := dc.one(t, TrustCheckResourceType)
				if !dc.dependsOn(t, checkID, policies[0]) {
					t.Errorf("the check does not depend on the grant %s", policies[0])
				}
			} else if name == "web identity" {
				t.Errorf("web identity grants = %v, want one", policies)
			}
		})
	}
}

func TestTrustCheckCdkNag(t *testing.T) {
	// given a checked function in a stack under the AwsSolutions checks
	stack, _, _ := checkedStack(t, true, ExactSession("my-function"), nil, testSettings())
	awscdk.Aspects_Of(stack).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	// and, as a control, a role with a finding the checks must report
	awsiam.NewRole(stack, jsii.String("Control"), &awsiam.RoleProps{
		AssumedBy:       awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		ManagedPolicies: &[]awsiam.IManagedPolicy{awsiam.ManagedPolicy_FromAwsManagedPolicyName(jsii.String("service-role/AWSLambdaBasicExecutionRole"))},
	})

	// when it is synthesized
	templateOf(t, stack)

	// then nothing but the control (and the stand-in function) raises a finding: not the check, its permission or the identity
	var findings []string
	control := 0
	must(t, "annotations", func() {
		for _, m := range append(*assertions.Annotations_FromStack(stack).FindError(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))),
			*assertions.Annotations_FromStack(stack).FindWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*")))...) {
			switch {
			case strings.HasPrefix(*m.Id, "/Checked/Control/"):
				control++
				continue
			case strings.HasPrefix(*m.Id, "/Checked/Fn/"):
				continue // the Node.js stand-in's runtime (AwsSolutions-L1); TestCdkNag covers the app's Go functions
			}
			findings = append(findings, *m.Id+": "+render(m.Entry.Data))
		}
	})
	if len(findings) > 0 {
		t.Errorf("cdk-nag findings:\n%s", strings.Join(findings, "\n"))
	}
	if control != 1 {
		t.Errorf("control findings = %d, want 1 (the test reads real findings)", control)
	}
}

func TestTrustCheckFingerprint(t *testing.T) {
	// given a checked function
	stack, _, fn := checkedStack(t, true, ExactSession("my-function"), nil, testSettings())
	fn.AddEnvironment(jsii.String("OTHER"), jsii.String("x"), nil)

	// when it is synthesized
	d := docOf(t, templateOf(t, stack))
	_, check := d.one(t, TrustCheckResourceType)
	roleID := *stack.GetLogicalId(stack.Node().FindChild(jsii.String("Role")).Node().DefaultChild().(awscdk.CfnElement))
	identityID, _ := d.one(t, IdentityResourceType)
	deployed := map[string]string{
		"AWS::AccountId": testAccount, "AWS::Partition": "aws", "AWS::Region": "us-east-1",
		roleID: "Checked-Role-1", roleID + ".Arn": "arn:aws:iam::" + testAccount + ":role/Checked-Role-1", roleID + ".RoleId": testRoleID,
		identityID: testGroup + "/0123456789abcdef", identityID + ".Roles": "viewer",
	}
	fingerprint := func(values map[string]string) map[string]interface{} {
		t.Helper()
		var out map[string]interface{}
		if err := json.Unmarshal([]byte(resolve(t, check["Fingerprint"], values)), &out); err != nil {
			t.Fatalf("the Fingerprint is not JSON once deployed: %v", err)
		}
		return out
	}
	got := fingerprint(deployed)

	// then, as deployed, it names the identity, its trust and roles, and the function's code, role and identity environment
	want := map[string]interface{}{
		"Identity": testGroup + "/0123456789abcdef",
		"Trust": map[string]interface{}{
			"AwsAccount": testAccount, "AwsPartition": "aws", "AwsRoleName": "Checked-Role-1", "AwsRoleId": testRoleID,
			"AwsSession": "my-function", "Group": testGroup, "Roles": "viewer", "Trust": "CallerIdentity",
		},
		"Function": map[string]interface{}{
			"ZipFile": "unused", "Role": "arn:aws:iam::" + testAccount + ":role/Checked-Role-1", "Runtime": "nodejs22.x", "Handler": "index.handler",
			"Environment": map[string]interface{}{
				EnvIdentity: testGroup + "/0123456789abcdef", EnvGroup: testGroup, EnvIssuer: DefaultIssuer, EnvAPI: DefaultAPIURL, EnvRoles: "viewer",
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := json.MarshalIndent(got, "", " ")
		t.Errorf("fingerprint =\n%s", gotJSON)
	}
	// and it changes when a deploy-time value it names does (a role re-created under its name, roles bound)
	for _, changed := range []string{roleID + ".RoleId", identityID + ".Roles", identityID} {
		values := map[string]string{}
		for k, v := range deployed {
			values[k] = v
		}
		values[changed] += "-changed"
		if reflect.DeepEqual(fingerprint(values), got) {
			t.Errorf("the fingerprint does not change with %s", changed)
		}
	}
}

func TestTrustCheckListRepos(t *testing.T) {
	for _, tt := range []struct {
		roles []string
		want  string
	}{
		{nil, "true"}, // viewer
		{[]string{"registry.pull"}, "true"},
		{[]string{"apk.pull"}, "false"},
		{[]string{"apk.pull", "editor"}, "true"},
		{[]string{"libraries.java.pull"}, "false"},
	} {
		t.Run(strings.Join(tt.roles, ","), func(t *testing.T) {
			// given an identity with the roles, checked
			stack, _, _ := checkedStack(t, true, ExactSession("my-function"), tt.roles, testSettings())

			// when it is synthesized
			_, check := docOf(t, templateOf(t, stack)).one(t, TrustCheckResourceType)

			// then the check lists repos exactly when a role may
			if check["ListRepos"] != tt.want {
				t.Errorf("ListRepos = %v, want %s", check["ListRepos"], tt.want)
			}
		})
	}
}

// TestRepoListRolesMatchTheSDK keeps repoListRoles equal to the built-in
// roles whose SDK capability sets hold repo.list.
func TestRepoListRolesMatchTheSDK(t *testing.T) {
	builtin := map[string][]capabilities.Capability{
		"owner": capabilities.OwnerCaps, "editor": capabilities.EditorCaps, "viewer": capabilities.ViewerCaps,
		"console_viewer": capabilities.ConsoleViewerCaps, "registry.pull": capabilities.RegistryPullCaps,
		"registry.push": capabilities.RegistryPushCaps, "registry.pull_token_creator": capabilities.RegistryPullTokenCreatorCaps,
		"apk.pull": capabilities.APKPullCaps, "libraries.java.pull": capabilities.LibrariesJavaPullCaps,
		"libraries.python.pull": capabilities.LibrariesPythonPullCaps, "libraries.javascript.pull": capabilities.LibrariesJavascriptPullCaps,
		"guardener.user": capabilities.GuardenerUserCaps, "guardener.admin": capabilities.GuardenerAdminCaps,
		"actions.viewer": capabilities.ActionsViewerCaps, "argos.osv.reader": capabilities.ArgosOSVReaderCaps,
	}
	var want []string
	for name, caps := range builtin {
		if slices.Contains(caps, capabilities.Capability_CAP_REPO_LIST) {
			want = append(want, name)
		}
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(repoListRoles))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("repoListRoles = %v, want the roles with repo.list %v", got, want)
	}
}

func TestTrustCheckWiring(t *testing.T) {
	t.Run("two functions, one lookup", func(t *testing.T) {
		// given an identity checked on two functions, the first configured twice
		stack, id, fn := checkedStack(t, true, ExactSession("my-function"), nil, testSettings())
		id.ConfigureFunction(fn)
		other := awslambda.NewFunction(stack, jsii.String("Other"), &awslambda.FunctionProps{
			Runtime: awslambda.Runtime_NODEJS_22_X(), Handler: jsii.String("index.handler"), Code: awslambda.Code_FromInline(jsii.String("unused")),
		})
		id.ConfigureFunction(other)

		// when it is synthesized
		d := docOf(t, templateOf(t, stack))

		// then each function has one check and one permission, and the role ARN is read once
		if ids, _ := d.resources(TrustCheckResourceType); len(ids) != 2 {
			t.Errorf("checks = %v, want 2", ids)
		}
		if ids, _ := d.resources("AWS::Lambda::Permission"); len(ids) != 2 {
			t.Errorf("permissions = %v, want 2", ids)
		}
		if ids := d.ssmLookups(DefaultRoleArnParameter); len(ids) != 1 {
			t.Errorf("role ARN lookups = %v, want 1", ids)
		}
	})
	t.Run("role ARN given", func(t *testing.T) {
		// given provisioner settings naming the role ARN
		const arn = "arn:aws:iam::" + testAccount + ":role/ChainguardProvisioner-Role1ABCDEF"
		stack, _, _ := checkedStack(t, true, ExactSession("my-function"), nil, &ProvisionerSettings{Identity: testProvisioner, RoleArn: arn})

		// when it is synthesized
		d := docOf(t, templateOf(t, stack))

		// then the permission names it, and no parameter is read
		if _, perm := d.one(t, "AWS::Lambda::Permission"); perm["Principal"] != arn {
			t.Errorf("Principal = %v, want %s", perm["Principal"], arn)
		}
		if ids := d.ssmLookups(DefaultRoleArnParameter); len(ids) != 0 {
			t.Errorf("role ARN lookups = %v, want none", ids)
		}
	})
	t.Run("own parameter", func(t *testing.T) {
		// given provisioner settings naming another parameter
		stack, _, _ := checkedStack(t, true, ExactSession("my-function"), nil, &ProvisionerSettings{Identity: testProvisioner, RoleArnParameter: "/team/provisioner-role"})

		// when it is synthesized, then that parameter is read
		if ids := docOf(t, templateOf(t, stack)).ssmLookups("/team/provisioner-role"); len(ids) != 1 {
			t.Errorf("lookups of /team/provisioner-role = %v, want 1", ids)
		}
	})
}

func TestTrustCheckValidation(t *testing.T) {
	for _, tt := range []struct {
		name  string
		build func(s awscdk.Stack)
		want  string
	}{
		{
			name: "check without a function",
			build: func(s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Check = true
				NewAssumableIdentity(s, "Id", p)
			},
			want: "[S/Id] Check: no function to check: call ConfigureFunction(fn)",
		},
		{
			name: "role ARN that is not one",
			build: func(s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = &ProvisionerSettings{Identity: testProvisioner, RoleArn: "ChainguardProvisioner-Role"}
				NewAssumableIdentity(s, "Id", p)
			},
			want: `Provisioner.RoleArn: "ChainguardProvisioner-Role" is not an IAM role ARN`,
		},
		{
			name: "bad role ARN parameter",
			build: func(s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = &ProvisionerSettings{Identity: testProvisioner, RoleArnParameter: "role-arn"}
				NewAssumableIdentity(s, "Id", p)
			},
			want: `Provisioner.RoleArnParameter: SSM parameter name "role-arn" is not valid`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given the construct of the case
			app := newTestApp(t, false, nil)
			stack := awscdk.NewStack(app, jsii.String("S"), nil)
			must(t, "build", func() { tt.build(stack) })

			// when the app is synthesized
			err := Synth(app)

			// then synth fails, naming the property and the fix
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Synth() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
