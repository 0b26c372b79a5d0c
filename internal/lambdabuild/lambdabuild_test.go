package lambdabuild_test

import (
	"debug/elf"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
)

func TestModuleRoot(t *testing.T) {
	root, err := lambdabuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module github.com/assumable-identity/cdk-chainguard\n") {
		t.Fatalf("ModuleRoot() = %s, whose go.mod is not this module's", root)
	}
}

func TestModuleRootOutsideAModule(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := lambdabuild.ModuleRoot(); err == nil || !strings.Contains(err.Error(), "no go.mod") {
		t.Fatalf("ModuleRoot() error = %v, want one saying there is no go.mod", err)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name        string
		opts        lambdabuild.Options
		wantMachine elf.Machine
		wantErr     string
	}{
		{name: "host", opts: lambdabuild.Options{Package: "./lambda/bench/testdata/hello"}, wantMachine: hostMachine()},
		{name: "arm64", opts: lambdabuild.Options{Package: "./lambda/bench/testdata/hello", GOARCH: "arm64"}, wantMachine: elf.EM_AARCH64},
		{name: "amd64", opts: lambdabuild.Options{Package: "./lambda/bench/testdata/hello", GOARCH: "amd64"}, wantMachine: elf.EM_X86_64},
		{name: "no package", opts: lambdabuild.Options{}, wantErr: "Package is empty"},
		{name: "no output dir", opts: lambdabuild.Options{Package: "./lambda/bench/testdata/hello", OutDir: "-"}, wantErr: "OutDir is empty"},
		{name: "bad arch", opts: lambdabuild.Options{Package: "./lambda/bench/testdata/hello", GOARCH: "386"}, wantErr: "not a Lambda architecture"},
		{name: "compile error is shown", opts: lambdabuild.Options{Package: "./no/such/package"}, wantErr: "no/such/package"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch tt.opts.OutDir {
			case "-":
				tt.opts.OutDir = ""
			default:
				tt.opts.OutDir = t.TempDir()
			}
			path, err := lambdabuild.Build(t.Context(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Build error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(tt.opts.OutDir, "bootstrap"); path != want {
				t.Fatalf("Build path = %s, want %s", path, want)
			}
			f, err := elf.Open(path)
			if err != nil {
				t.Fatalf("bootstrap is not an ELF binary: %v", err)
			}
			defer func() { _ = f.Close() }()
			if f.Machine != tt.wantMachine {
				t.Fatalf("machine = %s, want %s", f.Machine, tt.wantMachine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Fatal("bootstrap has an ELF interpreter: it is not static (CGO_ENABLED=0 lost?)")
				}
			}
			if f.Section(".symtab") != nil {
				t.Fatal("bootstrap has a symbol table: -ldflags \"-s -w\" lost?")
			}
			if data, err := os.ReadFile(path); err != nil {
				t.Fatal(err)
			} else if root, _ := lambdabuild.ModuleRoot(); strings.Contains(string(data), root) {
				t.Fatalf("bootstrap contains the build path %s: -trimpath lost?", root)
			}
		})
	}
}

func hostMachine() elf.Machine {
	if runtime.GOARCH == "arm64" {
		return elf.EM_AARCH64
	}
	return elf.EM_X86_64
}
