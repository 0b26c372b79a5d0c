package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ResolveError says which expression of which resource could not be
// resolved, and why.
type ResolveError struct {
	Stack string // stack name
	Where string // "resource X (Type)", "output X", "condition X", ...
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

// Deployment is the state a series of local stack deployments share:
// exported output values (Fn::ImportValue) and SSM parameters created by the
// stacks (SSM parameter types, {{resolve:ssm:...}}).
type Deployment struct {
	env     Env
	exports map[string]export
	ssm     map[string]export
}

type export struct {
	value string
	stack string // owning stack name
}

// NewDeployment returns an empty deployment in env (zero fields take the
// DefaultEnv values).
func NewDeployment(env Env) *Deployment {
	return &Deployment{env: env.withDefaults(), exports: map[string]export{}, ssm: map[string]export{}}
}

// Env returns the deployment's environment.
func (d *Deployment) Env() Env { return d.env }

// Export returns the value an earlier stack exported under name.
func (d *Deployment) Export(name string) (string, bool) {
	e, ok := d.exports[name]
	return e.value, ok
}

// SSMParameter returns the value of an SSM parameter an earlier stack created.
func (d *Deployment) SSMParameter(name string) (string, bool) {
	e, ok := d.ssm[name]
	return e.value, ok
}

// Forget removes the exports and SSM parameters owned by a stack (after it
// was deleted).
func (d *Deployment) Forget(stackName string) {
	for k, e := range d.exports {
		if e.stack == stackName {
			delete(d.exports, k)
		}
	}
	for k, e := range d.ssm {
		if e.stack == stackName {
			delete(d.ssm, k)
		}
	}
}

// StackRun is one deployment of one stack: it resolves the template's
// expressions against the resources created so far.
type StackRun struct {
	d       *Deployment
	stack   *Stack
	env     Env
	params  map[string]string
	created map[string]*created
	conds   map[string]bool
}

type created struct {
	typ      string
	physical string
	ref      any            // value of Ref; nil when the type's Ref is not known locally
	attrs    map[string]any // Fn::GetAtt values
}

// Stack starts a deployment of stack. params override parameter defaults.
func (d *Deployment) Stack(stack *Stack, params map[string]string) *StackRun {
	env := d.env
	if stack.Account != "" {
		env.Account = stack.Account
	}
	if stack.Region != "" {
		env.Region = stack.Region
	}
	return &StackRun{d: d, stack: stack, env: env, params: params, created: map[string]*created{}, conds: map[string]bool{}}
}

// Stack returns the stack being deployed.
func (r *StackRun) Stack() *Stack { return r.stack }

// StackID returns the stack's local AWS::StackId.
func (r *StackRun) StackID() string { return stackID(r.env, r.stack.Name) }

// Env returns the stack's environment.
func (r *StackRun) Env() Env { return r.env }

// Order returns the logical IDs of the resources to create, each after the
// resources it references or depends on, ties broken by name. Resources whose
// Condition is false are left out.
func (r *StackRun) Order() ([]string, error) {
	res := r.stack.Template.Resources
	deps := map[string][]string{}
	for id, rs := range res {
		if rs.Condition != "" {
			ok, err := r.condition(rs.Condition, "resource "+id)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		set := map[string]bool{}
		collectRefs(rs.Properties, set)
		do, _ := rs.dependsOn() // validated by ParseTemplate
		for _, dep := range do {
			if _, ok := res[dep]; !ok {
				return nil, fmt.Errorf("stack %s: resource %s depends on %s, which the template does not define", r.stack.Name, id, dep)
			}
			set[dep] = true
		}
		for name := range set {
			if _, ok := res[name]; ok {
				deps[id] = append(deps[id], name)
			}
		}
		if deps[id] == nil {
			deps[id] = []string{}
		}
	}
	for id, ds := range deps {
		for _, dep := range ds {
			if _, ok := deps[dep]; !ok {
				return nil, fmt.Errorf("stack %s: resource %s references %s, whose Condition is false", r.stack.Name, id, dep)
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
	if !ok {
		return "", false
	}
	return c.physical, true
}

// Attribute returns the value of Fn::GetAtt for a created resource.
func (r *StackRun) Attribute(logicalID, attr string) (any, error) {
	rv := &resolver{r: r, where: "resource " + logicalID}
	v, err := rv.getAtt(logicalID, attr)
	if err != nil {
		return nil, fmt.Errorf("stack %s: Fn::GetAtt %s.%s: %w", r.stack.Name, logicalID, attr, err)
	}
	return v, nil
}

// SetCustom records a custom resource as created with the physical ID and
// Data its handler returned.
func (r *StackRun) SetCustom(logicalID, physicalID string, data map[string]any) error {
	rs, err := r.Resource(logicalID)
	if err != nil {
		return err
	}
	if !IsCustom(rs.Type) {
		return fmt.Errorf("stack %s: resource %s is a %s, not a custom resource", r.stack.Name, logicalID, rs.Type)
	}
	attrs := make(map[string]any, len(data))
	for k, v := range data {
		attrs[k] = v
	}
	r.created[logicalID] = &created{typ: rs.Type, physical: physicalID, ref: physicalID, attrs: attrs}
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

// Outputs resolves the stack's outputs (those whose Condition holds) and
// registers their exports in the deployment, replacing the ones this stack
// exported before. It fails when another stack already exports a name.
func (r *StackRun) Outputs() (map[string]string, error) {
	out := map[string]string{}
	exports := map[string]string{}
	names := make([]string, 0, len(r.stack.Template.Outputs))
	for n := range r.stack.Template.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		o := r.stack.Template.Outputs[name]
		where := "output " + name
		if o.Condition != "" {
			ok, err := r.condition(o.Condition, where)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		rv := &resolver{r: r, where: where}
		v, err := rv.str(o.Value, "Value")
		if err != nil {
			return nil, err
		}
		out[name] = v
		if o.Export != nil {
			en, err := rv.str(o.Export.Name, "Export.Name")
			if err != nil {
				return nil, err
			}
			if e, ok := r.d.exports[en]; ok && e.stack != r.stack.Name {
				return nil, fmt.Errorf("stack %s: output %s exports %q, which stack %s already exports", r.stack.Name, name, en, e.stack)
			}
			exports[en] = v
		}
	}
	for k, e := range r.d.exports {
		if e.stack == r.stack.Name {
			delete(r.d.exports, k)
		}
	}
	for k, v := range exports {
		r.d.exports[k] = export{value: v, stack: r.stack.Name}
	}
	return out, nil
}

// CreateBuiltin records a resource that is not a custom resource as created,
// with the physical ID and attributes AWS would give it, derived
// deterministically. Types the local run knows: AWS::IAM::Role,
// AWS::Lambda::Function, AWS::Logs::LogGroup, AWS::SSM::Parameter (its value
// becomes visible to later stacks), AWS::IAM::Policy. Any other type is
// recorded as inert: referencing it is an error. It returns the physical ID.
func (r *StackRun) CreateBuiltin(logicalID string) (string, error) {
	rs, err := r.Resource(logicalID)
	if err != nil {
		return "", err
	}
	if IsCustom(rs.Type) {
		return "", fmt.Errorf("stack %s: resource %s is a custom resource: its handler creates it", r.stack.Name, logicalID)
	}
	props, err := r.Properties(logicalID)
	if err != nil {
		return "", err
	}
	e := r.env
	name := func(prop string, maxLen int) (string, error) {
		v, ok := props[prop]
		if !ok {
			return PhysicalName(r.stack.Name, logicalID, maxLen), nil
		}
		s, ok := v.(string)
		if !ok || s == "" {
			return "", fmt.Errorf("stack %s: resource %s (%s): property %s is %v, want a non-empty string", r.stack.Name, logicalID, rs.Type, prop, v)
		}
		return s, nil
	}
	c := &created{typ: rs.Type}
	switch rs.Type {
	case "AWS::IAM::Role":
		n, err := name("RoleName", 64)
		if err != nil {
			return "", err
		}
		path := "/"
		if p, ok := props["Path"].(string); ok {
			path = p
		}
		c.physical, c.ref = n, n
		c.attrs = map[string]any{
			"Arn":    fmt.Sprintf("arn:%s:iam::%s:role%s%s", e.Partition, e.Account, path, n),
			"RoleId": RoleID(r.stack.Name, logicalID),
		}
	case "AWS::Lambda::Function":
		n, err := name("FunctionName", 64)
		if err != nil {
			return "", err
		}
		c.physical, c.ref = n, n
		c.attrs = map[string]any{"Arn": FunctionARN(e, n)}
	case "AWS::Logs::LogGroup":
		n, err := name("LogGroupName", 512)
		if err != nil {
			return "", err
		}
		c.physical, c.ref = n, n
		c.attrs = map[string]any{"Arn": fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s:*", e.Partition, e.Region, e.Account, n)}
	case "AWS::SSM::Parameter":
		n, err := name("Name", 2048)
		if err != nil {
			return "", err
		}
		val, ok := props["Value"].(string)
		if !ok {
			return "", fmt.Errorf("stack %s: resource %s (%s): property Value is %v, want a string", r.stack.Name, logicalID, rs.Type, props["Value"])
		}
		typ, _ := props["Type"].(string)
		if o, ok := r.d.ssm[n]; ok && o.stack != r.stack.Name {
			return "", fmt.Errorf("stack %s: resource %s: SSM parameter %s already exists (created by stack %s)", r.stack.Name, logicalID, n, o.stack)
		}
		r.d.ssm[n] = export{value: val, stack: r.stack.Name}
		c.physical, c.ref = n, n
		c.attrs = map[string]any{"Type": typ, "Value": val}
	case "AWS::IAM::Policy":
		c.physical = PhysicalName(r.stack.Name, logicalID, 128)
		c.ref = c.physical
	default:
		c.physical = PhysicalName(r.stack.Name, logicalID, 255)
	}
	r.created[logicalID] = c
	return c.physical, nil
}

// FunctionARN is the ARN of a Lambda function in env.
func FunctionARN(e Env, name string) string {
	return fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", e.Partition, e.Region, e.Account, name)
}

// condition evaluates a named condition of the template.
func (r *StackRun) condition(name, where string) (bool, error) {
	if v, ok := r.conds[name]; ok {
		return v, nil
	}
	expr, ok := r.stack.Template.Conditions[name]
	if !ok {
		return false, &ResolveError{Stack: r.stack.Name, Where: where, Expr: compact(map[string]any{"Condition": name}), Cause: "the template defines no such condition"}
	}
	rv := &resolver{r: r, where: "condition " + name, inCondition: map[string]bool{name: true}}
	v, err := rv.cond(expr, "")
	if err != nil {
		return false, err
	}
	r.conds[name] = v
	return v, nil
}

// resolver resolves the expressions of one template element.
type resolver struct {
	r           *StackRun
	where       string
	inCondition map[string]bool // conditions being evaluated (cycle check)
}

// noValue is the value of Ref AWS::NoValue: the property is removed.
type noValue struct{}

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
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(t))
		for _, k := range keys {
			e, err := rv.value(t[k], path+"."+k)
			if err != nil {
				return nil, err
			}
			if _, drop := e.(noValue); !drop {
				out[k] = e
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(t))
		for i, e := range t {
			x, err := rv.value(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			if _, drop := x.(noValue); !drop {
				out = append(out, x)
			}
		}
		return out, nil
	case string:
		return rv.dynamicRefs(t, path)
	default:
		return v, nil
	}
}

// str resolves v and requires a string (numbers are accepted as their text).
func (rv *resolver) str(v any, path string) (string, error) {
	x, err := rv.value(v, path)
	if err != nil {
		return "", err
	}
	switch t := x.(type) {
	case string:
		return t, nil
	case json.Number:
		return t.String(), nil
	default:
		return "", rv.fail(v, path, "it resolves to %s, want a string", compact(x))
	}
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
	for _, e := range l {
		switch t := e.(type) {
		case string:
			out = append(out, t)
		case json.Number:
			out = append(out, t.String())
		default:
			return nil, rv.fail(v, path, "list element %s is not a string", compact(e))
		}
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
		var logical, attr string
		switch a := arg.(type) {
		case string:
			logical, attr, _ = strings.Cut(a, ".")
		case []any:
			if len(a) == 2 {
				logical, _ = a[0].(string)
				var err error
				if attr, err = rv.str(a[1], path); err != nil {
					return nil, err
				}
			}
		}
		if logical == "" || attr == "" {
			return nil, rv.fail(expr, path, "Fn::GetAtt takes [LogicalId, Attribute]")
		}
		v, err := rv.getAtt(logical, attr)
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
	case "Fn::Split":
		a, err := rv.args(expr, arg, path, 2)
		if err != nil {
			return nil, err
		}
		sep, ok := a[0].(string)
		if !ok || sep == "" {
			return nil, rv.fail(expr, path, "the Fn::Split delimiter must be a non-empty literal string")
		}
		s, err := rv.str(a[1], path+".Fn::Split[1]")
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(s, sep) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Select":
		a, err := rv.args(expr, arg, path, 2)
		if err != nil {
			return nil, err
		}
		is, err := rv.str(a[0], path)
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(is)
		if err != nil {
			return nil, rv.fail(expr, path, "index %q is not an integer", is)
		}
		l, err := rv.value(a[1], path+".Fn::Select[1]")
		if err != nil {
			return nil, err
		}
		list, ok := l.([]any)
		if !ok {
			return nil, rv.fail(expr, path, "it selects from %s, which is not a list", compact(l))
		}
		if i < 0 || i >= len(list) {
			return nil, rv.fail(expr, path, "index %d is out of range for a list of %d", i, len(list))
		}
		return list[i], nil
	case "Fn::Sub":
		return rv.sub(arg, expr, path)
	case "Fn::ImportValue":
		name, err := rv.str(arg, path)
		if err != nil {
			return nil, err
		}
		v, ok := rv.r.d.Export(name)
		if !ok {
			return nil, rv.fail(expr, path, "no stack deployed earlier exports %q", name)
		}
		return v, nil
	case "Fn::FindInMap":
		a, err := rv.args(expr, arg, path, 3)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 3)
		for i := range a {
			if keys[i], err = rv.str(a[i], path); err != nil {
				return nil, err
			}
		}
		m, ok := rv.r.stack.Template.Mappings[keys[0]]
		if !ok {
			return nil, rv.fail(expr, path, "the template has no mapping %q", keys[0])
		}
		top, ok := m[keys[1]].(map[string]any)
		if !ok {
			return nil, rv.fail(expr, path, "mapping %q has no key %q", keys[0], keys[1])
		}
		v, ok := top[keys[2]]
		if !ok {
			return nil, rv.fail(expr, path, "mapping %q key %q has no entry %q", keys[0], keys[1], keys[2])
		}
		return v, nil
	case "Fn::If":
		a, err := rv.args(expr, arg, path, 3)
		if err != nil {
			return nil, err
		}
		name, ok := a[0].(string)
		if !ok {
			return nil, rv.fail(expr, path, "Fn::If takes a condition name first")
		}
		c, err := rv.r.condition(name, rv.where)
		if err != nil {
			return nil, err
		}
		if c {
			return rv.value(a[1], path)
		}
		return rv.value(a[2], path)
	case "Condition", "Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not":
		c, err := rv.cond(expr, path)
		if err != nil {
			return nil, err
		}
		return strconv.FormatBool(c), nil
	default:
		return nil, rv.fail(expr, path, "intrinsic function %s is not supported by the local run", fn)
	}
}

// cond evaluates a condition expression.
func (rv *resolver) cond(expr any, path string) (bool, error) {
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		return false, rv.fail(expr, path, "a condition must be a condition function")
	}
	for fn, arg := range m {
		switch fn {
		case "Condition":
			name, ok := arg.(string)
			if !ok {
				return false, rv.fail(expr, path, "Condition takes a condition name")
			}
			if rv.inCondition[name] {
				return false, rv.fail(expr, path, "condition %s refers to itself", name)
			}
			if v, ok := rv.r.conds[name]; ok {
				return v, nil
			}
			body, ok := rv.r.stack.Template.Conditions[name]
			if !ok {
				return false, rv.fail(expr, path, "the template defines no condition %s", name)
			}
			seen := map[string]bool{name: true}
			for k := range rv.inCondition {
				seen[k] = true
			}
			sub := &resolver{r: rv.r, where: "condition " + name, inCondition: seen}
			v, err := sub.cond(body, "")
			if err != nil {
				return false, err
			}
			rv.r.conds[name] = v
			return v, nil
		case "Fn::Equals":
			a, err := rv.args(expr, arg, path, 2)
			if err != nil {
				return false, err
			}
			x, err := rv.value(a[0], path)
			if err != nil {
				return false, err
			}
			y, err := rv.value(a[1], path)
			if err != nil {
				return false, err
			}
			return compact(x) == compact(y), nil
		case "Fn::Not":
			a, err := rv.args(expr, arg, path, 1)
			if err != nil {
				return false, err
			}
			v, err := rv.cond(a[0], path)
			return !v, err
		case "Fn::And", "Fn::Or":
			l, ok := arg.([]any)
			if !ok || len(l) < 2 {
				return false, rv.fail(expr, path, "%s takes a list of at least 2 conditions", fn)
			}
			for _, c := range l {
				v, err := rv.cond(c, path)
				if err != nil {
					return false, err
				}
				if fn == "Fn::And" && !v {
					return false, nil
				}
				if fn == "Fn::Or" && v {
					return true, nil
				}
			}
			return fn == "Fn::And", nil
		}
	}
	return false, rv.fail(expr, path, "it is not a condition function (Condition, Fn::Equals, Fn::And, Fn::Or, Fn::Not)")
}

// ref resolves Ref of a pseudo parameter, a parameter or a resource.
func (rv *resolver) ref(name string) (any, error) {
	r := rv.r
	switch name {
	case "AWS::AccountId":
		return r.env.Account, nil
	case "AWS::Region":
		return r.env.Region, nil
	case "AWS::Partition":
		return r.env.Partition, nil
	case "AWS::URLSuffix":
		return r.env.URLSuffix, nil
	case "AWS::StackName":
		return r.stack.Name, nil
	case "AWS::StackId":
		return stackID(r.env, r.stack.Name), nil
	case "AWS::NoValue":
		return noValue{}, nil
	case "AWS::NotificationARNs":
		return []any{}, nil
	}
	if strings.HasPrefix(name, "AWS::") {
		return nil, fmt.Errorf("pseudo parameter %s is not supported by the local run", name)
	}
	if p, ok := r.stack.Template.Parameters[name]; ok {
		return rv.parameter(name, p)
	}
	rs, ok := r.stack.Template.Resources[name]
	if !ok {
		return nil, fmt.Errorf("the template defines no parameter or resource %s", name)
	}
	c, ok := r.created[name]
	if !ok {
		return nil, fmt.Errorf("resource %s (%s) is referenced before it was created", name, rs.Type)
	}
	if c.ref == nil {
		return nil, fmt.Errorf("the value of Ref for a %s is not known to the local run", rs.Type)
	}
	return c.ref, nil
}

// parameter resolves a parameter: the given value or the default, looked up
// in the deployment's SSM parameters for the SSM parameter types.
func (rv *resolver) parameter(name string, p Parameter) (any, error) {
	raw, ok := rv.r.params[name]
	if !ok {
		switch d := p.Default.(type) {
		case string:
			raw = d
		case json.Number:
			raw = d.String()
		case nil:
			return nil, fmt.Errorf("parameter %s has no value and no default", name)
		default:
			return nil, fmt.Errorf("parameter %s has default %s, want a string", name, compact(d))
		}
	}
	typ := p.Type
	if inner, ok := strings.CutPrefix(typ, "AWS::SSM::Parameter::Value<"); ok {
		inner = strings.TrimSuffix(inner, ">")
		v, ok := rv.r.d.SSMParameter(raw)
		if !ok {
			return nil, fmt.Errorf("parameter %s (%s) names SSM parameter %s, which no stack deployed earlier creates", name, typ, raw)
		}
		if inner == "String" {
			return v, nil
		}
		return splitList(v), nil
	}
	switch typ {
	case "CommaDelimitedList", "List<Number>":
		return splitList(raw), nil
	case "String", "Number", "AWS::SSM::Parameter::Name":
		return raw, nil
	}
	if strings.HasPrefix(typ, "List<") {
		return splitList(raw), nil
	}
	return raw, nil
}

func splitList(s string) []any {
	var out []any
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.TrimSpace(p))
	}
	return out
}

// getAtt resolves Fn::GetAtt of a created resource.
func (rv *resolver) getAtt(logical, attr string) (any, error) {
	rs, ok := rv.r.stack.Template.Resources[logical]
	if !ok {
		return nil, fmt.Errorf("the template defines no resource %s", logical)
	}
	c, ok := rv.r.created[logical]
	if !ok {
		return nil, fmt.Errorf("resource %s (%s) is referenced before it was created", logical, rs.Type)
	}
	v, ok := c.attrs[attr]
	if !ok {
		if IsCustom(rs.Type) {
			return nil, fmt.Errorf("custom resource %s returned no %q in its Data (it returned %s)", logical, attr, keysOf(c.attrs))
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

// sub resolves Fn::Sub in its string and [string, {vars}] forms.
func (rv *resolver) sub(arg any, expr map[string]any, path string) (any, error) {
	var tmpl string
	vars := map[string]string{}
	switch a := arg.(type) {
	case string:
		tmpl = a
	case []any:
		if len(a) != 2 {
			return nil, rv.fail(expr, path, "Fn::Sub takes a string or [string, {variables}]")
		}
		s, ok := a[0].(string)
		m, ok2 := a[1].(map[string]any)
		if !ok || !ok2 {
			return nil, rv.fail(expr, path, "Fn::Sub takes a string or [string, {variables}]")
		}
		tmpl = s
		for k, v := range m {
			x, err := rv.str(v, path+".Fn::Sub."+k)
			if err != nil {
				return nil, err
			}
			vars[k] = x
		}
	default:
		return nil, rv.fail(expr, path, "Fn::Sub takes a string or [string, {variables}]")
	}
	var b strings.Builder
	for {
		i := strings.Index(tmpl, "${")
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		b.WriteString(tmpl[:i])
		tmpl = tmpl[i+2:]
		if strings.HasPrefix(tmpl, "!") { // ${!Literal} -> ${Literal}
			b.WriteString("${")
			tmpl = tmpl[1:]
			continue
		}
		j := strings.Index(tmpl, "}")
		if j < 0 {
			return nil, rv.fail(expr, path, "unterminated ${ in the Fn::Sub string")
		}
		name := strings.TrimSpace(tmpl[:j])
		tmpl = tmpl[j+1:]
		if v, ok := vars[name]; ok {
			b.WriteString(v)
			continue
		}
		var x any
		var err error
		if logical, attr, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
			x, err = rv.getAtt(logical, attr)
		} else {
			x, err = rv.ref(name)
		}
		if err != nil {
			return nil, rv.fail(expr, path, "${%s}: %v", name, err)
		}
		switch t := x.(type) {
		case string:
			b.WriteString(t)
		case json.Number:
			b.WriteString(t.String())
		default:
			return nil, rv.fail(expr, path, "${%s} resolves to %s, want a string", name, compact(x))
		}
	}
	return rv.dynamicRefs(b.String(), path)
}

// dynamicRefRe matches a CloudFormation dynamic reference.
var dynamicRefRe = regexp.MustCompile(`\{\{resolve:([a-z-]+):([^}]*)\}\}`)

// ssmVersionRe matches the optional :VERSION suffix of an SSM reference.
var ssmVersionRe = regexp.MustCompile(`:[0-9]+$`)

// dynamicRefs replaces {{resolve:ssm:NAME[:VERSION]}} with the value of an
// SSM parameter an earlier stack created. Other services (secrets) are
// refused: the local run holds no secrets.
func (rv *resolver) dynamicRefs(s, path string) (any, error) {
	if !strings.Contains(s, "{{resolve:") {
		return s, nil
	}
	var err error
	out := dynamicRefRe.ReplaceAllStringFunc(s, func(m string) string {
		if err != nil {
			return m
		}
		sm := dynamicRefRe.FindStringSubmatch(m)
		if sm[1] != "ssm" {
			err = rv.fail(m, path, "dynamic references to %s are not supported by the local run (only ssm)", sm[1])
			return m
		}
		name := ssmVersionRe.ReplaceAllString(sm[2], "")
		v, ok := rv.r.d.SSMParameter(name)
		if !ok {
			err = rv.fail(m, path, "no stack deployed earlier creates SSM parameter %s", name)
			return m
		}
		return v
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// collectRefs adds to set the names v refers to with Ref, Fn::GetAtt or a
// Fn::Sub variable (parameters and pseudo parameters included: callers keep
// the resource names).
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
				switch a := arg.(type) {
				case string:
					l, _, _ := strings.Cut(a, ".")
					set[l] = true
				case []any:
					if len(a) > 0 {
						if s, ok := a[0].(string); ok {
							set[s] = true
						}
					}
				}
			case "Fn::Sub":
				tmpl := ""
				local := map[string]any{}
				switch a := arg.(type) {
				case string:
					tmpl = a
				case []any:
					if len(a) == 2 {
						tmpl, _ = a[0].(string)
						local, _ = a[1].(map[string]any)
					}
				}
				for _, m := range subVarRe.FindAllStringSubmatch(tmpl, -1) {
					name, _, _ := strings.Cut(strings.TrimSpace(m[1]), ".")
					if _, shadowed := local[strings.TrimSpace(m[1])]; !shadowed {
						set[name] = true
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

// subVarRe matches a ${Var} of a Fn::Sub string (not ${!Literal}).
var subVarRe = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)
