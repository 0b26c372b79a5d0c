package handler

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	oidc "chainguard.dev/sdk/proto/platform/oidc/v1"
	"github.com/aws/aws-lambda-go/cfn"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
)

// The fault matrix: for every RPC the provisioner makes in each Create,
// Update and Delete, one injected failure of each transient code the service
// really returns, and a PermissionDenied that never ends. Every event must
// answer before its deadline; a transient failure must end in SUCCESS; and
// once CloudFormation has done what it does next (the rollback Delete of a
// failed Create, the rollback Update of a failed Update, the retried Delete
// of a failed Delete, then the stack's Delete), nothing the events made is
// left in the emulator.

// transientCodes are the codes the service answers for failures worth
// retrying (the Chainguard Terraform provider's internal/provider/retry.go,
// isRetryable: Unavailable, Unknown, Internal, ResourceExhausted, Aborted,
// DeadlineExceeded).
var transientCodes = []codes.Code{
	codes.Unavailable, codes.Unknown, codes.Internal, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded,
}

// faultScenario is one event of the test stack's lifecycle.
type faultScenario struct {
	name string
	typ  string
	kind cfn.RequestType
	// props are the event's properties; oldProps those of the object made
	// before the event (Update and Delete), which a rollback Update restores.
	props, oldProps func(e *emuEnv) map[string]any
}

func faultScenarios() []faultScenario {
	identity := func(name, roles string) func(e *emuEnv) map[string]any {
		return func(e *emuEnv) map[string]any {
			p := e.identityProps(e.Group, roles)
			p[PropName] = name
			return p
		}
	}
	group := func(name string) func(e *emuEnv) map[string]any {
		return func(e *emuEnv) map[string]any { return e.groupProps(e.Group, name, "team group") }
	}
	return []faultScenario{
		{name: "identity Create", typ: TypeIdentity, kind: cfn.RequestCreate, props: identity("aws-auth-identity", "viewer")},
		{name: "identity Update", typ: TypeIdentity, kind: cfn.RequestUpdate, props: identity("aws-auth-renamed", "registry.pull"), oldProps: identity("aws-auth-identity", "viewer")},
		{name: "identity Delete", typ: TypeIdentity, kind: cfn.RequestDelete, props: identity("aws-auth-identity", "viewer"), oldProps: identity("aws-auth-identity", "viewer")},
		{name: "group Create", typ: TypeGroup, kind: cfn.RequestCreate, props: group("team-a")},
		{name: "group Update", typ: TypeGroup, kind: cfn.RequestUpdate, props: group("team-b"), oldProps: group("team-a")},
		{name: "group Delete", typ: TypeGroup, kind: cfn.RequestDelete, props: group("team-a"), oldProps: group("team-a")},
	}
}

// faultMethods are the full names of every method the provisioner could
// call: the STS exchange and the IAM v2 services.
func faultMethods() []string {
	var out []string
	for _, d := range []grpc.ServiceDesc{oidc.SecurityTokenService_ServiceDesc, iam.GroupsService_ServiceDesc, iam.IdentitiesService_ServiceDesc, iam.RolesService_ServiceDesc, iam.RoleBindingsService_ServiceDesc} {
		for _, m := range d.Methods {
			out = append(out, "/"+d.ServiceName+"/"+m.MethodName)
		}
	}
	return out
}

// faultRun is one run of a scenario: its outcome and whether the lifecycle
// around it held.
type faultRun struct {
	id  string
	err error
}

