package template

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const goodManifest = `{
  "version": "48.0.0",
  "artifacts": {
    "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
    "Auth.assets": {"type": "cdk:asset-manifest", "properties": {"file": "Auth.assets.json"}},
    "Auth": {
      "type": "aws:cloudformation:stack",
      "environment": "aws://unknown-account/unknown-region",
      "properties": {"templateFile": "Auth.template.json", "stackName": "aws-auth"},
      "metadata": {"/Auth/Fn": [{"type": "aws:cdk:info", "data": "fine"}, {"type": "aws:cdk:error", "data": "bad prop"}]},
      "additionalMetadataFile": "Auth.metadata.json",
      "dependencies": ["Prov", "Auth.assets"]
    },
    "Prov.assets": {"type": "cdk:asset-manifest", "properties": {"file": "Prov.assets.json"}},
    "Prov": {
      "type": "aws:cloudformation:stack",
      "environment": "aws://111122223333/eu-west-1",
      "properties": {"templateFile": "Prov.template.json"},
      "dependencies": ["Prov.assets"]
    },
    "Alone": {
      "type": "aws:cloudformation:stack",
      "properties": {"templateFile": "Alone.template.json"}
    }
  }
}`

func TestReadAssembly(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"manifest.json":       goodManifest,
		"Auth.template.json":  `{"Resources": {"Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Code": {"S3Key": "abc.zip"}}}}}`,
		"Prov.template.json":  `{"Resources": {}}`,
		"Auth.metadata.json":  `{"/Auth": [{"type": "aws:cdk:error", "data": "missing context", "trace": ["x"]}]}`,
		"Alone.template.json": `{}`,
		"Auth.assets.json":    `{"version": "48.0.0", "files": {"abc": {"source": {"path": "asset.abc", "packaging": "zip"}, "destinations": {"current_account-current_region": {"bucketName": "b", "objectKey": "abc.zip"}}}}}`,
		"Prov.assets.json":    `{"version": "48.0.0", "files": {}}`,
	})
	a, err := ReadAssembly(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range a.Stacks {
		ids = append(ids, s.ID)
	}
	if want := []string{"Alone", "Prov", "Auth"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("stack order = %v, want %v", ids, want)
	}
	auth, err := a.Stack("aws-auth")
	if err != nil {
		t.Fatal(err)
	}
	if auth.ID != "Auth" || auth.Account != "" || auth.Region != "" || !reflect.DeepEqual(auth.Dependencies, []string{"Prov"}) {
		t.Fatalf("Auth = %+v", auth)
	}
	if wantErrs := []string{"/Auth/Fn: bad prop", "/Auth: missing context"}; !reflect.DeepEqual(auth.Errors, wantErrs) {
		t.Fatalf("Errors = %q, want %q", auth.Errors, wantErrs)
	}
	want := Asset{Hash: "abc", Path: filepath.Join(dir, "asset.abc"), Packaging: "zip"}
	if got := auth.Assets["abc.zip"]; got != want {
		t.Fatalf("asset = %+v, want %+v", got, want)
	}
	prov, _ := a.Stack("Prov")
	if prov.Name != "Prov" || prov.Account != "111122223333" || prov.Region != "eu-west-1" {
		t.Fatalf("Prov = %+v", prov)
	}
	if _, err := a.Stack("nope"); err == nil || !strings.Contains(err.Error(), "it has Alone, Prov, Auth") {
		t.Fatalf("Stack(nope) err = %v", err)
	}
}

func TestReadAssemblyErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{name: "no manifest", files: map[string]string{}, wantErr: "is it the output directory of a synth?"},
		{name: "bad manifest", files: map[string]string{"manifest.json": `[`}, wantErr: "parse manifest.json"},
		{
			name:    "missing context",
			files:   map[string]string{"manifest.json": `{"artifacts": {}, "missing": [{"key": "ssm:x", "provider": "ssm"}]}`},
			wantErr: "context lookups that a local run cannot perform: ssm:x (ssm)",
		},
		{
			name:    "stage",
			files:   map[string]string{"manifest.json": `{"artifacts": {"assembly-Dev": {"type": "cdk:cloud-assembly", "properties": {"directoryName": "x"}}}}`},
			wantErr: "stages are not supported",
		},
		{name: "no stacks", files: map[string]string{"manifest.json": `{"artifacts": {}}`}, wantErr: "holds no stacks"},
		{
			name:    "missing template",
			files:   map[string]string{"manifest.json": `{"artifacts": {"A": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "A.json"}}}}`},
			wantErr: `stack "A": read template`,
		},
		{
			name:    "bad environment",
			files:   map[string]string{"manifest.json": `{"artifacts": {"A": {"type": "aws:cloudformation:stack", "environment": "x", "properties": {"templateFile": "A.json"}}}}`, "A.json": `{}`},
			wantErr: `environment "x" is not of the form aws://ACCOUNT/REGION`,
		},
		{
			name: "cycle",
			files: map[string]string{
				"manifest.json": `{"artifacts": {
				  "A": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "A.json"}, "dependencies": ["B"]},
				  "B": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "A.json"}, "dependencies": ["A"]}}}`,
				"A.json": `{}`,
			},
			wantErr: "dependency cycle: A -> B -> A",
		},
		{
			name: "missing metadata file",
			files: map[string]string{
				"manifest.json": `{"artifacts": {"A": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "A.json"}, "additionalMetadataFile": "A.metadata.json"}}}`,
				"A.json":        `{}`,
			},
			wantErr: `stack "A": read metadata`,
		},
		{
			name: "asset without path",
			files: map[string]string{
				"manifest.json": `{"artifacts": {
				  "A.assets": {"type": "cdk:asset-manifest", "properties": {"file": "A.assets.json"}},
				  "A": {"type": "aws:cloudformation:stack", "properties": {"templateFile": "A.json"}, "dependencies": ["A.assets"]}}}`,
				"A.json":        `{}`,
				"A.assets.json": `{"files": {"h": {"source": {}}}}`,
			},
			wantErr: "file asset h has no source path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadAssembly(writeFiles(t, tt.files))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadAssembly err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
