package main_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

// TestLightDependencies guards the provisioner's size and cold start: it
// reads and writes the trust check's messages (chainguard/trustcheck/wire)
// but must not link the workload side (chainguard/trustcheck, which lists
// repos through the registry v1 client and its large dependency tree).
func TestLightDependencies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deps, err := lambdabuild.Deps(ctx, "./lambda/provisioner")
	if err != nil {
		t.Fatal(err)
	}
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
