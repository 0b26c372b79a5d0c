package localrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/assumable-identity/cdk-chainguard/localrun/template"
)

// The local AWS environment: what CloudFormation and the services behind
// the resources would assign, derived deterministically so that a run is
// reproducible.
const (
	localAccount   = "111122223333"
	localRegion    = "us-east-1"
	localPartition = "aws"
)

// localEnv is the environment of a local run: account 111122223333 in
// us-east-1 of the aws partition.
func localEnv() template.Env {
	return template.Env{Account: localAccount, Region: localRegion, Partition: localPartition}
}

// The environment is bootstrapped: `cdk bootstrap` leaves the version of its
// bootstrap stack in this SSM parameter (default qualifier hnb659fds), which
// every template reads for its CheckBootstrapVersion rule (version 6 or
// later required).
const (
	bootstrapVersionParameter = "/cdk-bootstrap/hnb659fds/version"
	bootstrapVersion          = "30"
)

// ssmParameter is an SSM parameter of the local environment and the stack
// that created it ("" for the bootstrap's).
type ssmParameter struct {
	value, stack string
}

// stackEnv is the environment a stack is deployed in: its own account and
// region when it is bound to them, the local ones otherwise.
func (c *cloud) stackEnv(stack *template.Stack) template.Env {
	env := c.env
	if stack.Account != "" {
		env.Account = stack.Account
	}
	if stack.Region != "" {
		env.Region = stack.Region
	}
	return env
}

// ssmValue looks up an SSM parameter for the templates' parameters.
func (c *cloud) ssmValue(name string) (string, bool) {
	p, ok := c.ssm[name]
	return p.value, ok
}

// forgetSSM removes the SSM parameters a deleted stack created.
func (c *cloud) forgetSSM(stackName string) {
	for name, p := range c.ssm {
		if p.stack == stackName {
			delete(c.ssm, name)
		}
	}
}

// createBuiltin creates a resource that is not a custom resource, with the
// physical ID and attributes AWS would give it, and keeps what the run needs
// of roles and functions. Types the local run knows: AWS::IAM::Role,
// AWS::Lambda::Function, AWS::Lambda::Permission (a statement of the
// function's resource-based policy, which the local Lambda API enforces),
// AWS::Logs::LogGroup, AWS::SSM::Parameter (its value becomes visible to
// later stacks). Any other type (AWS::IAM::Policy, ...) is recorded as
// inert: referencing it is an error.
func (c *cloud) createBuiltin(ctx context.Context, run *template.StackRun, id, typ string) error {
	stack := run.Stack().Name
	props, err := run.Properties(id)
	if err != nil {
		return err
	}
	name := func(prop string) (string, error) {
		v, ok := props[prop]
		if !ok {
			return physicalName(stack, id, maxNameLen[typ]), nil
		}
		s, ok := v.(string)
		if !ok || s == "" {
			return "", fmt.Errorf("stack %s: resource %s (%s): property %s is %v, want a non-empty string", stack, id, typ, prop, v)
		}
		return s, nil
	}
	e := run.Env()
	var res template.Created
	switch typ {
	case "AWS::IAM::Role":
		n, err := name("RoleName")
		if err != nil {
			return err
		}
		path := "/"
		if p, ok := props["Path"].(string); ok {
			path = p
		}
		arn := fmt.Sprintf("arn:%s:iam::%s:role%s%s", e.Partition, e.Account, path, n)
		rid := roleID(stack, id)
		res = template.Created{Physical: n, Ref: n, Attributes: map[string]any{"Arn": arn, "RoleId": rid}}
		c.roles[arn] = role{name: n, id: rid}
	case "AWS::Lambda::Function":
		n, err := name("FunctionName")
		if err != nil {
			return err
		}
		res = template.Created{Physical: n, Ref: n, Attributes: map[string]any{"Arn": functionARN(e, n)}}
		if err := run.Record(id, res); err != nil {
			return err
		}
		_, err = c.fns.define(ctx, run, id, props, c.roles)
		return err
	case "AWS::Logs::LogGroup":
		n, err := name("LogGroupName")
		if err != nil {
			return err
		}
		res = template.Created{Physical: n, Ref: n, Attributes: map[string]any{
			"Arn": fmt.Sprintf("arn:%s:logs:%s:%s:log-group:%s:*", e.Partition, e.Region, e.Account, n),
		}}
	case "AWS::SSM::Parameter":
		n, err := name("Name")
		if err != nil {
			return err
		}
		val, ok := props["Value"].(string)
		if !ok {
			return fmt.Errorf("stack %s: resource %s (%s): property Value is %v, want a string", stack, id, typ, props["Value"])
		}
		if o, ok := c.ssm[n]; ok && o.stack != stack {
			return fmt.Errorf("stack %s: resource %s: SSM parameter %s already exists (created by %s)", stack, id, n, ssmOwner(o))
		}
		c.ssm[n] = ssmParameter{value: val, stack: stack}
		res = template.Created{Physical: n, Ref: n}
	case "AWS::Lambda::Permission":
		// A statement of the function's resource-based policy: the Lambda
		// API (lambdaapi.go) lets the principal invoke the function.
		var p permission
		for _, f := range []struct {
			prop string
			into *string
		}{{"FunctionName", &p.function}, {"Principal", &p.principal}, {"Action", &p.action}} {
			v, ok := props[f.prop].(string)
			if !ok || v == "" {
				return fmt.Errorf("stack %s: resource %s (%s): property %s is %v, want a non-empty string", stack, id, typ, f.prop, props[f.prop])
			}
			*f.into = v
		}
		res = template.Created{Physical: physicalName(stack, id, 255)}
		if err := c.fns.addPermission(res.Physical, p); err != nil {
			return fmt.Errorf("stack %s: resource %s (%s): %w", stack, id, typ, err)
		}
	default:
		res = template.Created{Physical: physicalName(stack, id, 255)}
	}
	return run.Record(id, res)
}

