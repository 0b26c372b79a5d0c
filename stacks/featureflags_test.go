package stacks

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

// TestCdkJSONHasRecommendedFeatureFlags checks that cdk.json sets every
// feature flag that the pinned aws-cdk-lib recommends, to the recommended
// value: the flags `cdk init` writes for that version, whose absence makes
// `cdk synth` print "N feature flags are not configured". The list is read
// from the aws-cdk-lib tarball inside the aws-cdk-go module in use, so a
// version bump without new flags fails here. (scripts/test.sh also fails if
// the pinned CLI prints that notice.)
func TestCdkJSONHasRecommendedFeatureFlags(t *testing.T) {
	// given the flags the pinned aws-cdk-lib recommends
	recommended := recommendedFeatureFlags(t)
	if len(recommended) < 50 {
		t.Fatalf("read %d recommended flags: expected dozens, the file's format may have changed", len(recommended))
	}

	// when cdk.json's context is read
	context := exampleContext(t)

	// then each is set to its recommended value
	var missing, wrong []string
	for name, want := range recommended {
		got, ok := context[name]
		switch {
		case !ok:
			missing = append(missing, name)
		case !reflect.DeepEqual(got, want):
			wrong = append(wrong, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(wrong)
	if len(missing) > 0 {
		t.Errorf("cdk.json lacks %d recommended feature flags: add them to its context, with these values:\n%s",
			len(missing), flagLines(missing, recommended))
	}
	if len(wrong) > 0 {
		t.Errorf("cdk.json sets %d feature flags to other than the recommended value (if on purpose, say why here and exempt them):\n%s",
			len(wrong), flagLines(wrong, recommended))
	}
}

func flagLines(names []string, values map[string]interface{}) string {
	var b strings.Builder
	for _, n := range names {
		v, _ := json.Marshal(values[n])
		b.WriteString("  \"" + n + "\": " + string(v) + "\n")
	}
	return b.String()
}

// recommendedFeatureFlags returns package/recommended-feature-flags.json of
// the aws-cdk-lib tarball that the aws-cdk-go module embeds.
func recommendedFeatureFlags(t *testing.T) map[string]interface{} {
	t.Helper()
	root, err := lambdabuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-cdk-go/awscdk/v2")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locate the aws-cdk-go module: %v", err)
	}
	tarballs, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "jsii", "aws-cdk-lib-*.tgz"))
	if err != nil || len(tarballs) != 1 {
		t.Fatalf("aws-cdk-lib tarball in the aws-cdk-go module: found %v (%v), want one", tarballs, err)
	}
	f, err := os.Open(tarballs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no package/recommended-feature-flags.json", tarballs[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name != "package/recommended-feature-flags.json" {
			continue
		}
		var flags map[string]interface{}
		if err := json.NewDecoder(tr).Decode(&flags); err != nil {
			t.Fatalf("%s: recommended-feature-flags.json: %v", tarballs[0], err)
		}
		return flags
	}
}
