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

// deployShared deploys a first stack that exports a value and creates an SSM
// parameter, the way the provisioner stack publishes its service token.
func deployShared(t *testing.T, d *Deployment) {
	t.Helper()
	st := &Stack{ID: "Shared", Name: "Shared", Template: mustParse(t, `{
	  "Resources": {
	    "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "shared-fn"}},
	    "Param": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": "/cg/token", "Type": "String", "Value": {"Fn::GetAtt": ["Fn", "Arn"]}}}
	  },
	  "Outputs": {
	    "Token": {"Value": {"Fn::GetAtt": ["Fn", "Arn"]}, "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-Token"}}},
	    "List": {"Value": "a,b,c", "Export": {"Name": "Shared-List"}}
	  }
	}`)}
	run := d.Stack(st, nil)
	order, err := run.Order()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Fn", "Param"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("Order = %v, want %v", order, want)
	}
	for _, id := range order {
		if _, err := run.CreateBuiltin(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run.Outputs(); err != nil {
		t.Fatal(err)
	}
}

const sharedARN = "arn:aws:lambda:us-east-1:111122223333:function:shared-fn"

func TestResolve(t *testing.T) {
	roleID := RoleID("App", "Role")
	tests := []struct {
		name    string
		expr    string // JSON value of property V of resource Probe
		params  map[string]string
		want    any
		wantErr string // regexp the error must match
	}{
		{name: "literal", expr: `"x"`, want: "x"},
		{name: "number", expr: `30`, want: json.Number("30")},
		{name: "pseudo account", expr: `{"Ref": "AWS::AccountId"}`, want: "111122223333"},
		{name: "pseudo region", expr: `{"Ref": "AWS::Region"}`, want: "us-east-1"},
		{name: "pseudo partition", expr: `{"Ref": "AWS::Partition"}`, want: "aws"},
		{name: "pseudo stack name", expr: `{"Ref": "AWS::StackName"}`, want: "App"},
		{name: "pseudo url suffix", expr: `{"Ref": "AWS::URLSuffix"}`, want: "amazonaws.com"},
		{name: "parameter default", expr: `{"Ref": "Group"}`, want: "default-group"},
		{name: "parameter given", expr: `{"Ref": "Group"}`, params: map[string]string{"Group": "given"}, want: "given"},
		{name: "ssm parameter type", expr: `{"Ref": "TokenParam"}`, want: sharedARN},
		{name: "ssm list parameter type", expr: `{"Ref": "ListParam"}`, want: []any{"x", "y"}},
		{name: "ref role", expr: `{"Ref": "Role"}`, want: "aws-auth"},
		{name: "ref function", expr: `{"Ref": "Fn"}`, want: "my-fn"},
		{name: "ref generated name", expr: `{"Ref": "Unnamed"}`, want: PhysicalName("App", "Unnamed", 64)},
		{name: "ref custom resource", expr: `{"Ref": "Ident"}`, want: "0123/abcd"},
		{name: "role arn", expr: `{"Fn::GetAtt": ["Role", "Arn"]}`, want: "arn:aws:iam::111122223333:role/aws-auth"},
		{name: "role arn string form", expr: `{"Fn::GetAtt": "Role.Arn"}`, want: "arn:aws:iam::111122223333:role/aws-auth"},
		{name: "role id", expr: `{"Fn::GetAtt": ["Role", "RoleId"]}`, want: roleID},
		{name: "function arn", expr: `{"Fn::GetAtt": ["Fn", "Arn"]}`, want: "arn:aws:lambda:us-east-1:111122223333:function:my-fn"},
		{name: "custom resource data", expr: `{"Fn::GetAtt": ["Ident", "Id"]}`, want: "0123/abcd"},
		{name: "join", expr: `{"Fn::Join": [":", ["a", {"Ref": "AWS::Region"}, {"Fn::GetAtt": ["Role", "RoleId"]}]]}`, want: "a:us-east-1:" + roleID},
		{name: "join of split", expr: `{"Fn::Join": ["-", {"Fn::Split": [",", "a,b"]}]}`, want: "a-b"},
		{
			name: "sub string form",
			expr: `{"Fn::Sub": "arn:${AWS::Partition}:sts::${AWS::AccountId}:assumed-role/${Role}/${Fn} ${Role.RoleId}:${Fn} ${!Literal}"}`,
			want: "arn:aws:sts::111122223333:assumed-role/aws-auth/my-fn " + roleID + ":my-fn ${Literal}",
		},
		{name: "sub list form", expr: `{"Fn::Sub": ["${A}/${Fn}", {"A": {"Fn::GetAtt": ["Ident", "Name"]}}]}`, want: "aws-auth-identity/my-fn"},
		{name: "select", expr: `{"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}`, want: "b"},
		{name: "select string index", expr: `{"Fn::Select": ["2", ["a", "b", "c"]]}`, want: "c"},
		{name: "import value", expr: `{"Fn::ImportValue": "Shared-Token"}`, want: sharedARN},
		{name: "import value list", expr: `{"Fn::Split": [",", {"Fn::ImportValue": "Shared-List"}]}`, want: []any{"a", "b", "c"}},
		{name: "dynamic ssm reference", expr: `"token={{resolve:ssm:/cg/token}}"`, want: "token=" + sharedARN},
		{name: "dynamic ssm reference with version", expr: `"{{resolve:ssm:/cg/token:1}}"`, want: sharedARN},
		{name: "if true", expr: `{"Fn::If": ["IsLocal", "yes", "no"]}`, want: "yes"},
		{name: "if with no value", expr: `{"A": {"Fn::If": ["IsOther", "x", {"Ref": "AWS::NoValue"}]}, "B": "b"}`, want: map[string]any{"B": "b"}},
		{name: "find in map", expr: `{"Fn::FindInMap": ["Arch", {"Ref": "AWS::Region"}, "Value"]}`, want: "arm64"},
		{name: "nested list and map", expr: `[{"K": {"Ref": "Fn"}}]`, want: []any{map[string]any{"K": "my-fn"}}},

		{name: "unknown function", expr: `{"Fn::GetAZs": ""}`, wantErr: `resource Probe \(Custom::Probe\) at Properties.V: cannot resolve \{"Fn::GetAZs":""\}: intrinsic function Fn::GetAZs is not supported`},
		{name: "unknown attribute", expr: `{"Fn::GetAtt": ["Role", "Nope"]}`, wantErr: `cannot resolve \{"Fn::GetAtt":\["Role","Nope"\]\}: attribute Nope of a AWS::IAM::Role is not known`},
		{name: "inner expression named", expr: `{"Fn::Join": ["", ["a", {"Fn::GetAtt": ["Bucket", "Arn"]}]]}`, wantErr: `at Properties.V.Fn::Join\[1\]\[1\]: cannot resolve \{"Fn::GetAtt":\["Bucket","Arn"\]\}: attribute Arn of a AWS::S3::Bucket`},
		{name: "ref of unknown type", expr: `{"Ref": "Bucket"}`, wantErr: `Ref for a AWS::S3::Bucket is not known`},
		{name: "ref undefined", expr: `{"Ref": "Nope"}`, wantErr: `defines no parameter or resource Nope`},
		{name: "ref not yet created", expr: `{"Ref": "Later"}`, wantErr: `resource Later \(AWS::IAM::Role\) is referenced before it was created`},
		{name: "custom data missing", expr: `{"Fn::GetAtt": ["Ident", "Arn"]}`, wantErr: `custom resource Ident returned no "Arn" in its Data \(it returned Id, Name\)`},
		{name: "import missing", expr: `{"Fn::ImportValue": "Nope"}`, wantErr: `no stack deployed earlier exports "Nope"`},
		{name: "ssm reference missing", expr: `"{{resolve:ssm:/nope}}"`, wantErr: `cannot resolve "\{\{resolve:ssm:/nope\}\}": no stack deployed earlier creates SSM parameter /nope`},
		{name: "ssm parameter type missing", expr: `{"Ref": "MissingParam"}`, wantErr: `names SSM parameter /missing, which no stack deployed earlier creates`},
		{name: "secret reference", expr: `"{{resolve:secretsmanager:s}}"`, wantErr: `dynamic references to secretsmanager are not supported`},
		{name: "parameter without value", expr: `{"Ref": "NoDefault"}`, wantErr: `parameter NoDefault has no value and no default`},
		{name: "sub unknown variable", expr: `{"Fn::Sub": "${Nope}"}`, wantErr: `\$\{Nope\}: the template defines no parameter or resource Nope`},
		{name: "sub list to string", expr: `{"Fn::Sub": "${ListParam}"}`, wantErr: `\$\{ListParam\} resolves to \["x","y"\], want a string`},
		{name: "sub unterminated", expr: `{"Fn::Sub": "${Fn"}`, wantErr: `unterminated`},
		{name: "select out of range", expr: `{"Fn::Select": [3, ["a"]]}`, wantErr: `index 3 is out of range for a list of 1`},
		{name: "select bad index", expr: `{"Fn::Select": ["x", ["a"]]}`, wantErr: `index "x" is not an integer`},
		{name: "join of non-list", expr: `{"Fn::Join": [",", "a"]}`, wantErr: `want a list`},
		{name: "join bad arity", expr: `{"Fn::Join": [","]}`, wantErr: `want a list of 2 arguments`},
		{name: "unsupported pseudo parameter", expr: `{"Ref": "AWS::Foo"}`, wantErr: `pseudo parameter AWS::Foo is not supported`},
		{name: "missing mapping", expr: `{"Fn::FindInMap": ["Nope", "a", "b"]}`, wantErr: `no mapping "Nope"`},
		{name: "missing condition", expr: `{"Fn::If": ["Nope", "a", "b"]}`, wantErr: `defines no such condition`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDeployment(Env{})
			deployShared(t, d)
			st := &Stack{ID: "App", Name: "App", Template: mustParse(t, `{
			  "Parameters": {
			    "Group": {"Type": "String", "Default": "default-group"},
			    "NoDefault": {"Type": "String"},
			    "TokenParam": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cg/token"},
			    "ListParam": {"Type": "CommaDelimitedList", "Default": "x, y"},
			    "MissingParam": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/missing"}
			  },
			  "Mappings": {"Arch": {"us-east-1": {"Value": "arm64"}}},
			  "Conditions": {
			    "IsLocal": {"Fn::Equals": [{"Ref": "AWS::AccountId"}, "111122223333"]},
			    "IsOther": {"Fn::Not": [{"Condition": "IsLocal"}]}
			  },
			  "Resources": {
			    "Role": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "aws-auth"}},
			    "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "my-fn", "Role": {"Fn::GetAtt": ["Role", "Arn"]}}},
			    "Unnamed": {"Type": "AWS::Lambda::Function", "Properties": {}},
			    "Bucket": {"Type": "AWS::S3::Bucket"},
			    "Ident": {"Type": "Custom::ChainguardIdentity", "Properties": {"ServiceToken": {"Fn::ImportValue": "Shared-Token"}}},
			    "Later": {"Type": "AWS::IAM::Role", "DependsOn": "Probe"},
			    "Probe": {"Type": "Custom::Probe", "DependsOn": ["Ident", "Bucket", "Unnamed"], "Properties": {"V": `+tt.expr+`}}
			  }
			}`)}
			run := d.Stack(st, tt.params)
			for _, id := range []string{"Role", "Fn", "Unnamed", "Bucket"} {
				if _, err := run.CreateBuiltin(id); err != nil {
					t.Fatalf("CreateBuiltin(%s): %v", id, err)
				}
			}
			if err := run.SetCustom("Ident", "0123/abcd", map[string]any{"Id": "0123/abcd", "Name": "aws-auth-identity"}); err != nil {
				t.Fatal(err)
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

func TestRoleIDAndNames(t *testing.T) {
	re := regexp.MustCompile(`^AROA[A-Z0-9]{17}$`)
	a, b := RoleID("S", "Role"), RoleID("S", "Role2")
	if !re.MatchString(a) || !re.MatchString(b) {
		t.Fatalf("RoleID = %q, %q, want AROA + 17 of [A-Z0-9]", a, b)
	}
	if a == b || a != RoleID("S", "Role") || a == RoleID("T", "Role") {
		t.Fatalf("RoleID must be deterministic and distinct per stack and logical ID")
	}
	long := PhysicalName(strings.Repeat("s", 50), strings.Repeat("L", 40), 64)
	if len(long) != 64 || !regexp.MustCompile(`^s+-?L*-[A-Z0-9]{12}$`).MatchString(long) {
		t.Fatalf("PhysicalName = %q (%d chars), want 64 chars ending in a 12-char suffix", long, len(long))
	}
	if got := PhysicalName("App", "Fn", 64); !regexp.MustCompile(`^App-Fn-[A-Z0-9]{12}$`).MatchString(got) {
		t.Fatalf("PhysicalName = %q", got)
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
			  "A": {"Type": "Custom::X", "Properties": {"R": {"Fn::Sub": "${C.Arn}"}, "S": {"Fn::Sub": ["${V}", {"V": "literal"}]}}},
			  "B": {"Type": "AWS::IAM::Role", "DependsOn": "A"},
			  "C": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Fn::GetAtt": "D.Arn"}}},
			  "D": {"Type": "AWS::IAM::Role", "Properties": {"X": {"Ref": "AWS::Region"}, "Y": {"Ref": "P"}}}
			}, "Parameters": {"P": {"Type": "String", "Default": "p"}}}`,
			want: []string{"D", "C", "A", "B"},
		},
		{
			name: "false condition leaves a resource out",
			tmpl: `{"Conditions": {"No": {"Fn::Equals": ["a", "b"]}}, "Resources": {
			  "A": {"Type": "AWS::CDK::Metadata", "Condition": "No"},
			  "B": {"Type": "AWS::IAM::Role"}
			}}`,
			want: []string{"B"},
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
		{
			name: "reference to a resource whose condition is false",
			tmpl: `{"Conditions": {"No": {"Fn::Equals": ["a", "b"]}}, "Resources": {
			  "A": {"Type": "AWS::IAM::Role", "Condition": "No"},
			  "B": {"Type": "AWS::IAM::Role", "Properties": {"X": {"Ref": "A"}}}
			}}`,
			wantErr: `resource B references A, whose Condition is false`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := NewDeployment(Env{}).Stack(&Stack{Name: "S", Template: mustParse(t, tt.tmpl)}, nil)
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

func TestOutputsAndForget(t *testing.T) {
	d := NewDeployment(Env{Region: "eu-west-1"})
	deployShared(t, d)
	if v, ok := d.Export("Shared-Token"); !ok || v != "arn:aws:lambda:eu-west-1:111122223333:function:shared-fn" {
		t.Fatalf("Export = %q, %v", v, ok)
	}
	// A second stack may not export the same name.
	dup := &Stack{Name: "Dup", Template: mustParse(t, `{"Resources": {}, "Outputs": {"X": {"Value": "v", "Export": {"Name": "Shared-List"}}}}`)}
	if _, err := d.Stack(dup, nil).Outputs(); err == nil || !strings.Contains(err.Error(), `exports "Shared-List", which stack Shared already exports`) {
		t.Fatalf("duplicate export: err = %v", err)
	}
	d.Forget("Shared")
	if _, ok := d.Export("Shared-Token"); ok {
		t.Fatal("export survived Forget")
	}
	if _, ok := d.SSMParameter("/cg/token"); ok {
		t.Fatal("SSM parameter survived Forget")
	}
}

func TestAdopt(t *testing.T) {
	d := NewDeployment(Env{})
	st := &Stack{Name: "S", Template: mustParse(t, `{"Resources": {"C": {"Type": "Custom::X"}, "R": {"Type": "AWS::IAM::Role"}}}`)}
	prev := d.Stack(st, nil)
	if err := prev.SetCustom("C", "phys", map[string]any{"Id": "phys"}); err != nil {
		t.Fatal(err)
	}
	next := d.Stack(st, nil)
	if err := next.Adopt(prev, "C"); err != nil {
		t.Fatal(err)
	}
	if id, ok := next.PhysicalID("C"); !ok || id != "phys" {
		t.Fatalf("PhysicalID = %q, %v", id, ok)
	}
	if err := next.Adopt(prev, "R"); err == nil {
		t.Fatal("Adopt of a resource never created: want error")
	}
	if err := next.SetCustom("R", "x", nil); err == nil {
		t.Fatal("SetCustom on a role: want error")
	}
	if _, err := next.CreateBuiltin("C"); err == nil {
		t.Fatal("CreateBuiltin on a custom resource: want error")
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