// maxNameLen is the length limit of the names CloudFormation generates for
// the named resource types (default 255).
var maxNameLen = map[string]int{
	"AWS::IAM::Role":        64,
	"AWS::Lambda::Function": 64,
	"AWS::Logs::LogGroup":   512,
	"AWS::SSM::Parameter":   2048,
}

func ssmOwner(p ssmParameter) string {
	if p.stack == "" {
		return "the CDK bootstrap"
	}
	return "stack " + p.stack
}

// functionARN is the ARN of a Lambda function in env.
func functionARN(e template.Env, name string) string {
	return fmt.Sprintf("arn:%s:lambda:%s:%s:function:%s", e.Partition, e.Region, e.Account, name)
}

// upperAlnum is the alphabet AWS uses in unique IDs and generated names.
const upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// code returns n characters of [A-Z0-9] derived from the parts.
func code(n int, parts ...string) string {
	var b strings.Builder
	seed := strings.Join(parts, "\x00")
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", seed, i))
		for _, c := range sum {
			if b.Len() == n {
				break
			}
			b.WriteByte(upperAlnum[int(c)%len(upperAlnum)])
		}
	}
	return b.String()
}

// roleID is the local unique ID of an IAM role: "AROA" followed by 17
// characters of [A-Z0-9] derived from the stack name and the role's logical
// ID, as stable across runs as the names are.
func roleID(stackName, logicalID string) string {
	return "AROA" + code(17, "role-id", stackName, logicalID)
}

// physicalName is the name CloudFormation would generate for a resource
// whose name property is not set: "<stack>-<logical ID>-<suffix>", cut to
// maxLen characters, with a deterministic 12-character suffix.
func physicalName(stackName, logicalID string, maxLen int) string {
	suffix := code(12, "name", stackName, logicalID)
	prefix := stackName + "-" + logicalID
	if keep := maxLen - len(suffix) - 1; len(prefix) > keep {
		prefix = prefix[:max(keep, 0)]
	}
	return prefix + "-" + suffix
}

// stackID is the local AWS::StackId of a stack.
func stackID(env template.Env, stackName string) string {
	sum := sha256.Sum256([]byte("stack-id\x00" + stackName))
	h := hex.EncodeToString(sum[:16])
	return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/%s-%s-%s-%s-%s",
		env.Partition, env.Region, env.Account, stackName, h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}
