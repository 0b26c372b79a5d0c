package stacks

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
)

// testFederationIssuer is an account's outbound identity federation issuer.
const testFederationIssuer = "https://0123abcd-0000-4000-8000-0123456789ab.tokens.sts.global.api.aws"

// testEnv is a concrete environment in the aws partition.
var testEnv = &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("us-east-1")}

// wantTokenStatement is the one statement a web-identity grant adds, with
// audience as the only audience (JSON values as the template holds them).
func wantTokenStatement(audience string) map[string]interface{} {
	return map[string]interface{}{
		"Action":   "sts:GetWebIdentityToken",
		"Effect":   "Allow",
		"Resource": "*",
		"Condition": map[string]interface{}{
			"ForAllValues:StringEquals": map[string]interface{}{"sts:IdentityTokenAudience": audience},
			"Null":                      map[string]interface{}{"sts:IdentityTokenAudience": "false"},
			"NumericLessThanEquals":     map[string]interface{}{"sts:DurationSeconds": float64(300)},
			"StringEquals":              map[string]interface{}{"sts:SigningAlgorithm": "ES384"},
		},
	}
}

// policyStatements returns the statements of the AWS::IAM::Policy props.
func policyStatements(props map[string]interface{}) []interface{} {
	doc, _ := props["PolicyDocument"].(map[string]interface{})
	st, _ := doc["Statement"].([]interface{})
	return st
}

// policiesWithAction returns the logical IDs and properties of the
// AWS::IAM::Policy resources with a statement naming action.
func (d doc) policiesWithAction(action string) ([]string, []map[string]interface{}) {
	ids, props := d.resources("AWS::IAM::Policy")
	var outIDs []string
	var out []map[string]interface{}
	for i, p := range props {
		for _, a := range d.actionsOf(p) {
			if a == action {
				outIDs, out = append(outIDs, ids[i]), append(out, p)
				break
			}
		}
	}
	return outIDs, out
}

// actionsOf returns the actions of the statements of policy props.
func (d doc) actionsOf(props map[string]interface{}) []string {
	var actions []string
	for _, s := range policyStatements(props) {
		switch a := s.(map[string]interface{})["Action"].(type) {
		case string:
			actions = append(actions, a)
		case []interface{}:
			for _, x := range a {
				actions = append(actions, x.(string))
			}
		}
	}
	return actions
}

// allActions returns every IAM action the stack's policies allow, sorted.
func (d doc) allActions() []string {
	_, props := d.resources("AWS::IAM::Policy")
	var all []string
	for _, p := range props {
		all = append(all, d.actionsOf(p)...)
	}
	sort.Strings(all)
	return all
}

// resource returns the whole resource (Type, Properties, DependsOn, ...).
func (d doc) resource(t testing.TB, id string) map[string]interface{} {
	t.Helper()
	r, ok := d["Resources"].(map[string]interface{})[id].(map[string]interface{})
	if !ok {
		t.Fatalf("no resource %s", id)
	}
	return r
}

// dependsOn reports whether resource id depends on resource on.
func (d doc) dependsOn(t testing.TB, id, on string) bool {
	t.Helper()
	deps, _ := d.resource(t, id)["DependsOn"].([]interface{})
	for _, x := range deps {
		if x == on {
			return true
		}
	}
	return false
}

// functionEnv returns the environment variables of the function props.
func functionEnv(fn map[string]interface{}) map[string]interface{} {
	env, _ := fn["Environment"].(map[string]interface{})
	vars, _ := env["Variables"].(map[string]interface{})
	return vars
}

