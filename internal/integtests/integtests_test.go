package integtests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadNotInstalled(t *testing.T) {
	// given a package folder that does not exist
	saved := PackageDir
	PackageDir = filepath.Join(".cdk-cli", "node_modules", "@aws-cdk", "no-such-package")
	defer func() { PackageDir = saved }()

	// when the package is loaded
	err := load()

	// then the error says it is not installed and how to install it
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("load() = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "npm ci --prefix .cdk-cli") {
		t.Errorf("error %q does not say how to install the package", err)
	}
}

func TestPackTarball(t *testing.T) {
	// given a package folder with nested files
	dir := t.TempDir()
	files := map[string]string{
		"package.json":        `{"name":"x","version":"1.0.0"}`,
		"lib/index.js":        "module.exports = {};",
		"lib/deep/handler.js": "exports.handler = async () => 1;",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// when it is packed
	tarball, err := packTarball(dir)
	if err != nil {
		t.Fatal(err)
	}

	// then the tarball holds every file under package/, as npm packs them
	gz, err := gzip.NewReader(bytes.NewReader(tarball))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = string(body)
	}
	if len(got) != len(files) {
		t.Errorf("tarball has %d files, want %d: %v", len(got), len(files), got)
	}
	for name, body := range files {
		if got["package/"+name] != body {
			t.Errorf("package/%s = %q, want %q", name, got["package/"+name], body)
		}
	}
}
