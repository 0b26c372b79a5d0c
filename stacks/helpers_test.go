package stacks

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// Sample values: a root group and an identity in it.
const (
	testGroup       = "0123456789abcdef0123456789abcdef01234567"
	testProvisioner = testGroup + "/0123456789abcdef"
	testAccount     = "111122223333"
	testRoleID      = "AROA1234567890ABCDEFG"
)

func TestMain(m *testing.M) {
	// jsii prints a banner for Node 20 on every start; keep test output readable.
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

// newTestApp returns an app writing to a temporary directory. Bundling is
// skipped (context "aws:cdk:bundling-stacks": []) unless bundle is set.
func newTestApp(t testing.TB, bundle bool, context map[string]interface{}) awscdk.App {
	t.Helper()
	ctx := map[string]interface{}{}
	if !bundle {
		ctx["aws:cdk:bundling-stacks"] = []interface{}{}
	}
	for k, v := range context {
		ctx[k] = v
	}
	return awscdk.NewApp(&awscdk.AppProps{Context: &ctx, Outdir: jsii.String(t.TempDir())})
}

// testSettings are valid provisioner settings.
func testSettings() *ProvisionerSettings {
	return &ProvisionerSettings{Identity: testProvisioner}
}

// must runs f, turning a panic (a failed assertion or a failed synth: jsii
// throws) into t.Fatal, so that one failure does not abort the test binary.
func must(t testing.TB, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: %v", what, r)
		}
	}()
	f()
}

// templateOf synthesizes stack and returns its template.
func templateOf(t testing.TB, stack awscdk.Stack) assertions.Template {
	t.Helper()
	var tpl assertions.Template
	must(t, "synthesize "+*stack.StackName(), func() { tpl = assertions.Template_FromStack(stack, nil) })
	return tpl
}

// doc is a template as plain Go values.
type doc map[string]interface{}

// docOf returns the template as JSON values.
func docOf(t testing.TB, tpl assertions.Template) doc {
	t.Helper()
	return doc(*tpl.ToJSON())
}

// resources returns the logical IDs and properties of the resources of type
// typ, sorted by logical ID.
func (d doc) resources(typ string) ([]string, []map[string]interface{}) {
	res, _ := d["Resources"].(map[string]interface{})
	var ids []string
	for id, r := range res {
		if r.(map[string]interface{})["Type"] == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	props := make([]map[string]interface{}, len(ids))
	for i, id := range ids {
		props[i], _ = res[id].(map[string]interface{})["Properties"].(map[string]interface{})
	}
	return ids, props
}

// one returns the logical ID and properties of the only resource of type typ.
func (d doc) one(t testing.TB, typ string) (string, map[string]interface{}) {
	t.Helper()
	ids, props := d.resources(typ)
	if len(ids) != 1 {
		t.Fatalf("want exactly one %s, got %d: %v", typ, len(ids), ids)
	}
	return ids[0], props[0]
}

// output returns the rendered value of output name.
func (d doc) output(t testing.TB, name string) string {
	t.Helper()
	outs, _ := d["Outputs"].(map[string]interface{})
	o, ok := outs[name].(map[string]interface{})
	if !ok {
		t.Fatalf("no output %q; outputs: %v", name, keys(outs))
	}
	return render(o["Value"])
}

func keys(m map[string]interface{}) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// render turns a CloudFormation value into a string: intrinsic references
// become {Ref} and {LogicalId.Attr}, Fn::Join is joined, so that tests can
// compare whole values, e.g. "arn:{AWS::Partition}:sts::...".
func render(v interface{}) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]interface{}:
		if r, ok := x["Ref"].(string); ok {
			return "{" + r + "}"
		}
		if g, ok := x["Fn::GetAtt"].([]interface{}); ok && len(g) == 2 {
			return fmt.Sprintf("{%v.%v}", g[0], g[1])
		}
		if j, ok := x["Fn::Join"].([]interface{}); ok && len(j) == 2 {
			var parts []string
			for _, p := range j[1].([]interface{}) {
				parts = append(parts, render(p))
			}
			return strings.Join(parts, j[0].(string))
		}
	}
	return fmt.Sprintf("%v", v)
}

// resolve turns a CloudFormation value into the string it has at deploy
// time: Ref and Fn::GetAtt take their values from values (keyed
// "AWS::Partition", "LogicalId", "LogicalId.Attr"), Fn::Join is joined. A
// reference without a value, or any other intrinsic, fails the test.
func resolve(t testing.TB, v interface{}, values map[string]string) string {
	t.Helper()
	lookup := func(name string) string {
		t.Helper()
		val, ok := values[name]
		if !ok {
			t.Fatalf("resolve: no test value for the reference %q in %v", name, v)
		}
		return val
	}
	switch x := v.(type) {
	case string:
		return x
	case map[string]interface{}:
		if r, ok := x["Ref"].(string); ok {
			return lookup(r)
		}
		if g, ok := x["Fn::GetAtt"].([]interface{}); ok && len(g) == 2 {
			return lookup(fmt.Sprintf("%v.%v", g[0], g[1]))
		}
		if j, ok := x["Fn::Join"].([]interface{}); ok && len(j) == 2 {
			var parts []string
			for _, p := range j[1].([]interface{}) {
				parts = append(parts, resolve(t, p, values))
			}
			return strings.Join(parts, j[0].(string))
		}
	}
	t.Fatalf("resolve: cannot resolve %v", v)
	return ""
}
