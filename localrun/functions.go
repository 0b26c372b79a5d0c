package localrun

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
	"github.com/assumable-identity/cdk-chainguard/localrun/template"
)

// Principal is the AWS principal a function's code runs as: the assumed-role
// session Lambda opens for the function's role, named after the function.
type Principal struct {
	Account string // e.g. 111122223333
	ARN     string // arn:aws:sts::111122223333:assumed-role/<role name>/<function name>
	UserID  string // <role unique ID>:<function name>
	// RoleARN is the role's ARN with its path from the template,
	// arn:aws:iam::111122223333:role<path><role name>: the sub of the web
	// identity tokens AWS STS issues to the session.
	RoleARN string
}

// credentialsFunc returns AWS credentials that sign as p.
type credentialsFunc func(p Principal) (aws.Credentials, error)

// function is a Lambda function of the deployment, run locally under the
// RIE from its real bootstrap.
type function struct {
	stack, logicalID string
	name, arn        string
	pkg              string // Go main package of the bootstrap (from its build info)
	bootstrap        string // host-architecture bootstrap
	env              []string
	timeout          time.Duration
	principal        Principal
	creds            aws.Credentials
	emu              *rie.Emulator
}

// functions holds the deployment's functions by ARN, the RIEs running them
// and their resource-based policies. It is safe for concurrent use: the
// deploy loop defines functions and invokes the provisioner while the
// Lambda API (lambdaapi.go) invokes the functions the provisioner checks.
// The lock is never held during an invocation.
type functions struct {
	moduleDir string
	workDir   string
	rieBinary string
	creds     credentialsFunc
	logs      io.Writer
	// awsEnv is the environment every function gets on top of its own, as
	// Lambda adds its variables: the AWS SDK endpoint overrides that point
	// its STS, IAM and Lambda clients at the local stand-ins.
	awsEnv []string

	mu    sync.Mutex
	byARN map[string]*function
	built map[string]string // Go package -> host bootstrap
	// overrides are variables the run sets on one function on top of its
	// configuration, by ARN (setEnv).
	overrides map[string][]string
	// policies are the statements of the functions' resource-based
	// policies, by statement ID (the AWS::Lambda::Permission's physical ID).
	policies map[string]permission
}

// permission is a statement of a function's resource-based policy, from an
// AWS::Lambda::Permission.
type permission struct {
	function  string // the function's ARN
	principal string // e.g. arn:aws:iam::111122223333:role/name
	action    string // lambda:InvokeFunction
}

func newFunctions(moduleDir, workDir, rieBinary string, creds credentialsFunc, awsEnv []string, logs io.Writer) *functions {
	return &functions{moduleDir: moduleDir, workDir: workDir, rieBinary: rieBinary, creds: creds, awsEnv: awsEnv, logs: logs,
		byARN: map[string]*function{}, built: map[string]string{}, overrides: map[string][]string{}, policies: map[string]permission{}}
}

// role is what the deployment knows of an IAM role it created.
type role struct {
	name, id string
}

// define records (or redefines, on update) a function from its resolved
// properties: the bootstrap from its code asset, its environment, its
// timeout and its role's credentials. A function whose configuration
// changed is restarted on its next invoke.
func (fs *functions) define(ctx context.Context, run *template.StackRun, logicalID string, props map[string]any, roles map[string]role) (*function, error) {
	stack := run.Stack()
	where := fmt.Sprintf("stack %s: function %s", stack.Name, logicalID)
	name, _ := run.PhysicalID(logicalID)
	f := &function{stack: stack.Name, logicalID: logicalID, name: name, arn: functionARN(run.Env(), name)}

	if rt, _ := props["Runtime"].(string); !strings.HasPrefix(rt, "provided.") {
		return nil, fmt.Errorf("%s: runtime %q: the local run runs Go bootstraps on the provided.al2023 runtime only", where, rt)
	}
	roleARN, _ := props["Role"].(string)
	r, ok := roles[roleARN]
	if !ok {
		return nil, fmt.Errorf("%s: its role %q is not a role of this deployment", where, roleARN)
	}
	env := run.Env()
	f.principal = Principal{
		Account: env.Account,
		ARN:     fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", env.Partition, env.Account, r.name, name),
		UserID:  r.id + ":" + name,
		RoleARN: roleARN,
	}

	f.timeout = 3 * time.Second // Lambda's default
	if t, ok := props["Timeout"]; ok {
		secs, err := strconv.Atoi(fmt.Sprint(t))
		if err != nil || secs <= 0 {
			return nil, fmt.Errorf("%s: Timeout %v is not a positive number of seconds", where, t)
		}
		f.timeout = time.Duration(secs) * time.Second
	}

	vars := map[string]any{}
	if e, ok := props["Environment"].(map[string]any); ok {
		vars, _ = e["Variables"].(map[string]any)
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := vars[k].(type) {
		case string:
			f.env = append(f.env, k+"="+v)
		case json.Number:
			f.env = append(f.env, k+"="+v.String())
		default:
			return nil, fmt.Errorf("%s: environment variable %s is %v, want a string", where, k, v)
		}
	}
	f.env = append(f.env, "AWS_REGION="+env.Region, "AWS_DEFAULT_REGION="+env.Region)
	f.env = append(f.env, fs.awsEnv...)

	asset, err := codeAsset(stack, props)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if f.pkg, f.bootstrap, err = fs.hostBootstrap(ctx, asset); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}

	fs.mu.Lock()
	defer fs.mu.Unlock()
	if prev, ok := fs.byARN[f.arn]; ok {
		if prev.emu != nil && prev.sameConfig(f) {
			f.emu, f.creds = prev.emu, prev.creds
		} else if prev.emu != nil {
			prev.emu.Stop()
		}
	}
	fs.byARN[f.arn] = f
	return f, nil
}

