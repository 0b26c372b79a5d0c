package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
	"github.com/assumable-identity/cdk-chainguard/lambda/internal/functest"
)

var bin functest.Binaries

// workloads are the bootstraps the trust check invokes: the repos function
// (wrapped with trustcheck) and the hello-world function (not wrapped).
var workloads struct{ repos, hello string }

func TestMain(m *testing.M) {
	os.Exit(functest.Main("./lambda/provisioner", func(b functest.Binaries) int {
		bin = b
		dir, err := os.MkdirTemp("", "provisioner-workloads-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { _ = os.RemoveAll(dir) }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for _, w := range []struct {
			pkg string
			out *string
		}{{"./lambda/repos", &workloads.repos}, {"./lambda/bench/testdata/hello", &workloads.hello}} {
			if *w.out, err = lambdabuild.Build(ctx, lambdabuild.Options{Package: w.pkg, OutDir: filepath.Join(dir, filepath.Base(w.pkg))}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}))
}

const (
	exchangeMethod       = "/chainguard.platform.oidc.SecurityTokenService/Exchange"
	identityListMethod   = iam.IdentitiesService_ListIdentities_FullMethodName
	identityCreateMethod = iam.IdentitiesService_CreateIdentity_FullMethodName
	identityDeleteMethod = iam.IdentitiesService_DeleteIdentity_FullMethodName
	bindingCreateMethod  = iam.RoleBindingsService_CreateRoleBinding_FullMethodName
	stackID              = "arn:aws:cloudformation:us-east-1:111122223333:stack/aws-auth/5b8e1d30-0000-0000-0000-000000000000"
	functionTimeout      = 5 * time.Second
	margin               = 1500 * time.Millisecond
	// logWait bounds the wait for a log line the function wrote just before
	// its invoke returned (it reaches the RIE's output through a pipe).
	logWait = 2 * time.Second
)

// responses is a local stand-in for the pre-signed S3 ResponseURL.
type responses struct {
	srv *httptest.Server
	ch  chan received
}

type received struct {
	method string
	size   int
	resp   cfn.Response
	err    string
}

func newResponses(t *testing.T) *responses {
	r := &responses{ch: make(chan received, 16)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		got := received{method: req.Method, size: len(body)}
		if err != nil {
			got.err = err.Error()
		} else if err := json.Unmarshal(body, &got.resp); err != nil {
			got.err = "decode: " + err.Error()
		}
		r.ch <- got
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// env is a seeded Chainguard emulator, a response server and the
// provisioner function running under the RIE as the provisioner principal.
type env struct {
	*emulatortest.Env
	resp   *responses
	fn     *rie.Emulator
	logs   *syncbuf.Buffer
	nextID int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	logs := &syncbuf.Buffer{}
	e := &env{
		Env:  emulatortest.NewEnv(t, emulator.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}),
		resp: newResponses(t),
		logs: logs,
	}
	e.fn = e.startAs(t, e.ProvisionerPrincipal, e.ProvisionerCredentials)
	t.Cleanup(func() {
		if found := functest.Secrets(logs.String(), secretsOf(e.ProvisionerCredentials)...); len(found) > 0 {
			t.Errorf("the emulator's logs hold secrets: %s", strings.Join(found, "; "))
		}
	})
	return e
}

func secretsOf(c aws.Credentials) []string { return []string{c.SecretAccessKey, c.SessionToken} }

// startAs runs the provisioner with the credentials of principal p, and
// the extra environment variables env.
func (e *env) startAs(t *testing.T, p emulator.AWSPrincipal, creds aws.Credentials, env ...string) *rie.Emulator {
	return functest.Start(t, bin, rie.Options{
		FunctionName: p.ARN[strings.LastIndex(p.ARN, "/")+1:],
		Timeout:      functionTimeout,
		Env:          append(append(functest.AWSEnv(creds), "PROVISIONER_DEADLINE_MARGIN="+margin.String()), env...),
	}, secretsOf(creds)...)
}

func (e *env) common() map[string]any {
	return map[string]any{
		"ServiceToken":        "arn:aws:lambda:us-east-1:111122223333:function:chainguard-provisioner",
		"ProvisionerIdentity": e.Provisioner,
		"Issuer":              e.IssuerURL(),
		"ApiUrl":              e.APIURL(),
	}
}

func (e *env) groupProps(parent, name, description string) map[string]any {
	p := e.common()
	maps.Copy(p, map[string]any{"Name": name, "Description": description, "Parent": parent, "Owned": "true"})
	return p
}

func (e *env) identityProps(group, roles string) map[string]any {
	p := e.common()
	maps.Copy(p, map[string]any{
		"Name":        "aws-auth-identity",
		"Description": "the aws-auth function",
		"Group":       group,
		"Roles":       roles,
		// The standard workload: role aws-auth, session aws-auth.
		"AwsAccount":   e.WorkloadPrincipal.Account,
		"AwsPartition": "aws",
		"AwsRoleName":  "aws-auth",
		"AwsRoleId":    emulator.RoleUniqueID(e.WorkloadPrincipal.Account, "aws-auth"),
		"AwsSession":   "aws-auth",
	})
	return p
}

// event is a CloudFormation event with a fresh request ID.
func (e *env) event(kind cfn.RequestType, resourceType, physicalID string, props, old map[string]any) cfn.Event {
	e.nextID++
	return cfn.Event{
		RequestType:           kind,
		RequestID:             fmt.Sprintf("6c0d8a4e-request-%04d", e.nextID),
		ResponseURL:           e.resp.srv.URL + "/response?X-Amz-Signature=redacted",
		ResourceType:          resourceType,
		PhysicalResourceID:    physicalID,
		LogicalResourceID:     "Resource" + resourceType[len("Custom::"):],
		StackID:               stackID,
		ResourceProperties:    props,
		OldResourceProperties: old,
	}
}

// send invokes fn with ev and returns the response CloudFormation would
// receive, checking the fields that echo the event and the invoke's timing.
func (e *env) send(t *testing.T, fn *rie.Emulator, ev cfn.Event) cfn.Response {
	t.Helper()
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), functionTimeout+5*time.Second)
	defer cancel()
	start := time.Now()
	body, err := fn.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("invoke %s %s: %v", ev.RequestType, ev.ResourceType, err)
	}
	if string(body) != `""` {
		t.Fatalf("invoke body = %s, want \"\" (cfn.LambdaWrap answers through the ResponseURL)", body)
	}
	var got received
	select {
	case got = <-e.resp.ch:
	case <-ctx.Done():
		t.Fatalf("no response PUT for %s %s", ev.RequestType, ev.ResourceType)
	}
	if elapsed := time.Since(start); elapsed >= functionTimeout {
		t.Fatalf("response after %s, not before the %s function timeout", elapsed, functionTimeout)
	}
	switch {
	case got.err != "":
		t.Fatalf("response: %s", got.err)
	case got.method != http.MethodPut:
		t.Fatalf("response method = %s, want PUT", got.method)
	case got.size > 4096:
		t.Fatalf("response body is %d bytes, CloudFormation accepts at most 4096", got.size)
	case got.resp.RequestID != ev.RequestID || got.resp.LogicalResourceID != ev.LogicalResourceID || got.resp.StackID != ev.StackID:
		t.Fatalf("response echoes RequestId %q LogicalResourceId %q StackId %q, want %q %q %q",
			got.resp.RequestID, got.resp.LogicalResourceID, got.resp.StackID, ev.RequestID, ev.LogicalResourceID, ev.StackID)
	}
	return got.resp
}