// ssmLookups returns the IDs of the template parameters that read the SSM
// parameter name at deploy time.
func (d doc) ssmLookups(name string) []string {
	var ids []string
	params, _ := d["Parameters"].(map[string]interface{})
	for id, p := range params {
		if p.(map[string]interface{})["Default"] == name {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func TestWebIdentityTrust(t *testing.T) {
	tests := []struct {
		name string
		// role adds the role to stack, returning it and its logical ID
		// ("" for an imported role).
		role  func(stack awscdk.Stack) (awsiam.IRole, string)
		props *WebIdentityProps
		// roleName is the role's name at deploy time; want* are the
		// rendered properties (LOGICAL: the role's logical ID, PARAM: the
		// issuer parameter's).
		roleName, wantRoleName, wantRolePath, wantIssuer string
		wantSubject                                      string
	}{
		{
			name: "role of the app, issuer from the provisioner stack's parameter",
			role: func(s awscdk.Stack) (awsiam.IRole, string) {
				r := lambdaRole(s)
				return r, *s.GetLogicalId(r.Node().DefaultChild().(awsiam.CfnRole))
			},
			roleName: "Web-Role-1A2B3C4D5E6F", wantRoleName: "{LOGICAL}", wantRolePath: "/", wantIssuer: "{PARAM}",
			wantSubject: "arn:aws:iam::" + testAccount + ":role/Web-Role-1A2B3C4D5E6F",
		},
		{
			name: "role of the app with a path, issuer given",
			role: func(s awscdk.Stack) (awsiam.IRole, string) {
				r := awsiam.NewRole(s, jsii.String("Role"), &awsiam.RoleProps{Path: jsii.String("/service-role/"), AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil)})
				return r, *s.GetLogicalId(r.Node().DefaultChild().(awsiam.CfnRole))
			},
			props:    &WebIdentityProps{Issuer: testFederationIssuer},
			roleName: "Web-Role-1A2B3C4D5E6F", wantRoleName: "{LOGICAL}", wantRolePath: "/service-role/", wantIssuer: testFederationIssuer,
			wantSubject: "arn:aws:iam::" + testAccount + ":role/service-role/Web-Role-1A2B3C4D5E6F",
		},
		{
			name: "role imported by an ARN that shows its path",
			role: func(s awscdk.Stack) (awsiam.IRole, string) {
				return awsiam.Role_FromRoleArn(s, jsii.String("Role"), jsii.String("arn:aws:iam::"+testAccount+":role/teams/a/ecs.task"), nil), ""
			},
			props:    &WebIdentityProps{Issuer: testFederationIssuer},
			roleName: "ecs.task", wantRoleName: "ecs.task", wantRolePath: "/teams/a/", wantIssuer: testFederationIssuer,
			wantSubject: "arn:aws:iam::" + testAccount + ":role/teams/a/ecs.task",
		},
		{
			name: "role imported by name with its path given",
			role: func(s awscdk.Stack) (awsiam.IRole, string) {
				return awsiam.Role_FromRoleName(s, jsii.String("Role"), jsii.String("ecs-task"), nil), ""
			},
			props:    &WebIdentityProps{RolePath: "/service-role/"},
			roleName: "ecs-task", wantRoleName: "ecs-task", wantRolePath: "/service-role/", wantIssuer: "{PARAM}",
			wantSubject: "arn:aws:iam::" + testAccount + ":role/service-role/ecs-task",
		},
		{
			name: "role imported by name without a path",
			role: func(s awscdk.Stack) (awsiam.IRole, string) {
				return awsiam.Role_FromRoleName(s, jsii.String("Role"), jsii.String("ecs-task"), nil), ""
			},
			roleName: "ecs-task", wantRoleName: "ecs-task", wantRolePath: "/", wantIssuer: "{PARAM}",
			wantSubject: "arn:aws:iam::" + testAccount + ":role/ecs-task",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// given a role made assumable by web identity
			app := newTestApp(t, false, nil)
			stack := awscdk.NewStack(app, jsii.String("Web"), &awscdk.StackProps{Env: testEnv})
			role, logical := tt.role(stack)
			id := NewAssumableIdentity(stack, "Identity", &AssumableIdentityProps{
				Role: role, Group: testGroup, Name: "web-identity", Trust: WebIdentity(tt.props), Provisioner: testSettings(),
			})

			// when it is synthesized
			d := docOf(t, templateOf(t, stack))

			// then the identity carries the web-identity trust and nothing of the caller-identity kinds
			_, identity := d.one(t, IdentityResourceType)
			param := ""
			if ids := d.ssmLookups(DefaultWebIdentityIssuerParameter); len(ids) == 1 {
				param = ids[0]
			} else if tt.wantIssuer == "{PARAM}" {
				t.Fatalf("issuer parameter lookups = %v, want exactly one", ids)
			}
			repl := strings.NewReplacer("LOGICAL", logical, "PARAM", param)
			for k, want := range map[string]string{
				"Trust": "WebIdentity", "AwsAccount": testAccount, "AwsRoleName": repl.Replace(tt.wantRoleName),
				"AwsRolePath": tt.wantRolePath, "AwsIssuer": repl.Replace(tt.wantIssuer),
			} {
				if got := render(identity[k]); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			for _, k := range []string{"AwsRoleId", "AwsSession", "AwsSessionPattern"} {
				if v, ok := identity[k]; ok {
					t.Errorf("identity has %s = %v: the web-identity trust must not carry it", k, v)
				}
			}

			// and the trust, as deployed, passes the provisioner's validation and names the role's ARN as subject
			deployed := map[string]string{"AWS::Partition": "aws", logical: tt.roleName, param: testFederationIssuer}
			tr := trust.WebIdentity{Audience: DefaultIssuer}
			for _, f := range []struct {
				dst  *string
				prop string
			}{{&tr.Account, "AwsAccount"}, {&tr.Partition, "AwsPartition"}, {&tr.RoleName, "AwsRoleName"}, {&tr.RolePath, "AwsRolePath"}, {&tr.Issuer, "AwsIssuer"}} {
				*f.dst = resolve(t, identity[f.prop], deployed)
			}
			if err := tr.Validate(); err != nil {
				t.Fatalf("the deployed trust would be refused by the provisioner: %v", err)
			}
			if got := tr.Subject(); got != tt.wantSubject {
				t.Errorf("subject = %q, want %q", got, tt.wantSubject)
			}

			// and the workload is told to use web identity
			if got := id.Environment(); (*got)[EnvTrust] == nil || *(*got)[EnvTrust] != EnvTrustWebIdentity {
				t.Errorf("Environment()[%s] = %v, want %q", EnvTrust, (*got)[EnvTrust], EnvTrustWebIdentity)
			}
		})
	}
}

func TestWebIdentityIssuerLookedUpOncePerStack(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings *ProvisionerSettings
		want     string
	}{
		{name: "default parameter", settings: testSettings(), want: DefaultWebIdentityIssuerParameter},
		{name: "own parameter", settings: &ProvisionerSettings{Identity: testProvisioner, WebIdentityIssuerParameter: "/team/issuer"}, want: "/team/issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// given a stack with two web identities without issuer, one with, and a caller identity
			app := newTestApp(t, false, nil)
			stack := awscdk.NewStack(app, jsii.String("Many"), nil)
			for i, tr := range []Trust{WebIdentity(nil), WebIdentity(&WebIdentityProps{}), WebIdentity(&WebIdentityProps{Issuer: testFederationIssuer}), ExactSession("fn")} {
				var settings *ProvisionerSettings
				if i == 0 {
					settings = tc.settings
				}
				role := awsiam.NewRole(stack, jsii.Sprintf("Role%d", i), &awsiam.RoleProps{AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil)})
				NewAssumableIdentity(stack, fmt.Sprintf("Identity%d", i), &AssumableIdentityProps{
					Role: role, Group: testGroup, Name: fmt.Sprintf("identity-%d", i), Trust: tr, Provisioner: settings,
				})
			}

			// when it is synthesized
			d := docOf(t, templateOf(t, stack))

			// then one lookup of the issuer parameter serves both identities without issuer
			lookups := d.ssmLookups(tc.want)
			if len(lookups) != 1 {
				t.Fatalf("lookups of %s = %v, want exactly one", tc.want, lookups)
			}
			_, props := d.resources(IdentityResourceType)
			var issuers []string
			for _, p := range props {
				if p["Trust"] == "WebIdentity" {
					issuers = append(issuers, render(p["AwsIssuer"]))
				}
			}
			sort.Strings(issuers)
			if want := []string{testFederationIssuer, "{" + lookups[0] + "}", "{" + lookups[0] + "}"}; !reflect.DeepEqual(issuers, want) {
				t.Errorf("AwsIssuer values = %v, want %v", issuers, want)
			}
		})
	}
}

