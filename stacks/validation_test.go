package stacks

import (
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

func TestSynthValidation(t *testing.T) {
	tests := []struct {
		name string
		// build adds constructs to stack "S" of app.
		build   func(app awscdk.App, stack awscdk.Stack)
		wantErr []string // substrings of the synth error; nil: synth succeeds
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
				p.Trust = SessionPattern(`a\$b`)
				NewAssumableIdentity(s, "Id", p)
			},
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
			wantErr: []string{"[S/Id] RoleUniqueID: \"AIDA1234567890ABCDEFG\" is not an IAM role unique ID"},
		},
		{
			name: "imported role name invalid",
			build: func(_ awscdk.App, s awscdk.Stack) {
				p := validIdentity(awsiam.Role_FromRoleArn(s, jsii.String("R"), jsii.String("arn:aws:iam::"+testAccount+":role/bad name"), nil))
				p.RoleUniqueID = testRoleID
				NewAssumableIdentity(s, "Id", p)
			},
			wantErr: []string{"[S/Id] Role: IAM role name \"bad name\" has the character \" \""},
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
			name: "two provisioners in one stack",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewAssumableIdentity(s, "Id", validIdentity(lambdaRole(s)))
				NewGroup(s, "G", &GroupProps{Parent: testGroup, Name: "g", Provisioner: &ProvisionerSettings{Identity: testGroup + "/fedcba9876543210"}})
			},
			wantErr: []string{"[S/G] Provisioner: differs from the provisioner settings already used in stack S"},
		},
		{
			name: "group parent not a UIDP",
			build: func(_ awscdk.App, s awscdk.Stack) {
				NewGroup(s, "G", &GroupProps{Parent: "acme", Name: "g", Provisioner: testSettings()})
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
			if err != nil && strings.Contains(err.Error(), "goroutine ") {
				t.Errorf("Synth() error holds a Go stack dump:\n%v", err)
			}
		})
	}
}
