package handler

import (
	"context"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	commonv1 "chainguard.dev/sdk/proto/platform/common/v1"
	iamv1 "chainguard.dev/sdk/proto/platform/iam/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/uidp"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
)

// Custom::ChainguardIdentity with Trust WebIdentity through Handle, against
// the emulator, with the provisioner authenticating either way.

const (
	// webWorkloadRoleARN is the ARN of the standard workload's role (aws-auth)
	// given the path /team/: the sub of its web identity tokens.
	webWorkloadRoleARN = "arn:aws:iam::111122223333:role/team/aws-auth"
	// fakeIssuer is a well-formed federation issuer no token comes from.
	fakeIssuer = "https://00000000-0000-0000-0000-000000000000.tokens.sts.global.api.aws"
)

// webEmuEnv is emuEnv with the account's outbound identity federation
// enabled, the standard workload's role given a path (its web identity
// tokens' sub is webWorkloadRoleARN), and a claim_match provisioner identity,
// owner on Root, trusting the standard provisioner role's tokens.
type webEmuEnv struct {
	*emuEnv
	issuer         string
	workloadSTS    *awssts.Client // the workload's STS client
	provisionerSTS *awssts.Client // the provisioner's STS client
	webProvisioner string         // UIDP of the claim_match provisioner identity
}

func newWebEmuEnv(t *testing.T) *webEmuEnv {
	t.Helper()
	e := newEmuEnv(t)
	workload := e.WorkloadPrincipal
	workload.RoleARN = webWorkloadRoleARN
	w := &webEmuEnv{
		emuEnv:         e,
		issuer:         e.EnableWebIdentityFederation(e.WorkloadPrincipal.Account),
		workloadSTS:    emulatortest.STSClient(e.Emulator, e.RegisterAWSPrincipal(workload), "us-east-1"),
		provisionerSTS: emulatortest.STSClient(e.Emulator, e.ProvisionerCredentials, "us-east-1"),
	}
	w.webProvisioner = e.SeedClaimMatchIdentity(e.Root, "web-provisioner", "the provisioner, by web identity", &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: w.issuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: "arn:aws:iam::111122223333:role/chainguard-provisioner"},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: e.IssuerURL()},
	}, map[string][]string{e.Root: {"owner"}})
	return w
}

// webIdentityProps are the properties of the workload's identity with the
// web-identity trust.
func (w *webEmuEnv) webIdentityProps(group, roles string) map[string]any {
	return map[string]any{
		PropName: "aws-auth-identity", PropDescription: "the aws-auth function", PropGroup: group, PropRoles: roles,
		PropTrust: TrustWebIdentity, PropAwsAccount: "111122223333", PropAwsPartition: "aws",
		PropAwsRoleName: "aws-auth", PropAwsRolePath: "/team/", PropAwsIssuer: w.issuer,
	}
}

// storedIdentity returns the identity id as the emulator holds it.
func storedIdentity(s emulator.State, id string) (emulator.Identity, bool) {
	i := slices.IndexFunc(s.Identities, func(i emulator.Identity) bool { return i.ID == id })
	if i < 0 {
		return emulator.Identity{}, false
	}
	return s.Identities[i], true
}

// wantClaimMatch checks that identity id trusts exactly issuer, subject and
// the emulator's issuer URL as audience, and nothing else.
func (w *webEmuEnv) wantClaimMatch(t *testing.T, id, issuer, subject string) {
	t.Helper()
	got, ok := storedIdentity(w.State(), id)
	want := &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: issuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: subject},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: w.IssuerURL()},
	}
	if !ok || got.AWS != nil || !proto.Equal(got.ClaimMatch, want) {
		t.Fatalf("identity %s (present: %v) trusts aws_identity %v, claim_match {%v}; want only claim_match {%v}", id, ok, got.AWS, got.ClaimMatch, want)
	}
}