func TestWebIdentityGrant(t *testing.T) {
	// given a function configured for a web identity whose provisioner uses a local Chainguard issuer
	const audience = "http://127.0.0.1:8080"
	app := newTestApp(t, false, nil)
	stack := awscdk.NewStack(app, jsii.String("Grant"), nil)
	role := lambdaRole(stack)
	id := NewAssumableIdentity(stack, "Identity", &AssumableIdentityProps{
		Role: role, Group: testGroup, Name: "web", Trust: WebIdentity(nil),
		Provisioner: &ProvisionerSettings{Identity: testProvisioner, Issuer: audience},
	})
	fn := awslambda.NewFunction(stack, jsii.String("Fn"), &awslambda.FunctionProps{
		Runtime: awslambda.Runtime_NODEJS_22_X(), Handler: jsii.String("index.handler"), Role: role,
		Code: awslambda.Code_FromInline(jsii.String("unused")),
	})
	id.ConfigureFunction(fn)
	// and the same role granted again, directly and through the function
	id.Grant(role)
	id.Grant(fn)
	// and an imported role granted as well
	imported := awsiam.Role_FromRoleName(stack, jsii.String("Imported"), jsii.String("ecs-task"), nil)
	id.Grant(imported)

	// when it is synthesized
	tpl := templateOf(t, stack)
	d := docOf(t, tpl)

	// then each role has exactly one policy with exactly the one least-privilege statement
	roleID := *stack.GetLogicalId(role.Node().DefaultChild().(awsiam.CfnRole))
	ids, policies := d.policiesWithAction("sts:GetWebIdentityToken")
	if len(ids) != 2 {
		t.Fatalf("policies with sts:GetWebIdentityToken = %v, want one for the role of the app and one for the imported role", ids)
	}
	attached := map[string]string{}
	for i, p := range policies {
		st := policyStatements(p)
		if len(st) != 1 || !reflect.DeepEqual(st[0], wantTokenStatement(audience)) {
			t.Errorf("%s statements = %v, want exactly [%v]", ids[i], st, wantTokenStatement(audience))
		}
		roles, _ := p["Roles"].([]interface{})
		if len(roles) != 1 {
			t.Fatalf("%s is attached to %v, want one role", ids[i], roles)
		}
		attached[render(roles[0])] = ids[i]
	}
	appPolicy, ok := attached["{"+roleID+"}"]
	if !ok || attached["ecs-task"] == "" {
		t.Errorf("policies attached to %v, want {%s} and ecs-task", attached, roleID)
	}
	// and the function waits for its policy and is told to use web identity
	fnID, fnProps := d.one(t, "AWS::Lambda::Function")
	if !d.dependsOn(t, fnID, appPolicy) {
		t.Errorf("function does not depend on %s: it could run before it may request its token", appPolicy)
	}
	if got := functionEnv(fnProps)[EnvTrust]; got != EnvTrustWebIdentity {
		t.Errorf("%s = %v, want %q", EnvTrust, got, EnvTrustWebIdentity)
	}
	// and nothing else is granted: no tagging, no other STS action
	if got, want := d.allActions(), []string{"sts:GetWebIdentityToken", "sts:GetWebIdentityToken"}; !reflect.DeepEqual(got, want) {
		t.Errorf("actions granted = %v, want %v", got, want)
	}
	raw, _ := json.Marshal(d)
	if strings.Contains(string(raw), "TagGetWebIdentityToken") {
		t.Errorf("the template mentions sts:TagGetWebIdentityToken")
	}
}