func wantSuccess(t *testing.T, r cfn.Response, data map[string]any) {
	t.Helper()
	if r.Status != cfn.StatusSuccess || r.Reason != "" {
		t.Fatalf("response Status %s Reason %q, want SUCCESS without a reason", r.Status, r.Reason)
	}
	if !maps.Equal(r.Data, data) {
		t.Fatalf("response Data = %v, want %v", r.Data, data)
	}
}

func wantFailed(t *testing.T, r cfn.Response, physicalID string, reason ...string) {
	t.Helper()
	if r.Status != cfn.StatusFailed {
		t.Fatalf("response Status %s, want FAILED", r.Status)
	}
	if r.PhysicalResourceID != physicalID {
		t.Fatalf("response PhysicalResourceId = %q, want %q", r.PhysicalResourceID, physicalID)
	}
	if len(r.Data) != 0 {
		t.Fatalf("FAILED response has Data %v", r.Data)
	}
	for _, want := range reason {
		if !strings.Contains(r.Reason, want) {
			t.Fatalf("Reason %q does not contain %q", r.Reason, want)
		}
	}
	t.Logf("Reason: %s", r.Reason)
}

func (e *env) group(id string) (emulator.Group, bool) {
	for _, g := range e.State().Groups {
		if g.ID == id {
			return g, true
		}
	}
	return emulator.Group{}, false
}

