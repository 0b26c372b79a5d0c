package localrun

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/assumable-identity/cdk-chainguard/localrun/template"
)

// maxServiceWait bounds how long the local run waits for a custom resource
// response, whatever the resource's ServiceTimeout says.
const maxServiceWait = 5 * time.Minute

// cloud plays CloudFormation: it deploys, updates and deletes stacks of a
// cloud assembly, checking their rules first, creating built-in resources
// with deterministic local values (resources.go) and sending custom resource
// events to the local functions. A stack whose creation fails is rolled
// back as CloudFormation does (see deploy); a failed update is not (the
// error is returned, the stack left as it was deployed before).
type cloud struct {
	env       template.Env
	fns       *functions
	responses *responseServer
	out       io.Writer

	ssm      map[string]ssmParameter       // by name
	roles    map[string]role               // by role ARN
	deployed map[string]*template.StackRun // by stack name
	order    []string                      // stack names in deployment order
	// events are the custom resource events sent, in order, with how long
	// each took to be answered.
	events []sentEvent
}

// sentEvent is a custom resource event the cloud sent and its outcome.
type sentEvent struct {
	stack, logicalID, typ string
	request               cfn.RequestType
	duration              time.Duration
	end                   time.Time
	failed                bool // answered FAILED (or not answered correctly)
}

// createFailedError is the error of a stack creation that failed at one
// resource: CloudFormation then rolls the stack back (deletes what it
// created, the failed custom resource included, in reverse order) and the
// stack ends in ROLLBACK_COMPLETE, or in ROLLBACK_FAILED if a Delete
// failed too.
type createFailedError struct {
	stack, logicalID, typ string
	err                   error    // why the resource's creation failed
	rolledBack            []string // "<logical ID> (<type>)" deleted by the rollback, in order
	rollbackErr           error    // nil: ROLLBACK_COMPLETE
}

func (e *createFailedError) Error() string {
	end := fmt.Sprintf("rolled back (ROLLBACK_COMPLETE): %d resources deleted", len(e.rolledBack))
	if e.rollbackErr != nil {
		end = fmt.Sprintf("rollback failed (ROLLBACK_FAILED): %v", e.rollbackErr)
	}
	return fmt.Sprintf("stack %s: CREATE_FAILED %s (%s): %v; %s", e.stack, e.logicalID, e.typ, e.err, end)
}

func (e *createFailedError) Unwrap() error { return e.err }

// newCloud returns a CloudFormation of env whose CDK bootstrap is done.
func newCloud(env template.Env, fns *functions, responses *responseServer, out io.Writer) *cloud {
	return &cloud{env: env, fns: fns, responses: responses, out: out,
		ssm:   map[string]ssmParameter{bootstrapVersionParameter: {value: bootstrapVersion}},
		roles: map[string]role{}, deployed: map[string]*template.StackRun{}}
}