func (f *function) sameConfig(g *function) bool {
	return f.bootstrap == g.bootstrap && f.timeout == g.timeout && f.principal == g.principal &&
		strings.Join(f.env, "\x00") == strings.Join(g.env, "\x00")
}

// codeAsset finds the local asset of a function's Code (S3Bucket/S3Key).
func codeAsset(stack *template.Stack, props map[string]any) (template.Asset, error) {
	code, _ := props["Code"].(map[string]any)
	key, _ := code["S3Key"].(string)
	if key == "" {
		return template.Asset{}, fmt.Errorf("its Code is %v: the local run needs a bundled asset (S3Bucket/S3Key)", code)
	}
	a, ok := stack.Assets[key]
	if !ok {
		return template.Asset{}, fmt.Errorf("its Code S3Key %q is not an asset of the stack's asset manifest", key)
	}
	return a, nil
}

// hostBootstrap returns the Go main package of an asset's bootstrap and a
// bootstrap of that package for the host architecture: the asset itself
// when it was built for the host, otherwise a rebuild with lambdabuild of the
// very package the asset was built from (read from its Go build info).
func (fs *functions) hostBootstrap(ctx context.Context, a template.Asset) (pkg, path string, err error) {
	path = a.Path
	if a.Packaging != "file" {
		path = filepath.Join(a.Path, lambdabuild.BootstrapName)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("read the Go build info of asset %s: %w (the local run runs Go bootstraps only)", path, err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["GOOS"] != "linux" {
		return "", "", fmt.Errorf("asset %s was built for GOOS %q, want linux", path, settings["GOOS"])
	}
	pkg = bi.Path
	if settings["GOARCH"] == runtime.GOARCH {
		return pkg, path, nil
	}
	fs.mu.Lock()
	p, ok := fs.built[pkg]
	fs.mu.Unlock()
	if ok {
		return pkg, p, nil
	}
	out, err := lambdabuild.Build(ctx, lambdabuild.Options{
		Package: pkg,
		OutDir:  filepath.Join(fs.workDir, "bootstraps", strings.ReplaceAll(pkg, "/", "_")),
		Dir:     fs.moduleDir,
	})
	if err != nil {
		return "", "", fmt.Errorf("rebuild %s (the asset's package) for %s: %w", pkg, runtime.GOARCH, err)
	}
	fs.mu.Lock()
	fs.built[pkg] = out
	fs.mu.Unlock()
	return pkg, out, nil
}

// invoke runs the function with payload, starting its RIE on first use
// (the start under the lock, the invocation outside it).
func (fs *functions) invoke(ctx context.Context, arn string, payload []byte) ([]byte, error) {
	emu, name, err := fs.running(ctx, arn)
	if err != nil {
		return nil, err
	}
	out, err := emu.Invoke(ctx, payload)
	if err != nil {
		return out, fmt.Errorf("invoke function %s: %w", name, err)
	}
	return out, nil
}

// running returns the RIE of the function arn, started if need be.
func (fs *functions) running(ctx context.Context, arn string) (*rie.Emulator, string, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.byARN[arn]
	if !ok {
		return nil, "", fmt.Errorf("no function of the deployment has ARN %s", arn)
	}
	if f.emu != nil {
		return f.emu, f.name, nil
	}
	creds, err := fs.creds(f.principal)
	if err != nil {
		return nil, "", fmt.Errorf("credentials for %s: %w", f.principal.ARN, err)
	}
	env := append([]string{
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"AWS_SESSION_TOKEN=" + creds.SessionToken,
	}, f.env...)
	env = append(env, fs.overrides[arn]...)
	emu, err := rie.Start(ctx, rie.Options{
		Bootstrap:    f.bootstrap,
		RIE:          fs.rieBinary,
		Env:          env,
		FunctionName: f.name,
		Timeout:      f.timeout,
		Logs:         fs.logs,
	})
	if err != nil {
		return nil, "", fmt.Errorf("start function %s under the RIE: %w", f.name, err)
	}
	f.emu, f.creds = emu, creds
	return emu, f.name, nil
}

// setEnv sets variables ("K=V") on the function arn on top of its
// configuration, for its next execution environment (a running one is
// stopped, as Lambda recycles a function whose configuration changed); no
// variables removes the override.
func (fs *functions) setEnv(arn string, vars ...string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.byARN[arn]
	if !ok {
		return fmt.Errorf("no function of the deployment has ARN %s", arn)
	}
	if len(vars) == 0 {
		delete(fs.overrides, arn)
	} else {
		fs.overrides[arn] = vars
	}
	if f.emu != nil {
		f.emu.Stop()
		f.emu = nil
	}
	return nil
}

// lookup returns the function named by an ARN or a name, as Lambda's
// FunctionName parameters take it ("$LATEST" the only qualifier).
func (fs *functions) lookup(nameOrARN string) (*function, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.lookupLocked(nameOrARN)
}

func (fs *functions) lookupLocked(nameOrARN string) (*function, bool) {
	nameOrARN = strings.TrimSuffix(nameOrARN, ":$LATEST")
	if strings.HasPrefix(nameOrARN, "arn:") {
		f, ok := fs.byARN[nameOrARN]
		return f, ok
	}
	for _, f := range fs.byARN {
		if f.name == nameOrARN {
			return f, true
		}
	}
	return nil, false
}

// byName returns the function with the given name.
func (fs *functions) byName(name string) (*function, bool) {
	if strings.HasPrefix(name, "arn:") {
		return nil, false
	}
	return fs.lookup(name)
}

// addPermission adds the statement id to the resource-based policy of the
// function p.function names (an ARN or a name), as AddPermission does: the
// function must exist.
func (fs *functions) addPermission(id string, p permission) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f, ok := fs.lookupLocked(p.function)
	if !ok {
		return fmt.Errorf("ResourceNotFoundException: Function not found: %s", p.function)
	}
	p.function = f.arn
	fs.policies[id] = p
	return nil
}

// removePermission removes the statement id (RemovePermission).
func (fs *functions) removePermission(id string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.policies, id)
}