func (e *env) identities(name string) []emulator.Identity {
	var out []emulator.Identity
	for _, i := range e.State().Identities {
		if i.Name == name {
			out = append(out, i)
		}
	}
	return out
}

func TestGroupLifecycle(t *testing.T) {
	e := newEnv(t)
	const typ = "Custom::ChainguardGroup"

	props := e.groupProps(e.Root, "team-a", "first")
	r := e.send(t, e.fn, e.event(cfn.RequestCreate, typ, "", props, nil))
	id := r.PhysicalResourceID
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "team-a"})
	if uidp.Parent(id) != e.Root {
		t.Fatalf("created group %s is not a child of the root %s", id, e.Root)
	}
	if g, ok := e.group(id); !ok || g.Name != "team-a" || g.Description != "first"+marker(typ) {
		t.Fatalf("group in the emulator = %+v, %v", g, ok)
	}

	// Replayed Create: same object, no duplicate.
	r = e.send(t, e.fn, e.event(cfn.RequestCreate, typ, "", props, nil))
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "team-a"})
	if r.PhysicalResourceID != id {
		t.Fatalf("replayed Create returned %s, want %s", r.PhysicalResourceID, id)
	}
	if n := countGroups(e, "team-a"); n != 1 {
		t.Fatalf("%d groups named team-a after a replayed Create, want 1", n)
	}

	// Update in place.
	updated := e.groupProps(e.Root, "team-a", "second")
	r = e.send(t, e.fn, e.event(cfn.RequestUpdate, typ, id, updated, props))
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "team-a"})
	if r.PhysicalResourceID != id {
		t.Fatalf("description update replaced the group: %s -> %s", id, r.PhysicalResourceID)
	}
	if g, _ := e.group(id); g.Description != "second"+marker(typ) {
		t.Fatalf("description = %q after Update, want second", g.Description)
	}

	// Parent change: a new group with a new physical ID; CloudFormation
	// then deletes the old one.
	moved := e.groupProps(e.Group, "team-a", "second")
	r = e.send(t, e.fn, e.event(cfn.RequestUpdate, typ, id, moved, updated))
	newID := r.PhysicalResourceID
	wantSuccess(t, r, map[string]any{"Id": newID, "Name": "team-a"})
	if newID == id || uidp.Parent(newID) != e.Group {
		t.Fatalf("parent change returned %s, want a new group under %s", newID, e.Group)
	}
	r = e.send(t, e.fn, e.event(cfn.RequestDelete, typ, id, updated, nil))
	wantSuccess(t, r, nil)
	if r.PhysicalResourceID != id {
		t.Fatalf("Delete answered physical ID %s, want %s", r.PhysicalResourceID, id)
	}
	if _, ok := e.group(id); ok {
		t.Fatal("the old group survived its Delete")
	}

	// Not owned: left in place, no call at all.
	calls := e.Calls(exchangeMethod)
	notOwned := maps.Clone(moved)
	notOwned["Owned"] = "false"
	r = e.send(t, e.fn, e.event(cfn.RequestDelete, typ, newID, notOwned, nil))
	wantSuccess(t, r, nil)
	if _, ok := e.group(newID); !ok || e.Calls(exchangeMethod) != calls {
		t.Fatal("Delete of a group the stack does not own touched it")
	}

	// Owned: deleted; deleting it again (already gone) succeeds.
	for range 2 {
		r = e.send(t, e.fn, e.event(cfn.RequestDelete, typ, newID, moved, nil))
		wantSuccess(t, r, nil)
		if _, ok := e.group(newID); ok {
			t.Fatal("the group survived its Delete")
		}
	}
}