func TestCallerIdentityGrantsNothing(t *testing.T) {
	for name, tr := range map[string]Trust{"exact session": ExactSession("fn"), "session pattern": SessionPattern(`[0-9a-f]{32}`)} {
		t.Run(name, func(t *testing.T) {
			// given a function configured for a caller identity, and its role granted too
			app := newTestApp(t, false, nil)
			stack := awscdk.NewStack(app, jsii.String("Caller"), nil)
			role := lambdaRole(stack)
			id := NewAssumableIdentity(stack, "Identity", &AssumableIdentityProps{Role: role, Group: testGroup, Name: "caller", Trust: tr, Provisioner: testSettings()})
			fn := awslambda.NewFunction(stack, jsii.String("Fn"), &awslambda.FunctionProps{
				Runtime: awslambda.Runtime_NODEJS_22_X(), Handler: jsii.String("index.handler"), Role: role,
				Code: awslambda.Code_FromInline(jsii.String("unused")),
			})
			id.ConfigureFunction(fn)
			id.Grant(role)

			// when it is synthesized
			tpl := templateOf(t, stack)
			d := docOf(t, tpl)

			// then no policy is added (GetCallerIdentity needs no permission) and the trust is explicit
			must(t, "no policy", func() { tpl.ResourceCountIs(jsii.String("AWS::IAM::Policy"), jsii.Number(0)) })
			_, identity := d.one(t, IdentityResourceType)
			if identity["Trust"] != "CallerIdentity" {
				t.Errorf("Trust = %v, want CallerIdentity", identity["Trust"])
			}
			for _, k := range []string{"AwsRolePath", "AwsIssuer"} {
				if v, ok := identity[k]; ok {
					t.Errorf("identity has %s = %v", k, v)
				}
			}
			// and the environment does not name the mode (unset means caller identity)
			_, fnProps := d.one(t, "AWS::Lambda::Function")
			if v, ok := functionEnv(fnProps)[EnvTrust]; ok {
				t.Errorf("%s = %v, want it unset", EnvTrust, v)
			}
			if len(d.ssmLookups(DefaultWebIdentityIssuerParameter)) != 0 {
				t.Errorf("the stack reads the web-identity issuer parameter without a web identity")
			}
		})
	}
}

