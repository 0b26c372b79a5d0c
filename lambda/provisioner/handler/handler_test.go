package handler

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
)

// testOwner is what managedBy makes of testStackID and the logical ID "Res".
const testOwner = "111122223333/us-east-1/aws-auth/5b8e1d30-0000-0000-0000-000000000000/Res"

const testStackID = "arn:aws:cloudformation:us-east-1:111122223333:stack/aws-auth/5b8e1d30-0000-0000-0000-000000000000"

const (
	root  = "0123456789abcdef0123456789abcdef01234567"
	group = root + "/0123456789abcdef"
	ident = group + "/fedcba9876543210"
)

func common() map[string]any {
	return map[string]any{
		"ServiceToken":          "arn:aws:lambda:us-east-1:111122223333:function:provisioner",
		PropProvisionerIdentity: root + "/aaaaaaaaaaaaaaaa",
		PropIssuer:              "http://127.0.0.1:1",
		PropAPIURL:              "http://127.0.0.1:2",
	}
}

func validGroup() map[string]any {
	p := common()
	maps.Copy(p, map[string]any{PropName: "example-group", PropDescription: "d", PropParent: root, PropOwned: "true"})
	return p
}

func validIdentity() map[string]any {
	p := common()
	maps.Copy(p, map[string]any{
		PropName:         "aws-auth-identity",
		PropDescription:  "d",
		PropGroup:        group,
		PropRoles:        "viewer, registry.pull",
		PropAwsAccount:   "111122223333",
		PropAwsPartition: "aws",
		PropAwsRoleName:  "aws-auth",
		PropAwsRoleID:    "AROA1234567890ABCDEFG",
		PropAwsSession:   "my-fn",
		"ServiceTimeout": "60",
	})
	return p
}

func with(p map[string]any, kv ...any) map[string]any {
	out := maps.Clone(p)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		name      string
		props     map[string]any
		wantRoles []string
		wantErr   string // substring naming the property; "" means success
	}{
		{name: "valid", props: validIdentity(), wantRoles: []string{"viewer", "registry.pull"}},
		{name: "no roles", props: with(validIdentity(), PropRoles, nil), wantRoles: nil},
		{name: "pattern", props: with(validIdentity(), PropAwsSession, nil, PropAwsSessionPattern, `[0-9a-f]{32}`), wantRoles: []string{"viewer", "registry.pull"}},
		{name: "missing name", props: with(validIdentity(), PropName, nil), wantErr: "property Name is missing"},
		{name: "bad name", props: with(validIdentity(), PropName, "Bad!"), wantErr: "Name"},
		{name: "bad group", props: with(validIdentity(), PropGroup, "abc"), wantErr: "property Group"},
		{name: "empty role item", props: with(validIdentity(), PropRoles, "viewer,,owner"), wantErr: "property Roles"},
		{name: "non-string", props: with(validIdentity(), PropAwsAccount, 111122223333.0), wantErr: "property AwsAccount is a float64"},
		{name: "bad account", props: with(validIdentity(), PropAwsAccount, "12"), wantErr: "property AwsAccount: AWS account ID \"12\" is not valid"},
		{name: "missing account", props: with(validIdentity(), PropAwsAccount, nil), wantErr: "property AwsAccount: AWS account ID is empty"},
		{name: "other partition", props: with(validIdentity(), PropAwsPartition, "aws-cn"), wantErr: "property AwsPartition: partition \"aws-cn\": Chainguard verifies AWS callers only in the aws partition"},
		{name: "missing partition", props: with(validIdentity(), PropAwsPartition, nil), wantErr: "property AwsPartition"},
		{name: "bad role name", props: with(validIdentity(), PropAwsRoleName, "path/role"), wantErr: "property AwsRoleName: IAM role name \"path/role\" has the character \"/\""},
		{name: "bad role ID", props: with(validIdentity(), PropAwsRoleID, "AIDA1234567890ABCDEFG"), wantErr: "property AwsRoleId: role unique ID \"AIDA1234567890ABCDEFG\" is the unique ID of an IAM user"},
		{name: "missing role ID", props: with(validIdentity(), PropAwsRoleID, nil), wantErr: "property AwsRoleId: role unique ID is empty"},
		{name: "both session kinds", props: with(validIdentity(), PropAwsSessionPattern, ".+"), wantErr: "property AwsSession or AwsSessionPattern: both are set"},
		{name: "no session", props: with(validIdentity(), PropAwsSession, nil), wantErr: "property AwsSession or AwsSessionPattern: neither is set"},
		{name: "bad session", props: with(validIdentity(), PropAwsSession, "a:b"), wantErr: "property AwsSession: role session name \"a:b\""},
		{name: "anchored pattern", props: with(validIdentity(), PropAwsSession, nil, PropAwsSessionPattern, `^fn$`), wantErr: "property AwsSessionPattern: the session pattern \"^fn$\" has an anchor"},
		{name: "pattern escaping its group", props: with(validIdentity(), PropAwsSession, nil, PropAwsSessionPattern, `x)|(.*`), wantErr: "property AwsSessionPattern: the session pattern \"x)|(.*\" does not compile"},
		{name: "retired exact ARN", props: with(validIdentity(), "AwsArn", "arn:aws:sts::111122223333:assumed-role/aws-auth/my-fn"),
			wantErr: "property AwsArn is no longer part of the Custom::ChainguardIdentity contract: give the trusted role as AwsAccount, AwsPartition, AwsRoleName and AwsRoleId (its unique ID, AROA...), and its sessions as AwsSession (one session name) or AwsSessionPattern"},
		{name: "retired opt-in", props: with(validIdentity(), "AllowUnpinnedUserId", "false"), wantErr: "property AllowUnpinnedUserId is no longer part of the Custom::ChainguardIdentity contract"},
		{name: "unknown property", props: with(validIdentity(), "Rolez", "viewer"), wantErr: "property Rolez is not part of the Custom::ChainguardIdentity contract"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := parseIdentity(tt.props, testOwner)
			if (err != nil) != (tt.wantErr != "") {
				t.Fatalf("parseIdentity error = %v, wantErr %q", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if strings.Join(spec.Roles, ",") != strings.Join(tt.wantRoles, ",") {
				t.Fatalf("roles = %q, want %q", spec.Roles, tt.wantRoles)
			}
		})
	}
}

