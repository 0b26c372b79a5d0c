package handler

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
)

// The Create, Update and Delete contract, in-process against the emulator
// through the handler's default Connect (a token exchange of the
// provisioner's AWS credentials).

// emuEnv is the emulator's standard layout and a handler acting as its
// provisioner.
type emuEnv struct {
	*emulatortest.Env
	h    *Handler
	logs *syncbuf.Buffer
}

func newEmuEnv(t *testing.T) *emuEnv {
	t.Helper()
	e := &emuEnv{Env: emulatortest.NewEnv(t, emulator.Options{}), logs: &syncbuf.Buffer{}}
	e.h = e.handlerAs(e.ProvisionerCredentials)
	return e
}

// handlerAs is a handler acting with the AWS credentials creds, with
// fastRetries and then opts.
func (e *emuEnv) handlerAs(creds aws.Credentials, opts ...provision.Option) *Handler {
	return New(Config{
		Credentials: credentials.StaticCredentialsProvider{Value: creds},
		Margin:      time.Second,
		Logger:      slog.New(slog.NewJSONHandler(e.logs, nil)),
		Options:     append(slices.Clone(fastRetries), opts...),
	}, nil)
}

// ownerOf is the test stack's owner name of its object of type typ (its
// logical ID is "Resource" + the type's name).
func ownerOf(typ string) string {
	return "111122223333/us-east-1/aws-auth/5b8e1d30-0000-0000-0000-000000000000/Resource" + typ[len("Custom::"):]
}

// markerOf is the ownership marker of the test stack's object of type typ.
func markerOf(typ string) string { return " [managed by CloudFormation: " + ownerOf(typ) + "]" }

func (e *emuEnv) groupProps(parent, name, description string) map[string]any {
	return map[string]any{PropName: name, PropDescription: description, PropParent: parent, PropOwned: "true"}
}

func (e *emuEnv) identityProps(group, roles string) map[string]any {
	p := identityProps(e.Env, group)
	p[PropRoles], p[PropDescription] = roles, "the aws-auth function"
	return p
}

// event is an event of the test stack (stackID: testStackID unless set).
func (e *emuEnv) event(kind cfn.RequestType, typ, physicalID string, props map[string]any) cfn.Event {
	ev := emuEvent(e.Env, e.Provisioner, kind, typ, physicalID, props)
	ev.LogicalResourceID = "Resource" + typ[len("Custom::"):]
	return ev
}

type answer struct {
	id   string
	data map[string]any
	err  error
}

func (e *emuEnv) send(t *testing.T, h *Handler, ev cfn.Event) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id, data, err := h.Handle(ctx, ev)
	return answer{id, data, err}
}

func wantSuccess(t *testing.T, a answer, id string, data map[string]any) {
	t.Helper()
	if a.err != nil {
		t.Fatalf("Handle: %v", a.err)
	}
	if a.id != id || !maps.Equal(a.data, data) {
		t.Fatalf("Handle = %s %v, want %s %v", a.id, a.data, id, data)
	}
}

// wantFailed checks a failure: physicalID is what a FAILED answer carries
// ("" lets Wrap answer the request ID on a Create).
func wantFailed(t *testing.T, a answer, physicalID string, reason ...string) {
	t.Helper()
	if a.err == nil {
		t.Fatalf("Handle = %s %v, want an error", a.id, a.data)
	}
	t.Logf("error: %v", a.err)
	if a.id != physicalID {
		t.Fatalf("Handle answered physical ID %q with the error, want %q", a.id, physicalID)
	}
	for _, want := range reason {
		if !strings.Contains(a.err.Error(), want) {
			t.Fatalf("error %q does not contain %q", a.err, want)
		}
	}
}

// names maps every group and identity in s to its name and description.
func names(s emulator.State) map[string]string {
	out := map[string]string{}
	for _, g := range s.Groups {
		out[g.ID] = g.Name + ": " + g.Description
	}
	for _, i := range s.Identities {
		out[i.ID] = i.Name + ": " + i.Description
	}
	return out
}

