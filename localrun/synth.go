package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/assumable-identity/cdk-chainguard/localrun/template"
)

// synthesizer runs the CDK app the way the CDK CLI does (the app process
// with CDK_OUTDIR and CDK_CONTEXT_JSON), without the CLI: the app is built
// once with `go build` and run for every synth.
type synthesizer struct {
	moduleDir string // module root: the app's main package and cdk.json
	binary    string // the built app
	// account and region are passed as CDK_DEFAULT_ACCOUNT and
	// CDK_DEFAULT_REGION; empty: neither is set, as in an offline synth
	// (the stacks are environment-agnostic).
	account string
	region  string
}

// buildApp compiles the CDK app (the main package at the module root) into
// workDir.
func buildApp(ctx context.Context, moduleDir, workDir, account, region string) (*synthesizer, error) {
	bin := filepath.Join(workDir, "cdk-app")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = moduleDir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build the CDK app (go build . in %s): %w: %s", moduleDir, err, tail(out.String(), 30))
	}
	return &synthesizer{moduleDir: moduleDir, binary: bin, account: account, region: region}, nil
}

// contextFromFiles reads the context of cdk.json and cdk.context.json in
// dir (the CLI passes both to the app); missing files are fine.
func contextFromFiles(dir string) (map[string]any, error) {
	ctx := map[string]any{}
	for _, f := range []string{"cdk.json", "cdk.context.json"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("parse %s: %w", f, err)
		}
		values := doc
		if f == "cdk.json" {
			values, _ = doc["context"].(map[string]any)
		}
		for k, v := range values {
			ctx[k] = v
		}
	}
	return ctx, nil
}

// synth runs the app with the context of cdk.json / cdk.context.json
// overridden by extra, writes the assembly to outDir and reads it.
func (s *synthesizer) synth(ctx context.Context, outDir string, extra map[string]any) (*template.Assembly, error) {
	cdkCtx, err := contextFromFiles(s.moduleDir)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	// What the CLI adds by default. failSynthOnValidationErrors=false: the
	// app reports failed validations (and, with the recommended flags
	// annotationsInValidationReport and validateAgainstDefaultRules, error
	// annotations and template checks) instead of throwing, so that a stack
	// that cannot be built yet (the identity stack before the trust step)
	// does not fail the synthesis of the others; its errors stay on it
	// (Assembly.Errors), as the CLI keeps them on the stacks it deploys.
	cdkCtx["aws:cdk:enable-path-metadata"] = true
	cdkCtx["aws:cdk:enable-asset-metadata"] = true
	cdkCtx["@aws-cdk/core:failSynthOnValidationErrors"] = false
	for k, v := range extra {
		cdkCtx[k] = v
	}
	ctxJSON, err := json.Marshal(cdkCtx)
	if err != nil {
		return nil, fmt.Errorf("synth: encode context: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	cmd := exec.Command(s.binary)
	cmd.Dir = s.moduleDir
	cmd.Env = append(s.environ(),
		"CDK_OUTDIR="+outDir,
		"CDK_CONTEXT_JSON="+string(ctxJSON),
		"CDK_DISABLE_CLI_TELEMETRY=1",
		"JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runGroup(ctx, cmd); err != nil {
		return nil, fmt.Errorf("synth: the CDK app failed: %w: %s", err, tail(out.String(), 40))
	}
	a, err := template.ReadAssembly(outDir)
	if err != nil {
		return nil, fmt.Errorf("synth: %w", err)
	}
	return a, nil
}

// environ is this process's environment for the app, with
// CDK_DEFAULT_ACCOUNT and CDK_DEFAULT_REGION replaced by the synthesizer's
// (or removed, for an environment-agnostic synth).
func (s *synthesizer) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CDK_DEFAULT_ACCOUNT=") && !strings.HasPrefix(kv, "CDK_DEFAULT_REGION=") {
			env = append(env, kv)
		}
	}
	if s.account != "" && s.region != "" {
		env = append(env, "CDK_DEFAULT_ACCOUNT="+s.account, "CDK_DEFAULT_REGION="+s.region)
	}
	return env
}

// runGroup runs cmd in its own process group (the CDK app starts node for
// jsii) and kills the whole group when ctx ends, so nothing is left behind.
func runGroup(ctx context.Context, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		// The app may have left children (node) in its group: end them.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