func TestParseGroupAndTarget(t *testing.T) {
	tests := []struct {
		name      string
		props     map[string]any
		wantOwned bool
		wantErr   string
	}{
		{name: "valid", props: validGroup(), wantOwned: true},
		{name: "owned defaults to false", props: with(validGroup(), PropOwned, nil)},
		{name: "no description", props: with(validGroup(), PropDescription, nil), wantOwned: true},
		{name: "bad parent", props: with(validGroup(), PropParent, root+"/"), wantErr: "property Parent"},
		{name: "missing parent", props: with(validGroup(), PropParent, nil), wantErr: "property Parent is missing"},
		{name: "long description", props: with(validGroup(), PropDescription, strings.Repeat("x", 600)), wantErr: "property Description"},
		{name: "description too long for the marker", props: with(validGroup(), PropDescription, strings.Repeat("x", 500)),
			wantErr: `property Description: description is 500 characters long and the ownership marker " [managed by CloudFormation: ` + testOwner + `]" adds 102: at most 512 are allowed in all: shorten the description to at most 410 characters`},
		{name: "bad owned", props: with(validGroup(), PropOwned, "True"), wantErr: "property Owned"},
		{name: "identity property on a group", props: with(validGroup(), PropRoles, "viewer"), wantErr: "property Roles is not part of the Custom::ChainguardGroup contract"},
		{name: "bad provisioner", props: with(validGroup(), PropProvisionerIdentity, "x"), wantErr: "property ProvisionerIdentity"},
		{name: "missing issuer", props: with(validGroup(), PropIssuer, nil), wantErr: "property Issuer is missing"},
		{name: "http API elsewhere", props: with(validGroup(), PropAPIURL, "http://example.com"), wantErr: "property ApiUrl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := parseGroup(tt.props, testOwner)
			if err == nil {
				_, err = parseTarget(tt.props)
			}
			if (err != nil) != (tt.wantErr != "") {
				t.Fatalf("error = %v, wantErr %q", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if g.Owned != tt.wantOwned {
				t.Fatalf("Owned = %v, want %v", g.Owned, tt.wantOwned)
			}
		})
	}
}

func TestManagedBy(t *testing.T) {
	tests := []struct {
		name    string
		stackID string
		logical string
		want    string
		wantErr string
	}{
		{name: "stack ARN", stackID: testStackID, logical: "Res", want: testOwner},
		{name: "other partition", stackID: "arn:aws-cn:cloudformation:cn-north-1:111122223333:stack/my-stack-1/abc", logical: "Identity", want: "111122223333/cn-north-1/my-stack-1/abc/Identity"},
		{name: "longest names fit the marker", stackID: "arn:aws-us-gov:cloudformation:us-gov-west-1:111122223333:stack/" + strings.Repeat("s", 128) + "/5b8e1d30-0000-0000-0000-000000000000", logical: strings.Repeat("L", 255),
			want: "111122223333/us-gov-west-1/" + strings.Repeat("s", 128) + "/5b8e1d30-0000-0000-0000-000000000000/" + strings.Repeat("L", 255)},
		{name: "no account", stackID: "arn:aws:cloudformation:us-east-1::stack/aws-auth/y", logical: "Res", wantErr: "is not a CloudFormation stack ARN"},
		{name: "no region", stackID: "arn:aws:cloudformation::111122223333:stack/aws-auth/y", logical: "Res", wantErr: "is not a CloudFormation stack ARN"},
		{name: "no stack ID", stackID: "arn:aws:cloudformation:us-east-1:111122223333:stack/aws-auth/", logical: "Res", wantErr: "is not a CloudFormation stack ARN"},
		{name: "empty", stackID: "", logical: "Res", wantErr: `StackId "" is not a CloudFormation stack ARN`},
		{name: "not a stack", stackID: "arn:aws:cloudformation:us-east-1:111122223333:changeSet/x/y", logical: "Res", wantErr: "is not a CloudFormation stack ARN"},
		{name: "no name", stackID: "arn:aws:cloudformation:us-east-1:111122223333:stack//y", logical: "Res", wantErr: "is not a CloudFormation stack ARN"},
		{name: "no logical ID", stackID: testStackID, wantErr: "LogicalResourceId is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := managedBy(cfn.Event{StackID: tt.stackID, LogicalResourceID: tt.logical})
			if (err != nil) != (tt.wantErr != "") {
				t.Fatalf("managedBy error = %v, wantErr %q", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if got != tt.want {
				t.Fatalf("managedBy = %q, want %q", got, tt.want)
			}
			// Every valid marker leaves room for some description.
			if _, err := provision.StoredDescription("d", got); err != nil {
				t.Fatalf("the marker of %q cannot be stored: %v", got, err)
			}
		})
	}
}

func TestMarginFromEnv(t *testing.T) {
	tests := []struct {
		value   string
		set     bool
		want    time.Duration
		wantErr bool
	}{
		{set: false, want: DefaultMargin},
		{value: "", set: true, want: DefaultMargin},
		{value: "1500ms", set: true, want: 1500 * time.Millisecond},
		{value: "10", set: true, wantErr: true},
		{value: "-1s", set: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			got, err := MarginFromEnv(func(string) (string, bool) { return tt.value, tt.set })
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), EnvDeadlineMargin) {
				t.Fatalf("error %q does not name %s", err, EnvDeadlineMargin)
			}
			if err == nil && got != tt.want {
				t.Fatalf("margin = %s, want %s", got, tt.want)
			}
		})
	}
}