// workloadRepos exchanges the workload's web identity token for identity
// and lists the repos of group with the token, after the propagation delay.
func (w *webEmuEnv) workloadRepos(t *testing.T, identity, group string) []string {
	t.Helper()
	time.Sleep(w.PropagationDelay())
	tok := emulatortest.WebIdentityToken(t, w.Emulator, w.workloadSTS, identity)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := registry.NewClients(ctx, w.APIURL(), tok)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.Registry().ListRepos(ctx, &registry.RepoFilter{Uidp: &commonv1.UIDPFilter{ChildrenOf: group}})
	if err != nil {
		t.Fatalf("list repos as %s: %v", identity, err)
	}
	var names []string
	for _, r := range list.GetItems() {
		names = append(names, r.GetName())
	}
	slices.Sort(names)
	return names
}

// countingHandler is a handler whose Connect is exchange, each call counted
// in connects.
func countingHandler(exchange func(context.Context, Target) (iam.Clients, error), connects *atomic.Int32) *Handler {
	return New(Config{Credentials: noCall, Margin: time.Second, Options: fastRetries, Connect: func(ctx context.Context, tgt Target) (iam.Clients, error) {
		connects.Add(1)
		return exchange(ctx, tgt)
	}}, nil)
}

// A Trust WebIdentity identity's life through Handle, with the provisioner
// proving itself by caller identity or by web identity: Create (claim_match
// exact, bindings, the workload's web identity token lists repos), a
// replayed Create, Updates in place (role path, issuer, description), then
// an Update that changes the Trust kind and back, each answering a new
// physical ID and followed by CloudFormation's Delete of the old one, and
// the stack's Delete, leaving the emulator as it was.
func TestWebIdentityTrustThroughHandle(t *testing.T) {
	tests := []struct {
		name string
		// handler returns the handler and the provisioner identity the
		// events name; connects counts the calls of an injected Connect.
		handler func(w *webEmuEnv, connects *atomic.Int32) (*Handler, string)
		counted bool
	}{{
		name: "caller-identity provisioner, Connect injected",
		handler: func(w *webEmuEnv, connects *atomic.Int32) (*Handler, string) {
			exchange := ExchangeConnect(token.CallerIdentity, credentials.StaticCredentialsProvider{Value: w.ProvisionerCredentials}, nil)
			return countingHandler(exchange, connects), w.Provisioner
		},
		counted: true,
	}, {
		name: "web-identity provisioner, ExchangeConnect",
		handler: func(w *webEmuEnv, connects *atomic.Int32) (*Handler, string) {
			return countingHandler(ExchangeConnect(token.WebIdentity, nil, w.provisionerSTS), connects), w.webProvisioner
		},
		counted: true,
	}, {
		name: "web-identity provisioner, Config.Trust and Config.STS",
		handler: func(w *webEmuEnv, connects *atomic.Int32) (*Handler, string) {
			return New(Config{Credentials: noCall, Trust: token.WebIdentity, STS: w.provisionerSTS, Margin: time.Second, Options: fastRetries}, nil), w.webProvisioner
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWebEmuEnv(t)
			var connects atomic.Int32
			h, provisioner := tt.handler(w, &connects)
			send := func(kind cfn.RequestType, physicalID string, props map[string]any) answer {
				t.Helper()
				ev := emuEvent(w.Env, provisioner, kind, TypeIdentity, physicalID, props)
				return w.send(t, h, ev)
			}
			before := w.State()
			data := func(id string) map[string]any {
				return map[string]any{"Id": id, "Name": "aws-auth-identity", "Roles": "registry.pull,viewer"}
			}

			web := w.webIdentityProps(w.Group, "viewer,registry.pull")
			a := send(cfn.RequestCreate, "", web)
			id := a.id
			wantSuccess(t, a, id, data(id))
			if uidp.Parent(id) != w.Group {
				t.Fatalf("Create made %s, want an identity in %s", id, w.Group)
			}
			w.wantClaimMatch(t, id, w.issuer, webWorkloadRoleARN)
			if roles := w.State().RolesOf(id); !slices.Equal(roles, []string{"registry.pull", "viewer"}) {
				t.Fatalf("bindings = %v, want [registry.pull viewer]", roles)
			}
			if n := connects.Load(); tt.counted && n != 1 {
				t.Errorf("Connect was called %d times for one Create, want 1", n)
			}
			if repos := w.workloadRepos(t, id, w.Group); !slices.Equal(repos, []string{"nginx", "python", "static"}) {
				t.Fatalf("repos = %v, want the standard group's", repos)
			}

			// A replayed Create finds it.
			wantSuccess(t, send(cfn.RequestCreate, "", web), id, data(id))

			// Updates in place: the physical ID stays.
			for _, u := range []struct {
				change  []any
				subject string
				issuer  string
			}{
				{[]any{PropAwsRolePath, nil, PropDescription, "second"}, "arn:aws:iam::111122223333:role/aws-auth", w.issuer},
				{[]any{PropAwsIssuer, fakeIssuer}, webWorkloadRoleARN, fakeIssuer},
				{nil, webWorkloadRoleARN, w.issuer},
			} {
				bindings := w.State().RolesOf(id)
				wantSuccess(t, send(cfn.RequestUpdate, id, with(web, u.change...)), id, data(id))
				w.wantClaimMatch(t, id, u.issuer, u.subject)
				if got := w.State().RolesOf(id); !slices.Equal(got, bindings) {
					t.Fatalf("bindings went from %v to %v in an update in place", bindings, got)
				}
			}
			if got, _ := storedIdentity(w.State(), id); got.Description != "the aws-auth function [managed by CloudFormation: "+testOwner+"]" {
				t.Fatalf("description = %q, want the Description with the stack's marker", got.Description)
			}
			w.workloadRepos(t, id, w.Group)

			// Trust WebIdentity -> CallerIdentity: a new physical ID, the
			// old identity untouched until CloudFormation deletes it.
			callerProps := w.identityProps(w.Group, "viewer,registry.pull")
			oldState, _ := storedIdentity(w.State(), id)
			a = send(cfn.RequestUpdate, id, callerProps)
			second := a.id
			wantSuccess(t, a, second, data(second))
			if second == id || uidp.Parent(second) != w.Group {
				t.Fatalf("the change of Trust answered %s, want a new identity in %s", second, w.Group)
			}
			if now, ok := storedIdentity(w.State(), id); !ok || !reflect.DeepEqual(now, oldState) {
				t.Fatalf("the old identity changed before its Delete: %+v, was %+v", now, oldState)
			}
			if got, _ := storedIdentity(w.State(), second); got.ClaimMatch != nil || got.AWS.GetArn() != w.WorkloadPrincipal.ARN {
				t.Fatalf("the new identity trusts %v / %v, want the workload's session by caller identity", got.AWS, got.ClaimMatch)
			}
			wantSuccess(t, send(cfn.RequestDelete, id, web), id, nil)
			if _, ok := storedIdentity(w.State(), id); ok || len(w.State().RolesOf(id)) != 0 {
				t.Fatalf("the old identity %s or its bindings survived its Delete", id)
			}
			time.Sleep(w.PropagationDelay())
			emulatortest.Token(t, w.Emulator, w.WorkloadCredentials, second)

			// And back: CallerIdentity -> WebIdentity.
			a = send(cfn.RequestUpdate, second, web)
			third := a.id
			wantSuccess(t, a, third, data(third))
			if third == second || third == id {
				t.Fatalf("the change of Trust back answered %s, want a new identity", third)
			}
			w.wantClaimMatch(t, third, w.issuer, webWorkloadRoleARN)
			if _, ok := storedIdentity(w.State(), second); !ok {
				t.Fatalf("the caller-identity identity %s is gone before its Delete", second)
			}
			wantSuccess(t, send(cfn.RequestDelete, second, callerProps), second, nil)
			w.workloadRepos(t, third, w.Group)

			// The stack's Delete, and its replay.
			for range 2 {
				wantSuccess(t, send(cfn.RequestDelete, third, web), third, nil)
			}
			if after := w.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
				t.Fatalf("the emulator ended with %v, want what it held before: %v", after.IDs(), before.IDs())
			}
		})
	}
}

