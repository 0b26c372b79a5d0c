package stacks

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/cxapi"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

func TestScanTemplate(t *testing.T) {
	// Fake secrets, built from parts so that this file itself holds none
	// that a repository scanner would report.
	const (
		fakeKeyID  = "AKIA" + "IOSFODNN7EXAMPLE"
		fakeSTSID  = "ASIA" + "IOSFODNN7EXAMPLE"
		fakeSecret = "wJalrXUtnFEMI/K7MDENG" + "/bPxRfiCYEXAMPLEKEY"
		fakeJWT    = "eyJhbGciOiJSUzI1NiJ9" + ".eyJpc3MiOiJodHRwczovL2lzc3Vlci5lbmZvcmNlLmRldiJ9" + ".c2lnbmF0dXJlLW5vdC1yZWFs"
		fakeOpaque = "c2Vzc2lvbi1oZWFkZXItMDEy" + ".cGF5bG9hZC1wYXlsb2FkLTAxMg" + ".c2lnbmF0dXJlLXNpZ25hdHVyZQ"
	)
	fn := func(props map[string]interface{}) map[string]interface{} {
		return map[string]interface{}{"Resources": map[string]interface{}{"Fn": map[string]interface{}{"Type": "AWS::Lambda::Function", "Properties": props}}}
	}
	env := func(vars map[string]interface{}) map[string]interface{} {
		return fn(map[string]interface{}{"Environment": map[string]interface{}{"Variables": vars}})
	}
	tests := []struct {
		name     string
		template map[string]interface{}
		wantErr  []string // substrings of the findings; nil: clean
	}{
		{
			// the negative control: what the app's templates legitimately hold
			name: "clean template",
			template: map[string]interface{}{
				"Parameters": map[string]interface{}{"BootstrapVersion": map[string]interface{}{"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version"}},
				"Resources": map[string]interface{}{
					"Identity": map[string]interface{}{"Type": IdentityResourceType, "Properties": map[string]interface{}{
						"ServiceToken":   map[string]interface{}{"Fn::GetAtt": []interface{}{"Provisioner", "Arn"}},
						"ServiceTimeout": "300",
						"AwsRoleId":      testRoleID,
						"Issuer":         DefaultIssuer,
						"Group":          testProvisioner,
						"GroupKey":       testGroup,
						"Description":    "parent key: " + testGroup,
					}},
					"ServiceToken3500ADD0": map[string]interface{}{"Type": "AWS::SSM::Parameter", "Properties": map[string]interface{}{"Name": DefaultServiceTokenParameter, "Type": "String"}},
					"Fn": map[string]interface{}{"Type": "AWS::Lambda::Function", "Properties": map[string]interface{}{
						"Code": map[string]interface{}{"S3Key": strings.Repeat("0123456789abcdef", 4) + ".zip"},
					}, "Metadata": map[string]interface{}{"aws:asset:path": "asset." + strings.Repeat("0123456789abcdef", 4)}},
				},
				"Outputs": map[string]interface{}{
					"TrustCommand":          map[string]interface{}{"Value": "chainctl iam identities create aws role x --parent=" + testGroup},
					"ServiceTokenParameter": map[string]interface{}{"Value": DefaultServiceTokenParameter},
				},
			},
		},
		{name: "access key ID in an environment variable", template: env(map[string]interface{}{"AWS_ACCESS_KEY_ID_COPY": fakeKeyID}), wantErr: []string{"Variables.AWS_ACCESS_KEY_ID_COPY: an AWS access key ID"}},
		{name: "temporary access key ID in an output", template: map[string]interface{}{"Outputs": map[string]interface{}{"Key": map[string]interface{}{"Value": "id " + fakeSTSID}}}, wantErr: []string{"$.Outputs.Key.Value: an AWS access key ID"}},
		{name: "secret key under a key-ish name", template: env(map[string]interface{}{"SIGNING_KEY": fakeSecret}), wantErr: []string{`under the key-ish name "SIGNING_KEY"`}},
		{name: "secret key in a command line", template: fn(map[string]interface{}{"Description": "run with aws_secret_access_key=" + fakeSecret}), wantErr: []string{"Properties.Description: a secret key (40 base64 characters after a key-ish name)"}},
		{name: "secret key split over an Fn::Join", template: map[string]interface{}{"Outputs": map[string]interface{}{"Cmd": map[string]interface{}{"Value": map[string]interface{}{"Fn::Join": []interface{}{"", []interface{}{"export AWS_SECRET=" + fakeSecret[:20], fakeSecret[20:]}}}}}}, wantErr: []string{"$.Outputs.Cmd.Value(joined): a secret key"}},
		{name: "JWT", template: fn(map[string]interface{}{"Description": fakeJWT}), wantErr: []string{"Properties.Description: a JWT-like token"}},
		{name: "opaque three-segment token", template: map[string]interface{}{"Metadata": map[string]interface{}{"Note": fakeOpaque}}, wantErr: []string{"$.Metadata.Note: a JWT-like token"}},
		{name: "bearer header", template: fn(map[string]interface{}{"Description": "Authorization: Bearer abc"}), wantErr: []string{"a bearer token"}},
		{name: "private key", template: map[string]interface{}{"Parameters": map[string]interface{}{"P": map[string]interface{}{"Type": "String", "Default": "-----BEGIN RSA PRIVATE KEY-----\nMIIE"}}}, wantErr: []string{"$.Parameters.P.Default: a private key"}},
		{name: "Secrets Manager dynamic reference", template: env(map[string]interface{}{"API": "{{resolve:secretsmanager:prod/api:SecretString:key}}"}), wantErr: []string{"Variables.API: a secret dynamic reference"}},
		{name: "SecureString dynamic reference", template: env(map[string]interface{}{"API": "{{resolve:ssm-secure:/prod/api:1}}"}), wantErr: []string{"Variables.API: a secret dynamic reference"}},
		{name: "Secrets Manager secret resource", template: map[string]interface{}{"Resources": map[string]interface{}{"S": map[string]interface{}{"Type": "AWS::SecretsManager::Secret"}}}, wantErr: []string{"$.Resources.S.Type: a Secrets Manager resource"}},
		{name: "environment variable named SECRET", template: env(map[string]interface{}{"CLIENT_SECRET": "x"}), wantErr: []string{`the name "CLIENT_SECRET" says it holds a secret`}},
		{name: "environment variable named TOKEN", template: env(map[string]interface{}{"CHAINGUARD_TOKEN": "x"}), wantErr: []string{`the name "CHAINGUARD_TOKEN" says it holds a secret`}},
		{name: "property named Password", template: fn(map[string]interface{}{"MasterUserPassword": "x"}), wantErr: []string{`the name "MasterUserPassword" says it holds a secret`}},
		{name: "property named Credentials", template: fn(map[string]interface{}{"Credentials": "x"}), wantErr: []string{`the name "Credentials" says it holds a secret`}},
		{name: "a secret next to ServiceToken in a name", template: fn(map[string]interface{}{"ServiceTokenSecret": "x"}), wantErr: []string{`the name "ServiceTokenSecret" says it holds a secret`}},
		{name: "an access token named like a service", template: env(map[string]interface{}{"SERVICE_ACCESS_TOKEN": "x"}), wantErr: []string{`the name "SERVICE_ACCESS_TOKEN" says it holds a secret`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given a template fragment, when it is scanned
			found := scanTemplate(tc.template)

			// then the planted secret is reported, without its value
			if (len(found) > 0) != (tc.wantErr != nil) {
				t.Fatalf("scanTemplate() found %d, wantErr %q:%s", len(found), tc.wantErr, findingsText(found))
			}
			all := strings.Join(found, "\n")
			for _, want := range tc.wantErr {
				if !strings.Contains(all, want) {
					t.Errorf("findings do not contain %q:%s", want, findingsText(found))
				}
			}
			for _, secret := range []string{fakeKeyID, fakeSTSID, fakeSecret, fakeJWT, fakeOpaque} {
				if strings.Contains(all, secret) {
					t.Errorf("findings show the secret itself:%s", findingsText(found))
				}
			}
		})
	}
}

