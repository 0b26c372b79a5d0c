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

// functions holds the deployment's functions by ARN and the RIEs running them.
type functions struct {
	moduleDir string
	workDir   string
	rieBinary string
	creds     credentialsFunc
	logs      io.Writer
	// awsEnv is the environment every function gets on top of its own, as
	// Lambda adds its variables: the AWS SDK endpoint overrides that point
	// its STS and IAM clients at the local AWS stand-in.
	awsEnv []string

	byARN map[string]*function
	built map[string]string // Go package -> host bootstrap
}

func newFunctions(moduleDir, workDir, rieBinary string, creds credentialsFunc, awsEnv []string, logs io.Writer) *functions {
	return &functions{moduleDir: moduleDir, workDir: workDir, rieBinary: rieBinary, creds: creds, awsEnv: awsEnv, logs: logs,
		byARN: map[string]*function{}, built: map[string]string{}}
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
	if p, ok := fs.built[pkg]; ok {
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
	fs.built[pkg] = out
	return pkg, out, nil
}

// invoke runs the function with payload, starting its RIE on first use.
func (fs *functions) invoke(ctx context.Context, arn string, payload []byte) ([]byte, error) {
	f, ok := fs.byARN[arn]
	if !ok {
		return nil, fmt.Errorf("no function of the deployment has ARN %s", arn)
	}
	if f.emu == nil {
		creds, err := fs.creds(f.principal)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", f.principal.ARN, err)
		}
		env := append([]string{
			"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID,
			"AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
			"AWS_SESSION_TOKEN=" + creds.SessionToken,
		}, f.env...)
		emu, err := rie.Start(ctx, rie.Options{
			Bootstrap:    f.bootstrap,
			RIE:          fs.rieBinary,
			Env:          env,
			FunctionName: f.name,
			Timeout:      f.timeout,
			Logs:         fs.logs,
		})
		if err != nil {
			return nil, fmt.Errorf("start function %s under the RIE: %w", f.name, err)
		}
		f.emu, f.creds = emu, creds
	}
	out, err := f.emu.Invoke(ctx, payload)
	if err != nil {
		return out, fmt.Errorf("invoke function %s: %w", f.name, err)
	}
	return out, nil
}

// byName returns the function with the given name.
func (fs *functions) byName(name string) (*function, bool) {
	for _, f := range fs.byARN {
		if f.name == name {
			return f, true
		}
	}
	return nil, false
}

// remove stops and forgets a deleted function.
func (fs *functions) remove(arn string) {
	if f, ok := fs.byARN[arn]; ok {
		if f.emu != nil {
			f.emu.Stop()
		}
		delete(fs.byARN, arn)
	}
}

// stopAll stops every RIE.
func (fs *functions) stopAll() {
	for _, f := range fs.byARN {
		if f.emu != nil {
			f.emu.Stop()
			f.emu = nil
		}
	}
}
