package handler

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// These tests run the handler in-process against the emulator (the RIE
// tests in package main run the real bootstrap).

// fastRetries keeps the retry schedules short.
var fastRetries = []provision.Option{
	provision.WithBackoff(5*time.Millisecond, 20*time.Millisecond, 5),
	provision.WithPropagationBackoff(100*time.Millisecond, 400*time.Millisecond),
	provision.WithPermissionDeniedBudget(10 * time.Second),
}

// emuEvent is an event of the test stack for the emulator env e.
func emuEvent(e *emulatortest.Env, provisioner string, kind cfn.RequestType, typ, physicalID string, props map[string]any) cfn.Event {
	p := map[string]any{}
	maps.Copy(p, props)
	maps.Copy(p, map[string]any{PropProvisionerIdentity: provisioner, PropIssuer: e.IssuerURL(), PropAPIURL: e.APIURL()})
	return cfn.Event{
		RequestType:        kind,
		RequestID:          "6c0d8a4e-request",
		ResourceType:       typ,
		PhysicalResourceID: physicalID,
		LogicalResourceID:  "Res",
		StackID:            testStackID,
		ResourceProperties: p,
	}
}

func handle(t *testing.T, h *Handler, ev cfn.Event) (string, map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	return h.Handle(ctx, ev)
}

// The first deployment right after the trust step: the provisioner identity
// and its owner binding were just made through the API, and the STS learns
// of both only after the propagation delay (tokens carry the bindings in
// effect at their exchange). The first Create events succeed: the refused
// exchange, and the refusals of a token exchanged too early, are retried
// with fresh tokens within the budget.
func TestFirstDeployRightAfterTheTrustStep(t *testing.T) {
	e := emulatortest.NewEnv(t, emulator.Options{PropagationDelay: 1500 * time.Millisecond})
	principal := emulator.AssumedRolePrincipal(e.ProvisionerPrincipal.Account, "new-provisioner", "new-provisioner")
	creds := e.RegisterAWSPrincipal(principal)

	// The trust step, as the user who runs chainctl (through IAM v1, as
	// the localrun trust step makes it: both versions serve the same
	// objects).
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := iamv1.NewClients(ctx, e.APIURL(), e.MintToken(e.Provisioner))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prov, err := c.Identities().Create(ctx, &iamv1.CreateIdentityRequest{ParentId: e.Root, Identity: &iamv1.Identity{
		Name:         "provisioner",
		Relationship: &iamv1.Identity_AwsIdentity{AwsIdentity: principal.ExactTrust()},
	}})
	if err != nil {
		t.Fatalf("trust step: create the identity: %v", err)
	}
	if _, err := c.RoleBindings().Create(ctx, &iamv1.CreateRoleBindingRequest{Parent: e.Root, RoleBinding: &iamv1.RoleBinding{Identity: prov.GetId(), Role: e.RoleID("owner")}}); err != nil {
		t.Fatalf("trust step: bind owner: %v", err)
	}

	// At once: cdk deploy.
	h := New(Config{Credentials: credentials.StaticCredentialsProvider{Value: creds}, Margin: time.Second, Options: fastRetries}, nil)
	groupID, data, err := handle(t, h, emuEvent(e, prov.GetId(), cfn.RequestCreate, TypeGroup, "", map[string]any{PropName: "team-a", PropParent: e.Root, PropOwned: "true"}))
	if err != nil {
		t.Fatalf("Create group right after the trust step: %v", err)
	}
	if uidp.Parent(groupID) != e.Root || data["Name"] != "team-a" {
		t.Fatalf("Create group = %s %v, want team-a under %s", groupID, data, e.Root)
	}
	id, data, err := handle(t, h, emuEvent(e, prov.GetId(), cfn.RequestCreate, TypeIdentity, "", identityProps(e, groupID)))
	if err != nil {
		t.Fatalf("Create identity right after the trust step: %v", err)
	}
	if uidp.Parent(id) != groupID || data["Roles"] != "viewer" {
		t.Fatalf("Create identity = %s %v, want one in %s bound as viewer", id, data, groupID)
	}
}

func identityProps(e *emulatortest.Env, group string) map[string]any {
	p := trustProps(e.WorkloadPrincipal)
	maps.Copy(p, map[string]any{PropName: "aws-auth-identity", PropGroup: group, PropRoles: "viewer"})
	return p
}