// marker is the ownership marker the provisioner adds to the description of
// an object of type typ made by the test stack.
func marker(typ string) string {
	return " [managed by CloudFormation: " + owner(typ) + "]"
}

// owner is the test stack's owner name of its object of type typ.
func owner(typ string) string {
	return "111122223333/us-east-1/aws-auth/5b8e1d30-0000-0000-0000-000000000000/Resource" + typ[len("Custom::"):]
}

func countGroups(e *env, name string) int {
	n := 0
	for _, g := range e.State().Groups {
		if g.Name == name {
			n++
		}
	}
	return n
}

func TestIdentityLifecycle(t *testing.T) {
	e := newEnv(t)
	const typ = "Custom::ChainguardIdentity"

	props := e.identityProps(e.Group, "viewer")
	r := e.send(t, e.fn, e.event(cfn.RequestCreate, typ, "", props, nil))
	id := r.PhysicalResourceID
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "aws-auth-identity", "Roles": "viewer"})
	if got := e.identities("aws-auth-identity"); len(got) != 1 || got[0].ID != id || uidp.Parent(id) != e.Group {
		t.Fatalf("identities after Create = %+v, want one in %s with ID %s", got, e.Group, id)
	}
	if got := e.State().RolesOf(id); !slices.Equal(got, []string{"viewer"}) {
		t.Fatalf("role bindings = %v, want [viewer]", got)
	}
	// The identity works: the workload principal can assume it.
	emulatortest.Token(t, e.Emulator, e.WorkloadCredentials, id)

	// Replayed Create: one identity.
	r = e.send(t, e.fn, e.event(cfn.RequestCreate, typ, "", props, nil))
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "aws-auth-identity", "Roles": "viewer"})
	if got := e.identities("aws-auth-identity"); len(got) != 1 {
		t.Fatalf("%d identities after a replayed Create, want 1", len(got))
	}

	// Update in place: roles change.
	more := e.identityProps(e.Group, "viewer,registry.pull")
	r = e.send(t, e.fn, e.event(cfn.RequestUpdate, typ, id, more, props))
	wantSuccess(t, r, map[string]any{"Id": id, "Name": "aws-auth-identity", "Roles": "registry.pull,viewer"})
	if got := e.State().RolesOf(id); !slices.Equal(got, []string{"registry.pull", "viewer"}) {
		t.Fatalf("role bindings after Update = %v", got)
	}

	// Group change: replacement.
	moved := e.identityProps(e.Root, "viewer")
	r = e.send(t, e.fn, e.event(cfn.RequestUpdate, typ, id, moved, more))
	newID := r.PhysicalResourceID
	wantSuccess(t, r, map[string]any{"Id": newID, "Name": "aws-auth-identity", "Roles": "viewer"})
	if newID == id || uidp.Parent(newID) != e.Root {
		t.Fatalf("group change returned %s, want a new identity in %s", newID, e.Root)
	}

	// CloudFormation deletes the old one, then (stack delete) the new one.
	for _, del := range []struct {
		id    string
		props map[string]any
	}{{id, more}, {newID, moved}} {
		r = e.send(t, e.fn, e.event(cfn.RequestDelete, typ, del.id, del.props, nil))
		wantSuccess(t, r, nil)
		if r.PhysicalResourceID != del.id {
			t.Fatalf("Delete answered physical ID %s, want %s", r.PhysicalResourceID, del.id)
		}
		if got := e.State().RolesOf(del.id); len(got) != 0 {
			t.Fatalf("bindings of deleted identity %s remain: %v", del.id, got)
		}
	}
	if got := e.identities("aws-auth-identity"); len(got) != 0 {
		t.Fatalf("identities after Delete: %+v", got)
	}
}