// A web-identity provisioner whose token the Chainguard STS refuses (its
// identity trusts another issuer) fails the event, saying which side
// refused and what the token presented; a provisioner without an STS
// client fails before any call.
func TestWebIdentityProvisionerRefused(t *testing.T) {
	w := newWebEmuEnv(t)
	wrong := w.SeedClaimMatchIdentity(w.Root, "wrong-provisioner", "", &iamv1.Identity_ClaimMatch{
		Iss: &iamv1.Identity_ClaimMatch_Issuer{Issuer: fakeIssuer},
		Sub: &iamv1.Identity_ClaimMatch_Subject{Subject: "arn:aws:iam::111122223333:role/chainguard-provisioner"},
		Aud: &iamv1.Identity_ClaimMatch_Audience{Audience: w.IssuerURL()},
	}, map[string][]string{w.Root: {"owner"}})
	tests := []struct {
		name        string
		cfg         Config
		provisioner string
		want        []string
	}{{
		name:        "claim_match of another issuer",
		cfg:         Config{Credentials: noCall, Trust: token.WebIdentity, STS: w.provisionerSTS},
		provisioner: wrong,
		want: []string{"for identity " + wrong, "refused: permission denied", "is not the trusted issuer " + fakeIssuer,
			"presented iss " + w.issuer + " and sub arn:aws:iam::111122223333:role/chainguard-provisioner"},
	}, {
		name:        "no STS client",
		cfg:         Config{Credentials: noCall, Trust: token.WebIdentity},
		provisioner: w.webProvisioner,
		want:        []string{"the web-identity trust needs an AWS STS client"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Margin, tt.cfg.Options = time.Second, append(slices.Clone(fastRetries), provision.WithPermissionDeniedBudget(300*time.Millisecond))
			before := w.State()
			a := w.send(t, New(tt.cfg, nil), emuEvent(w.Env, tt.provisioner, cfn.RequestCreate, TypeIdentity, "", w.webIdentityProps(w.Group, "viewer")))
			wantFailed(t, a, "", tt.want...)
			if after := w.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
				t.Fatal("a refused provisioner changed the emulator")
			}
		})
	}
}

