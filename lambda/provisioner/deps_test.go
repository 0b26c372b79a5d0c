package main_test

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

// TestLightDependencies guards the provisioner's size and cold start: it
// reads and writes the trust check's messages (chainguard/trustcheck/wire)
// but must not link the workload side (chainguard/trustcheck, which lists
// repos through the registry v1 client and its large dependency tree).
func TestLightDependencies(t *testing.T) {
	root, err := lambdabuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-tags", lambdabuild.BuildTags, "./lambda/provisioner")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./lambda/provisioner: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, pkg := range []string{
		"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck",
		"github.com/assumable-identity/cdk-chainguard/chainguard/repos",
		"chainguard.dev/sdk/proto/platform/registry/v1",
	} {
		if slices.Contains(deps, pkg) {
			t.Errorf("./lambda/provisioner depends on %s: import chainguard/trustcheck/wire for the check's messages instead (find the importer with `go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./lambda/provisioner`)", pkg)
		}
	}
	if !slices.Contains(deps, "github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck/wire") {
		t.Error("./lambda/provisioner does not depend on chainguard/trustcheck/wire: the dependency list looks wrong")
	}
}
