package stacks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

// Import paths of the project's Lambda main packages. Full import paths (not
// ./lambda/...) so that the bundler also works from a module that imports this
// package as a library.
const (
	ProvisionerPackage = "github.com/assumable-identity/cdk-chainguard/lambda/provisioner"
	ReposPackage       = "github.com/assumable-identity/cdk-chainguard/lambda/repos"
)

// bundleTimeout bounds one `go build` (a cold build of the provisioner
// takes about 100 s on 2 cores).
const bundleTimeout = 10 * time.Minute

// bundlingImage is required by BundlingOptions but never used: local bundling
// always reports success (a failure is reported through CDK validation), so
// CDK never falls back to Docker.
const bundlingImage = "local-go-bundling-only-docker-is-never-used"

// goBundler is an awscdk.ILocalBundling that compiles a Go main package into
// a linux/arm64 or linux/amd64 `bootstrap` with lambdabuild. A failed build
// is recorded, not panicked (a panic inside a jsii callback kills the
// process) and not reported as false (CDK would then try Docker and fail
// with an unrelated message): the function's validation turns it into a
// failed synth that names the function and carries the compiler output.
type goBundler struct {
	pkg  string
	err  error
	dir  string // module root to build in; empty: found from the working directory
	arch string // GOARCH
}

// TryBundle implements awscdk.ILocalBundling.
func (b *goBundler) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	ctx, cancel := context.WithTimeout(context.Background(), bundleTimeout)
	defer cancel()
	_, err := lambdabuild.Build(ctx, lambdabuild.Options{Package: b.pkg, OutDir: *outputDir, GOARCH: b.arch, Dir: b.dir})
	if err != nil {
		b.err = err
		// The asset needs some output to be staged; synth fails in validation.
		if werr := os.WriteFile(filepath.Join(*outputDir, "BUILD-FAILED.txt"), []byte(err.Error()+"\n"), 0o644); werr != nil {
			b.err = fmt.Errorf("%w (and recording the failure in %s: %v)", err, *outputDir, werr)
		}
	}
	return jsii.Bool(true)
}

// Validate implements constructs.IValidation: a failed build fails synth.
func (b *goBundler) Validate() *[]*string {
	if b.err == nil {
		return jsii.Strings()
	}
	return jsii.Strings(fmt.Sprintf("Code: bundling Go package %s for linux/%s failed: %v\nfix the build (try: GOOS=linux GOARCH=%s go build %s) and synth again",
		b.pkg, b.arch, b.err, b.arch, b.pkg))
}

// goFunctionProps are the settings of a Go Lambda function; the rest
// (runtime, architecture, handler, code) is set by newGoFunction.
type goFunctionProps struct {
	pkg string // main package import path
	// arch is the function's architecture, which the bootstrap is built
	// for. Default ArchitectureARM64. Callers validate it against their own
	// prop (checkedArchitecture); an invalid value fails synth here too.
	arch  Architecture
	props awslambda.FunctionProps
}

// newGoFunction creates a provided.al2023 function for p.arch (arm64 by
// default) running the Go main package p.pkg, bundled locally for the
// matching GOARCH (AssetHashType_OUTPUT: the hash of the binary, so a change
// in any imported package redeploys, and an unchanged binary does not).
func newGoFunction(scope constructs.Construct, id string, p goFunctionProps) awslambda.Function {
	arch := p.arch.orDefault()
	archErr := arch.validate()
	if archErr != nil {
		arch = ArchitectureARM64
	}
	root, rootErr := lambdabuild.ModuleRoot()
	b := &goBundler{pkg: p.pkg, arch: arch.goarch(), dir: root}
	source := root
	if rootErr != nil {
		// Still build a function so that synth reports every problem at once.
		b.err = rootErr
		source = "."
	}
	// Never run (no Docker), but part of CDK's asset staging cache key and,
	// when bundling is skipped, of the stand-in asset hash: without it every
	// Go function of an app, all staged from the module root with otherwise
	// equal options, would share the first one's bundle. The arm64 command
	// is the one from before other architectures existed, so arm64 templates
	// keep their asset hashes.
	command := jsii.Strings("go", "build", "-o", "/asset-output/bootstrap", p.pkg)
	if arch != ArchitectureARM64 {
		command = jsii.Strings("env", "GOARCH="+arch.goarch(), "go", "build", "-o", "/asset-output/bootstrap", p.pkg)
	}
	props := p.props
	props.Runtime = awslambda.Runtime_PROVIDED_AL2023()
	props.Architecture = arch.lambda()
	props.Handler = jsii.String("bootstrap")
	props.Code = awslambda.Code_FromAsset(jsii.String(source), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_OUTPUT,
		Bundling: &awscdk.BundlingOptions{
			Image:   awscdk.DockerImage_FromRegistry(jsii.String(bundlingImage)),
			Command: command,
			Local:   b,
		},
	})
	fn := awslambda.NewFunction(scope, jsii.String(id), &props)
	newProblems(fn).add("Architecture", archErr)
	// Bundling runs while the function is built: its outcome is known now.
	if b.err != nil {
		fn.Node().AddValidation(b)
	}
	return fn
}
