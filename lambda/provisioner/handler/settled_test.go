package handler

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
)

// faultyBindings makes CreateRoleBinding misbehave after the identity was
// created: it calls misbehave instead of the service.
type faultyBindings struct {
	iam.RoleBindingsServiceClient
	misbehave func()
}

func (f faultyBindings) CreateRoleBinding(context.Context, *iam.CreateRoleBindingRequest, ...grpc.CallOption) (*iam.RoleBinding, error) {
	f.misbehave()
	return nil, errors.New("released")
}

type faultyClients struct {
	iam.Clients
	bindings faultyBindings
}

func (c faultyClients) RoleBindingsService() iam.RoleBindingsServiceClient { return c.bindings }

// faultyHandler is a handler acting as e's provisioner whose
// CreateRoleBinding calls misbehave.
func faultyHandler(e *emulatortest.Env, margin time.Duration, misbehave func()) *Handler {
	exchange := ExchangeConnect(token.CallerIdentity, credentials.StaticCredentialsProvider{Value: e.ProvisionerCredentials}, nil)
	return New(Config{Credentials: noCall, Margin: margin, Options: fastRetries, Connect: func(ctx context.Context, tgt Target) (iam.Clients, error) {
		c, err := exchange(ctx, tgt)
		if err != nil {
			return nil, err
		}
		return faultyClients{Clients: c, bindings: faultyBindings{RoleBindingsServiceClient: c.RoleBindingsService(), misbehave: misbehave}}, nil
	}}, nil)
}

// responses serves a ResponseURL whose responses arrive, decoded, on got.
func responses(t *testing.T) (url string, got <-chan cfn.Response) {
	t.Helper()
	ch := make(chan cfn.Response, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var resp cfn.Response
		if err := json.NewDecoder(r.Body).Decode(&resp); err != nil {
			t.Errorf("decode the response: %v", err)
		}
		ch <- resp
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

// A Create that cannot finish after its object exists (a call that ignores
// its deadline, a panic) still answers FAILED with the object's UIDP, so
// that CloudFormation's rollback deletes it.
func TestUnfinishedCreateNamesItsObject(t *testing.T) {
	tests := []struct {
		name string
		// misbehave is what CreateRoleBinding does; release ends it.
		misbehave func(release <-chan struct{})
		wrapped   bool // through Wrap (the watchdog answers), else Handle
	}{
		{name: "a call ignores its deadline", wrapped: true, misbehave: func(release <-chan struct{}) { <-release }},
		{name: "a panic", misbehave: func(<-chan struct{}) { panic("bug") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := emulatortest.NewEnv(t, emulator.Options{})
			release := make(chan struct{})
			defer close(release)
			const margin = time.Second
			h := faultyHandler(e, margin, func() { tt.misbehave(release) })
			ev := emuEvent(e, e.Provisioner, cfn.RequestCreate, TypeIdentity, "", identityProps(e, e.Group))
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()

			var physicalID string
			if tt.wrapped {
				responseURL, got := responses(t)
				ev.ResponseURL = responseURL
				go func() { _, _ = Wrap(h.Handle, nil, nil, margin)(ctx, ev) }()
				select {
				case r := <-got:
					if r.Status != cfn.StatusFailed {
						t.Fatalf("response = %+v, want FAILED", r)
					}
					physicalID = r.PhysicalResourceID
				case <-ctx.Done():
					t.Fatal("no response before the function's deadline")
				}
			} else {
				id, _, err := h.Handle(ctx, ev)
				if err == nil {
					t.Fatal("Handle succeeded, want FAILED")
				}
				physicalID = id
			}
			made := slices.IndexFunc(e.State().Identities, func(i emulator.Identity) bool { return i.Name == "aws-auth-identity" })
			if made < 0 {
				t.Fatal("the identity was not created before the failure")
			}
			if want := e.State().Identities[made].ID; physicalID != want {
				t.Fatalf("FAILED answered physical ID %q, want the created identity %s (so the rollback deletes it)", physicalID, want)
			}
		})
	}
}

// An Update replacing an identity (its Group changed) that cannot finish
// after the new identity exists answers the old physical ID, as every failed
// Update does, and logs the new identity for a person to delete: the undo
// cannot run while a call still hangs.
func TestUnfinishedReplacementLogsTheNewObject(t *testing.T) {
	e := emulatortest.NewEnv(t, emulator.Options{})
	release := make(chan struct{})
	defer close(release)
	old := e.SeedIdentity(e.Group, "aws-auth-identity", "", e.WorkloadPrincipal.ExactTrust(), map[string][]string{e.Group: {"viewer"}})
	other := e.SeedGroup(e.Root, "other-team", "")
	const margin = time.Second
	h := faultyHandler(e, margin, func() { <-release })
	var logs syncbuf.Buffer
	responseURL, got := responses(t)
	ev := emuEvent(e, e.Provisioner, cfn.RequestUpdate, TypeIdentity, old, identityProps(e, other))
	ev.OldResourceProperties = identityProps(e, e.Group)
	ev.ResponseURL = responseURL
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	go func() { _, _ = Wrap(h.Handle, nil, slog.New(slog.NewJSONHandler(&logs, nil)), margin)(ctx, ev) }()
	var r cfn.Response
	select {
	case r = <-got:
	case <-ctx.Done():
		t.Fatal("no response before the function's deadline")
	}
	if r.Status != cfn.StatusFailed || r.PhysicalResourceID != old {
		t.Fatalf("response = %+v, want FAILED with the old physical ID %s", r, old)
	}
	i := slices.IndexFunc(e.State().Identities, func(i emulator.Identity) bool { return strings.HasPrefix(i.ID, other+"/") })
	if i < 0 {
		t.Fatal("the new identity was not created before the hang")
	}
	if want := `"orphan_id":"` + e.State().Identities[i].ID + `"`; !strings.Contains(logs.String(), want) {
		t.Fatalf("the log does not name the new identity (%s):\n%s", want, logs.String())
	}
}
