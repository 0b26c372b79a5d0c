package stacks

import (
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

// TestArchitectureTemplateAndBundleAgree synthesizes the whole app with real
// bundling once for each value of the context key "architecture" and checks,
// for both functions, that the value asked for, the template's Architectures
// and the GOARCH in the Go build info of the bundled bootstrap in cdk.out
// agree. (The default is arm64: TestArchitectureProp and
// TestCallerIdentityTemplatesUnchanged check the templates,
// TestBundlingBuildsArm64Bootstrap the bundle.)
func TestArchitectureTemplateAndBundleAgree(t *testing.T) {
	tests := []struct {
		name        string
		context     string
		want        string // Architectures
		wantGOARCH  string
		wantMachine elf.Machine
	}{
		{name: "arm64", context: "arm64", want: "arm64", wantGOARCH: "arm64", wantMachine: elf.EM_AARCH64},
		{name: "x86_64", context: "x86_64", want: "x86_64", wantGOARCH: "amd64", wantMachine: elf.EM_X86_64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given the app with the architecture in its context, bundling on
			app := newTestApp(t, true, map[string]interface{}{
				CtxGroup: testGroup, CtxProvisionerIdentity: testProvisioner, CtxArchitecture: tc.context,
			})
			if err := NewApp(app); err != nil {
				t.Fatalf("NewApp() = %v", err)
			}

			// when it is synthesized into cdk.out
			if err := Synth(app); err != nil {
				t.Fatalf("Synth() = %v", err)
			}

			// then each function's Architectures and its bundled bootstrap agree with the value asked for
			outdir := *app.Outdir()
			for stackName, pkg := range map[string]string{DefaultProvisionerStackName: ProvisionerPackage, DefaultAwsAuthStackName: ReposPackage} {
				raw, err := os.ReadFile(filepath.Join(outdir, stackName+".template.json"))
				if err != nil {
					t.Fatalf("read the synthesized template: %v", err)
				}
				var d doc
				if err := json.Unmarshal(raw, &d); err != nil {
					t.Fatalf("parse %s.template.json: %v", stackName, err)
				}
				_, fn := d.one(t, "AWS::Lambda::Function")
				if got, want := fn["Architectures"], []interface{}{tc.want}; !reflect.DeepEqual(got, want) {
					t.Errorf("%s: Architectures = %v, want %v", stackName, got, want)
				}
				hash := strings.TrimSuffix(render(fn["Code"].(map[string]interface{})["S3Key"]), ".zip")
				bootstrap := filepath.Join(outdir, "asset."+hash, "bootstrap")
				info, err := buildinfo.ReadFile(bootstrap)
				if err != nil {
					t.Fatalf("%s: read the build info of the bundled bootstrap: %v", stackName, err)
				}
				settings := map[string]string{}
				for _, s := range info.Settings {
					settings[s.Key] = s.Value
				}
				if info.Path != pkg || settings["GOOS"] != "linux" || settings["GOARCH"] != tc.wantGOARCH || settings["CGO_ENABLED"] != "0" {
					t.Errorf("%s: bootstrap built from %s with GOOS=%s GOARCH=%s CGO_ENABLED=%s, want %s with linux, %s, 0",
						stackName, info.Path, settings["GOOS"], settings["GOARCH"], settings["CGO_ENABLED"], pkg, tc.wantGOARCH)
				}
				f, err := elf.Open(bootstrap)
				if err != nil {
					t.Fatalf("%s: open the bundled bootstrap: %v", stackName, err)
				}
				if f.Machine != tc.wantMachine {
					t.Errorf("%s: bootstrap machine = %v, want %v", stackName, f.Machine, tc.wantMachine)
				}
				_ = f.Close()
			}
		})
	}
}

