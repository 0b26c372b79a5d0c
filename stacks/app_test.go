package stacks

import (
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"
)

func TestConfigFromContext(t *testing.T) {
	tests := []struct {
		name    string
		context map[string]interface{}
		want    func(*AppConfig) // checks on the config when there is no error
		wantErr []string
	}{
		{
			name:    "defaults",
			context: map[string]interface{}{},
			want: func(c *AppConfig) {
				if c.Provisioner.Issuer != DefaultIssuer || c.Provisioner.APIURL != DefaultAPIURL || !c.CreateGroup ||
					c.GroupName != DefaultGroupName || !reflect.DeepEqual(c.IdentityRoles, []string{"viewer"}) ||
					c.ProvisionerStackName != DefaultProvisionerStackName || c.AwsAuthStackName != DefaultAwsAuthStackName || !c.TrustCheck {
					panic("unexpected defaults")
				}
			},
		},
		{
			name: "strings from -c",
			context: map[string]interface{}{
				CtxGroup: testGroup, CtxProvisionerIdentity: testProvisioner, CtxCreateGroup: "false",
				CtxIdentityRoles: "viewer, registry.pull", CtxIssuer: "http://127.0.0.1:8080",
			},
			want: func(c *AppConfig) {
				if c.CreateGroup || !reflect.DeepEqual(c.IdentityRoles, []string{"viewer", "registry.pull"}) || c.Provisioner.Issuer != "http://127.0.0.1:8080" {
					panic("unexpected config")
				}
			},
		},
		{
			name:    "trust check off",
			context: map[string]interface{}{CtxTrustCheck: "false"},
			want: func(c *AppConfig) {
				if c.TrustCheck {
					panic("trustCheck=false left the check on")
				}
			},
		},
		{name: "trust check not a boolean", context: map[string]interface{}{CtxTrustCheck: "no"},
			wantErr: []string{`context key "trustCheck"`}},
		{name: "group not a UIDP", context: map[string]interface{}{CtxGroup: "acme.com"},
			wantErr: []string{`context key "group": group "acme.com" is not a Chainguard UIDP`, "chainctl iam organizations list"}},
		{name: "provisioner identity with uppercase", context: map[string]interface{}{CtxProvisionerIdentity: strings.ToUpper(testProvisioner)},
			wantErr: []string{`context key "provisionerIdentity"`, "uppercase", "TrustCommand output"}},
		{name: "issuer over plain http", context: map[string]interface{}{CtxIssuer: "http://issuer.example.com"},
			wantErr: []string{`context key "issuer": issuer URL "http://issuer.example.com" uses plain http`}},
		{name: "API URL with a path", context: map[string]interface{}{CtxAPIURL: "https://console-api.enforce.dev/v1"},
			wantErr: []string{`context key "apiUrl"`, "without path"}},
		{name: "createGroup not a boolean", context: map[string]interface{}{CtxCreateGroup: "yes please"},
			wantErr: []string{`context key "createGroup": "yes please" is not a boolean`}},
		{name: "roles list with a number", context: map[string]interface{}{CtxIdentityRoles: []interface{}{"viewer", 1.0}},
			wantErr: []string{`context key "identityRoles": list element 1`}},
		{name: "empty roles", context: map[string]interface{}{CtxIdentityRoles: " , "},
			wantErr: []string{`context key "identityRoles": the list is empty`}},
		{name: "identity name of 2 characters", context: map[string]interface{}{CtxIdentityName: "ab"},
			wantErr: []string{`context key "identityName": identity name "ab" is too short: Chainguard names are 3 to 63 characters`}},
		{name: "group name of 64 characters", context: map[string]interface{}{CtxGroupName: strings.Repeat("g", 64)},
			wantErr: []string{`context key "groupName": group name "gggg`, "is 64 characters long"}},
		{name: "provisioner identity name of 1 character", context: map[string]interface{}{CtxProvisionerIdentityName: "p"},
			wantErr: []string{`context key "provisionerIdentityName": provisioner identity name "p" is too short`}},
		{name: "function name too long", context: map[string]interface{}{CtxFunctionName: strings.Repeat("x", 65)},
			wantErr: []string{`context key "functionName": function name`}},
		{name: "stack name with underscore", context: map[string]interface{}{CtxAwsAuthStackName: "aws_auth"},
			wantErr: []string{`context key "awsAuthStackName": stack name "aws_auth" is not valid`}},
		{name: "group name as a number", context: map[string]interface{}{CtxGroupName: 42.0},
			wantErr: []string{`context key "groupName": expected a string, got 42`}},
		{name: "parameter name without slash", context: map[string]interface{}{CtxServiceTokenParameter: "service-token"},
			wantErr: []string{`context key "serviceTokenParameter": SSM parameter name "service-token" is not valid`}},
		{
			name:    "web-identity mode",
			context: map[string]interface{}{CtxTrust: "webIdentity", CtxWebIdentityIssuerParameter: "/team/issuer"},
			want: func(c *AppConfig) {
				if c.Trust != TrustWebIdentity || c.Provisioner.WebIdentityIssuerParameter != "/team/issuer" {
					panic("unexpected config")
				}
			},
		},
		{
			name:    "default trust mode",
			context: map[string]interface{}{},
			want: func(c *AppConfig) {
				if c.Trust != TrustCallerIdentity || c.Provisioner.WebIdentityIssuerParameter != DefaultWebIdentityIssuerParameter {
					panic("unexpected defaults")
				}
			},
		},
		{name: "unknown trust mode", context: map[string]interface{}{CtxTrust: "web-identity"},
			wantErr: []string{`context key "trust": "web-identity" is not a trust mode: use "callerIdentity"`, `or "webIdentity"`}},
		{name: "trust mode as a boolean", context: map[string]interface{}{CtxTrust: true},
			wantErr: []string{`context key "trust": expected a string`}},
		{
			name:    "default architecture",
			context: map[string]interface{}{},
			want: func(c *AppConfig) {
				if c.Architecture != ArchitectureARM64 {
					panic("unexpected default architecture " + string(c.Architecture))
				}
			},
		},
		{
			name:    "x86_64 architecture",
			context: map[string]interface{}{CtxArchitecture: "x86_64"},
			want: func(c *AppConfig) {
				if c.Architecture != ArchitectureX86_64 {
					panic("unexpected architecture " + string(c.Architecture))
				}
			},
		},
		{name: "Go's name for x86_64", context: map[string]interface{}{CtxArchitecture: "amd64"},
			wantErr: []string{`context key "architecture": "amd64" is not a Lambda architecture: use "arm64" (the default) or "x86_64" (Lambda's name for it is "x86_64")`}},
		{name: "unknown architecture", context: map[string]interface{}{CtxArchitecture: "riscv64"},
			wantErr: []string{`context key "architecture": "riscv64" is not a Lambda architecture: use "arm64" (the default) or "x86_64"`}},
		{name: "architecture as a list", context: map[string]interface{}{CtxArchitecture: []interface{}{"arm64"}},
			wantErr: []string{`context key "architecture": expected a string`}},
		{name: "issuer parameter name without slash", context: map[string]interface{}{CtxWebIdentityIssuerParameter: "issuer"},
			wantErr: []string{`context key "webIdentityIssuerParameter": SSM parameter name "issuer" is not valid`}},
		{name: "two bad keys reported together", context: map[string]interface{}{CtxGroup: "x", CtxIssuer: "ftp://x"},
			wantErr: []string{`context key "group"`, `context key "issuer"`}},
	}
	// one app per case would cost a jsii round trip each; a child scope with its own context is enough
	app := newTestApp(t, false, nil)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given the context
			scope := awscdk.NewStage(app, jsii.Sprintf("Case%d", i), nil)
			for k, v := range tc.context {
				scope.Node().SetContext(jsii.String(k), v)
			}

			// when it is read
			cfg, err := ConfigFromContext(scope.Node())

			// then the config or the error is the expected one
			if (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("ConfigFromContext() error = %v, wantErr %v", err, tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			if tc.want != nil {
				must(t, "config", func() { tc.want(&cfg) })
			}
		})
	}
}

