// Package lambdabuild builds Go Lambda functions as static `bootstrap`
// binaries for the provided.al2023 runtime, the one way the project builds
// them: tests and benchmarks (host architecture, run under the Lambda Runtime
// Interface Emulator) and the CDK bundler (linux/arm64 by default, or
// linux/amd64 for x86_64 functions, for deployment).
//
// Every build is `CGO_ENABLED=0 GOOS=linux go build -tags
// lambda.norpc,grpcnotrace,retrynotrace -trimpath -buildvcs=false -ldflags
// "-s -w"`, run from the module root, so the output depends only on the
// source (no VCS stamp, no local paths) and an unchanged function produces an
// unchanged asset. grpcnotrace (gRPC's) and retrynotrace (go-grpc-middleware's
// retry interceptor, which the Chainguard SDK's clients use) are the
// documented tags that leave out golang.org/x/net/trace (request tracing, off
// unless grpc.EnableTracing is set, which nothing here does): it loads
// html/template, which makes the linker keep every exported method, and
// costs the repos function about 6 MiB of binary and 1.5 ms of cold start.
package lambdabuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// BootstrapName is the file name Build writes: the name the provided.al2023
// runtime executes.
const BootstrapName = "bootstrap"

// Options says what to build and where.
type Options struct {
	// Package is the main package to build, as a path relative to the module
	// root ("./lambda/repos") or a full import path. Required.
	Package string
	// OutDir is the directory that receives the bootstrap; it is created if
	// missing. Required.
	OutDir string
	// GOARCH is the target architecture: "arm64" or "amd64"; empty means the
	// host's architecture (for running under the emulator in tests).
	GOARCH string
	// Dir is the module root to build in; empty means ModuleRoot().
	Dir string
}

// BuildTags are the build tags of every bootstrap (see the package doc).
const BuildTags = "lambda.norpc,grpcnotrace,retrynotrace"

// Build compiles opts.Package into <opts.OutDir>/bootstrap and returns the
// bootstrap's absolute path. The go command's output is part of the error
// when the build fails.
func Build(ctx context.Context, opts Options) (string, error) {
	if opts.Package == "" {
		return "", errors.New("lambdabuild: Options.Package is empty: name the main package, e.g. ./lambda/repos")
	}
	if opts.OutDir == "" {
		return "", fmt.Errorf("lambdabuild: Options.OutDir is empty for %s: name the directory that receives the bootstrap", opts.Package)
	}
	goarch := opts.GOARCH
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	if goarch != "arm64" && goarch != "amd64" {
		return "", fmt.Errorf("lambdabuild: GOARCH %q for %s is not a Lambda architecture: use \"arm64\", \"amd64\" or empty for the host", goarch, opts.Package)
	}
	dir := opts.Dir
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			return "", err
		}
		dir = root
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return "", fmt.Errorf("lambdabuild: resolve output directory %s: %w", opts.OutDir, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("lambdabuild: create output directory: %w", err)
	}
	out := filepath.Join(outDir, BootstrapName)

	cmd := exec.CommandContext(ctx, "go", "build",
		"-tags", BuildTags,
		"-trimpath",
		"-buildvcs=false",
		"-ldflags", "-s -w",
		"-o", out,
		opts.Package)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("lambdabuild: go build %s for linux/%s in %s: %w\n%s",
			opts.Package, goarch, dir, err, strings.TrimSpace(output.String()))
	}
	return out, nil
}

// Deps lists the packages pkg (e.g. "./lambda/repos") links when built as
// Build builds it (linux, cgo off, BuildTags): `go list -deps`, run from
// the module root. Tests use it to keep heavy dependencies off a function's
// path.
func Deps(ctx context.Context, pkg string) ([]string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-tags", BuildTags, pkg)
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("lambdabuild: go list -deps %s: %w", pkg, err)
	}
	return strings.Fields(string(out)), nil
}

// ModuleRoot returns the directory of the nearest go.mod at or above the
// working directory. `go test` runs in the package directory and the CDK app
// in the project directory; both resolve to the module root.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("lambdabuild: get working directory: %w", err)
	}
	for dir := wd; ; {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("lambdabuild: no go.mod in %s or any parent directory: run from inside the Go module", wd)
		}
		dir = parent
	}
}