// deploy creates a stack, or updates it when it was deployed before. Like
// CloudFormation it first evaluates the template's rules, and refuses the
// stack with the failing assertion's description before touching anything.
// Then custom resources whose resolved properties changed get an Update event (and a
// Delete of the old physical ID when the handler replaced them), resources
// gone from the template get a Delete. It returns the stack's outputs.
//
// When the creation of a new stack fails at a resource (a custom resource
// answered FAILED, or could not be created), the stack is rolled back as
// CloudFormation rolls back a failed creation: every resource created so
// far is deleted in reverse order, and so is the failed custom resource
// when it answered (a Delete with the physical ID of its FAILED response,
// which the handler must accept); the stack is then gone (ROLLBACK_COMPLETE:
// the CDK CLI deletes such a stack before it deploys it again), and the
// error is a *createFailedError.
func (c *cloud) deploy(ctx context.Context, stack *template.Stack) (out map[string]string, err error) {
	if len(stack.Errors) > 0 {
		return nil, fmt.Errorf("stack %s cannot be deployed: its synth reported errors (the CDK CLI refuses it too):\n  %s",
			stack.Name, strings.Join(stack.Errors, "\n  "))
	}
	prev := c.deployed[stack.Name]
	run := template.NewStackRun(stack, c.stackEnv(stack), c.ssmValue)
	if err := run.CheckRules(); err != nil {
		return nil, err
	}
	order, err := run.Order()
	if err != nil {
		return nil, err
	}
	var cleanup []stackResource // replaced resources, deleted after the update
	// created are the resources a new stack's creation made, in order, for
	// its rollback.
	var created []stackResource
	if prev == nil {
		defer func() {
			var cf *createFailedError
			if errors.As(err, &cf) {
				c.rollback(ctx, run, created, cf)
			}
		}()
	}
	// failed makes the error of a resource's creation: for a new stack, a
	// *createFailedError that the deferred rollback completes.
	failed := func(id, typ string, cause error) error {
		if prev != nil {
			return cause
		}
		return &createFailedError{stack: stack.Name, logicalID: id, typ: typ, err: cause}
	}
	inNew := map[string]bool{}
	for _, id := range order {
		inNew[id] = true
		rs, err := run.Resource(id)
		if err != nil {
			return nil, err
		}
		if !template.IsCustom(rs.Type) {
			if err := c.createBuiltin(ctx, run, id, rs.Type); err != nil {
				return nil, failed(id, rs.Type, err)
			}
			phys, _ := run.PhysicalID(id)
			created = append(created, stackResource{run: run, id: id, physical: phys})
			continue
		}
		props, err := run.Properties(id)
		if err != nil {
			return nil, failed(id, rs.Type, err)
		}
		oldPhysical, existed := "", false
		if prev != nil {
			if prs, err := prev.Resource(id); err == nil && prs.Type == rs.Type {
				oldPhysical, existed = prev.PhysicalID(id)
			}
		}
		if !existed {
			resp, err := c.send(ctx, run, id, rs.Type, cfn.RequestCreate, "", props, nil)
			if err != nil {
				var fe *failedError
				if errors.As(err, &fe) && resp.PhysicalResourceID != "" {
					// CloudFormation deletes a failed custom resource too,
					// by the physical ID its FAILED response gave.
					created = append(created, stackResource{run: run, id: id, physical: resp.PhysicalResourceID})
				}
				return nil, failed(id, rs.Type, err)
			}
			if err := recordCustom(run, id, resp); err != nil {
				return nil, failed(id, rs.Type, err)
			}
			created = append(created, stackResource{run: run, id: id, physical: resp.PhysicalResourceID})
			continue
		}
		oldProps, err := prev.Properties(id)
		if err != nil {
			return nil, err
		}
		if reflect.DeepEqual(stringProperties(oldProps), stringProperties(props)) {
			if err := run.Adopt(prev, id); err != nil {
				return nil, err
			}
			continue
		}
		resp, err := c.send(ctx, run, id, rs.Type, cfn.RequestUpdate, oldPhysical, props, oldProps)
		if err != nil {
			return nil, err
		}
		if resp.PhysicalResourceID != oldPhysical {
			cleanup = append(cleanup, stackResource{run: prev, id: id, physical: oldPhysical})
		}
		if err := recordCustom(run, id, resp); err != nil {
			return nil, err
		}
	}
	outputs, err := run.Outputs()
	if err != nil {
		return nil, err
	}
	c.deployed[stack.Name] = run
	if prev == nil {
		c.order = append(c.order, stack.Name)
	}
	// Cleanup phase: replaced resources, then resources the new template
	// no longer has, in reverse order of the earlier deployment.
	for i := len(cleanup) - 1; i >= 0; i-- {
		o := cleanup[i]
		if err := c.deleteResource(ctx, o.run, o.id, o.physical); err != nil {
			return nil, fmt.Errorf("clean up replaced resource: %w", err)
		}
	}
	if prev != nil {
		prevOrder, err := prev.Order()
		if err != nil {
			return nil, err
		}
		for i := len(prevOrder) - 1; i >= 0; i-- {
			id := prevOrder[i]
			if inNew[id] {
				continue
			}
			phys, _ := prev.PhysicalID(id)
			if err := c.deleteResource(ctx, prev, id, phys); err != nil {
				return nil, fmt.Errorf("clean up removed resource: %w", err)
			}
		}
	}
	return outputs, nil
}