func TestNewAppMissingContext(t *testing.T) {
	tests := []struct {
		name            string
		context         map[string]interface{}
		wantProvisioner []string // error annotations of the provisioner stack
		wantAwsAuth     []string
	}{
		{
			name:            "nothing set",
			context:         map[string]interface{}{},
			wantProvisioner: []string{`context key "group" is not set`},
			wantAwsAuth:     []string{`context key "group" is not set`, `context key "provisionerIdentity" is not set`},
		},
		{
			name:        "before the trust step",
			context:     map[string]interface{}{CtxGroup: testGroup},
			wantAwsAuth: []string{`context key "provisionerIdentity" is not set`, "cdk deploy ChainguardProvisioner", "TrustCommand", "-c provisionerIdentity=<id>"},
		},
		{
			name:    "complete",
			context: map[string]interface{}{CtxGroup: testGroup, CtxProvisionerIdentity: testProvisioner},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given an app with the context
			app := newTestApp(t, false, tc.context)

			// when it is built and synthesized
			if err := NewApp(app); err != nil {
				t.Fatalf("NewApp() = %v", err)
			}
			if err := Synth(app); err != nil {
				t.Fatalf("Synth() = %v", err)
			}

			// then only the stacks that need a missing value carry an error saying how to obtain it
			for stackName, want := range map[string][]string{DefaultProvisionerStackName: tc.wantProvisioner, DefaultAwsAuthStackName: tc.wantAwsAuth} {
				stack := awscdk.Stack_Of(app.Node().FindChild(jsii.String(stackName)))
				msgs := errorMessages(t, stack, ".*")
				if len(want) == 0 && len(msgs) > 0 {
					t.Errorf("%s has errors %v, want none", stackName, msgs)
				}
				all := strings.Join(msgs, "\n")
				for _, w := range want {
					if !strings.Contains(all, w) {
						t.Errorf("%s errors do not contain %q:\n%s", stackName, w, all)
					}
				}
			}
		})
	}
}

