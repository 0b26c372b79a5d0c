package stacks

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

// bundledRepos synthesizes the aws-auth stack with bundling on and returns
// the function's asset hash and the bootstrap's path.
func bundledRepos(t *testing.T) (hash, bootstrap string) {
	t.Helper()
	app := newTestApp(t, true, nil)
	stack := NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup})
	d := docOf(t, templateOf(t, stack))
	_, fn := d.one(t, "AWS::Lambda::Function")
	key := render(fn["Code"].(map[string]interface{})["S3Key"])
	hash = strings.TrimSuffix(key, ".zip")
	return hash, filepath.Join(*app.Outdir(), "asset."+hash, "bootstrap")
}

func TestBundlingBuildsArm64Bootstrap(t *testing.T) {
	// given the aws-auth stack synthesized with bundling, twice
	hash1, bootstrap := bundledRepos(t)
	hash2, _ := bundledRepos(t)

	// then the asset is a static linux/arm64 executable named bootstrap
	f, err := elf.Open(bootstrap)
	if err != nil {
		t.Fatalf("open bundled bootstrap: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("bootstrap machine = %v, want EM_AARCH64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("bootstrap has an ELF interpreter: want a static binary (CGO_ENABLED=0)")
		}
	}
	// and the asset hash is the output's, stable across builds (no VCS stamp, no local paths)
	if hash1 != hash2 {
		t.Errorf("asset hash changed between two builds of the same source: %s vs %s", hash1, hash2)
	}
}

func TestBundlingEachFunctionGetsItsOwnBinary(t *testing.T) {
	// given one app holding both Go functions, and the repos function again
	// for x86_64, synthesized with bundling
	app := newTestApp(t, true, nil)
	stack := awscdk.NewStack(app, jsii.String("S"), nil)
	fns := []struct {
		pkg    string
		arch   Architecture
		goarch string
	}{
		{ProvisionerPackage, "", "arm64"},
		{ReposPackage, "", "arm64"},
		{ReposPackage, ArchitectureX86_64, "amd64"},
	}
	for i, f := range fns {
		must(t, "function", func() {
			newGoFunction(stack, fmt.Sprintf("Fn%d", i), goFunctionProps{pkg: f.pkg, arch: f.arch, props: awslambda.FunctionProps{}})
		})
	}
	ids, props := docOf(t, templateOf(t, stack)).resources("AWS::Lambda::Function")
	if len(props) != len(fns) {
		t.Fatalf("functions = %v, want %d", ids, len(fns))
	}

	// then each function's asset is a bootstrap built from its own package
	// for its own architecture (CDK's staging cache must not hand a function
	// another one's bundle)
	for i, f := range fns {
		fn := props[i] // sorted by logical ID: Fn0..., Fn1..., Fn2...
		hash := strings.TrimSuffix(render(fn["Code"].(map[string]interface{})["S3Key"]), ".zip")
		info, err := buildinfo.ReadFile(filepath.Join(*app.Outdir(), "asset."+hash, "bootstrap"))
		if err != nil {
			t.Fatalf("read build info of Fn%d's bootstrap: %v", i, err)
		}
		goarch := ""
		for _, s := range info.Settings {
			if s.Key == "GOARCH" {
				goarch = s.Value
			}
		}
		if info.Path != f.pkg || goarch != f.goarch {
			t.Errorf("Fn%d runs a bootstrap built from %s for %s, want %s for %s", i, info.Path, goarch, f.pkg, f.goarch)
		}
	}
}

func TestBundlingFailureFailsSynth(t *testing.T) {
	for arch, goarch := range map[Architecture]string{"": "arm64", ArchitectureX86_64: "amd64"} {
		t.Run(goarch, func(t *testing.T) {
			// given a Go function whose package does not build
			app := newTestApp(t, true, nil)
			stack := awscdk.NewStack(app, jsii.String("S"), nil)
			pkg := "github.com/assumable-identity/cdk-chainguard/lambda/does-not-exist"
			must(t, "build", func() {
				newGoFunction(stack, "Fn", goFunctionProps{pkg: pkg, arch: arch, props: awslambda.FunctionProps{}})
			})

			// when the app is synthesized
			err := Synth(app)

			// then synth fails through validation, naming the function, the package and its GOARCH, the go output and the fix
			if err == nil {
				t.Fatal("Synth() succeeded with a package that does not build")
			}
			for _, want := range []string{"[S/Fn] Code: bundling Go package " + pkg + " for linux/" + goarch + " failed", "does-not-exist", "fix the build (try: GOOS=linux GOARCH=" + goarch + " go build " + pkg} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Synth() error does not contain %q:\n%v", want, err)
				}
			}
			if strings.Contains(err.Error(), "goroutine ") || strings.Contains(err.Error(), "docker") {
				t.Errorf("Synth() error holds a stack dump or a Docker failure:\n%v", err)
			}
		})
	}
}