func TestProvisionerStackWebIdentity(t *testing.T) {
	// given a provisioner stack in web-identity mode for a local Chainguard issuer
	const audience = "https://issuer.example.dev"
	app := newTestApp(t, false, nil)
	stack := NewProvisionerStack(app, "Prov", &ProvisionerStackProps{Group: testGroup, Trust: TrustWebIdentity, Issuer: audience})

	// when it is synthesized
	tpl := templateOf(t, stack)
	d := docOf(t, tpl)

	// then it adds the enablement resource, served by the provisioner function itself (no Node.js provider)
	for typ, n := range map[string]int{
		"AWS::IAM::Role": 1, "AWS::IAM::Policy": 3, "AWS::Lambda::Function": 1, "AWS::SSM::Parameter": 3,
		OutboundWebIdentityFederationResourceType: 1,
	} {
		must(t, "count "+typ, func() { tpl.ResourceCountIs(jsii.String(typ), jsii.Number(n)) })
	}
	roleID, _ := d.one(t, "AWS::IAM::Role")
	fnID, fn := d.one(t, "AWS::Lambda::Function")
	crID, cr := d.one(t, OutboundWebIdentityFederationResourceType)
	if want := map[string]interface{}{
		"ServiceToken":   map[string]interface{}{"Fn::GetAtt": []interface{}{fnID, "Arn"}},
		"ServiceTimeout": "180",
	}; !reflect.DeepEqual(cr, want) {
		t.Errorf("%s properties = %v, want exactly %v", OutboundWebIdentityFederationResourceType, cr, want)
	}
	if got := d.resource(t, crID)["DeletionPolicy"]; got != "Delete" {
		t.Errorf("DeletionPolicy = %v, want Delete (the provisioner answers Delete without turning federation off)", got)
	}

	// and the role may read and enable federation, with exactly those two actions, before the resource runs
	fedIDs, fedPolicies := d.policiesWithAction("iam:EnableOutboundWebIdentityFederation")
	if len(fedIDs) != 1 {
		t.Fatalf("policies with iam:EnableOutboundWebIdentityFederation = %v, want one", fedIDs)
	}
	wantFed := []interface{}{map[string]interface{}{
		"Action":   []interface{}{"iam:GetOutboundWebIdentityFederationInfo", "iam:EnableOutboundWebIdentityFederation"},
		"Effect":   "Allow",
		"Resource": "*",
	}}
	if got := policyStatements(fedPolicies[0]); !reflect.DeepEqual(got, wantFed) {
		t.Errorf("federation statements = %v, want exactly %v", got, wantFed)
	}
	if roles, _ := fedPolicies[0]["Roles"].([]interface{}); len(roles) != 1 || render(roles[0]) != "{"+roleID+"}" {
		t.Errorf("federation policy attached to %v, want the provisioner role", fedPolicies[0]["Roles"])
	}
	if !d.dependsOn(t, crID, fedIDs[0]) {
		t.Errorf("%s does not depend on %s: it could run before the role may enable federation", crID, fedIDs[0])
	}

	// and the role may request web identity tokens for the Chainguard issuer only, before the function runs
	tokIDs, tokPolicies := d.policiesWithAction("sts:GetWebIdentityToken")
	if len(tokIDs) != 1 {
		t.Fatalf("policies with sts:GetWebIdentityToken = %v, want one", tokIDs)
	}
	if got := policyStatements(tokPolicies[0]); len(got) != 1 || !reflect.DeepEqual(got[0], wantTokenStatement(audience)) {
		t.Errorf("token statements = %v, want exactly [%v]", got, wantTokenStatement(audience))
	}
	if !d.dependsOn(t, fnID, tokIDs[0]) {
		t.Errorf("function does not depend on %s", tokIDs[0])
	}
	// and nothing else: no disable, no tagging
	wantActions := []string{
		"iam:EnableOutboundWebIdentityFederation", "iam:GetOutboundWebIdentityFederationInfo",
		"logs:CreateLogStream", "logs:PutLogEvents", "sts:GetWebIdentityToken",
	}
	if got := d.allActions(); !reflect.DeepEqual(got, wantActions) {
		t.Errorf("actions granted = %v, want %v", got, wantActions)
	}

	// and the function knows its mode
	if got := functionEnv(fn); !reflect.DeepEqual(got, map[string]interface{}{EnvTrust: EnvTrustWebIdentity}) {
		t.Errorf("function environment = %v, want only %s=%s", got, EnvTrust, EnvTrustWebIdentity)
	}

	// and the issuer is published for identity stacks and printed
	issuer := "{" + crID + ".IssuerIdentifier}"
	_, params := d.resources("AWS::SSM::Parameter")
	var published bool
	for _, p := range params {
		if p["Name"] == DefaultWebIdentityIssuerParameter && render(p["Value"]) == issuer {
			published = true
		}
	}
	if !published {
		t.Errorf("no SSM parameter %s holding %s in %v", DefaultWebIdentityIssuerParameter, issuer, params)
	}
	roleARN := "{" + roleID + ".Arn}"
	for name, want := range map[string]string{
		"WebIdentityIssuer": issuer,
		"TrustCommand":      "chainctl iam identities create cdk-provisioner --identity-issuer=" + issuer + " --subject=" + roleARN + " --parent=" + testGroup + " --role=owner -o id",
	} {
		if got := d.output(t, name); got != want {
			t.Errorf("output %s:\n got %s\nwant %s", name, got, want)
		}
	}
	var spec struct {
		Name        string            `json:"name"`
		Description string            `json:"description"`
		ClaimMatch  map[string]string `json:"claim_match"`
		AWSIdentity interface{}       `json:"aws_identity"`
	}
	if err := json.Unmarshal([]byte(d.output(t, "TrustSpec")), &spec); err != nil {
		t.Fatalf("TrustSpec is not JSON: %v", err)
	}
	if want := map[string]string{"issuer": issuer, "subject": roleARN, "audience": audience}; spec.Name != DefaultProvisionerIdentityName ||
		spec.Description == "" || !reflect.DeepEqual(spec.ClaimMatch, want) || spec.AWSIdentity != nil {
		t.Errorf("TrustSpec = %+v, want name %s and claim_match %v", spec, DefaultProvisionerIdentityName, want)
	}
	// and the role's unique ID, which nothing pins in this mode, is not offered as if it were
	if outs, _ := d["Outputs"].(map[string]interface{}); outs["ProvisionerRoleId"] != nil {
		t.Errorf("output ProvisionerRoleId in web-identity mode")
	}
}

