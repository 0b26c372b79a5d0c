package template

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) *Template {
	t.Helper()
	tp, err := ParseTemplate([]byte(s))
	if err != nil {
		t.Fatalf("ParseTemplate: %v", err)
	}
	return tp
}

// ssm is the SSM parameter store of the tests.
func ssm(name string) (string, bool) {
	v, ok := map[string]string{"/cg/token": sharedARN}[name]
	return v, ok
}

const sharedARN = "arn:aws:lambda:us-east-1:111122223333:function:shared-fn"

var testEnv = Env{Account: "111122223333", Region: "us-east-1", Partition: "aws"}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		expr    string // JSON value of property V of resource Probe
		want    any
		wantErr string // regexp the error must match
	}{
		{name: "literal", expr: `"x"`, want: "x"},
		{name: "number", expr: `30`, want: json.Number("30")},
		{name: "pseudo account", expr: `{"Ref": "AWS::AccountId"}`, want: "111122223333"},
		{name: "pseudo region", expr: `{"Ref": "AWS::Region"}`, want: "us-east-1"},
		{name: "pseudo partition", expr: `{"Ref": "AWS::Partition"}`, want: "aws"},
		{name: "ssm parameter type", expr: `{"Ref": "TokenParam"}`, want: sharedARN},
		{name: "ref role", expr: `{"Ref": "Role"}`, want: "aws-auth"},
		{name: "ref custom resource", expr: `{"Ref": "Ident"}`, want: "0123/abcd"},
		{name: "role arn", expr: `{"Fn::GetAtt": ["Role", "Arn"]}`, want: "arn:aws:iam::111122223333:role/aws-auth"},
		{name: "role id", expr: `{"Fn::GetAtt": ["Role", "RoleId"]}`, want: "AROAEXAMPLE"},
		{name: "custom resource data", expr: `{"Fn::GetAtt": ["Ident", "Id"]}`, want: "0123/abcd"},
		{name: "join", expr: `{"Fn::Join": [":", ["a", {"Ref": "AWS::Region"}, {"Fn::GetAtt": ["Role", "RoleId"]}]]}`, want: "a:us-east-1:AROAEXAMPLE"},
		{
			name: "sub",
			expr: `{"Fn::Sub": "cdk-hnb659fds-assets-${AWS::AccountId}-${ AWS::Region }/${AWS::Partition}"}`,
			want: "cdk-hnb659fds-assets-111122223333-us-east-1/aws",
		},
		{name: "nested list and map", expr: `[{"K": {"Ref": "Role"}}]`, want: []any{map[string]any{"K": "aws-auth"}}},

		{name: "unsupported function", expr: `{"Fn::Select": [0, ["a"]]}`, wantErr: `resource Probe \(Custom::Probe\) at Properties.V: cannot resolve \{"Fn::Select":\[0,\["a"\]\]\}: intrinsic function Fn::Select is not supported`},
		{name: "condition function outside a rule", expr: `{"Fn::Equals": ["a", "a"]}`, wantErr: `intrinsic function Fn::Equals is not supported`},
		{name: "sub list form", expr: `{"Fn::Sub": ["${A}", {"A": "x"}]}`, wantErr: `only the string form of Fn::Sub`},
		{name: "getatt string form", expr: `{"Fn::GetAtt": "Role.Arn"}`, wantErr: `want a list of 2 arguments`},
		{name: "dynamic reference", expr: `"{{resolve:ssm:/cg/token}}"`, wantErr: `dynamic references are not supported`},
		{name: "unknown attribute", expr: `{"Fn::GetAtt": ["Role", "Nope"]}`, wantErr: `cannot resolve \{"Fn::GetAtt":\["Role","Nope"\]\}: attribute Nope of a AWS::IAM::Role is not known`},
		{name: "inner expression named", expr: `{"Fn::Join": ["", ["a", {"Fn::GetAtt": ["Bucket", "Arn"]}]]}`, wantErr: `at Properties.V.Fn::Join\[1\]\[1\]: cannot resolve \{"Fn::GetAtt":\["Bucket","Arn"\]\}: attribute Arn of a AWS::S3::Bucket`},
		{name: "ref of unknown type", expr: `{"Ref": "Bucket"}`, wantErr: `Ref for a AWS::S3::Bucket is not known`},
		{name: "ref undefined", expr: `{"Ref": "Nope"}`, wantErr: `defines no parameter or resource Nope`},
		{name: "ref not yet created", expr: `{"Ref": "Later"}`, wantErr: `resource Later \(AWS::IAM::Role\) is referenced before it was created`},
		{name: "custom data missing", expr: `{"Fn::GetAtt": ["Ident", "Arn"]}`, wantErr: `custom resource Ident returned no "Arn" in its Data \(it returned Id, Name\)`},
		{name: "ssm parameter missing", expr: `{"Ref": "MissingParam"}`, wantErr: `names SSM parameter /missing, which does not exist in the local environment`},
		{name: "other parameter type", expr: `{"Ref": "Plain"}`, wantErr: `parameter Plain is of type String: the local run supports AWS::SSM::Parameter::Value<String> parameters only`},
		{name: "sub resource", expr: `{"Fn::Sub": "x${Role}"}`, wantErr: `\$\{Role\}: the local run supports only pseudo parameters \(\$\{AWS::Name\}\) in Fn::Sub`},
		{name: "sub attribute", expr: `{"Fn::Sub": "x${Role.RoleId}"}`, wantErr: `\$\{Role.RoleId\}: the local run supports only pseudo parameters`},
		{name: "sub unsupported pseudo parameter", expr: `{"Fn::Sub": "${AWS::StackName}"}`, wantErr: `\$\{AWS::StackName\}: pseudo parameter AWS::StackName is not supported`},
		{name: "number where a string is needed", expr: `{"Fn::Join": [",", ["a", 5]]}`, wantErr: `cannot resolve 5: it resolves to 5, want a string`},
		{name: "sub unterminated", expr: `{"Fn::Sub": "${Role"}`, wantErr: `unterminated`},
		{name: "join of non-list", expr: `{"Fn::Join": [",", "a"]}`, wantErr: `want a list`},
		{name: "join bad arity", expr: `{"Fn::Join": [","]}`, wantErr: `want a list of 2 arguments`},
		{name: "unsupported pseudo parameter", expr: `{"Ref": "AWS::StackName"}`, wantErr: `pseudo parameter AWS::StackName is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &Stack{ID: "App", Name: "App", Template: mustParse(t, `{
			  "Parameters": {
			    "Plain": {"Type": "String", "Default": "x"},
			    "TokenParam": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cg/token"},
			    "MissingParam": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/missing"}
			  },
			  "Resources": {
			    "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "aws-auth"}},
			    "Bucket": {"Type": "AWS::S3::Bucket"},
			    "Ident": {"Type": "Custom::ChainguardIdentity", "Properties": {"ServiceToken": {"Ref": "TokenParam"}}},
			    "Later": {"Type": "AWS::IAM::Role", "DependsOn": "Probe"},
			    "Probe": {"Type": "Custom::Probe", "DependsOn": ["Ident", "Bucket"], "Properties": {"V": `+tt.expr+`}}
			  }
			}`)}
			run := NewStackRun(st, testEnv, ssm)
			for id, c := range map[string]Created{
				"Role":   {Physical: "aws-auth", Ref: "aws-auth", Attributes: map[string]any{"Arn": "arn:aws:iam::111122223333:role/aws-auth", "RoleId": "AROAEXAMPLE"}},
				"Bucket": {Physical: "bucket"},
				"Ident":  {Physical: "0123/abcd", Ref: "0123/abcd", Attributes: map[string]any{"Id": "0123/abcd", "Name": "aws-auth-identity"}},
			} {
				if err := run.Record(id, c); err != nil {
					t.Fatal(err)
				}
			}
			props, err := run.Properties("Probe")
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Properties = %v, want error matching %q", props, tt.wantErr)
				}
				var re *ResolveError
				if !errors.As(err, &re) {
					t.Errorf("error %v is a %T, want a *ResolveError", err, err)
				}
				if !strings.Contains(err.Error(), "stack App: ") || !regexp.MustCompile(tt.wantErr).MatchString(err.Error()) {
					t.Fatalf("error %q does not match %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Properties: %v", err)
			}
			if got := props["V"]; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("V = %#v, want %#v", got, tt.want)
			}
		})
	}
}

// partitionRule is the rule stacks/partition.go adds to an
// environment-agnostic stack, and bootstrapRule the one CDK adds to every
// stack (both as synthesized, descriptions shortened).
const (
	partitionRule = `"ChainguardPartition": {"Assertions": [{"Assert": {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws"]}, "AssertDescription": "only the aws partition"}]}`
	bootstrapRule = `"CheckBootstrapVersion": {"Assertions": [{"Assert": {"Fn::Not": [{"Fn::Contains": [["1", "2", "3", "4", "5"], {"Ref": "BootstrapVersion"}]}]}, "AssertDescription": "CDK bootstrap stack version 6 required."}]}`
)

func TestCheckRules(t *testing.T) {
	tests := []struct {
		name    string
		rules   string
		env     Env
		ssm     map[string]string
		wantErr string // regexp; "" means the rules pass
	}{
		{name: "both pass", rules: partitionRule + "," + bootstrapRule, env: testEnv, ssm: map[string]string{"/v": "30"}},
		{name: "no rules", env: testEnv},
		{
			name: "other partition", rules: partitionRule + "," + bootstrapRule, env: Env{Account: "111122223333", Region: "cn-north-1", Partition: "aws-cn"}, ssm: map[string]string{"/v": "30"},
			wantErr: `^stack S: rule ChainguardPartition refuses the deployment: only the aws partition$`,
		},
		{
			name: "old bootstrap", rules: partitionRule + "," + bootstrapRule, env: testEnv, ssm: map[string]string{"/v": "5"},
			wantErr: `^stack S: rule CheckBootstrapVersion refuses the deployment: CDK bootstrap stack version 6 required.$`,
		},
		{
			name: "not bootstrapped", rules: bootstrapRule, env: testEnv,
			wantErr: `rule CheckBootstrapVersion at Assertions\[0\].Assert.Fn::Not\[0\].Fn::Contains\[1\]: .*names SSM parameter /v, which does not exist`,
		},
		{
			name: "second assertion fails", env: testEnv,
			rules:   `"R": {"Assertions": [{"Assert": {"Fn::Equals": ["a", "a"]}, "AssertDescription": "first"}, {"Assert": {"Fn::Not": [{"Fn::Equals": ["a", "a"]}]}, "AssertDescription": "second"}]}`,
			wantErr: `rule R refuses the deployment: second$`,
		},
		{
			name: "unsupported rule function", env: testEnv,
			rules:   `"R": {"Assertions": [{"Assert": {"Fn::And": [{"Fn::Equals": ["a", "a"]}, {"Fn::Equals": ["a", "a"]}]}}]}`,
			wantErr: `rule R at Assertions\[0\].Assert: .*not a rule function the local run supports`,
		},
		{
			name: "equals of a list", env: testEnv,
			rules:   `"R": {"Assertions": [{"Assert": {"Fn::Equals": [["a"], "a"]}}]}`,
			wantErr: `it resolves to \["a"\], want a string`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &Stack{Name: "S", Template: mustParse(t, `{
			  "Parameters": {"BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/v"}},
			  "Rules": {`+tt.rules+`},
			  "Resources": {"A": {"Type": "AWS::IAM::Role"}}
			}`)}
			lookup := func(name string) (string, bool) {
				v, ok := tt.ssm[name]
				return v, ok
			}
			err := NewStackRun(st, tt.env, lookup).CheckRules()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckRules: %v", err)
				}
				return
			}
			if err == nil || !regexp.MustCompile(tt.wantErr).MatchString(err.Error()) {
				t.Fatalf("CheckRules err = %v, want one matching %q", err, tt.wantErr)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    string
		want    []string
		wantErr string
	}{
		{
			name: "references and depends on",
			tmpl: `{"Resources": {
			  "A": {"Type": "Custom::X", "Properties": {"R": {"Fn::Join": ["", ["x", {"Fn::GetAtt": ["C", "Arn"]}, {"Fn::Sub": "y${AWS::Region}"}]]}}},
			  "B": {"Type": "AWS::IAM::Role", "DependsOn": "A"},
			  "C": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": ["D", "Arn"]}}},
			  "D": {"Type": "AWS::IAM::Role", "Properties": {"X": {"Ref": "AWS::Region"}, "Y": {"Ref": "P"}}}
			}, "Parameters": {"P": {"Type": "String", "Default": "p"}}}`,
			want: []string{"D", "C", "A", "B"},
		},
		{
			name: "cycle",
			tmpl: `{"Resources": {
			  "A": {"Type": "AWS::IAM::Role", "Properties": {"X": {"Ref": "B"}}},
			  "B": {"Type": "AWS::IAM::Role", "DependsOn": ["A"]}
			}}`,
			wantErr: `dependency cycle: A -> B -> A`,
		},
		{
			name:    "depends on undefined",
			tmpl:    `{"Resources": {"A": {"Type": "AWS::IAM::Role", "DependsOn": "Z"}}}`,
			wantErr: `resource A depends on Z, which the template does not define`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := NewStackRun(&Stack{Name: "S", Template: mustParse(t, tt.tmpl)}, testEnv, ssm)
			got, err := run.Order()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Order() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Order() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOutputs(t *testing.T) {
	st := &Stack{Name: "S", Template: mustParse(t, `{"Resources": {"R": {"Type": "AWS::IAM::Role"}},
	  "Outputs": {"Name": {"Value": {"Ref": "R"}}, "Arn": {"Value": {"Fn::Join": ["/", [{"Ref": "AWS::Partition"}, {"Ref": "R"}]]}}}}`)}
	run := NewStackRun(st, testEnv, ssm)
	if _, err := run.Outputs(); err == nil || !strings.Contains(err.Error(), "referenced before it was created") {
		t.Fatalf("Outputs before the role exists: err = %v", err)
	}
	if err := run.Record("R", Created{Physical: "role", Ref: "role"}); err != nil {
		t.Fatal(err)
	}
	out, err := run.Outputs()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"Name": "role", "Arn": "aws/role"}; !reflect.DeepEqual(out, want) {
		t.Fatalf("Outputs = %v, want %v", out, want)
	}
}

func TestAdopt(t *testing.T) {
	st := &Stack{Name: "S", Template: mustParse(t, `{"Resources": {"C": {"Type": "Custom::X"}, "R": {"Type": "AWS::IAM::Role"}}}`)}
	prev := NewStackRun(st, testEnv, ssm)
	if err := prev.Record("C", Created{Physical: "phys", Ref: "phys"}); err != nil {
		t.Fatal(err)
	}
	next := NewStackRun(st, testEnv, ssm)
	if err := next.Adopt(prev, "C"); err != nil {
		t.Fatal(err)
	}
	if id, ok := next.PhysicalID("C"); !ok || id != "phys" {
		t.Fatalf("PhysicalID = %q, %v", id, ok)
	}
	if err := next.Adopt(prev, "R"); err == nil {
		t.Fatal("Adopt of a resource never created: want error")
	}
	if err := next.Record("Nope", Created{}); err == nil {
		t.Fatal("Record of a resource the template lacks: want error")
	}
}

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		name    string
		tmpl    string
		wantErr string
	}{
		{name: "ok", tmpl: `{"Resources": {"A": {"Type": "AWS::IAM::Role"}}}`},
		{name: "not json", tmpl: `{`, wantErr: "parse template"},
		{name: "transform", tmpl: `{"Transform": "AWS::Serverless-2016-10-31", "Resources": {}}`, wantErr: "only CloudFormation can expand"},
		{name: "no type", tmpl: `{"Resources": {"A": {}}}`, wantErr: "resource A has no Type"},
		{name: "bad depends on", tmpl: `{"Resources": {"A": {"Type": "X", "DependsOn": 3}}}`, wantErr: "DependsOn is 3"},
		{name: "resource condition", tmpl: `{"Resources": {"A": {"Type": "X", "Condition": "C"}}}`, wantErr: "resource A has Condition C: conditions are not supported"},
		{name: "output condition", tmpl: `{"Resources": {}, "Outputs": {"O": {"Value": "v", "Condition": "C"}}}`, wantErr: "output O has Condition C"},
		{name: "rule condition", tmpl: `{"Rules": {"R": {"RuleCondition": {"Fn::Equals": ["a", "b"]}, "Assertions": []}}, "Resources": {}}`, wantErr: "rule R has a RuleCondition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTemplate([]byte(tt.tmpl))
			if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("ParseTemplate err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