func TestNoSecretsInTemplates(t *testing.T) {
	// given the app built the way app.go builds it, from cdk.json's context
	// plus the two values a user supplies
	context := exampleContext(t)
	context[CtxGroup] = testGroup
	context[CtxProvisionerIdentity] = testProvisioner
	app := newTestApp(t, false, context)
	if err := NewApp(app); err != nil {
		t.Fatalf("NewApp() = %v", err)
	}

	// when it is synthesized
	var assembly cxapi.CloudAssembly
	must(t, "synthesize the app", func() { assembly = app.Synth(nil) })

	// then every template holds no secret anywhere
	var names []string
	for _, stack := range *assembly.StacksRecursively() {
		names = append(names, *stack.StackName())
		raw, err := os.ReadFile(*stack.TemplateFullPath())
		if err != nil {
			t.Fatalf("read the template of %s: %v", *stack.StackName(), err)
		}
		var template map[string]interface{}
		if err := json.Unmarshal(raw, &template); err != nil {
			t.Fatalf("parse the template of %s: %v", *stack.StackName(), err)
		}
		// (a template without resources or outputs would pass vacuously)
		for _, section := range []string{"Resources", "Outputs"} {
			if s, _ := template[section].(map[string]interface{}); len(s) == 0 {
				t.Errorf("%s has no %s: the scan would prove nothing", *stack.StackName(), section)
			}
		}
		if found := scanTemplate(template); len(found) > 0 {
			t.Errorf("%s (%s) holds secrets:%s", *stack.StackName(), filepath.Base(*stack.TemplateFullPath()), findingsText(found))
		}
	}
	if got, want := strings.Join(names, ","), DefaultProvisionerStackName+","+DefaultAwsAuthStackName; got != want {
		t.Errorf("synthesized stacks %s, want %s", got, want)
	}
}

// exampleContext returns the "context" of the project's cdk.json, which the
// CDK CLI hands the app.
func exampleContext(t testing.TB) map[string]interface{} {
	t.Helper()
	root, err := lambdabuild.ModuleRoot()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "cdk.json"))
	if err != nil {
		t.Fatalf("read cdk.json: %v", err)
	}
	var cfg struct {
		Context map[string]interface{} `json:"context"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("parse cdk.json: %v", err)
	}
	if len(cfg.Context) == 0 {
		t.Fatal("cdk.json has no context")
	}
	return cfg.Context
}
