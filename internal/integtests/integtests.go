// Package integtests is the slice of the CDK integ-tests library
// (@aws-cdk/integ-tests-alpha: IntegTest, its DeployAssert, Lambda invoke
// assertions, ExpectedResult and Match) that this project's integration test
// cases use, bound for Go by hand.
//
// Why by hand: the Go module that jsii publishes for that library
// (github.com/aws/aws-cdk-go/awscdkintegtestsalpha/v2) is not served to this
// project, while the npm package is. So the constructs are the real ones: the
// npm package, pinned in .cdk-cli/package.json and installed by
// scripts/test.sh (npm ci --prefix .cdk-cli), is loaded into the same jsii
// kernel as aws-cdk-lib at run time (Load), and the types below are thin
// proxies written the way jsii-pacmak writes them (registered classes,
// interfaces and structs; every call goes to the kernel). The assertion
// stacks and the integ manifest (integ.json) they produce are exactly those
// of a TypeScript integ test, the input integ-runner reads.
//
// Only what the cases use is bound; add members the same way (the names and
// types are in the package's .jsii assembly). If the Go module becomes
// available, switch to it: the names here follow it.
package integtests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	awscdkjsii "github.com/aws/aws-cdk-go/awscdk/v2/jsii"
	"github.com/aws/constructs-go/constructs/v10"
	_jsii_ "github.com/aws/jsii-runtime-go/runtime"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

// Package is the npm package bound here.
const Package = "@aws-cdk/integ-tests-alpha"

// PackageDir is where scripts/test.sh installs the package, relative to the
// module root.
var PackageDir = filepath.Join(".cdk-cli", "node_modules", "@aws-cdk", "integ-tests-alpha")

// ErrNotInstalled means the npm package is not installed (Load's error
// wraps it): run `npm ci --prefix .cdk-cli`.
var ErrNotInstalled = errors.New(Package + " is not installed")

var (
	loadOnce sync.Once
	loadErr  error
)

// Load loads the package from PackageDir under the module root into the jsii
// kernel (once per process; later calls return the first result). Call it
// before any other function of this package.
func Load() error {
	loadOnce.Do(func() { loadErr = load() })
	return loadErr
}

func load() error {
	root, err := lambdabuild.ModuleRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, PackageDir)
	raw, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w in %s: run `npm ci --prefix .cdk-cli` in %s (scripts/test.sh does)", ErrNotInstalled, dir, root)
	}
	if err != nil {
		return err
	}
	var meta struct{ Name, Version string }
	if err := json.Unmarshal(raw, &meta); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(dir, "package.json"), err)
	}
	if meta.Name != Package {
		return fmt.Errorf("%s holds %s, want %s", dir, meta.Name, Package)
	}
	tarball, err := packTarball(dir)
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	awscdkjsii.Initialize() // aws-cdk-lib and constructs first: the package needs them
	_jsii_.Load(Package, meta.Version, tarball)
	return nil
}