// An Update that changes the Trust kind and fails after making the new
// identity answers the old physical ID and deletes the new one, leaving the
// old one as it was.
func TestFailedTrustKindChangeIsUndone(t *testing.T) {
	w := newWebEmuEnv(t)
	h := w.handlerAs(w.ProvisionerCredentials)
	callerProps := w.identityProps(w.Group, "viewer")
	a := w.send(t, h, w.event(cfn.RequestCreate, TypeIdentity, "", callerProps))
	id := a.id
	wantSuccess(t, a, id, map[string]any{"Id": id, "Name": "aws-auth-identity", "Roles": "viewer"})
	before := w.State()
	old, _ := storedIdentity(before, id)

	w.FailNext(iam.RoleBindingsService_CreateRoleBinding_FullMethodName, 1, codes.InvalidArgument)
	a = w.send(t, h, w.event(cfn.RequestUpdate, TypeIdentity, id, w.webIdentityProps(w.Group, "viewer")))
	wantFailed(t, a, id, "invalid argument", "this update made was deleted")
	after := w.State()
	if !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("after the failed Update the emulator holds %v, want %v unchanged", after.IDs(), before.IDs())
	}
	if now, _ := storedIdentity(after, id); !reflect.DeepEqual(now, old) {
		t.Fatalf("the old identity changed: %+v, was %+v", now, old)
	}
	// The old identity still works for the workload.
	time.Sleep(w.PropagationDelay())
	emulatortest.Token(t, w.Emulator, w.WorkloadCredentials, id)
	if _, err := emulatortest.ExchangeWebIdentity(t.Context(), w.Emulator, w.workloadSTS, id); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a web identity token for the caller-identity identity = %v, want PermissionDenied", err)
	}
}