// credentials that must never be asked for: every case below answers
// without any call, not even the token exchange.
var noCall = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
	panic("credentials requested")
})

// These cases never reach the network; the emulator-backed cases run the
// real bootstrap under the RIE (package main's tests).
func TestHandleWithoutCalls(t *testing.T) {
	tests := []struct {
		name    string
		ev      cfn.Event
		wantID  string
		wantErr string
	}{
		{name: "delete after failed create", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: TypeIdentity, PhysicalResourceID: "req-123", ResourceProperties: validIdentity()}, wantID: "req-123"},
		{name: "delete after failed create of a group", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: TypeGroup, StackID: testStackID, LogicalResourceID: "Res", PhysicalResourceID: "req-123", ResourceProperties: validGroup()}, wantID: "req-123"},
		{name: "delete after failed create of unknown type", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: "Custom::Nope", PhysicalResourceID: "req-123"}, wantID: "req-123"},
		{name: "delete of a group not owned", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: TypeGroup, PhysicalResourceID: group, ResourceProperties: with(validGroup(), PropOwned, "false")}, wantID: group},
		{name: "delete of a group with a bad Owned", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: TypeGroup, PhysicalResourceID: group, ResourceProperties: with(validGroup(), PropOwned, "yes", "Extra", 1.0)}, wantID: group},
		{name: "delete of an owned group of an unknown stack", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: TypeGroup, PhysicalResourceID: group, ResourceProperties: validGroup()}, wantID: group},
		{name: "create without a stack ARN", ev: cfn.Event{RequestType: cfn.RequestCreate, ResourceType: TypeGroup, LogicalResourceID: "Res", ResourceProperties: validGroup()}, wantErr: `StackId "" is not a CloudFormation stack ARN`},
		{name: "unknown resource type", ev: cfn.Event{RequestType: cfn.RequestCreate, ResourceType: "Custom::Nope", ResourceProperties: validGroup()}, wantErr: `resource type "Custom::Nope" is not served`},
		{name: "delete of an unknown type", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: "Custom::Nope", PhysicalResourceID: ident, ResourceProperties: validIdentity()}, wantID: ident},
		{name: "update of an unknown type", ev: cfn.Event{RequestType: cfn.RequestUpdate, ResourceType: "Custom::Nope", PhysicalResourceID: ident, ResourceProperties: validGroup()}, wantErr: `resource type "Custom::Nope" is not served by this provisioner (it serves Custom::ChainguardGroup, Custom::ChainguardIdentity, Custom::ChainguardTrustCheck and Custom::AwsOutboundWebIdentityFederation)`},
		{name: "unknown request type", ev: cfn.Event{RequestType: "Upsert", ResourceType: TypeGroup, ResourceProperties: validGroup()}, wantErr: `request type "Upsert"`},
		{name: "bad property", ev: cfn.Event{RequestType: cfn.RequestCreate, ResourceType: TypeGroup, StackID: testStackID, LogicalResourceID: "Res", ResourceProperties: with(validGroup(), PropParent, "nope")}, wantErr: "property Parent"},
		{name: "delete with a bad target", ev: cfn.Event{RequestType: cfn.RequestDelete, ResourceType: TypeIdentity, PhysicalResourceID: ident, ResourceProperties: with(validIdentity(), PropIssuer, "ftp://x")}, wantErr: "property Issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(Config{Credentials: noCall, Margin: time.Second}, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			id, _, err := h.Handle(ctx, tt.ev)
			if (err != nil) != (tt.wantErr != "") {
				t.Fatalf("Handle error = %v, wantErr %q", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if id != tt.wantID {
				t.Fatalf("physical ID = %q, want %q", id, tt.wantID)
			}
		})
	}
}