func TestArchitectureProp(t *testing.T) {
	tests := []struct {
		name string
		arch Architecture
		want string
	}{
		{name: "default", want: "arm64"},
		{name: "arm64", arch: ArchitectureARM64, want: "arm64"},
		{name: "x86_64", arch: ArchitectureX86_64, want: "x86_64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given both stacks and a bare Go function with the architecture prop
			app := newTestApp(t, false, nil)
			stacks := []awscdk.Stack{
				NewProvisionerStack(app, "Prov", &ProvisionerStackProps{Group: testGroup, Architecture: tc.arch}),
				NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup, Architecture: tc.arch}),
				awscdk.NewStack(app, jsii.String("S"), nil),
			}
			must(t, "function", func() {
				newGoFunction(stacks[2], "Fn", goFunctionProps{pkg: ReposPackage, arch: tc.arch, props: awslambda.FunctionProps{}})
			})

			// when they are synthesized, then each function runs on it
			for _, stack := range stacks {
				_, fn := docOf(t, templateOf(t, stack)).one(t, "AWS::Lambda::Function")
				if got, want := fn["Architectures"], []interface{}{tc.want}; !reflect.DeepEqual(got, want) {
					t.Errorf("%s: Architectures = %v, want %v", *stack.StackName(), got, want)
				}
			}
		})
	}
}

func TestArchitectureInvalidPropFailsSynth(t *testing.T) {
	tests := []struct {
		name    string
		build   func(app awscdk.App)
		wantErr string
	}{
		{
			name: "provisioner stack",
			build: func(app awscdk.App) {
				NewProvisionerStack(app, "Prov", &ProvisionerStackProps{Group: testGroup, Architecture: "amd64"})
			},
			wantErr: `[Prov] Architecture: "amd64" is not a Lambda architecture: use "arm64" (the default) or "x86_64" (Lambda's name for it is "x86_64")`,
		},
		{
			name: "aws-auth stack",
			build: func(app awscdk.App) {
				NewAwsAuthStack(app, "Auth", &AwsAuthStackProps{Provisioner: *testSettings(), Group: testGroup, Architecture: "ARM64"})
			},
			wantErr: `[Auth] Architecture: "ARM64" is not a Lambda architecture: use "arm64" (the default) or "x86_64"`,
		},
		{
			name: "Go function",
			build: func(app awscdk.App) {
				s := awscdk.NewStack(app, jsii.String("S"), nil)
				newGoFunction(s, "Fn", goFunctionProps{pkg: ReposPackage, arch: "sparc", props: awslambda.FunctionProps{}})
			},
			wantErr: `[S/Fn] Architecture: "sparc" is not a Lambda architecture: use "arm64" (the default) or "x86_64"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// given a construct with an architecture Lambda does not have
			app := newTestApp(t, false, nil)
			must(t, "build", func() { tc.build(app) })

			// when the app is synthesized
			err := Synth(app)

			// then synth fails once, naming the construct, the property and the valid values
			if err == nil {
				t.Fatal("Synth() succeeded with an invalid architecture")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Synth() error does not contain %q:\n%v", tc.wantErr, err)
			}
			if n := strings.Count(err.Error(), "is not a Lambda architecture"); n != 1 {
				t.Errorf("the architecture is reported %d times, want once:\n%v", n, err)
			}
		})
	}
}

func TestArchitectureMapping(t *testing.T) {
	for arch, want := range map[Architecture][2]string{
		"":                 {"arm64", "arm64"},
		ArchitectureARM64:  {"arm64", "arm64"},
		ArchitectureX86_64: {"amd64", "x86_64"},
	} {
		if err := arch.validate(); err != nil {
			t.Errorf("Architecture(%q).validate() = %v", arch, err)
		}
		if got := arch.goarch(); got != want[0] {
			t.Errorf("Architecture(%q).goarch() = %s, want %s", arch, got, want[0])
		}
		if got := *arch.lambda().Name(); got != want[1] {
			t.Errorf("Architecture(%q).lambda() = %s, want %s", arch, got, want[1])
		}
	}
}