// An Update that changes the Name (and Description) renames the object in
// place: the same physical ID comes back and the emulator holds the renamed
// object under that UIDP, with its bindings. A replayed Update changes
// nothing; a Name another object under the same parent has fails the Update
// and leaves everything as it was.
func TestUpdateRenamesInPlace(t *testing.T) {
	e := newEmuEnv(t)
	tests := []struct {
		typ      string
		props    func(name, description string) map[string]any
		namesake func(name string) // seeds another object of that name under the same parent
		stored   func(id string) (name, description string, ok bool)
		data     func(id, name string) map[string]any
		refusal  string
	}{{
		typ:      TypeGroup,
		props:    func(name, description string) map[string]any { return e.groupProps(e.Root, name, description) },
		namesake: func(name string) { e.SeedGroup(e.Root, name, "") },
		stored: func(id string) (string, string, bool) {
			for _, g := range e.State().Groups {
				if g.ID == id {
					return g.Name, g.Description, true
				}
			}
			return "", "", false
		},
		data:    func(id, name string) map[string]any { return map[string]any{"Id": id, "Name": name} },
		refusal: "refused: another group there already has that name",
	}, {
		typ: TypeIdentity,
		props: func(name, description string) map[string]any {
			p := e.identityProps(e.Group, "viewer")
			p[PropName], p[PropDescription] = name, description
			return p
		},
		namesake: func(name string) { e.SeedIdentity(e.Group, name, "", e.WorkloadPrincipal.ExactTrust(), nil) },
		stored: func(id string) (string, string, bool) {
			for _, i := range e.State().Identities {
				if i.ID == id {
					return i.Name, i.Description, true
				}
			}
			return "", "", false
		},
		data:    func(id, name string) map[string]any { return map[string]any{"Id": id, "Name": name, "Roles": "viewer"} },
		refusal: "refused: another identity there already has that name",
	}}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			created := tt.props("before-rename", "first")
			a := e.send(t, e.h, e.event(cfn.RequestCreate, tt.typ, "", created))
			id := a.id
			wantSuccess(t, a, id, tt.data(id, "before-rename"))
			bindings := e.State().BindingsOf(id)

			renamed := tt.props("after-rename", "second")
			for range 2 { // the second delivery is a replay
				a = e.send(t, e.h, e.event(cfn.RequestUpdate, tt.typ, id, renamed))
				wantSuccess(t, a, id, tt.data(id, "after-rename"))
				if name, description, ok := tt.stored(id); !ok || name != "after-rename" || description != "second"+markerOf(tt.typ) {
					t.Fatalf("emulator holds %s as %q %q (present: %v), want it renamed to after-rename with description second", id, name, description, ok)
				}
				if got := e.State().BindingsOf(id); !slices.Equal(got, bindings) {
					t.Fatalf("role bindings of %s went from %v to %v, want them kept", id, bindings, got)
				}
			}

			tt.namesake("taken-name")
			before := e.State()
			a = e.send(t, e.h, e.event(cfn.RequestUpdate, tt.typ, id, tt.props("taken-name", "second")))
			wantFailed(t, a, id, tt.refusal, `"taken-name"`, "choose another name")
			if after := names(e.State()); !maps.Equal(after, names(before)) {
				t.Fatalf("a refused rename changed the emulator's groups or identities:\nbefore %v\nafter  %v", names(before), after)
			}
		})
	}
}

// Delete reads only what it needs: properties a later version would reject
// (a retired AwsUserIdPattern, a failing AwsSessionPattern, an unknown
// property, a too-long Description)
// do not stop the stack from being deleted.
func TestDeleteIgnoresOtherProperties(t *testing.T) {
	e := newEmuEnv(t)
	before := e.State()
	identityProps := e.identityProps(e.Group, "viewer")
	groupProps := e.groupProps(e.Root, "team-d", "d")
	var made []string
	for _, c := range []struct {
		typ   string
		props map[string]any
	}{{TypeIdentity, identityProps}, {TypeGroup, groupProps}} {
		a := e.send(t, e.h, e.event(cfn.RequestCreate, c.typ, "", c.props))
		if a.err != nil {
			t.Fatalf("Create %s: %v", c.typ, a.err)
		}
		made = append(made, a.id)
	}

	stale := maps.Clone(identityProps)
	delete(stale, PropAwsSession)
	stale[PropAwsSessionPattern] = `^aws-auth$`     // anchored: today's validation rejects it
	stale["AwsUserIdPattern"] = `^AROA.*:aws-auth$` // retired property
	stale["FutureProperty"] = "x"
	staleGroup := maps.Clone(groupProps)
	staleGroup[PropDescription] = strings.Repeat("x", 600)
	staleGroup["FutureProperty"] = "x"
	for i, c := range []struct {
		typ   string
		props map[string]any
	}{{TypeIdentity, stale}, {TypeGroup, staleGroup}} {
		wantSuccess(t, e.send(t, e.h, e.event(cfn.RequestDelete, c.typ, made[i], c.props)), made[i], nil)
	}
	if after := e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("after the Deletes the emulator holds %v, want what it held before: %v", after.IDs(), before.IDs())
	}
}

