// Package template reads a synthesized CDK cloud assembly (manifest.json, the
// stacks' CloudFormation templates and their file assets) and resolves the
// CloudFormation expressions those templates use: intrinsic functions and
// rule assertions. It is what lets the local run play CloudFormation's part
// without an AWS account. What AWS would assign (physical names, ARNs, role
// IDs) is not decided here: the caller records it for each created resource
// (StackRun.Record).
//
// Resolution is strict: an intrinsic function, a resource attribute or a
// reference it cannot resolve is an error naming the stack, the resource and
// the expression; it never guesses a value.
package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Artifact types of a cloud assembly manifest that this package reads.
const (
	artifactStack         = "aws:cloudformation:stack"
	artifactAssetManifest = "cdk:asset-manifest"
	artifactNested        = "cdk:cloud-assembly"
)

// Assembly is a synthesized cloud assembly.
type Assembly struct {
	// Dir is the assembly directory (CDK_OUTDIR).
	Dir string
	// Stacks in deployment order: every stack comes after the stacks it
	// depends on; ties are broken by artifact ID so the order is stable.
	Stacks []*Stack
}

// Stack is one CloudFormation stack of an assembly.
type Stack struct {
	// ID is the artifact ID (the construct ID of a top-level stack).
	ID string
	// Name is the CloudFormation stack name.
	Name string
	// Account and Region of the stack's environment; empty when the stack is
	// environment-agnostic ("unknown-account", "unknown-region").
	Account, Region string
	// TemplateFile is the absolute path of the template.
	TemplateFile string
	// Template is the parsed template.
	Template *Template
	// Dependencies are the IDs of the stacks this one depends on.
	Dependencies []string
	// Errors are the error annotations of the stack's constructs
	// ("aws:cdk:error" metadata: failed validations, cdk-nag findings), as
	// "<construct path>: <message>", sorted. The CDK CLI refuses to deploy a
	// stack that has any.
	Errors []string
	// Assets maps an S3 object key (as written in the template, e.g.
	// "<hash>.zip") to the local file asset it was built from.
	Assets map[string]Asset
}

// Asset is a file asset of a stack: a directory or a file in the assembly.
type Asset struct {
	// Hash is the asset's ID in the asset manifest.
	Hash string
	// Path is the absolute path of the asset's source in the assembly.
	Path string
	// Packaging is "zip" (a directory zipped at publish time) or "file".
	Packaging string
}

type manifest struct {
	Version   string                      `json:"version"`
	Artifacts map[string]manifestArtifact `json:"artifacts"`
	Missing   []struct {
		Key      string `json:"key"`
		Provider string `json:"provider"`
	} `json:"missing"`
}

type manifestArtifact struct {
	Type         string           `json:"type"`
	Environment  string           `json:"environment"`
	Properties   json.RawMessage  `json:"properties"`
	Dependencies []string         `json:"dependencies"`
	DisplayName  string           `json:"displayName"`
	Metadata     artifactMetadata `json:"metadata"`
	// AdditionalMetadataFile holds more metadata (schema 55 writes it there).
	AdditionalMetadataFile string `json:"additionalMetadataFile"`
}

// artifactMetadata maps a construct path to its metadata entries.
type artifactMetadata map[string][]struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

type stackProperties struct {
	TemplateFile string `json:"templateFile"`
	StackName    string `json:"stackName"`
}

type assetManifestProperties struct {
	File string `json:"file"`
}

type assetManifest struct {
	Files map[string]struct {
		Source struct {
			Path      string `json:"path"`
			Packaging string `json:"packaging"`
		} `json:"source"`
		Destinations map[string]struct {
			ObjectKey string `json:"objectKey"`
		} `json:"destinations"`
	} `json:"files"`
}