func TestFailures(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		setup  func()
		ev     func() cfn.Event
		reason []string
	}{
		{
			name:   "unknown resource type",
			ev:     func() cfn.Event { return e.event(cfn.RequestCreate, "Custom::ChainguardThing", "", e.common(), nil) },
			reason: []string{`resource type "Custom::ChainguardThing" is not served`, "Custom::ChainguardGroup"},
		},
		{
			name: "unknown resource type on Update",
			ev: func() cfn.Event {
				return e.event(cfn.RequestUpdate, "Custom::ChainguardThing", e.Group, e.common(), e.common())
			},
			reason: []string{`resource type "Custom::ChainguardThing" is not served`, "fix the resource's Type"},
		},
		{
			name: "bad property",
			ev: func() cfn.Event {
				p := e.identityProps(e.Group, "viewer")
				p["AwsAccount"] = "9999-8888-7777"
				return e.event(cfn.RequestCreate, "Custom::ChainguardIdentity", "", p, nil)
			},
			reason: []string{"property AwsAccount", "999988887777"},
		},
		{
			name:  "emulator hangs",
			setup: func() { e.HangNext(identityListMethod, 1) },
			ev: func() cfn.Event {
				return e.event(cfn.RequestCreate, "Custom::ChainguardIdentity", "", e.identityProps(e.Group, "viewer"), nil)
			},
			reason: []string{"timed out", `ensure identity "aws-auth-identity"`, "PROVISIONER_DEADLINE_MARGIN"},
		},
		{
			name:  "token exchange hangs",
			setup: func() { e.HangNext(exchangeMethod, 1) },
			ev: func() cfn.Event {
				return e.event(cfn.RequestCreate, "Custom::ChainguardGroup", "", e.groupProps(e.Root, "team-b", ""), nil)
			},
			reason: []string{"timed out", "token exchange for provisioner identity"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer e.ClearFaults()
			if tt.setup != nil {
				tt.setup()
			}
			ev := tt.ev()
			r := e.send(t, e.fn, ev)
			wantID := ev.PhysicalResourceID // cfn.LambdaWrap's fallback, which Wrap keeps
			if ev.RequestType == cfn.RequestCreate {
				wantID = ev.RequestID
			}
			wantFailed(t, r, wantID, tt.reason...)
		})
	}
	if n := e.Calls(identityCreateMethod); n != 0 {
		t.Fatalf("failed events created %d identities", n)
	}
}