// Objects of the same name the stack did not create: a group is adopted as
// it is and survives the stack's Delete even with Owned "true"; an identity
// is refused and left untouched.
func TestForeignObjects(t *testing.T) {
	e := newEmuEnv(t)
	seededGroup := e.SeedGroup(e.Root, "team-x", "theirs")
	seededIdentity := e.SeedIdentity(e.Group, "aws-auth-identity", "theirs", e.WorkloadPrincipal.ExactTrust(), map[string][]string{e.Group: {"editor"}})
	before := e.State()

	props := e.groupProps(e.Root, "team-x", "ours") // Owned "true"
	for range 2 {
		wantSuccess(t, e.send(t, e.h, e.event(cfn.RequestCreate, TypeGroup, "", props)), seededGroup, map[string]any{"Id": seededGroup, "Name": "team-x"})
	}
	wantSuccess(t, e.send(t, e.h, e.event(cfn.RequestDelete, TypeGroup, seededGroup, props)), seededGroup, nil)

	a := e.send(t, e.h, e.event(cfn.RequestCreate, TypeIdentity, "", e.identityProps(e.Group, "viewer")))
	wantFailed(t, a, "",
		`identity "aws-auth-identity" already exists in group `+e.Group+` and was not created by this stack (`+ownerOf(TypeIdentity)+`): choose another Name, or delete or rename that identity`)

	if after := e.State(); !maps.Equal(names(after), names(before)) || !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("the foreign group or identity was changed:\nbefore %v %v\nafter  %v %v", names(before), before.IDs(), names(after), after.IDs())
	}
	for _, m := range []string{iam.GroupsService_UpdateGroup_FullMethodName, iam.GroupsService_DeleteGroup_FullMethodName, iam.IdentitiesService_UpdateIdentity_FullMethodName, iam.RoleBindingsService_CreateRoleBinding_FullMethodName} {
		if n := e.Calls(m); n != 0 {
			t.Fatalf("%s was called %d times", m, n)
		}
	}
	if got := e.State().RolesOf(seededIdentity); !slices.Equal(got, []string{"editor"}) {
		t.Fatalf("the foreign identity's bindings are %v, want [editor]", got)
	}
}

