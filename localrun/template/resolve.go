package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// What the resolver supports is what the synthesized templates of this
// project contain (both trust modes and both group modes, with and without
// an environment), and nothing more: Ref of the pseudo parameters
// AWS::AccountId, AWS::Region and AWS::Partition, of
// AWS::SSM::Parameter::Value<String> parameters and of resources;
// Fn::GetAtt in its list form; Fn::Join; Fn::Sub in its string form with
// pseudo parameters only (CDK's asset bucket name,
// cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}); and in rule
// assertions Fn::Equals, Fn::Not and Fn::Contains. Values that must be
// strings (outputs, Fn::Join parts, rule operands) are strings in those
// templates: a number there is refused too. Anything else is a
// ResolveError, never a guess.

// ResolveError says which expression of which resource could not be
// resolved, and why.
type ResolveError struct {
	Stack string // stack name
	Where string // "resource X (Type)", "output X", "rule X", ...
	Path  string // property path inside it, e.g. Properties.Environment.Variables.GROUP
	Expr  string // the expression, compact JSON
	Cause string // why it could not be resolved
}

func (e *ResolveError) Error() string {
	loc := e.Where
	if e.Path != "" {
		loc += " at " + e.Path
	}
	return fmt.Sprintf("stack %s: %s: cannot resolve %s: %s", e.Stack, loc, e.Expr, e.Cause)
}

// Env holds the values of the pseudo parameters a stack is deployed with.
type Env struct {
	Account   string // AWS::AccountId
	Region    string // AWS::Region
	Partition string // AWS::Partition
}

// SSMLookup returns the value of an SSM parameter of the deployment's
// account and region, for the AWS::SSM::Parameter::Value<String> parameters.
type SSMLookup func(name string) (string, bool)

// Created is what a created resource resolves to.
type Created struct {
	// Physical is the resource's physical ID.
	Physical string
	// Ref is the value of Ref; "" when the type's Ref is not known locally.
	Ref string
	// Attributes are the values of Fn::GetAtt.
	Attributes map[string]any
}

// StackRun is one deployment of one stack: it resolves the template's
// expressions against the pseudo parameters, the SSM parameters and the
// resources created so far. What a resource resolves to is recorded by the
// caller (Record), which plays AWS.
type StackRun struct {
	stack   *Stack
	env     Env
	ssm     SSMLookup
	created map[string]created
}

type created struct {
	typ string
	Created
}

// NewStackRun starts a deployment of stack in env.
func NewStackRun(stack *Stack, env Env, ssm SSMLookup) *StackRun {
	return &StackRun{stack: stack, env: env, ssm: ssm, created: map[string]created{}}
}

// Stack returns the stack being deployed.
func (r *StackRun) Stack() *Stack { return r.stack }

// Env returns the stack's pseudo parameters.
func (r *StackRun) Env() Env { return r.env }

// CheckRules evaluates every assertion of every rule of the template, as
// CloudFormation does before it creates or updates anything: an assertion
// that does not hold fails with its AssertDescription. Rules are checked in
// name order.
func (r *StackRun) CheckRules() error {
	names := make([]string, 0, len(r.stack.Template.Rules))
	for n := range r.stack.Template.Rules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for i, a := range r.stack.Template.Rules[name].Assertions {
			rv := &resolver{r: r, where: "rule " + name}
			ok, err := rv.cond(a.Assert, fmt.Sprintf("Assertions[%d].Assert", i))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("stack %s: rule %s refuses the deployment: %s", r.stack.Name, name, a.AssertDescription)
			}
		}
	}
	return nil
}

// Order returns the logical IDs of the resources to create, each after the
// resources it references or depends on, ties broken by name.
func (r *StackRun) Order() ([]string, error) {
	res := r.stack.Template.Resources
	deps := map[string][]string{}
	for id, rs := range res {
		set := map[string]bool{}
		collectRefs(rs.Properties, set)
		do, _ := rs.dependsOn() // validated by ParseTemplate
		for _, dep := range do {
			if _, ok := res[dep]; !ok {
				return nil, fmt.Errorf("stack %s: resource %s depends on %s, which the template does not define", r.stack.Name, id, dep)
			}
			set[dep] = true
		}
		deps[id] = []string{}
		for name := range set {
			if _, ok := res[name]; ok {
				deps[id] = append(deps[id], name)
			}
		}
	}
	order, err := topoSort(deps)
	if err != nil {
		return nil, fmt.Errorf("stack %s: order resources: %w", r.stack.Name, err)
	}
	return order, nil
}