// mayInvoke reports whether the policy of the function arn lets the role
// roleARN (its ARN, path included) invoke it: a statement whose principal
// is exactly that role ARN and whose action is lambda:InvokeFunction (or
// lambda:*). Resource-based statements are all the local run has: no
// identity-based policy grants lambda:InvokeFunction here, so an account
// or service principal, which defers to or names something else, admits
// no caller.
func (fs *functions) mayInvoke(arn, roleARN string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, p := range fs.policies {
		if p.function == arn && p.principal == roleARN && (p.action == "lambda:InvokeFunction" || p.action == "lambda:*") {
			return true
		}
	}
	return false
}

// statements counts the statements of the policy of the function arn.
func (fs *functions) statements(arn string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, p := range fs.policies {
		if p.function == arn {
			n++
		}
	}
	return n
}

// remove stops and forgets a deleted function and its policy.
func (fs *functions) remove(arn string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.byARN[arn]; ok {
		if f.emu != nil {
			f.emu.Stop()
		}
		delete(fs.byARN, arn)
	}
	delete(fs.overrides, arn)
	for id, p := range fs.policies {
		if p.function == arn {
			delete(fs.policies, id)
		}
	}
}

// stopAll stops every RIE.
func (fs *functions) stopAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for _, f := range fs.byARN {
		if f.emu != nil {
			f.emu.Stop()
			f.emu = nil
		}
	}
}