// stackResource is a resource of a deployed stack and its physical ID.
type stackResource struct {
	run      *template.StackRun
	id       string
	physical string
}

// rollback deletes, in reverse order, the resources a failed stack
// creation made, and forgets the SSM parameters the stack wrote, as
// CloudFormation's rollback of a failed creation does. It records what it
// deleted, and the first failure (ROLLBACK_FAILED, where CloudFormation
// stops), in cf.
func (c *cloud) rollback(ctx context.Context, run *template.StackRun, created []stackResource, cf *createFailedError) {
	c.logf("    stack %s: CREATE_FAILED at %s; rolling back %d resources", cf.stack, cf.logicalID, len(created))
	defer c.forgetSSM(cf.stack)
	for i := len(created) - 1; i >= 0; i-- {
		r := created[i]
		rs, err := run.Resource(r.id)
		if err != nil {
			cf.rollbackErr = err
			return
		}
		if err := c.deleteResource(ctx, r.run, r.id, r.physical); err != nil {
			cf.rollbackErr = fmt.Errorf("delete %s (%s): %w", r.id, rs.Type, err)
			return
		}
		cf.rolledBack = append(cf.rolledBack, fmt.Sprintf("%s (%s)", r.id, rs.Type))
	}
}

// recordCustom records a custom resource as created with the physical ID
// and Data its handler returned: its Ref is the physical ID, its
// Fn::GetAtt attributes the Data.
func recordCustom(run *template.StackRun, id string, resp cfn.Response) error {
	return run.Record(id, template.Created{Physical: resp.PhysicalResourceID, Ref: resp.PhysicalResourceID, Attributes: resp.Data})
}

// destroy deletes every deployed stack, in reverse deployment order.
func (c *cloud) destroy(ctx context.Context) error {
	for i := len(c.order) - 1; i >= 0; i-- {
		if err := c.deleteStack(ctx, c.order[i]); err != nil {
			return err
		}
	}
	return nil
}