func TestProvisionerStackCallerIdentityHasNoFederation(t *testing.T) {
	for _, mode := range []TrustMode{"", TrustCallerIdentity} {
		t.Run(fmt.Sprintf("Trust=%q", mode), func(t *testing.T) {
			// given a provisioner stack in caller-identity mode
			app := newTestApp(t, false, nil)
			stack := NewProvisionerStack(app, "Prov", &ProvisionerStackProps{Group: testGroup, Trust: mode})

			// when it is synthesized
			tpl := templateOf(t, stack)
			d := docOf(t, tpl)

			// then the account-wide setting is left alone: no enablement resource, no IAM or STS permission, no mode variable
			must(t, "no enablement", func() {
				tpl.ResourceCountIs(jsii.String(OutboundWebIdentityFederationResourceType), jsii.Number(0))
			})
			if got, want := d.allActions(), []string{"logs:CreateLogStream", "logs:PutLogEvents"}; !reflect.DeepEqual(got, want) {
				t.Errorf("actions granted = %v, want %v", got, want)
			}
			_, fn := d.one(t, "AWS::Lambda::Function")
			if _, ok := fn["Environment"]; ok {
				t.Errorf("function environment = %v, want none", fn["Environment"])
			}
			if outs, _ := d["Outputs"].(map[string]interface{}); outs["WebIdentityIssuer"] != nil {
				t.Errorf("output WebIdentityIssuer in caller-identity mode")
			}
		})
	}
}