// The same app deployed elsewhere against the same Chainguard group (in
// another account or region, or the stack deleted and created again under
// its name) is another owner, though its stack name and logical IDs are the
// same: its identity of the same Name is refused and left untouched, and
// its group is adopted as it is and never deleted. Only the same StackId
// adopts both (a replay).
func TestOtherStacksOfTheSameNameAreForeign(t *testing.T) {
	e := newEmuEnv(t)
	groupProps := e.groupProps(e.Root, "team-y", "ours") // Owned "true"
	identityProps := e.identityProps(e.Group, "viewer")
	a := e.send(t, e.h, e.event(cfn.RequestCreate, TypeGroup, "", groupProps))
	groupID := a.id
	wantSuccess(t, a, groupID, map[string]any{"Id": groupID, "Name": "team-y"})
	a = e.send(t, e.h, e.event(cfn.RequestCreate, TypeIdentity, "", identityProps))
	identityID := a.id
	wantSuccess(t, a, identityID, map[string]any{"Id": identityID, "Name": "aws-auth-identity", "Roles": "viewer"})
	before := e.State()

	for _, other := range []struct{ name, stackID string }{
		{"another account", "arn:aws:cloudformation:us-east-1:444455556666:stack/aws-auth/5b8e1d30-0000-0000-0000-000000000000"},
		{"another region", "arn:aws:cloudformation:eu-west-1:111122223333:stack/aws-auth/5b8e1d30-0000-0000-0000-000000000000"},
		{"the stack created again", "arn:aws:cloudformation:us-east-1:111122223333:stack/aws-auth/9f2c4a70-1111-1111-1111-111111111111"},
	} {
		t.Run(other.name, func(t *testing.T) {
			at := func(ev cfn.Event) cfn.Event {
				ev.StackID = other.stackID
				return ev
			}
			wantSuccess(t, e.send(t, e.h, at(e.event(cfn.RequestCreate, TypeGroup, "", groupProps))), groupID, map[string]any{"Id": groupID, "Name": "team-y"})
			wantSuccess(t, e.send(t, e.h, at(e.event(cfn.RequestDelete, TypeGroup, groupID, groupProps))), groupID, nil)
			a := e.send(t, e.h, at(e.event(cfn.RequestCreate, TypeIdentity, "", identityProps)))
			wantFailed(t, a, "", `identity "aws-auth-identity" already exists in group `+e.Group+` and was not created by this stack`)
			if after := e.State(); !maps.Equal(names(after), names(before)) || !reflect.DeepEqual(after.IDs(), before.IDs()) {
				t.Fatalf("the first stack's group or identity was changed:\nbefore %v %v\nafter  %v %v", names(before), before.IDs(), names(after), after.IDs())
			}
		})
	}
	for _, m := range []string{iam.GroupsService_UpdateGroup_FullMethodName, iam.GroupsService_DeleteGroup_FullMethodName, iam.IdentitiesService_UpdateIdentity_FullMethodName, iam.IdentitiesService_DeleteIdentity_FullMethodName} {
		if n := e.Calls(m); n != 0 {
			t.Fatalf("%s was called %d times", m, n)
		}
	}

	// The same StackId: a replay adopts both.
	wantSuccess(t, e.send(t, e.h, e.event(cfn.RequestCreate, TypeGroup, "", groupProps)), groupID, map[string]any{"Id": groupID, "Name": "team-y"})
	wantSuccess(t, e.send(t, e.h, e.event(cfn.RequestCreate, TypeIdentity, "", identityProps)), identityID, map[string]any{"Id": identityID, "Name": "aws-auth-identity", "Roles": "viewer"})
	if after := e.State(); !reflect.DeepEqual(after.IDs(), before.IDs()) {
		t.Fatalf("a replay changed the emulator: before %v, after %v", before.IDs(), after.IDs())
	}
}

// A provisioner identity without the owner role fails the event, saying so,
// and creates nothing.
func TestProvisionerWithoutOwner(t *testing.T) {
	e := newEmuEnv(t)
	weak := emulator.AssumedRolePrincipal(e.ProvisionerPrincipal.Account, "weak-provisioner", "weak-provisioner")
	creds := e.RegisterAWSPrincipal(weak)
	weakID := e.SeedIdentity(e.Root, "weak-provisioner", "viewer only", weak.ExactTrust(), map[string][]string{e.Root: {"viewer"}})
	ev := emuEvent(e.Env, weakID, cfn.RequestCreate, TypeIdentity, "", e.identityProps(e.Group, "viewer"))
	h := e.handlerAs(creds, provision.WithPermissionDeniedBudget(300*time.Millisecond))
	wantFailed(t, e.send(t, h, ev), "", "permission denied", "owner", "(retried ")
	if slices.ContainsFunc(e.State().Identities, func(i emulator.Identity) bool { return i.Name == "aws-auth-identity" }) {
		t.Fatal("a provisioner without owner created the identity")
	}
}

// Delete of a resource type the provisioner does not serve (one a later
// version renamed, say) succeeds without any call, so the stack is not left
// in DELETE_FAILED, and warns naming the type and the physical ID.
func TestDeleteOfUnknownTypeSucceeds(t *testing.T) {
	e := newEmuEnv(t)
	before := e.State()
	ev := e.event(cfn.RequestDelete, "Custom::ChainguardThing", e.Group, nil)
	wantSuccess(t, e.send(t, e.h, ev), e.Group, nil)
	if e.Calls("/chainguard.platform.oidc.SecurityTokenService/Exchange") != 0 || !reflect.DeepEqual(e.State().IDs(), before.IDs()) {
		t.Fatal("Delete of an unknown type called the Chainguard API or changed its state")
	}
	for _, want := range []string{`"level":"WARN"`, "not served by this provisioner", `"resource_type":"Custom::ChainguardThing"`, `"physical_id":"` + e.Group + `"`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Fatalf("the logs lack %q:\n%s", want, e.logs.String())
		}
	}
}
