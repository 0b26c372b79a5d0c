package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Template is a parsed CloudFormation template: the sections the local run
// deploys. Values are JSON values as decoded by encoding/json with numbers
// kept as json.Number.
type Template struct {
	Parameters map[string]Parameter `json:"Parameters"`
	Rules      map[string]Rule      `json:"Rules"`
	Resources  map[string]Resource  `json:"Resources"`
	Outputs    map[string]Output    `json:"Outputs"`
	// Transform is set when the template uses a macro (e.g. SAM): those
	// templates are refused, only CloudFormation can expand them.
	Transform any `json:"Transform"`
}

// Parameter is a template parameter.
type Parameter struct {
	Type    string `json:"Type"`
	Default any    `json:"Default"`
}

// Rule is a template rule: CloudFormation evaluates its assertions before it
// creates or updates anything and refuses the operation when one fails.
type Rule struct {
	// RuleCondition limits when the rule applies; no template of this
	// project has one, and ParseTemplate refuses it.
	RuleCondition any         `json:"RuleCondition"`
	Assertions    []Assertion `json:"Assertions"`
}

// Assertion is one assertion of a rule.
type Assertion struct {
	Assert            any    `json:"Assert"`
	AssertDescription string `json:"AssertDescription"`
}

// Resource is a template resource.
type Resource struct {
	Type       string         `json:"Type"`
	Properties map[string]any `json:"Properties"`
	DependsOn  any            `json:"DependsOn"` // a string or a list of strings
	// Condition is refused by ParseTemplate: no template of this project
	// has conditions, so the local run does not evaluate them.
	Condition string `json:"Condition"`
}

// Output is a template output.
type Output struct {
	Description string `json:"Description"`
	Value       any    `json:"Value"`
	// Condition is refused by ParseTemplate, as for resources.
	Condition string `json:"Condition"`
}

// ReadTemplate reads and parses a CloudFormation template (JSON).
func ReadTemplate(path string) (*Template, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	t, err := ParseTemplate(raw)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	return t, nil
}

// ParseTemplate parses a CloudFormation template in JSON.
func ParseTemplate(raw []byte) (*Template, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var t Template
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	if t.Transform != nil {
		return nil, fmt.Errorf("parse template: it uses Transform %v, which only CloudFormation can expand", t.Transform)
	}
	for id, r := range t.Resources {
		if r.Type == "" {
			return nil, fmt.Errorf("parse template: resource %s has no Type", id)
		}
		if r.Condition != "" {
			return nil, fmt.Errorf("parse template: resource %s has Condition %s: conditions are not supported by the local run", id, r.Condition)
		}
		if _, err := r.dependsOn(); err != nil {
			return nil, fmt.Errorf("parse template: resource %s: %w", id, err)
		}
	}
	for name, o := range t.Outputs {
		if o.Condition != "" {
			return nil, fmt.Errorf("parse template: output %s has Condition %s: conditions are not supported by the local run", name, o.Condition)
		}
	}
	for name, r := range t.Rules {
		if r.RuleCondition != nil {
			return nil, fmt.Errorf("parse template: rule %s has a RuleCondition, which the local run does not support", name)
		}
	}
	return &t, nil
}

func (r Resource) dependsOn() ([]string, error) {
	switch v := r.DependsOn.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("DependsOn holds %v, want resource names", e)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("DependsOn is %v, want a resource name or a list of them", v)
	}
}