// run sets the scenario up (without faults), applies inject, sends the
// event, checks it answered before its deadline, then clears the faults and
// plays CloudFormation to the end of the stack. It returns the event's
// answer and the methods the event called (with how often).
func (s faultScenario) run(t *testing.T, e *emuEnv, inject func()) (faultRun, map[string]int) {
	t.Helper()
	physicalID := ""
	if s.kind != cfn.RequestCreate {
		id, _, err := handle(t, e.h, e.event(cfn.RequestCreate, s.typ, "", s.oldProps(e)))
		if err != nil {
			t.Fatalf("set up %s: Create: %v", s.name, err)
		}
		physicalID = id
	}
	ev := e.event(s.kind, s.typ, physicalID, s.props(e))
	if s.kind == cfn.RequestUpdate {
		ev.OldResourceProperties = s.oldProps(e)
	}
	before := map[string]int{}
	for _, m := range faultMethods() {
		before[m] = e.Calls(m)
	}
	if inject != nil {
		inject()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	id, _, err := e.h.Handle(ctx, ev)
	if ctx.Err() != nil {
		t.Fatalf("%s answered only after its deadline (%v)", s.name, ctx.Err())
	}
	called := map[string]int{}
	for _, m := range faultMethods() {
		if n := e.Calls(m) - before[m]; n > 0 {
			called[m] = n
		}
	}
	e.ClearFaults()
	s.finish(t, e, physicalID, id, err)
	return faultRun{id: id, err: err}, called
}

// finish plays what CloudFormation does after the event answered: for a
// failed event its rollback (or, for a Delete, the retried delete), then the
// stack's Delete of whatever the stack still holds.
func (s faultScenario) finish(t *testing.T, e *emuEnv, oldID, id string, err error) {
	t.Helper()
	send := func(kind cfn.RequestType, physicalID string, props map[string]any) string {
		t.Helper()
		got, _, err := handle(t, e.h, e.event(kind, s.typ, physicalID, props))
		if err != nil {
			t.Fatalf("after %s: %s %s: %v", s.name, kind, physicalID, err)
		}
		return got
	}
	switch s.kind {
	case cfn.RequestCreate:
		if id == "" {
			id = "6c0d8a4e-request" // Wrap's fallback: the request ID
		}
		send(cfn.RequestDelete, id, s.props(e)) // rollback or stack delete alike
	case cfn.RequestUpdate:
		if err != nil {
			id = send(cfn.RequestUpdate, oldID, s.oldProps(e)) // rollback
		} else if id != oldID {
			send(cfn.RequestDelete, oldID, s.oldProps(e)) // cleanup of the replaced object
		}
		send(cfn.RequestDelete, id, s.props(e))
	case cfn.RequestDelete:
		if err != nil {
			send(cfn.RequestDelete, oldID, s.props(e)) // the user retries the delete
		}
	}
}

func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault matrix sends a few hundred events")
	}
	// A PermissionDenied that never ends is retried within this budget,
	// then answered FAILED.
	const deniedBudget = 300 * time.Millisecond
	type cell struct{ ok, failed int }
	columns := append(slices.Clone(transientCodes), codes.PermissionDenied)
	var rows []string
	matrix := map[string]map[codes.Code]string{}
	totals := map[codes.Code]*cell{}
	for _, c := range columns {
		totals[c] = &cell{}
	}

	for _, s := range faultScenarios() {
		// Which RPCs does the event make when nothing fails?
		e := newEmuEnv(t)
		_, called := s.run(t, e, nil)
		methods := slices.Sorted(maps.Keys(called))
		if len(methods) == 0 {
			t.Fatalf("%s made no RPC", s.name)
		}
		for _, method := range methods {
			row := fmt.Sprintf("%-16s %s", s.name, strings.TrimPrefix(path.Base(path.Dir(method)), "chainguard.platform.")+"/"+path.Base(method))
			rows = append(rows, row)
			matrix[row] = map[codes.Code]string{}
			for _, code := range columns {
				t.Run(fmt.Sprintf("%s/%s/%s", s.name, path.Base(method), code), func(t *testing.T) {
					e := newEmuEnv(t)
					if code == codes.PermissionDenied {
						e.h = e.handlerAs(e.ProvisionerCredentials, provision.WithPermissionDeniedBudget(deniedBudget))
					}
					start := e.State().IDs()
					got, _ := s.run(t, e, func() {
						n := 1
						if code == codes.PermissionDenied {
							n = 1 << 20 // never ends
						}
						e.FailNext(method, n, code)
					})
					outcome := "SUCCESS"
					if got.err != nil {
						outcome = "FAILED"
					}
					matrix[row][code] = outcome
					if got.err != nil {
						totals[code].failed++
					} else {
						totals[code].ok++
					}
					switch {
					case code != codes.PermissionDenied && got.err != nil:
						t.Errorf("one %s on %s: %s answered FAILED: %v", code, method, s.name, got.err)
					case code == codes.PermissionDenied && got.err == nil:
						t.Errorf("a lasting PermissionDenied on %s: %s answered SUCCESS", method, s.name)
					case code == codes.PermissionDenied && !strings.Contains(got.err.Error(), "permission denied"):
						t.Errorf("a lasting PermissionDenied on %s: %s failed without saying so: %v", method, s.name, got.err)
					}
					if end := e.State().IDs(); !slices.Equal(start, end) {
						t.Errorf("after %s with %s on %s and CloudFormation's next steps, the emulator holds %v, want what it held before: %v", s.name, code, method, end, start)
					}
				})
			}
		}
	}

	width := len("totals (SUCCESS/FAILED)")
	for _, row := range rows {
		width = max(width, len(row))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", width, "event / RPC")
	for _, c := range columns {
		fmt.Fprintf(&b, " %-17s", c)
	}
	b.WriteString("\n")
	for _, row := range rows {
		fmt.Fprintf(&b, "%-*s", width, row)
		for _, c := range columns {
			fmt.Fprintf(&b, " %-17s", matrix[row][c])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%-*s", width, "totals (SUCCESS/FAILED)")
	for _, c := range columns {
		fmt.Fprintf(&b, " %-17s", fmt.Sprintf("%d/%d", totals[c].ok, totals[c].failed))
	}
	t.Logf("fault matrix (one injected failure per cell; PermissionDenied never ends):\n%s", b.String())
}