// deleteStack deletes a deployed stack: its resources in reverse order.
func (c *cloud) deleteStack(ctx context.Context, name string) error {
	run, ok := c.deployed[name]
	if !ok {
		return fmt.Errorf("stack %s is not deployed", name)
	}
	order, err := run.Order()
	if err != nil {
		return err
	}
	for i := len(order) - 1; i >= 0; i-- {
		phys, _ := run.PhysicalID(order[i])
		if err := c.deleteResource(ctx, run, order[i], phys); err != nil {
			return err
		}
	}
	delete(c.deployed, name)
	for i, n := range c.order {
		if n == name {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.forgetSSM(name)
	return nil
}

// deleteResource deletes one resource: a Delete event for a custom
// resource, stopping the RIE of a function, removing a function's
// permission.
func (c *cloud) deleteResource(ctx context.Context, run *template.StackRun, id, physical string) error {
	rs, err := run.Resource(id)
	if err != nil {
		return err
	}
	switch {
	case template.IsCustom(rs.Type):
		props, err := run.Properties(id)
		if err != nil {
			return err
		}
		_, err = c.send(ctx, run, id, rs.Type, cfn.RequestDelete, physical, props, nil)
		return err
	case rs.Type == "AWS::Lambda::Function":
		c.fns.remove(functionARN(run.Env(), physical))
	case rs.Type == "AWS::Lambda::Permission":
		c.fns.removePermission(physical)
	}
	return nil
}

// send delivers one custom resource event to the function named by the
// resource's ServiceToken and waits for the response at the local
// ResponseURL, checked as CloudFormation checks it. A FAILED response is
// returned with a *failedError (its physical ID is what CloudFormation
// deletes on a rollback).
func (c *cloud) send(ctx context.Context, run *template.StackRun, id, typ string, rt cfn.RequestType, physical string, props, oldProps map[string]any) (_ cfn.Response, err error) {
	start := time.Now()
	where := fmt.Sprintf("%s %s %s (%s) in stack %s", rt, typ, id, physical, run.Stack().Name)
	if physical == "" {
		where = fmt.Sprintf("%s %s %s in stack %s", rt, typ, id, run.Stack().Name)
	}
	defer func() {
		end := time.Now()
		c.events = append(c.events, sentEvent{stack: run.Stack().Name, logicalID: id, typ: typ, request: rt,
			duration: end.Sub(start), end: end, failed: err != nil})
	}()
	token, ok := props["ServiceToken"].(string)
	if !ok || token == "" {
		return cfn.Response{}, fmt.Errorf("%s: the resource has no ServiceToken", where)
	}
	wait := maxServiceWait
	if st, ok := props["ServiceTimeout"]; ok {
		secs, err := strconv.Atoi(fmt.Sprint(st))
		if err != nil || secs < 1 || secs > 3600 {
			return cfn.Response{}, fmt.Errorf("%s: ServiceTimeout %v is not an integer from 1 to 3600", where, st)
		}
		wait = min(wait, time.Duration(secs)*time.Second)
	}
	reqID, err := newRequestID()
	if err != nil {
		return cfn.Response{}, err
	}
	url, ch := c.responses.expect(reqID)
	defer c.responses.forget(reqID)
	ev := cfn.Event{
		RequestType:        rt,
		RequestID:          reqID,
		ResponseURL:        url,
		ResourceType:       typ,
		PhysicalResourceID: physical,
		LogicalResourceID:  id,
		StackID:            stackID(run.Env(), run.Stack().Name),
		ResourceProperties: stringProperties(props),
	}
	if oldProps != nil {
		ev.OldResourceProperties = stringProperties(oldProps)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return cfn.Response{}, fmt.Errorf("%s: encode the event: %w", where, err)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if _, err := c.fns.invoke(wctx, token, payload); err != nil {
		return cfn.Response{}, fmt.Errorf("%s: %w", where, err)
	}
	var res responseOrError
	select {
	case res = <-ch:
	case <-wctx.Done():
		if ctx.Err() != nil {
			return cfn.Response{}, fmt.Errorf("%s: %w", where, ctx.Err())
		}
		return cfn.Response{}, fmt.Errorf("%s: no response at the ResponseURL within %s (ServiceTimeout)", where, wait)
	}
	if res.err == nil {
		res.err = check(ev, res.resp)
	}
	var fe *failedError
	if errors.As(res.err, &fe) {
		c.logf("    %s -> FAILED (%s)", where, time.Since(start).Round(time.Millisecond))
		return res.resp, fmt.Errorf("%s: %w", where, res.err)
	}
	if res.err != nil {
		return cfn.Response{}, fmt.Errorf("%s: %w", where, res.err)
	}
	c.logf("    %s -> %s (%s)", where, res.resp.PhysicalResourceID, time.Since(start).Round(time.Millisecond))
	return res.resp, nil
}

func (c *cloud) logf(format string, args ...any) {
	if c.out != nil {
		fmt.Fprintf(c.out, format+"\n", args...)
	}
}

// newRequestID returns a random UUID, as CloudFormation's request IDs are.
func newRequestID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate a request ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// stringProperties converts resolved properties the way CloudFormation
// passes them to a custom resource: every scalar becomes a string.
func stringProperties(props map[string]any) map[string]any {
	out := make(map[string]any, len(props))
	for k, v := range props {
		out[k] = stringValue(v)
	}
	return out
}

func stringValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return stringProperties(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = stringValue(e)
		}
		return out
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return ""
	default:
		return fmt.Sprint(t)
	}
}