// Resource returns the template resource with the given logical ID.
func (r *StackRun) Resource(logicalID string) (Resource, error) {
	rs, ok := r.stack.Template.Resources[logicalID]
	if !ok {
		return Resource{}, fmt.Errorf("stack %s has no resource %s", r.stack.Name, logicalID)
	}
	return rs, nil
}

// Properties returns the resource's properties with every intrinsic
// function resolved.
func (r *StackRun) Properties(logicalID string) (map[string]any, error) {
	rs, err := r.Resource(logicalID)
	if err != nil {
		return nil, err
	}
	rv := &resolver{r: r, where: fmt.Sprintf("resource %s (%s)", logicalID, rs.Type)}
	v, err := rv.value(map[string]any(rs.Properties), "Properties")
	if err != nil {
		return nil, err
	}
	props, _ := v.(map[string]any)
	if props == nil {
		props = map[string]any{}
	}
	return props, nil
}

// PhysicalID returns the physical ID of a created resource.
func (r *StackRun) PhysicalID(logicalID string) (string, bool) {
	c, ok := r.created[logicalID]
	return c.Physical, ok
}

// Record records a resource of the template as created: what its Ref and
// Fn::GetAtt resolve to from now on.
func (r *StackRun) Record(logicalID string, c Created) error {
	rs, err := r.Resource(logicalID)
	if err != nil {
		return err
	}
	r.created[logicalID] = created{typ: rs.Type, Created: c}
	return nil
}

// IsCustom reports whether a resource type is a custom resource.
func IsCustom(typ string) bool {
	return strings.HasPrefix(typ, "Custom::") || typ == "AWS::CloudFormation::CustomResource"
}

// Adopt carries a resource over from an earlier deployment of the same stack
// (an update that does not replace it), keeping its physical ID and
// attributes. It fails when the earlier deployment does not hold it or holds
// a resource of another type.
func (r *StackRun) Adopt(prev *StackRun, logicalID string) error {
	rs, err := r.Resource(logicalID)
	if err != nil {
		return err
	}
	c, ok := prev.created[logicalID]
	if !ok || c.typ != rs.Type {
		return fmt.Errorf("stack %s: resource %s (%s) was not created by the earlier deployment", r.stack.Name, logicalID, rs.Type)
	}
	r.created[logicalID] = c
	return nil
}