// A Create that fails after the identity exists (a binding refused, or the
// deadline passing while binding) answers FAILED with the identity's UIDP,
// so CloudFormation's rollback Delete removes it: nothing is left behind.
func TestFailedCreateIsRolledBack(t *testing.T) {
	const typ = "Custom::ChainguardIdentity"
	tests := []struct {
		name   string
		inject func(e *env)
		reason []string
	}{{
		name:   "binding refused",
		inject: func(e *env) { e.FailNext(bindingCreateMethod, 1000, codes.PermissionDenied) },
		reason: []string{`bind identity "aws-auth-identity"`, "permission denied", "owner role"},
	}, {
		name:   "binding hangs past the deadline",
		inject: func(e *env) { e.HangNext(bindingCreateMethod, 1) },
		reason: []string{"timed out", `ensure identity "aws-auth-identity"`, "PROVISIONER_DEADLINE_MARGIN"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			before := e.State()
			tt.inject(e)
			props := e.identityProps(e.Group, "viewer")
			r := e.send(t, e.fn, e.event(cfn.RequestCreate, typ, "", props, nil))
			made := e.identities("aws-auth-identity")
			if len(made) != 1 {
				t.Fatalf("identities after the failed Create = %+v, want the one it made", made)
			}
			wantFailed(t, r, made[0].ID, tt.reason...)
			e.ClearFaults()

			// CloudFormation's rollback: Delete with the answered physical ID.
			r = e.send(t, e.fn, e.event(cfn.RequestDelete, typ, r.PhysicalResourceID, props, nil))
			wantSuccess(t, r, nil)
			if after := e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
				t.Fatalf("after the rollback the emulator holds %v, want what it held before: %v", after.IDs(), before.IDs())
			}
		})
	}
}

// An Update that replaces an identity (its Group changed) and fails after
// making the new one answers FAILED with the old physical ID, having deleted
// the new identity first: nothing trusts the role that CloudFormation does
// not track. A deletion that fails is named in the reason.
func TestFailedReplacementIsUndone(t *testing.T) {
	const typ = "Custom::ChainguardIdentity"
	tests := []struct {
		name   string
		inject func(e *env)
		left   bool // the new identity cannot be deleted
		reason []string
	}{{
		name:   "binding refused",
		inject: func(e *env) { e.FailNext(bindingCreateMethod, 1, codes.InvalidArgument) },
		reason: []string{`bind identity "aws-auth-identity"`, "invalid argument", "this update made was deleted"},
	}, {
		name:   "binding hangs past the deadline",
		inject: func(e *env) { e.HangNext(bindingCreateMethod, 1) },
		reason: []string{`timed out: ensure identity "aws-auth-identity"`, "PROVISIONER_DEADLINE_MARGIN", "this update made was deleted"},
	}, {
		name: "the new identity cannot be deleted",
		inject: func(e *env) {
			e.FailNext(bindingCreateMethod, 1, codes.InvalidArgument)
			e.FailNext(identityDeleteMethod, 1, codes.FailedPrecondition)
		},
		left:   true,
		reason: []string{`bind identity "aws-auth-identity"`, "could not be deleted and is left behind (delete it by hand)", "failed precondition"},
	}, {
		name: "the deletion of the new identity hangs",
		inject: func(e *env) {
			e.HangNext(bindingCreateMethod, 1)
			e.HangNext(identityDeleteMethod, 1)
		},
		left:   true,
		reason: []string{"timed out", "left behind", "delete it by hand"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			props := e.identityProps(e.Group, "viewer")
			r := e.send(t, e.fn, e.event(cfn.RequestCreate, typ, "", props, nil))
			oldID := r.PhysicalResourceID
			wantSuccess(t, r, map[string]any{"Id": oldID, "Name": "aws-auth-identity", "Roles": "viewer"})
			before := e.State()

			tt.inject(e)
			r = e.send(t, e.fn, e.event(cfn.RequestUpdate, typ, oldID, e.identityProps(e.Root, "viewer"), props))
			e.ClearFaults()
			if e.Calls(identityCreateMethod) != 2 {
				t.Fatalf("the Update made %d identities, want 1 (the replacement)", e.Calls(identityCreateMethod)-1)
			}
			var made []string
			for _, i := range e.identities("aws-auth-identity") {
				if i.ID != oldID {
					made = append(made, i.ID)
				}
			}
			if !tt.left {
				wantFailed(t, r, oldID, tt.reason...)
				if after := e.State(); len(made) > 0 || !reflect.DeepEqual(after.IDs(), before.IDs()) {
					t.Fatalf("after the failed Update the emulator holds %v, want what it held before: %v", after.IDs(), before.IDs())
				}
				return
			}
			if len(made) != 1 {
				t.Fatalf("new identities left = %v, want the one that could not be deleted", made)
			}
			wantFailed(t, r, oldID, append(tt.reason, made[0])...)
			if logs := e.fn.WaitLogs(0, logWait, `"orphan_id":"`+made[0]+`"`); !strings.Contains(logs, `"orphan_id":"`+made[0]+`"`) {
				t.Fatalf("the function's logs do not name the identity left behind:\n%s", logs)
			}
		})
	}
}

