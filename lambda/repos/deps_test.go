package main_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

// TestLightDependencies guards the function's cold start and size: the
// workload path validates UIDPs and URLs with chainguard/validate/locator, so
// it must not link the SDK's validation package (about 2.5 ms of package
// init with its HTML sanitiser) through chainguard/validate.
func TestLightDependencies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deps, err := lambdabuild.Deps(ctx, "./lambda/repos")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pkg, why string
	}{
		{"chainguard.dev/sdk/validation", "import chainguard/validate/locator instead of chainguard/validate"},
		{"github.com/microcosm-cc/bluemonday", "it comes with chainguard.dev/sdk/validation"},
		{"github.com/russross/blackfriday/v2", "it comes with chainguard.dev/sdk/validation"},
		{"github.com/assumable-identity/cdk-chainguard/chainguard/validate", "import chainguard/validate/locator instead"},
		{"golang.org/x/net/trace", "it loads html/template (about 6 MiB and 1.5 ms of cold start): gRPC leaves it out under the grpcnotrace and retrynotrace tags of lambdabuild.BuildTags"},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			if slices.Contains(deps, tt.pkg) {
				t.Errorf("./lambda/repos depends on %s: %s (find the importer with `go list -deps -f '{{.ImportPath}}: {{.Imports}}' ./lambda/repos`)", tt.pkg, tt.why)
			}
		})
	}
	if !slices.Contains(deps, "github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator") {
		t.Error("./lambda/repos does not depend on chainguard/validate/locator: the dependency list looks wrong")
	}
}