func TestNewAppWebIdentity(t *testing.T) {
	// given the app in web-identity mode with its own issuer parameter
	context := exampleContext(t)
	context[CtxGroup] = testGroup
	context[CtxProvisionerIdentity] = testProvisioner
	context[CtxTrust] = string(TrustWebIdentity)
	context[CtxWebIdentityIssuerParameter] = "/team/web-identity-issuer"
	t.Setenv("CDK_DEFAULT_ACCOUNT", "")
	t.Setenv("CDK_DEFAULT_REGION", "")
	app := newTestApp(t, false, context)
	if err := NewApp(app); err != nil {
		t.Fatalf("NewApp() = %v", err)
	}

	// when it is synthesized
	prov := docOf(t, templateOf(t, awscdk.Stack_Of(app.Node().FindChild(jsii.String(DefaultProvisionerStackName)))))
	auth := docOf(t, templateOf(t, awscdk.Stack_Of(app.Node().FindChild(jsii.String(DefaultAwsAuthStackName)))))

	// then the provisioner turns federation on and publishes the issuer where the aws-auth stack reads it
	prov.one(t, OutboundWebIdentityFederationResourceType)
	_, params := prov.resources("AWS::SSM::Parameter")
	names := map[interface{}]bool{}
	for _, p := range params {
		names[p["Name"]] = true
	}
	if !names["/team/web-identity-issuer"] {
		t.Errorf("provisioner parameters %v, want /team/web-identity-issuer", names)
	}
	lookups := auth.ssmLookups("/team/web-identity-issuer")
	if len(lookups) != 1 {
		t.Fatalf("aws-auth lookups of the issuer parameter = %v, want one", lookups)
	}
	// and the function's identity trusts its role's web identity tokens
	roleID, _ := auth.one(t, "AWS::IAM::Role")
	_, identity := auth.one(t, IdentityResourceType)
	for k, want := range map[string]string{
		"Trust": "WebIdentity", "AwsRoleName": "{" + roleID + "}", "AwsRolePath": "/", "AwsIssuer": "{" + lookups[0] + "}",
	} {
		if got := render(identity[k]); got != want {
			t.Errorf("identity %s = %q, want %q", k, got, want)
		}
	}
	// and the function may request its token and knows its mode
	if ids, _ := auth.policiesWithAction("sts:GetWebIdentityToken"); len(ids) != 1 {
		t.Errorf("aws-auth policies with sts:GetWebIdentityToken = %v, want one", ids)
	}
	_, fn := auth.one(t, "AWS::Lambda::Function")
	if got := functionEnv(fn)[EnvTrust]; got != EnvTrustWebIdentity {
		t.Errorf("%s = %v, want %q", EnvTrust, got, EnvTrustWebIdentity)
	}
}

