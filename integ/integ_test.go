package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/internal/integtests"
)

// update rewrites the snapshot from the current synthesis:
// go test ./integ -run TestAwsAuthCaseSnapshot -update
var update = flag.Bool("update", false, "rewrite integ_aws_auth.go.snapshot/ from the current synthesis")

// snapshotDir is where integ-runner keeps this case's snapshot (its naming:
// <test file>.snapshot).
const snapshotDir = "integ_aws_auth.go.snapshot"

func TestMain(m *testing.M) {
	// jsii prints a banner for Node 20 on every start; keep test output readable.
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	flag.Parse()
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

// loadIntegTests loads the integ-tests package, or skips the test when it is
// not installed (outside CI: in CI, where scripts/test.sh installs it, a
// missing package fails the test).
func loadIntegTests(t *testing.T) {
	t.Helper()
	err := integtests.Load()
	switch {
	case err == nil:
	case errors.Is(err, integtests.ErrNotInstalled) && os.Getenv("CI") == "":
		t.Skipf("skipping the integration test case: %v", err)
	default:
		t.Fatal(err)
	}
}

// synthCase synthesizes the case the way integ-runner does (cdk.json's
// context, no version reporting, path or asset metadata), with placeholders
// for the real values whatever the environment holds, and without bundling
// (asset hashes are not part of the snapshot). It returns the assembly's
// directory and the case.
func synthCase(t *testing.T) (string, *awsAuthCase) {
	t.Helper()
	context, err := projectContext()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]interface{}{
		"aws:cdk:version-reporting":     false,
		"aws:cdk:enable-path-metadata":  false,
		"aws:cdk:enable-asset-metadata": false,
		"aws:cdk:bundling-stacks":       []interface{}{},
	} {
		context[k] = v
	}
	outdir := t.TempDir()
	app := awscdk.NewApp(&awscdk.AppProps{Context: &context, Outdir: jsii.String(outdir)})
	noEnv := func(string) (string, bool) { return "", false }
	var c *awsAuthCase
	must(t, "build the case", func() {
		c, err = newCase(app, noEnv)
	})
	if err != nil {
		t.Fatal(err)
	}
	must(t, "synthesize the case", func() { app.Synth(nil) })
	return outdir, c
}

// TestAwsAuthCaseSnapshot is the offline check of the integration test case:
// what integ-runner does without an account (synthesize the case, compare
// with the committed snapshot), which the runner itself cannot do for this
// app yet (README.md, "Integration tests"). Besides the stack under test it
// compares the integ manifest and the assertion stack, which integ-runner
// leaves out. Asset hashes and the assertions' per-synth salt are
// normalized on both sides.
func TestAwsAuthCaseSnapshot(t *testing.T) {
	loadIntegTests(t)

	// given the case, synthesized
	outdir, _ := synthCase(t)
	got := snapshotFiles(t, outdir)

	if *update {
		writeSnapshot(t, got)
		t.Logf("rewrote %s: review the diff and commit it", snapshotDir)
		return
	}

	// then it matches the committed snapshot, file by file
	want := snapshotFiles(t, snapshotDir)
	for _, name := range sortedKeys(got, want) {
		g, inGot := got[name]
		w, inWant := want[name]
		switch {
		case !inWant:
			t.Errorf("%s is synthesized but not in %s", name, snapshotDir)
		case !inGot:
			t.Errorf("%s is in %s but no longer synthesized", name, snapshotDir)
		default:
			var diffs []string
			jsonDiff("$", w, g, &diffs)
			if len(diffs) > 0 {
				t.Errorf("%s differs from the snapshot:\n%s", name, strings.Join(diffs, "\n"))
			}
		}
	}
	if t.Failed() {
		t.Logf("if the change is intended, rewrite the snapshot and review its diff: go test ./integ -run %s -update", t.Name())
	}
}