// ReadAssembly reads the cloud assembly in dir: its manifest, every stack's
// template and asset manifest, and orders the stacks by their dependencies.
func ReadAssembly(dir string) (*Assembly, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("read cloud assembly %s: %w", dir, err)
	}
	raw, err := os.ReadFile(filepath.Join(abs, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("read cloud assembly %s: %w (is it the output directory of a synth?)", abs, err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("read cloud assembly %s: parse manifest.json: %w", abs, err)
	}
	if len(m.Missing) > 0 {
		keys := make([]string, 0, len(m.Missing))
		for _, miss := range m.Missing {
			keys = append(keys, fmt.Sprintf("%s (%s)", miss.Key, miss.Provider))
		}
		return nil, fmt.Errorf("read cloud assembly %s: the app needs context lookups that a local run cannot perform: %s; pass the values as context instead",
			abs, strings.Join(keys, ", "))
	}

	a := &Assembly{Dir: abs}
	assetFiles := map[string]string{} // asset-manifest artifact ID -> file
	stacks := map[string]*Stack{}
	for id, art := range m.Artifacts {
		switch art.Type {
		case artifactNested:
			return nil, fmt.Errorf("read cloud assembly %s: artifact %q is a nested assembly (a Stage); stages are not supported by the local run", abs, id)
		case artifactAssetManifest:
			var p assetManifestProperties
			if err := json.Unmarshal(art.Properties, &p); err != nil || p.File == "" {
				return nil, fmt.Errorf("read cloud assembly %s: asset manifest artifact %q has no file property", abs, id)
			}
			assetFiles[id] = filepath.Join(abs, p.File)
		case artifactStack:
			var p stackProperties
			if err := json.Unmarshal(art.Properties, &p); err != nil || p.TemplateFile == "" {
				return nil, fmt.Errorf("read cloud assembly %s: stack artifact %q has no templateFile property", abs, id)
			}
			st := &Stack{ID: id, Name: p.StackName, TemplateFile: filepath.Join(abs, p.TemplateFile), Assets: map[string]Asset{}}
			if st.Name == "" {
				st.Name = id
			}
			st.Account, st.Region, err = parseEnvironment(art.Environment)
			if err != nil {
				return nil, fmt.Errorf("read cloud assembly %s: stack %q: %w", abs, id, err)
			}
			if st.Errors, err = stackErrors(abs, art); err != nil {
				return nil, fmt.Errorf("read cloud assembly %s: stack %q: %w", abs, id, err)
			}
			if st.Template, err = ReadTemplate(st.TemplateFile); err != nil {
				return nil, fmt.Errorf("read cloud assembly %s: stack %q: %w", abs, id, err)
			}
			stacks[id] = st
		}
	}
	if len(stacks) == 0 {
		return nil, fmt.Errorf("read cloud assembly %s: it holds no stacks", abs)
	}
	for id, st := range stacks {
		for _, dep := range m.Artifacts[id].Dependencies {
			if _, ok := stacks[dep]; ok {
				st.Dependencies = append(st.Dependencies, dep)
				continue
			}
			file, ok := assetFiles[dep]
			if !ok {
				continue // e.g. the tree artifact: nothing to deploy
			}
			if err := readAssets(abs, file, st.Assets); err != nil {
				return nil, fmt.Errorf("read cloud assembly %s: stack %q: %w", abs, id, err)
			}
		}
		sort.Strings(st.Dependencies)
	}
	if a.Stacks, err = orderStacks(stacks); err != nil {
		return nil, fmt.Errorf("read cloud assembly %s: %w", abs, err)
	}
	return a, nil
}

// Stack returns the stack with the given artifact ID or stack name.
func (a *Assembly) Stack(idOrName string) (*Stack, error) {
	for _, s := range a.Stacks {
		if s.ID == idOrName || s.Name == idOrName {
			return s, nil
		}
	}
	names := make([]string, 0, len(a.Stacks))
	for _, s := range a.Stacks {
		names = append(names, s.ID)
	}
	return nil, fmt.Errorf("cloud assembly %s has no stack %q (it has %s)", a.Dir, idOrName, strings.Join(names, ", "))
}

// stackErrors returns the error annotations of a stack artifact, from its
// metadata and its additional metadata file.
func stackErrors(dir string, art manifestArtifact) ([]string, error) {
	all := []artifactMetadata{art.Metadata}
	if art.AdditionalMetadataFile != "" {
		raw, err := os.ReadFile(filepath.Join(dir, art.AdditionalMetadataFile))
		if err != nil {
			return nil, fmt.Errorf("read metadata: %w", err)
		}
		var more artifactMetadata
		if err := json.Unmarshal(raw, &more); err != nil {
			return nil, fmt.Errorf("parse metadata file %s: %w", art.AdditionalMetadataFile, err)
		}
		all = append(all, more)
	}
	var errs []string
	for _, md := range all {
		for path, entries := range md {
			for _, e := range entries {
				if e.Type == "aws:cdk:error" {
					errs = append(errs, fmt.Sprintf("%s: %v", path, e.Data))
				}
			}
		}
	}
	sort.Strings(errs)
	return errs, nil
}

func parseEnvironment(env string) (account, region string, err error) {
	if env == "" {
		return "", "", nil
	}
	rest, ok := strings.CutPrefix(env, "aws://")
	account, region, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "", "", fmt.Errorf("environment %q is not of the form aws://ACCOUNT/REGION", env)
	}
	if account == "unknown-account" {
		account = ""
	}
	if region == "unknown-region" {
		region = ""
	}
	return account, region, nil
}

func readAssets(dir, file string, into map[string]Asset) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read asset manifest: %w", err)
	}
	var am assetManifest
	if err := json.Unmarshal(raw, &am); err != nil {
		return fmt.Errorf("parse asset manifest %s: %w", file, err)
	}
	for hash, f := range am.Files {
		asset := Asset{Hash: hash, Path: filepath.Join(dir, f.Source.Path), Packaging: f.Source.Packaging}
		if f.Source.Path == "" {
			return fmt.Errorf("asset manifest %s: file asset %s has no source path", file, hash)
		}
		for _, d := range f.Destinations {
			if d.ObjectKey != "" {
				into[d.ObjectKey] = asset
			}
		}
	}
	return nil
}

// orderStacks sorts stacks so that each comes after its dependencies.
func orderStacks(stacks map[string]*Stack) ([]*Stack, error) {
	deps := make(map[string][]string, len(stacks))
	for id, s := range stacks {
		deps[id] = s.Dependencies
	}
	order, err := topoSort(deps)
	if err != nil {
		return nil, fmt.Errorf("order stacks: %w", err)
	}
	out := make([]*Stack, 0, len(order))
	for _, id := range order {
		out = append(out, stacks[id])
	}
	return out, nil
}

// errCycle is wrapped by topoSort when the graph has a cycle.
var errCycle = errors.New("dependency cycle")

// topoSort orders the keys of deps so that each comes after the keys it
// lists (entries that are not keys are ignored); ties are broken by name.
func topoSort(deps map[string][]string) ([]string, error) {
	names := make([]string, 0, len(deps))
	for n := range deps {
		names = append(names, n)
	}
	sort.Strings(names)
	const (
		unvisited = iota
		visiting
		done
	)
	state := make(map[string]int, len(deps))
	var order []string
	var visit func(n string, path []string) error
	visit = func(n string, path []string) error {
		switch state[n] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("%w: %s", errCycle, strings.Join(append(path, n), " -> "))
		}
		state[n] = visiting
		ds := append([]string(nil), deps[n]...)
		sort.Strings(ds)
		for _, d := range ds {
			if _, ok := deps[d]; !ok {
				continue
			}
			if err := visit(d, append(path, n)); err != nil {
				return err
			}
		}
		state[n] = done
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}