func TestNewAppUnknownTrustMode(t *testing.T) {
	// given an app whose trust mode is misspelt
	app := newTestApp(t, false, map[string]interface{}{CtxGroup: testGroup, CtxTrust: "web-identity"})

	// when it is built
	err := NewApp(app)

	// then nothing is built and the error names the key and the values
	if err == nil {
		t.Fatal("NewApp() = nil, want an error")
	}
	for _, want := range []string{`context key "trust": "web-identity" is not a trust mode`, `"callerIdentity"`, `"webIdentity"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if n := len(*app.Node().Children()); n != 0 {
		t.Errorf("app has %d children after a context error, want 0", n)
	}
}

// TestCallerIdentityTemplatesUnchanged compares the app's templates in the
// default mode with testdata/caller-identity, synthesized by the same code
// (cdk.json's context, group and provisionerIdentity set, environment
// agnostic, bundling skipped) at commit 45cf44e, before the web-identity
// mode existed, and regenerated for one deliberate change since: the
// deploy-time trust check (issue 10), which added exactly the check, its
// Lambda permission, the provisioner role ARN parameter (published and
// read), its output and two descriptions. The only difference allowed is
// the identity's explicit Trust=CallerIdentity; asset keys are left out
// (they hash the sources), also inside strings (the check's Fingerprint).
// Regenerate the files only for a deliberate change of the first mode:
// UPDATE_CALLER_IDENTITY_TEMPLATES=1 go test ./stacks -run TestCallerIdentityTemplatesUnchanged.
// Naming the default architecture (arm64) changes nothing either.
func TestCallerIdentityTemplatesUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name    string
		context map[string]interface{}
	}{
		{name: "trust given=false"},
		{name: "trust given=true", context: map[string]interface{}{CtxTrust: string(TrustCallerIdentity)}},
		{name: "architecture given", context: map[string]interface{}{CtxArchitecture: string(ArchitectureARM64)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// given the app in the default mode, the mode (or the architecture) left out or named
			context := exampleContext(t)
			context[CtxGroup] = testGroup
			context[CtxProvisionerIdentity] = testProvisioner
			for k, v := range tc.context {
				context[k] = v
			}
			t.Setenv("CDK_DEFAULT_ACCOUNT", "")
			t.Setenv("CDK_DEFAULT_REGION", "")
			app := newTestApp(t, false, context)
			if err := NewApp(app); err != nil {
				t.Fatalf("NewApp() = %v", err)
			}

			for _, name := range []string{DefaultProvisionerStackName, DefaultAwsAuthStackName} {
				// when each stack is synthesized
				got := map[string]interface{}(docOf(t, templateOf(t, awscdk.Stack_Of(app.Node().FindChild(jsii.String(name))))))

				// then it is the template of the first mode plus Trust=CallerIdentity on the identity
				res, _ := got["Resources"].(map[string]interface{})
				for id, r := range res {
					r := r.(map[string]interface{})
					if r["Type"] != IdentityResourceType {
						continue
					}
					props := r["Properties"].(map[string]interface{})
					if props["Trust"] != "CallerIdentity" {
						t.Errorf("%s %s Trust = %v, want CallerIdentity", name, id, props["Trust"])
					}
					delete(props, "Trust")
				}
				golden := filepath.Join("testdata", "caller-identity", name+".json")
				if os.Getenv("UPDATE_CALLER_IDENTITY_TEMPLATES") == "1" && tc.context == nil {
					out, err := json.MarshalIndent(got, "", "  ")
					if err == nil {
						err = os.WriteFile(golden, append(out, '\n'), 0o644)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				raw, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				var want map[string]interface{}
				if err := json.Unmarshal(raw, &want); err != nil {
					t.Fatal(err)
				}
				var diffs []string
				jsonDiff("$", withoutAssetKeys(want), withoutAssetKeys(got), &diffs)
				if len(diffs) > 0 {
					t.Errorf("%s differs from the first mode's template:\n%s", name, strings.Join(diffs, "\n"))
				}
			}
		})
	}
}

// assetKey matches an asset's S3 key inside a string.
var assetKey = regexp.MustCompile(`[0-9a-f]{64}\.zip`)

// withoutAssetKeys returns v with every S3Key value, and every asset key
// inside a string, replaced by a marker.
func withoutAssetKeys(v interface{}) interface{} {
	switch x := v.(type) {
	case string:
		return assetKey.ReplaceAllString(x, "<asset>.zip")
	case map[string]interface{}:
		out := make(map[string]interface{}, len(x))
		for k, e := range x {
			if k == "S3Key" {
				out[k] = "<asset>"
			} else {
				out[k] = withoutAssetKeys(e)
			}
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, e := range x {
			out[i] = withoutAssetKeys(e)
		}
		return out
	}
	return v
}

// jsonDiff appends to out a line per JSON path where want and got differ.
func jsonDiff(path string, want, got interface{}, out *[]string) {
	wm, wok := want.(map[string]interface{})
	gm, gok := got.(map[string]interface{})
	if wok && gok {
		keys := map[string]bool{}
		for k := range wm {
			keys[k] = true
		}
		for k := range gm {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			p := path + "." + k
			w, inW := wm[k]
			g, inG := gm[k]
			switch {
			case !inW:
				*out = append(*out, fmt.Sprintf("%s: added %v", p, g))
			case !inG:
				*out = append(*out, fmt.Sprintf("%s: removed %v", p, w))
			default:
				jsonDiff(p, w, g, out)
			}
		}
		return
	}
	if !reflect.DeepEqual(want, got) {
		*out = append(*out, fmt.Sprintf("%s: %v, was %v", path, got, want))
	}
}

// TestWebIdentityAgreesWithTokenSource checks the values the stacks write for
// the workload against the workload's token source (chainguard/token), which
// keeps its own copies: the EnvTrust values it parses, and the signing
// algorithm and lifetime it requests, which the IAM statement must allow.
func TestWebIdentityAgreesWithTokenSource(t *testing.T) {
	for env, want := range map[string]token.Trust{EnvTrustCallerIdentity: token.CallerIdentity, EnvTrustWebIdentity: token.WebIdentity} {
		if got, err := token.ParseTrust(env); err != nil || got != want {
			t.Errorf("token.ParseTrust(%q) = %q, %v; want %q", env, got, err, want)
		}
	}
	if webIdentitySigningAlgorithm != token.WebIdentitySigningAlgorithm {
		t.Errorf("the grant allows %s, the token source requests %s", webIdentitySigningAlgorithm, token.WebIdentitySigningAlgorithm)
	}
	if max := time.Duration(webIdentityMaxDuration) * time.Second; token.WebIdentityTokenLifetime > max {
		t.Errorf("the grant allows at most %v, the token source requests %v", max, token.WebIdentityTokenLifetime)
	}
}