// trustProps are the trust properties that admit exactly principal, an
// assumed-role session.
func trustProps(principal emulator.AWSPrincipal) map[string]any {
	arn, err := validate.AssumedRoleARN(principal.ARN)
	if err != nil {
		panic(err) // the emulator's principals are valid
	}
	roleID, _, _ := strings.Cut(principal.UserID, ":")
	return map[string]any{
		PropAwsAccount: arn.Account, PropAwsPartition: arn.Partition, PropAwsRoleName: arn.Role,
		PropAwsRoleID: roleID, PropAwsSession: arn.Session,
	}
}

// Config.Connect is the handler's only way to Chainguard: it is called once
// per event, and again for a fresh token after PermissionDenied.
func TestConnectIsInjected(t *testing.T) {
	tests := []struct {
		name         string
		inject       func(e *emulatortest.Env)
		kind         cfn.RequestType
		wantConnects int32
	}{
		{name: "create", kind: cfn.RequestCreate, wantConnects: 1},
		{name: "create refused once", kind: cfn.RequestCreate, wantConnects: 2,
			inject: func(e *emulatortest.Env) {
				e.FailNext(iam.IdentitiesService_CreateIdentity_FullMethodName, 1, codes.PermissionDenied)
			}},
		{name: "delete", kind: cfn.RequestDelete, wantConnects: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := emulatortest.NewEnv(t, emulator.Options{})
			var connects atomic.Int32
			exchange := ExchangeConnect(token.CallerIdentity, credentials.StaticCredentialsProvider{Value: e.ProvisionerCredentials}, nil)
			h := New(Config{Credentials: noCall, Margin: time.Second, Options: fastRetries, Connect: func(ctx context.Context, tgt Target) (iam.Clients, error) {
				connects.Add(1)
				if tgt.Provisioner != e.Provisioner || tgt.APIURL != e.APIURL() || tgt.Issuer != e.IssuerURL() {
					t.Errorf("Connect got target %+v, want the event's", tgt)
				}
				return exchange(ctx, tgt)
			}}, nil)
			physicalID := ""
			if tt.kind == cfn.RequestDelete {
				physicalID = e.SeedIdentity(e.Group, "aws-auth-identity", "", e.WorkloadPrincipal.ExactTrust(), map[string][]string{e.Group: {"viewer"}})
			}
			if tt.inject != nil {
				tt.inject(e)
			}
			id, _, err := handle(t, h, emuEvent(e, e.Provisioner, tt.kind, TypeIdentity, physicalID, identityProps(e, e.Group)))
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if n := connects.Load(); n != tt.wantConnects {
				t.Fatalf("Connect was called %d times, want %d", n, tt.wantConnects)
			}
			left := slices.ContainsFunc(e.State().Identities, func(i emulator.Identity) bool { return i.ID == id })
			if left != (tt.kind != cfn.RequestDelete) {
				t.Fatalf("identity %s present after %s: %v", id, tt.kind, left)
			}
		})
	}
}

// A Delete of the stack's group that the provisioner cannot see fails,
// naming why, instead of answering SUCCESS and leaving the group behind.
func TestDeleteOfAGroupNotVisibleFails(t *testing.T) {
	e := emulatortest.NewEnv(t, emulator.Options{})
	blind := emulator.AssumedRolePrincipal(e.ProvisionerPrincipal.Account, "blind-provisioner", "blind-provisioner")
	creds := e.RegisterAWSPrincipal(blind)
	sibling := e.SeedGroup(e.Root, "sibling", "")
	blindID := e.SeedIdentity(e.Root, "blind-provisioner", "owner elsewhere", blind.ExactTrust(), map[string][]string{sibling: {"owner"}})
	group := e.SeedGroup(e.Group, "team", "d [managed by CloudFormation: "+testOwner+"]")
	h := New(Config{Credentials: credentials.StaticCredentialsProvider{Value: creds}, Margin: time.Second,
		Options: append(slices.Clone(fastRetries), provision.WithPermissionDeniedBudget(300*time.Millisecond))}, nil)
	_, _, err := handle(t, h, emuEvent(e, blindID, cfn.RequestDelete, TypeGroup, group, map[string]any{PropName: "team", PropParent: e.Group, PropOwned: "true"}))
	t.Logf("error: %v", err)
	if want := "delete group " + group + ": neither the group nor any group above it is visible to the provisioner identity"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Handle error = %v, want it to contain %q", err, want)
	}
	if !slices.ContainsFunc(e.State().Groups, func(g emulator.Group) bool { return g.ID == group }) {
		t.Fatal("the group is gone")
	}
}