// A response that cannot be delivered fails the invocation with an error,
// and is logged, naming the ResponseURL by scheme, host and path only: its
// query is a pre-signed S3 credential that must never reach a log or an
// error. A PUT that hangs is abandoned before the function's deadline.
func TestUndeliveredResponseHidesTheURLQuery(t *testing.T) {
	const (
		credential = "AKIAFAKECREDENTIAL42"
		token      = "FQoGZXIvYXdzEFAKEsessiontokenvalue"
		signature  = "deadbeefsecret0123456789"
	)
	query := "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + credential +
		"%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token=" + token + "&X-Amz-Signature=" + signature
	secrets := []string{credential, token, signature}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String()
	_ = closed.Close()
	// S3 echoes the canonical request, query included, when a signature
	// does not match.
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><CanonicalRequest>PUT %s %s</CanonicalRequest></Error>`,
			html.EscapeString(r.URL.Path), html.EscapeString(r.URL.RawQuery))
	}))
	defer refused.Close()
	release := make(chan struct{})
	hangs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client going away
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hangs.Close()
	defer close(release)

	e := newEnv(t)
	fn := e.startAs(t, e.ProvisionerPrincipal, e.ProvisionerCredentials)
	tests := []struct {
		name    string
		base    string
		wantLog string
	}{
		{name: "closed port", base: closedURL, wantLog: "connection refused"},
		{name: "signature refused", base: refused.URL, wantLog: "HTTP 403: SignatureDoesNotMatch"},
		{name: "PUT hangs", base: hangs.URL, wantLog: "abandoned 250ms before the function's deadline: PUT: context deadline exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := e.event(cfn.RequestDelete, "Custom::ChainguardIdentity", "", e.common(), nil)
			ev.PhysicalResourceID = ev.RequestID // answers at once, without a call
			where := tt.base + "/cfn-response/arn%3Aaws%3Acloudformation/stack-response"
			ev.ResponseURL = where + query
			payload, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			logged := len(fn.Logs())
			ctx, cancel := context.WithTimeout(t.Context(), functionTimeout+5*time.Second)
			defer cancel()
			start := time.Now()
			body, err := fn.Invoke(ctx, payload)
			if elapsed := time.Since(start); elapsed >= functionTimeout {
				t.Fatalf("the invoke took %s, not less than the %s function timeout", elapsed, functionTimeout)
			}
			var ferr *rie.FunctionError
			if !errors.As(err, &ferr) || ferr.Type == "TimedOut" {
				t.Fatalf("invoke error = %v, want the function's error", err)
			}
			if want := "send the SUCCESS response to " + where + ": "; !strings.Contains(ferr.Message, want) {
				t.Fatalf("invoke error %q does not contain %q", ferr.Message, want)
			}
			wants := []string{`"msg":"response not delivered`, `"response_url":"` + where + `"`, tt.wantLog}
			logs := fn.WaitLogs(logged, logWait, wants...)
			for _, want := range wants {
				if !strings.Contains(logs, want) {
					t.Fatalf("the function's logs lack %q:\n%s", want, logs)
				}
			}
			if found := functest.Secrets(string(body)+"\n"+fn.Logs(), secrets...); len(found) > 0 {
				t.Fatalf("the invoke output or the logs hold the ResponseURL's query: %s", strings.Join(found, "; "))
			}
		})
	}
}