// packTarball returns dir as an npm package tarball (every file under
// "package/"), the form the jsii kernel loads.
func packTarball(dir string) ([]byte, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, p := range files {
		body, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: "package/" + filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// IntegTestProps configures NewIntegTest (@aws-cdk/integ-tests-alpha.IntegTestProps,
// with the aws-cdk-lib.cloud_assembly_schema.TestOptions it extends).
type IntegTestProps struct {
	// TestCases are the stacks under test: deployed, asserted, destroyed;
	// their templates are the snapshot that integ-runner compares.
	TestCases *[]awscdk.Stack `field:"required" json:"testCases" yaml:"testCases"`
	// AssertionStack holds the assertions. Default: a stack the test creates.
	AssertionStack awscdk.Stack `field:"optional" json:"assertionStack" yaml:"assertionStack"`
	// EnableLookups lets the test use context lookups.
	EnableLookups *bool `field:"optional" json:"enableLookups" yaml:"enableLookups"`
	// AllowDestroy lists resource types that may be destroyed by an update.
	AllowDestroy *[]*string `field:"optional" json:"allowDestroy" yaml:"allowDestroy"`
	// DiffAssets makes asset hashes part of the snapshot comparison.
	DiffAssets *bool `field:"optional" json:"diffAssets" yaml:"diffAssets"`
	// Regions restricts the regions the test runs in.
	Regions *[]*string `field:"optional" json:"regions" yaml:"regions"`
	// StackUpdateWorkflow: deploy the committed snapshot first, then the
	// change as an update. Default true.
	StackUpdateWorkflow *bool `field:"optional" json:"stackUpdateWorkflow" yaml:"stackUpdateWorkflow"`
}

// IntegTest is an integration test case: stacks under test and the
// assertions run against them once deployed. It writes integ.json, the
// manifest integ-runner reads.
type IntegTest interface {
	constructs.Construct
	// Assertions made against the deployed test cases.
	Assertions() IDeployAssert
}

type jsiiProxy_IntegTest struct {
	constructs.Construct
}

func (j *jsiiProxy_IntegTest) Assertions() IDeployAssert {
	var returns IDeployAssert
	_jsii_.Get(j, "assertions", &returns)
	return returns
}

// NewIntegTest creates an integration test case.
func NewIntegTest(scope constructs.Construct, id *string, props *IntegTestProps) IntegTest {
	mustLoad()
	j := jsiiProxy_IntegTest{}
	_jsii_.Create(Package+".IntegTest", []interface{}{scope, id, props}, &j)
	return &j
}

// InvocationType is how InvokeFunction invokes a function.
type InvocationType string

// Invocation types.
const (
	InvocationType_REQUEST_RESPONSE InvocationType = "REQUEST_RESPONSE"
	InvocationType_EVENT            InvocationType = "EVENT"
	InvocationType_DRY_RUN          InvocationType = "DRY_RUN"
)

// LambdaInvokeFunctionProps configures IDeployAssert.InvokeFunction.
type LambdaInvokeFunctionProps struct {
	// FunctionName of the function to invoke.
	FunctionName *string `field:"required" json:"functionName" yaml:"functionName"`
	// InvocationType. Default InvocationType_REQUEST_RESPONSE.
	InvocationType InvocationType `field:"optional" json:"invocationType" yaml:"invocationType"`
	// Payload, a JSON string. Default none.
	Payload *string `field:"optional" json:"payload" yaml:"payload"`
}

// IDeployAssert makes assertions at deploy time, from the assertion stack.
type IDeployAssert interface {
	// InvokeFunction invokes a Lambda function; the call's result is the
	// Invoke API response (the function's answer is its Payload, a JSON
	// string).
	InvokeFunction(props *LambdaInvokeFunctionProps) IApiCall
}

type jsiiProxy_IDeployAssert struct {
	_ byte // proxies must not be zero-sized
}

func (j *jsiiProxy_IDeployAssert) InvokeFunction(props *LambdaInvokeFunctionProps) IApiCall {
	var returns IApiCall
	_jsii_.Invoke(j, "invokeFunction", []interface{}{props}, &returns)
	return returns
}

// IApiCall is an API call made at deploy time, whose result can be asserted.
type IApiCall interface {
	constructs.IConstruct
	// Expect asserts that the whole result matches expected.
	Expect(expected ExpectedResult) IApiCall
}

type jsiiProxy_IApiCall struct {
	constructs.IConstruct
}

func (j *jsiiProxy_IApiCall) Expect(expected ExpectedResult) IApiCall {
	var returns IApiCall
	_jsii_.Invoke(j, "expect", []interface{}{expected}, &returns)
	return returns
}

// ExpectedResult is what an assertion expects.
type ExpectedResult interface {
	// Result is the expectation, serialized.
	Result() *string
}

type jsiiProxy_ExpectedResult struct {
	_ byte // proxies must not be zero-sized
}

func (j *jsiiProxy_ExpectedResult) Result() *string {
	var returns *string
	_jsii_.Get(j, "result", &returns)
	return returns
}

func expectedResult(method string, arg interface{}) ExpectedResult {
	mustLoad()
	var returns ExpectedResult
	_jsii_.StaticInvoke(Package+".ExpectedResult", method, []interface{}{arg}, &returns)
	return returns
}

// ExpectedResult_ObjectLike expects an object with at least expected's keys,
// each matching.
func ExpectedResult_ObjectLike(expected *map[string]interface{}) ExpectedResult {
	return expectedResult("objectLike", expected)
}

func match(method string, arg interface{}) *map[string]interface{} {
	mustLoad()
	var returns *map[string]interface{}
	_jsii_.StaticInvoke(Package+".Match", method, []interface{}{arg}, &returns)
	return returns
}

// Match_SerializedJson matches a JSON string whose decoded value matches
// pattern (a Lambda Payload, for example).
func Match_SerializedJson(pattern *map[string]interface{}) *map[string]interface{} {
	return match("serializedJson", pattern)
}

// mustLoad panics if Load failed or was not called: the kernel would
// otherwise answer with a less helpful "unknown type".
func mustLoad() {
	if err := Load(); err != nil {
		panic(err)
	}
}

func init() {
	_jsii_.RegisterClass(
		Package+".IntegTest",
		reflect.TypeOf((*IntegTest)(nil)).Elem(),
		[]_jsii_.Member{
			_jsii_.MemberProperty{JsiiProperty: "assertions", GoGetter: "Assertions"},
			_jsii_.MemberProperty{JsiiProperty: "node", GoGetter: "Node"},
			_jsii_.MemberMethod{JsiiMethod: "toString", GoMethod: "ToString"},
		},
		func() interface{} {
			j := jsiiProxy_IntegTest{}
			_jsii_.InitJsiiProxy(&j.Construct)
			return &j
		},
	)
	_jsii_.RegisterStruct(
		Package+".IntegTestProps",
		reflect.TypeOf((*IntegTestProps)(nil)).Elem(),
	)
	_jsii_.RegisterEnum(
		Package+".InvocationType",
		reflect.TypeOf((*InvocationType)(nil)).Elem(),
		map[string]interface{}{
			"REQUEST_RESPONSE": InvocationType_REQUEST_RESPONSE,
			"EVENT":            InvocationType_EVENT,
			"DRY_RUN":          InvocationType_DRY_RUN,
		},
	)
	_jsii_.RegisterStruct(
		Package+".LambdaInvokeFunctionProps",
		reflect.TypeOf((*LambdaInvokeFunctionProps)(nil)).Elem(),
	)
	_jsii_.RegisterInterface(
		Package+".IDeployAssert",
		reflect.TypeOf((*IDeployAssert)(nil)).Elem(),
		[]_jsii_.Member{
			_jsii_.MemberMethod{JsiiMethod: "invokeFunction", GoMethod: "InvokeFunction"},
		},
		func() interface{} { return &jsiiProxy_IDeployAssert{} },
	)
	_jsii_.RegisterInterface(
		Package+".IApiCall",
		reflect.TypeOf((*IApiCall)(nil)).Elem(),
		[]_jsii_.Member{
			_jsii_.MemberMethod{JsiiMethod: "expect", GoMethod: "Expect"},
			_jsii_.MemberProperty{JsiiProperty: "node", GoGetter: "Node"},
		},
		func() interface{} {
			j := jsiiProxy_IApiCall{}
			_jsii_.InitJsiiProxy(&j.IConstruct)
			return &j
		},
	)
	_jsii_.RegisterClass(
		Package+".ExpectedResult",
		reflect.TypeOf((*ExpectedResult)(nil)).Elem(),
		[]_jsii_.Member{
			_jsii_.MemberProperty{JsiiProperty: "result", GoGetter: "Result"},
		},
		func() interface{} { return &jsiiProxy_ExpectedResult{} },
	)
}