func TestNewAppMalformedContext(t *testing.T) {
	// given an app whose group is not a UIDP
	app := newTestApp(t, false, map[string]interface{}{CtxGroup: "not-a-group"})

	// when it is built
	err := NewApp(app)

	// then nothing is built and the error names the key
	if err == nil || !strings.Contains(err.Error(), `context key "group"`) {
		t.Fatalf("NewApp() = %v, want an error naming the context key", err)
	}
	if n := len(*app.Node().Children()); n != 0 {
		t.Errorf("app has %d children after a context error, want 0", n)
	}
}

// errorMessages returns the error annotations of stack whose message
// matches re.
func errorMessages(t testing.TB, stack awscdk.Stack, re string) []string {
	t.Helper()
	var msgs []string
	must(t, "annotations", func() {
		for _, m := range *assertions.Annotations_FromStack(stack).FindError(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String(re))) {
			msgs = append(msgs, render(m.Entry.Data))
		}
	})
	return msgs
}

func TestCdkNag(t *testing.T) {
	for _, mode := range []TrustMode{TrustCallerIdentity, TrustWebIdentity} {
		t.Run(string(mode), func(t *testing.T) {
			// given the whole app in the trust mode with the AwsSolutions checks NewApp applies
			app := newTestApp(t, false, map[string]interface{}{CtxGroup: testGroup, CtxProvisionerIdentity: testProvisioner, CtxTrust: string(mode)})
			if err := NewApp(app); err != nil {
				t.Fatalf("NewApp() = %v", err)
			}
			// and, as a control, a stack with a finding the checks must report
			control := awscdk.NewStack(app, jsii.String("Control"), nil)
			awsiam.NewRole(control, jsii.String("Role"), &awsiam.RoleProps{
				AssumedBy:       awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
				ManagedPolicies: &[]awsiam.IManagedPolicy{awsiam.ManagedPolicy_FromAwsManagedPolicyName(jsii.String("service-role/AWSLambdaBasicExecutionRole"))},
			})

			// when it is synthesized
			if err := Synth(app); err != nil {
				t.Fatalf("Synth() = %v", err)
			}

			// then the app's stacks have no unsuppressed AwsSolutions error or warning
			for _, name := range []string{DefaultProvisionerStackName, DefaultAwsAuthStackName} {
				stack := awscdk.Stack_Of(app.Node().FindChild(jsii.String(name)))
				if msgs := errorMessages(t, stack, "AwsSolutions-.*"); len(msgs) > 0 {
					t.Errorf("%s: cdk-nag errors:\n%s", name, strings.Join(msgs, "\n"))
				}
				must(t, "warnings", func() {
					w := *assertions.Annotations_FromStack(stack).FindWarning(jsii.String("*"), assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*")))
					if len(w) > 0 {
						t.Errorf("%s: %d cdk-nag warnings, first: %s", name, len(w), render(w[0].Entry.Data))
					}
				})
			}
			// and the control's managed policy is reported (the test reads real findings)
			if msgs := errorMessages(t, control, "AwsSolutions-IAM4.*"); len(msgs) != 1 {
				t.Errorf("control: IAM4 findings = %v, want exactly one", msgs)
			}
		})
	}
}

func TestDefaultRolesNotShared(t *testing.T) {
	// given a config read with the default roles, which its caller then changes
	app := newTestApp(t, false, nil)
	cfg, err := ConfigFromContext(app.Node())
	if err != nil {
		t.Fatalf("ConfigFromContext() error = %v", err)
	}
	cfg.IdentityRoles[0] = "owner"
	roles := DefaultRoles()
	roles[0] = "editor"

	// when the defaults are read again
	again, err := ConfigFromContext(app.Node())
	if err != nil {
		t.Fatalf("ConfigFromContext() error = %v", err)
	}

	// then they are unchanged
	for name, got := range map[string][]string{"DefaultRoles()": DefaultRoles(), "IdentityRoles": again.IdentityRoles} {
		if !reflect.DeepEqual(got, []string{"viewer"}) {
			t.Errorf("%s = %q after a caller changed its copy, want [viewer]", name, got)
		}
	}
}
