package stacks

import (
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// lambdaRole is a role in the app (its unique ID comes from Fn::GetAtt).
func lambdaRole(scope constructs.Construct) awsiam.Role {
	return awsiam.NewRole(scope, jsii.String("Role"), &awsiam.RoleProps{AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil)})
}

// validIdentity returns valid props for an identity of role.
func validIdentity(role awsiam.IRole) *AssumableIdentityProps {
	return &AssumableIdentityProps{Role: role, Group: testGroup, Name: "identity", Trust: ExactSession("my-function"), Provisioner: testSettings()}
}

// propertyRE finds the "[construct path] Property:" that starts each
// validation message.
var propertyRE = regexp.MustCompile(`\[[^\]\s]+\] [A-Za-z.]+:`)

func TestSynthValidation(t *testing.T) {
	tests := []struct {
		name string
		// build adds constructs to stack "S" of app.
		build   func(app awscdk.App, stack awscdk.Stack)
		wantErr []string // substrings of the synth error; nil: synth succeeds
		wantNot []string // substrings the synth error must not hold
	}{
		{
			name:  "valid identity",
			build: func(_ awscdk.App, s awscdk.Stack) { NewAssumableIdentity(s, "Id", validIdentity(lambdaRole(s))) },
		},
		{
			name: "valid session pattern for any session of the role",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`.+`)
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			name: "valid session pattern with a negated class",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`[^/]+`)
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			name: "valid session pattern with a literal dollar",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`[0-9a-f]{32}\$?`)
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			name: "session pattern that matches no valid session name",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`a\$b`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust: the session pattern "a\\$b" matches no valid role session name (AWS session names are 2 to 64 characters from letters, digits and "+=,.@_-")`},
		},
		{
			name: "session pattern for one-character sessions",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`[a-z]`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust: the session pattern "[a-z]" matches no valid role session name`},
		},
		{
			name: "session pattern with an explicitly named role of the app",
			build: func(_ awscdk.App, s awscdk.Stack) {
				role := awsiam.NewRole(s, jsii.String("Role"), &awsiam.RoleProps{RoleName: jsii.String("ecs.task"), AssumedBy: awsiam.NewServicePrincipal(jsii.String("ecs-tasks.amazonaws.com"), nil)})
				p := validIdentity(role)
				p.Trust = SessionPattern(`[0-9a-f]{32}`)
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			// the provisioner regexp-quotes the deployed name
			name: "session pattern with a role named by a parameter",
			build: func(_ awscdk.App, s awscdk.Stack) {
				name := awscdk.NewCfnParameter(s, jsii.String("TaskRoleName"), nil).ValueAsString()
				role := awsiam.NewRole(s, jsii.String("Role"), &awsiam.RoleProps{RoleName: name, AssumedBy: awsiam.NewServicePrincipal(jsii.String("ecs-tasks.amazonaws.com"), nil)})
				p := validIdentity(role)
				p.Trust = SessionPattern(`[0-9a-f]{32}`)
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			name: "session pattern with an imported role named by a parameter",
			build: func(_ awscdk.App, s awscdk.Stack) {
				name := awscdk.NewCfnParameter(s, jsii.String("TaskRoleName"), nil).ValueAsString()
				p := validIdentity(awsiam.Role_FromRoleName(s, jsii.String("Role"), name, nil))
				p.RoleUniqueID = testRoleID
				p.Trust = SessionPattern(`[0-9a-f]{32}`)
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			name: "exact session with a role named by a parameter",
			build: func(_ awscdk.App, s awscdk.Stack) {
				name := awscdk.NewCfnParameter(s, jsii.String("TaskRoleName"), nil).ValueAsString()
				NewAssumableIdentity(s, "Id", validIdentity(awsiam.NewRole(s, jsii.String("Role"), &awsiam.RoleProps{RoleName: name, AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil)})))
			},
		},
		{
			name: "identity name of 2 characters",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Name = "ab"
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Name: identity name "ab" is too short: Chainguard names are 3 to 63 characters`},
		},
		{
			name: "group name of 64 characters",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewGroup(s, "G", &GroupProps{Parent: testGroup, Name: strings.Repeat("g", 64), Provisioner: testSettings()})
			},
			wantErr: []string{`[S/G] Name: group name "gggg`, `is 64 characters long: Chainguard names are 3 to 63 characters`},
		},
		{
			name: "identity description too long for the ownership marker",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Description = strings.Repeat("d", 450)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Description: description is 450 characters long", "ownership marker", "shorten the description to at most"},
		},
		{
			name: "group description of 300 characters in a nested stack (its generated name counts at 128 characters)",
			build: func(_ awscdk.App, s awscdk.Stack) {
				nested := awscdk.NewNestedStack(s, jsii.String("Nested"), nil)
				NewGroup(nested, "G", &GroupProps{Parent: testGroup, Name: "group", Description: strings.Repeat("d", 300), Provisioner: testSettings()})
			},
			wantErr: []string{"[S/Nested/G] Description: description is 300 characters long", "shorten the description to at most"},
		},
		{
			name: "group description too long for the ownership marker",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewGroup(s, "G", &GroupProps{Parent: testGroup, Name: "group", Description: strings.Repeat("d", 500), Provisioner: testSettings()})
			},
			wantErr: []string{"[S/G] Description: description is 500 characters long", "shorten the description to at most"},
		},
		{
			name: "group is not a UIDP",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Group = "example-group"
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Group: group \"example-group\" is not a Chainguard UIDP", "e.g. \"0123456789abcdef"},
		},
		{
			name: "identity name with uppercase",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Name = "My-Identity"
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Name: identity name \"My-Identity\"", "\"my-identity\""},
		},
		{
			name: "roles given as one comma-separated string",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Roles = []string{"viewer,editor"}
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Roles: role name \"viewer,editor\"", "give each role separately"},
		},
		{
			name: "session name too short",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = ExactSession("a")
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: role session name \"a\" is too short"},
		},
		{
			name: "session pattern anchored by the user",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`^task$`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: the session pattern \"^task$\" has an anchor", "leave out ^ and $"},
		},
		{
			name: "session pattern anchored at its start",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`^x`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: the session pattern \"^x\" has an anchor", "leave out ^ and $"},
		},
		{
			name: "session pattern anchored at its end",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`x$`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: the session pattern \"x$\" has an anchor", "leave out ^ and $"},
		},
		{
			name: "session pattern with multi-line anchors",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`(?m)^x`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: the session pattern \"(?m)^x\" has an anchor", "leave out ^ and $"},
		},
		{
			name: "session pattern anchored with \\A and \\z",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`\Ax\z`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust: the session pattern "\\Ax\\z" has an anchor`, "leave out ^ and $"},
		},
		{
			name: "session pattern escaping its group",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = SessionPattern(`x)|(.*`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: the session pattern \"x)|(.*\" does not compile"},
		},
		{
			name: "no trust",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = nil
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Trust: no trust: set Trust to stacks.ExactSession"},
		},
		{
			name: "no role",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(nil)
				p.Role = nil
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Role: no role"},
		},
		{
			name: "imported role without unique ID",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewAssumableIdentity(s, "Id", validIdentity(awsiam.Role_FromRoleName(s, jsii.String("R"), jsii.String("ecs-task"), nil)))
			},
			wantErr: []string{"[S/Id] RoleUniqueID: the role ecs-task is imported", "aws iam get-role --role-name ROLE --query Role.RoleId"},
		},
		{
			name: "malformed unique ID",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.RoleUniqueID = "AIDA1234567890ABCDEFG"
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] RoleUniqueID: role unique ID \"AIDA1234567890ABCDEFG\" is the unique ID of an IAM user (AIDA...): only IAM roles (AROA...) are supported"},
		},
		{
			name: "imported role name invalid",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(awsiam.Role_FromRoleArn(s, jsii.String("R"), jsii.String("arn:aws:iam::"+testAccount+":role/bad name"), nil))
				p.RoleUniqueID = testRoleID
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Role: IAM role name \"bad name\" has the character \" \""},
			wantNot: []string{"Trust:"},
		},
		{
			name: "imported role name invalid, with a session pattern",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(awsiam.Role_FromRoleArn(s, jsii.String("R"), jsii.String("arn:aws:iam::"+testAccount+":role/bad name"), nil))
				p.RoleUniqueID = testRoleID
				p.Trust = SessionPattern(`.+`)
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Role: IAM role name \"bad name\" has the character \" \""},
			wantNot: []string{"Trust:"},
		},
		{
			name: "first construct without provisioner settings",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = nil
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/ChainguardProvisioner] Provisioner: no provisioner settings"},
		},
		{
			name: "provisioner identity missing",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = &ProvisionerSettings{}
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/ChainguardProvisioner] Provisioner.Identity: the provisioner identity is not set", "TrustCommand"},
		},
		{
			name: "plain http issuer on a public host",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = &ProvisionerSettings{Identity: testProvisioner, Issuer: "http://issuer.enforce.dev"}
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/ChainguardProvisioner] Provisioner.Issuer: issuer URL \"http://issuer.enforce.dev\" uses plain http: use https"},
		},
		{
			name: "service token not a Lambda ARN",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = &ProvisionerSettings{Identity: testProvisioner, ServiceToken: "provisioner"}
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/ChainguardProvisioner] Provisioner.ServiceToken: \"provisioner\" is not a Lambda function ARN"},
		},
		{
			name: "service token parameter not a path",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Provisioner = &ProvisionerSettings{Identity: testProvisioner, ServiceTokenParameter: "service-token"}
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/ChainguardProvisioner] Provisioner.ServiceTokenParameter: SSM parameter name "service-token" is not valid`},
		},
		{
			name: "two provisioners in one stack",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewAssumableIdentity(s, "Id", validIdentity(lambdaRole(s)))
				NewGroup(s, "G", &GroupProps{Parent: testGroup, Name: "group", Provisioner: &ProvisionerSettings{Identity: testGroup + "/fedcba9876543210"}})
			},
			wantErr: []string{"[S/G] Provisioner: differs from the provisioner settings already used in stack S"},
		},
		{
			name: "group parent not a UIDP",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewGroup(s, "G", &GroupProps{Parent: "acme", Name: "group", Provisioner: testSettings()})
			},
			wantErr: []string{"[S/G] Parent: parent group \"acme\" is not a Chainguard UIDP"},
		},
		{
			name: "provisioner stack without group",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewProvisionerStack(app, "P", &ProvisionerStackProps{})
			},
			wantErr: []string{"[P] Group: group is empty"},
		},
		{
			name: "aws-auth function name too long",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewAwsAuthStack(app, "A", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup, FunctionName: strings.Repeat("f", 65)})
			},
			wantErr: []string{"[A] FunctionName: function name \"fffff", "expected 2 to 64 letters"},
		},
		{
			name: "aws-auth role name with a space",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewAwsAuthStack(app, "A", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup, RoleName: "aws auth"})
			},
			wantErr: []string{"[A] RoleName: IAM role name \"aws auth\" has the character \" \""},
		},
		{
			name: "web identity with the role's unique ID",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = WebIdentity(nil)
				p.RoleUniqueID = testRoleID
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] RoleUniqueID: the web-identity trust cannot pin the role's unique ID", "stacks.ExactSession or stacks.SessionPattern"},
		},
		{
			name: "web identity of an imported role needs no unique ID",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(awsiam.Role_FromRoleArn(s, jsii.String("R"), jsii.String("arn:aws:iam::"+testAccount+":role/service-role/ecs-task"), nil))
				p.Trust = WebIdentity(&WebIdentityProps{Issuer: "http://127.0.0.1:9000/federation/0123"})
				NewAssumableIdentity(s, "Id", p)
			},
		},
		{
			name: "web identity issuer with a trailing slash",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = WebIdentity(&WebIdentityProps{Issuer: "https://0123.tokens.sts.global.api.aws/"})
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust.Issuer: web identity issuer "https://0123.tokens.sts.global.api.aws/" ends with "/"`},
		},
		{
			name: "web identity issuer over plain http on a public host",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = WebIdentity(&WebIdentityProps{Issuer: "http://0123.tokens.sts.global.api.aws"})
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust.Issuer: web identity issuer "http://0123.tokens.sts.global.api.aws" uses plain http`},
		},
		{
			name: "web identity role path without its slashes",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(awsiam.Role_FromRoleName(s, jsii.String("R"), jsii.String("ecs-task"), nil))
				p.Trust = WebIdentity(&WebIdentityProps{RolePath: "service-role"})
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust.RolePath: IAM role path "service-role" is not valid`},
		},
		{
			name: "web identity role path contradicting the role's ARN",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(awsiam.Role_FromRoleArn(s, jsii.String("R"), jsii.String("arn:aws:iam::"+testAccount+":role/a/ecs-task"), nil))
				p.Trust = WebIdentity(&WebIdentityProps{RolePath: "/b/"})
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust.RolePath: "/b/" contradicts the role: the ARN of the imported role shows the path "/a/"`},
		},
		{
			name: "web identity role path for a role of the app",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = WebIdentity(&WebIdentityProps{RolePath: "/team/"})
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/Id] Trust.RolePath: "/team/" contradicts the role: the role is defined in this app with Path "/"`},
		},
		{
			name: "web identity in a region outside the aws partition",
			build: func(app awscdk.App, _ awscdk.Stack) {
				cn := awscdk.NewStack(app, jsii.String("CN"), &awscdk.StackProps{Env: &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("cn-north-1")}})
				p := validIdentity(lambdaRole(cn))
				p.Trust = WebIdentity(&WebIdentityProps{Issuer: "https://0123.tokens.sts.global.api.aws"})
				NewAssumableIdentity(cn, "Id", p)
			},
			wantErr: []string{"[CN] Env: region cn-north-1 is in the AWS partition aws-cn", "deploy to a region of the aws partition"},
		},
		{
			name: "web identity issuer parameter not a path",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Trust = WebIdentity(nil)
				p.Provisioner = &ProvisionerSettings{Identity: testProvisioner, WebIdentityIssuerParameter: "issuer"}
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{`[S/ChainguardProvisioner] Provisioner.WebIdentityIssuerParameter: SSM parameter name "issuer" is not valid`},
		},
		{
			name: "provisioner stack with an unknown trust mode",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewProvisionerStack(app, "P", &ProvisionerStackProps{Group: testGroup, Trust: "web-identity"})
			},
			wantErr: []string{`[P] Trust: "web-identity" is not a trust mode: use "callerIdentity"`},
		},
		{
			name: "provisioner stack in web-identity mode with a bad Chainguard issuer",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewProvisionerStack(app, "P", &ProvisionerStackProps{Group: testGroup, Trust: TrustWebIdentity, Issuer: "http://issuer.enforce.dev"})
			},
			wantErr: []string{`[P] Issuer: issuer URL "http://issuer.enforce.dev" uses plain http`},
		},
		{
			name: "provisioner stack in web-identity mode with a bad issuer parameter",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewProvisionerStack(app, "P", &ProvisionerStackProps{Group: testGroup, Trust: TrustWebIdentity, WebIdentityIssuerParameter: "issuer"})
			},
			wantErr: []string{`[P] WebIdentityIssuerParameter: SSM parameter name "issuer" is not valid`},
		},
		{
			name: "aws-auth stack with an unknown trust mode",
			build: func(app awscdk.App, _ awscdk.Stack) {
				NewAwsAuthStack(app, "A", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup, Trust: "oidc"})
			},
			wantErr: []string{`[A] Trust: "oidc" is not a trust mode`},
		},
		{
			name: "enablement without the provisioner function",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewOutboundWebIdentityFederation(s, "F", nil)
			},
			wantErr: []string{"[S/F] Provisioner: no provisioner function"},
		},
		{
			name: "every problem is reported at once",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(lambdaRole(s))
				p.Group, p.Name = "x", "X"
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Group:", "[S/Id] Name:"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given the constructs of the case
			app := newTestApp(t, false, nil)
			stack := awscdk.NewStack(app, jsii.String("S"), nil)
			must(t, "build", func() { tc.build(app, stack) })

			// when the app is synthesized
			err := Synth(app)

			// then synth fails exactly when expected, with messages naming path, property and fix
			if (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("Synth() error = %v, wantErr %v", err, tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Synth() error does not contain %q:\n%v", want, err)
				}
			}
			for _, not := range tc.wantNot {
				if err != nil && strings.Contains(err.Error(), not) {
					t.Errorf("Synth() error holds %q:\n%v", not, err)
				}
			}
			if err != nil && strings.Contains(err.Error(), "goroutine ") {
				t.Errorf("Synth() error holds a Go stack dump:\n%v", err)
			}
			// and each property of a construct is reported once: one clear message, not a second one about what the construct derived from it
			if err != nil {
				seen := map[string]bool{}
				for _, prop := range propertyRE.FindAllString(err.Error(), -1) {
					if seen[prop] {
						t.Errorf("Synth() error reports %s more than once:\n%v", prop, err)
					}
					seen[prop] = true
				}
			}
		})
	}
}