// TestAwsAuthCaseAsserts checks what the case asserts, independently of the
// snapshot: one test case (the aws-auth stack) and an invocation of its
// function that expects the identity, the group and the group's (no) repos.
func TestAwsAuthCaseAsserts(t *testing.T) {
	loadIntegTests(t)

	// given the case, synthesized
	outdir, c := synthCase(t)

	// then the manifest names the stack under test and the assertion stack
	manifest := readJSON(t, filepath.Join(outdir, "integ.json")).(map[string]interface{})
	cases, _ := manifest["testCases"].(map[string]interface{})
	tc, ok := cases[testID+"/DefaultTest"].(map[string]interface{})
	if !ok || len(cases) != 1 {
		t.Fatalf("integ.json test cases = %v, want only %s/DefaultTest", cases, testID)
	}
	if got := fmt.Sprint(tc["stacks"]); got != "["+caseStackName+"]" {
		t.Errorf("stacks under test = %s, want [%s]", got, caseStackName)
	}
	if tc["stackUpdateWorkflow"] != false {
		t.Errorf("stackUpdateWorkflow = %v, want false (the snapshot holds placeholders)", tc["stackUpdateWorkflow"])
	}
	assertionStack, _ := tc["assertionStackName"].(string)

	// and the assertion stack invokes the function and expects its answer
	tpl := readJSON(t, filepath.Join(outdir, assertionStack+".template.json")).(map[string]interface{})
	var invokes []map[string]interface{}
	for _, r := range tpl["Resources"].(map[string]interface{}) {
		r := r.(map[string]interface{})
		if r["Type"] == "Custom::DeployAssert@SdkCallLambdainvoke" {
			invokes = append(invokes, r["Properties"].(map[string]interface{}))
		}
	}
	if len(invokes) != 1 {
		t.Fatalf("assertion stack has %d Lambda invocations, want 1", len(invokes))
	}
	invoke := invokes[0]
	if got, want := render(invoke["parameters"].(map[string]interface{})["FunctionName"]), `"{`+caseStackName+`.FunctionName}"`; got != want {
		t.Errorf("invoked function = %s, want %s", got, want)
	}
	var expected interface{}
	if err := json.Unmarshal([]byte(render(invoke["expected"])), &expected); err != nil {
		t.Fatalf("expected is not JSON: %v\n%s", err, render(invoke["expected"]))
	}
	want := map[string]interface{}{"$ObjectLike": map[string]interface{}{
		"StatusCode": 200.0,
		"Payload": map[string]interface{}{"$SerializedJson": map[string]interface{}{
			"identity": "{" + caseStackName + ".IdentityId}",
			"group":    "{" + caseStackName + ".GroupId}",
			"count":    0.0,
			"repos":    []interface{}{},
		}},
	}}
	if !reflect.DeepEqual(expected, want) {
		t.Errorf("expected result =\n%v\nwant\n%v", expected, want)
	}
	if c.Invoke == nil || c.Test == nil || *c.Stack.StackName() != caseStackName {
		t.Errorf("case = %+v, want the stack, the test and the invocation", c)
	}
}

// render turns a value that references another stack's outputs into a
// string: {Fn::GetStackOutput} and {Fn::ImportValue} become
// {<stack>.<output>} (the output named as the case stack declares it), and
// Fn::Join is joined.
func render(v interface{}) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]interface{}:
		if o, ok := x["Fn::GetStackOutput"].(map[string]interface{}); ok {
			return fmt.Sprintf("{%v.%v}", o["StackName"], outputName(fmt.Sprint(o["OutputName"])))
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

// outputName maps the output CDK publishes for a cross-stack reference
// (PublishOutputRef<LogicalId><hash>) to the case stack's own output that
// reports the same resource.
func outputName(published string) string {
	for prefix, name := range map[string]string{
		"PublishOutputRefFunction": "FunctionName",
		"PublishOutputRefIdentity": "IdentityId",
		"PublishOutputRefGroup":    "GroupId",
	} {
		if strings.HasPrefix(published, prefix) {
			return name
		}
	}
	return published
}

// Normalization of what changes from one synthesis to the next without a
// change of the case: asset hashes (64 hex digits, in S3 keys and asset
// names) and the salt that makes the assertions run on every deployment.
var assetHash = regexp.MustCompile(`\b[0-9a-f]{64}\b`)

func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		out := make(map[string]interface{}, len(x))
		for k, e := range x {
			if k == "salt" {
				out[k] = "<salt>"
				continue
			}
			out[assetHash.ReplaceAllString(k, "<asset-hash>")] = normalize(e)
		}
		return out
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case string:
		return assetHash.ReplaceAllString(x, "<asset-hash>")
	}
	return v
}

// snapshotFiles reads the parts of an assembly (or snapshot) directory the
// snapshot holds, normalized: integ.json and every template.
func snapshotFiles(t *testing.T, dir string) map[string]interface{} {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.template.json"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, filepath.Join(dir, "integ.json"))
	files := map[string]interface{}{}
	for _, p := range names {
		files[filepath.Base(p)] = normalize(readJSON(t, p))
	}
	return files
}

// writeSnapshot replaces the snapshot directory with files.
func writeSnapshot(t *testing.T, files map[string]interface{}) {
	t.Helper()
	if err := os.RemoveAll(snapshotDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(snapshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range files {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // keep the <asset-hash> markers readable
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(snapshotDir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readJSON(t *testing.T, path string) interface{} {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v interface{}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func sortedKeys(maps ...map[string]interface{}) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// jsonDiff appends to out a line per JSON path where want and got differ.
func jsonDiff(path string, want, got interface{}, out *[]string) {
	wm, wok := want.(map[string]interface{})
	gm, gok := got.(map[string]interface{})
	if wok && gok {
		for _, k := range sortedKeys(wm, gm) {
			jsonDiff(path+"."+k, wm[k], gm[k], out)
		}
		return
	}
	wa, waok := want.([]interface{})
	ga, gaok := got.([]interface{})
	if waok && gaok && len(wa) == len(ga) {
		for i := range wa {
			jsonDiff(fmt.Sprintf("%s[%d]", path, i), wa[i], ga[i], out)
		}
		return
	}
	if !reflect.DeepEqual(want, got) {
		w, _ := json.Marshal(want)
		g, _ := json.Marshal(got)
		*out = append(*out, fmt.Sprintf("%s: snapshot %s, now %s", path, w, g))
	}
}

// must runs f, turning a panic (jsii throws on a failed synthesis) into
// t.Fatal.
func must(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s: %v", what, r)
		}
	}()
	f()
}