// Outputs resolves the stack's outputs.
func (r *StackRun) Outputs() (map[string]string, error) {
	out := make(map[string]string, len(r.stack.Template.Outputs))
	for name, o := range r.stack.Template.Outputs {
		rv := &resolver{r: r, where: "output " + name}
		v, err := rv.str(o.Value, "Value")
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// resolver resolves the expressions of one template element.
type resolver struct {
	r     *StackRun
	where string
}

func (rv *resolver) fail(expr any, path, format string, args ...any) error {
	return &ResolveError{Stack: rv.r.stack.Name, Where: rv.where, Path: path, Expr: compact(expr), Cause: fmt.Sprintf(format, args...)}
}

// wrap turns an error into a ResolveError for expr unless it already is one
// (the innermost expression is the one to name).
func (rv *resolver) wrap(err error, expr any, path string) error {
	var re *ResolveError
	if errors.As(err, &re) {
		return err
	}
	return rv.fail(expr, path, "%v", err)
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// value resolves v recursively.
func (rv *resolver) value(v any, path string) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 1 {
			for k, arg := range t {
				if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
					return rv.intrinsic(k, arg, t, path)
				}
			}
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			x, err := rv.value(e, path+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = x
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(t))
		for i, e := range t {
			x, err := rv.value(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case string:
		if strings.Contains(t, "{{resolve:") {
			return nil, rv.fail(t, path, "dynamic references are not supported by the local run")
		}
		return t, nil
	default:
		return v, nil
	}
}

// str resolves v and requires a string.
func (rv *resolver) str(v any, path string) (string, error) {
	x, err := rv.value(v, path)
	if err != nil {
		return "", err
	}
	s, ok := x.(string)
	if !ok {
		return "", rv.fail(v, path, "it resolves to %s, want a string", compact(x))
	}
	return s, nil
}

// list resolves v and requires a list of strings.
func (rv *resolver) list(v any, path string) ([]string, error) {
	x, err := rv.value(v, path)
	if err != nil {
		return nil, err
	}
	l, ok := x.([]any)
	if !ok {
		return nil, rv.fail(v, path, "it resolves to %s, want a list", compact(x))
	}
	out := make([]string, 0, len(l))
	for i, e := range l {
		s, err := rv.str(e, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (rv *resolver) args(expr any, arg any, path string, n int) ([]any, error) {
	l, ok := arg.([]any)
	if !ok || len(l) != n {
		return nil, rv.fail(expr, path, "want a list of %d arguments", n)
	}
	return l, nil
}

func (rv *resolver) intrinsic(fn string, arg any, expr map[string]any, path string) (any, error) {
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, rv.fail(expr, path, "Ref takes a name")
		}
		v, err := rv.ref(name)
		if err != nil {
			return nil, rv.wrap(err, expr, path)
		}
		return v, nil
	case "Fn::GetAtt":
		a, err := rv.args(expr, arg, path, 2)
		if err != nil {
			return nil, err
		}
		logical, ok1 := a[0].(string)
		attr, ok2 := a[1].(string)
		if !ok1 || !ok2 {
			return nil, rv.fail(expr, path, "Fn::GetAtt takes [LogicalId, Attribute] as literal strings")
		}
		v, err := rv.r.getAtt(logical, attr)
		if err != nil {
			return nil, rv.wrap(err, expr, path)
		}
		return v, nil
	case "Fn::Join":
		a, err := rv.args(expr, arg, path, 2)
		if err != nil {
			return nil, err
		}
		sep, ok := a[0].(string)
		if !ok {
			return nil, rv.fail(expr, path, "the Fn::Join delimiter must be a literal string")
		}
		parts, err := rv.list(a[1], path+".Fn::Join[1]")
		if err != nil {
			return nil, err
		}
		return strings.Join(parts, sep), nil
	case "Fn::Sub":
		tmpl, ok := arg.(string)
		if !ok {
			return nil, rv.fail(expr, path, "only the string form of Fn::Sub is supported by the local run")
		}
		return rv.sub(tmpl, expr, path)
	default:
		return nil, rv.fail(expr, path, "intrinsic function %s is not supported by the local run", fn)
	}
}

// cond evaluates a rule assertion: Fn::Equals of two strings, Fn::Not, and
// Fn::Contains of a list of strings and a string.
func (rv *resolver) cond(expr any, path string) (bool, error) {
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		return false, rv.fail(expr, path, "an assertion must be a rule function")
	}
	for fn, arg := range m {
		switch fn {
		case "Fn::Equals":
			a, err := rv.args(expr, arg, path, 2)
			if err != nil {
				return false, err
			}
			x, err := rv.str(a[0], path+".Fn::Equals[0]")
			if err != nil {
				return false, err
			}
			y, err := rv.str(a[1], path+".Fn::Equals[1]")
			if err != nil {
				return false, err
			}
			return x == y, nil
		case "Fn::Not":
			a, err := rv.args(expr, arg, path, 1)
			if err != nil {
				return false, err
			}
			v, err := rv.cond(a[0], path+".Fn::Not[0]")
			return !v, err
		case "Fn::Contains":
			a, err := rv.args(expr, arg, path, 2)
			if err != nil {
				return false, err
			}
			l, err := rv.list(a[0], path+".Fn::Contains[0]")
			if err != nil {
				return false, err
			}
			s, err := rv.str(a[1], path+".Fn::Contains[1]")
			if err != nil {
				return false, err
			}
			for _, e := range l {
				if e == s {
					return true, nil
				}
			}
			return false, nil
		}
	}
	return false, rv.fail(expr, path, "it is not a rule function the local run supports (Fn::Equals, Fn::Not, Fn::Contains)")
}

// ref resolves Ref of a pseudo parameter, a parameter or a resource.
func (rv *resolver) ref(name string) (string, error) {
	r := rv.r
	switch name {
	case "AWS::AccountId":
		return r.env.Account, nil
	case "AWS::Region":
		return r.env.Region, nil
	case "AWS::Partition":
		return r.env.Partition, nil
	}
	if strings.HasPrefix(name, "AWS::") {
		return "", fmt.Errorf("pseudo parameter %s is not supported by the local run", name)
	}
	if p, ok := r.stack.Template.Parameters[name]; ok {
		return r.parameter(name, p)
	}
	rs, ok := r.stack.Template.Resources[name]
	if !ok {
		return "", fmt.Errorf("the template defines no parameter or resource %s", name)
	}
	c, ok := r.created[name]
	if !ok {
		return "", fmt.Errorf("resource %s (%s) is referenced before it was created", name, rs.Type)
	}
	if c.Ref == "" {
		return "", fmt.Errorf("the value of Ref for a %s is not known to the local run", rs.Type)
	}
	return c.Ref, nil
}

// ssmStringParameter is the only parameter type of the project's templates:
// CDK's SSM parameter lookups and its BootstrapVersion parameter.
const ssmStringParameter = "AWS::SSM::Parameter::Value<String>"

// parameter resolves a parameter of type ssmStringParameter: the SSM
// parameter its default names.
func (r *StackRun) parameter(name string, p Parameter) (string, error) {
	if p.Type != ssmStringParameter {
		return "", fmt.Errorf("parameter %s is of type %s: the local run supports %s parameters only", name, p.Type, ssmStringParameter)
	}
	ssmName, ok := p.Default.(string)
	if !ok {
		return "", fmt.Errorf("parameter %s has default %s, want the name of an SSM parameter", name, compact(p.Default))
	}
	v, ok := r.ssm(ssmName)
	if !ok {
		return "", fmt.Errorf("parameter %s names SSM parameter %s, which does not exist in the local environment", name, ssmName)
	}
	return v, nil
}

// getAtt resolves Fn::GetAtt of a created resource.
func (r *StackRun) getAtt(logical, attr string) (any, error) {
	rs, ok := r.stack.Template.Resources[logical]
	if !ok {
		return nil, fmt.Errorf("the template defines no resource %s", logical)
	}
	c, ok := r.created[logical]
	if !ok {
		return nil, fmt.Errorf("resource %s (%s) is referenced before it was created", logical, rs.Type)
	}
	v, ok := c.Attributes[attr]
	if !ok {
		if IsCustom(rs.Type) {
			return nil, fmt.Errorf("custom resource %s returned no %q in its Data (it returned %s)", logical, attr, keysOf(c.Attributes))
		}
		return nil, fmt.Errorf("attribute %s of a %s is not known to the local run", attr, rs.Type)
	}
	return v, nil
}

func keysOf(m map[string]any) string {
	if len(m) == 0 {
		return "none"
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// sub resolves the string form of Fn::Sub whose variables are pseudo
// parameters, ${AWS::Name}: the only ones the templates use, so a Fn::Sub
// never makes a resource depend on another.
func (rv *resolver) sub(tmpl string, expr map[string]any, path string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(tmpl, "${")
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		b.WriteString(tmpl[:i])
		tmpl = tmpl[i+2:]
		j := strings.Index(tmpl, "}")
		if j < 0 {
			return "", rv.fail(expr, path, "unterminated ${ in the Fn::Sub string")
		}
		name := strings.TrimSpace(tmpl[:j])
		tmpl = tmpl[j+1:]
		if !strings.HasPrefix(name, "AWS::") {
			return "", rv.fail(expr, path, "${%s}: the local run supports only pseudo parameters (${AWS::Name}) in Fn::Sub", name)
		}
		s, err := rv.ref(name)
		if err != nil {
			return "", rv.fail(expr, path, "${%s}: %v", name, err)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// collectRefs adds to set the names v refers to with Ref or Fn::GetAtt
// (parameters and pseudo parameters included: callers keep the resource
// names). Fn::Sub refers to pseudo parameters only (see sub).
func collectRefs(v any, set map[string]bool) {
	switch t := v.(type) {
	case map[string]any:
		for k, arg := range t {
			switch k {
			case "Ref":
				if s, ok := arg.(string); ok {
					set[s] = true
				}
			case "Fn::GetAtt":
				if a, ok := arg.([]any); ok && len(a) > 0 {
					if s, ok := a[0].(string); ok {
						set[s] = true
					}
				}
			}
			collectRefs(arg, set)
		}
	case []any:
		for _, e := range t {
			collectRefs(e, set)
		}
	}
}