func TestHandleAlwaysAnswers(t *testing.T) {
	hang := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		<-ctx.Done() // until the work's deadline
		return aws.Credentials{}, ctx.Err()
	})
	tests := []struct {
		name     string
		creds    aws.CredentialsProvider
		timeout  time.Duration
		margin   time.Duration
		setupErr error
		wantErr  string
	}{
		{name: "panic", creds: noCall, timeout: 5 * time.Second, margin: time.Second, wantErr: "internal error (panic) during token exchange"},
		{name: "hang", creds: hang, timeout: 1500 * time.Millisecond, margin: time.Second, wantErr: "timed out: token exchange for provisioner identity"},
		{name: "no time left", creds: noCall, timeout: 500 * time.Millisecond, margin: time.Second, wantErr: "timed out before starting"},
		{name: "misconfigured", creds: noCall, timeout: 5 * time.Second, margin: time.Second, setupErr: context.DeadlineExceeded, wantErr: "the provisioner is misconfigured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(Config{Credentials: tt.creds, Margin: tt.margin}, tt.setupErr)
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			_, _, err := h.Handle(ctx, cfn.Event{RequestType: cfn.RequestCreate, ResourceType: TypeGroup, StackID: testStackID, LogicalResourceID: "Res", ResourceProperties: validGroup()})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Handle error = %v, want one containing %q", err, tt.wantErr)
			}
			if ctx.Err() != nil {
				t.Fatalf("Handle answered only after the deadline: %v", err)
			}
		})
	}
}

// A call that ignores its context (here the function's own credentials)
// keeps Handle from returning: Wrap answers FAILED for it anyway, before the
// function's deadline, and only logs what Handle returns once released.
func TestWrapAnswersForAHungHandler(t *testing.T) {
	release := make(chan struct{})
	block := aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		<-release // ignores its context
		return aws.Credentials{}, errors.New("released")
	})
	responseURL, got := responses(t)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	const margin = time.Second
	fn := Wrap(New(Config{Credentials: block, Margin: margin, Logger: log}, nil).Handle, nil, log, margin)

	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	ev := cfn.Event{RequestType: cfn.RequestCreate, RequestID: "req-1", ResponseURL: responseURL, ResourceType: TypeGroup,
		StackID: testStackID, LogicalResourceID: "Res", ResourceProperties: validGroup()}
	returned := make(chan error, 1)
	go func() {
		_, err := fn(ctx, ev)
		returned <- err
	}()
	select {
	case r := <-got:
		if r.Status != cfn.StatusFailed || r.PhysicalResourceID != ev.RequestID || !strings.Contains(r.Reason, "timed out") {
			t.Errorf("response = %+v, want FAILED with the request ID and a reason saying it timed out", r)
		}
	case <-ctx.Done():
		t.Fatal("no response before the function's deadline")
	}
	close(release)
	if err := <-returned; err != nil {
		t.Fatalf("Wrap's function error = %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("a second response was sent: %+v", <-got)
	}
	if !strings.Contains(logs.String(), "not sent: the event was answered already") {
		t.Fatalf("the late result is not logged:\n%s", logs.String())
	}
}
