package handler

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// Custom::AwsOutboundWebIdentityFederation through Handle, with the real
// aws-sdk-go-v2 IAM client calling the emulator's AWS stand-in, which counts
// the IAM calls (emulator.Calls) and answers AccessDenied when told to
// (emulator.FailNextAWS).

// The IAM actions the resource may call, as emulator.Calls names them.
const (
	actionGet     = "iam:GetOutboundWebIdentityFederationInfo"
	actionEnable  = "iam:EnableOutboundWebIdentityFederation"
	actionDisable = "iam:DisableOutboundWebIdentityFederation"
)

// iamCallsSince returns e's calls of each IAM action since before (an
// earlier iamCallsSince(e, nil)), without zeros.
func iamCallsSince(e *emulator.Emulator, before map[string]int) map[string]int {
	out := map[string]int{}
	for _, a := range []string{actionGet, actionEnable, actionDisable} {
		if n := e.Calls(a) - before[a]; n > 0 {
			out[a] = n
		}
	}
	return out
}

// federationEvent is an event of the provisioner stack's federation
// resource.
func federationEvent(kind cfn.RequestType, physicalID string, props map[string]any) cfn.Event {
	return cfn.Event{
		RequestType:        kind,
		RequestID:          "6c0d8a4e-request",
		ResourceType:       TypeFederation,
		PhysicalResourceID: physicalID,
		LogicalResourceID:  "OutboundWebIdentityFederation",
		StackID:            "arn:aws:cloudformation:us-east-1:111122223333:stack/chainguard-provisioner/5b8e1d30-0000-0000-0000-000000000000",
		ResourceProperties: props,
	}
}

// Account states before the event.
const (
	neverEnabled = "never enabled"
	enabled      = "enabled"
	disabled     = "enabled, then disabled out of band"
)

// The federation resource, request type by account state by outcome:
// Create and Update read the state and enable it only when it is off (a 404
// FeatureDisabled for an account never enabled, JwtVendingEnabled=false for
// one disabled since), answer IssuerIdentifier and the fixed physical ID;
// Delete never disables and makes no call; an unknown property, a missing
// IAM client and AccessDenied fail with a reason that says what to do.
func TestFederationResource(t *testing.T) {
	serviceProps := map[string]any{"ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:chainguard-provisioner", "ServiceTimeout": "300"}
	tests := []struct {
		name       string
		kind       cfn.RequestType
		state      string
		props      map[string]any // nil: serviceProps
		noClient   bool           // Config.Federation nil
		unknownKey bool           // credentials the stand-in does not know
		deny       string         // action answered AccessDenied (403)
		raceEnable bool           // someone enables it between the read and the Enable
		wantErr    []string       // substrings of the reason; nil: success
		wantCalls  map[string]int
		wantOn     bool // the account's federation enabled afterwards
	}{
		{name: "create, never enabled", kind: cfn.RequestCreate, state: neverEnabled,
			wantCalls: map[string]int{actionGet: 1, actionEnable: 1}, wantOn: true},
		{name: "create, enabled", kind: cfn.RequestCreate, state: enabled,
			wantCalls: map[string]int{actionGet: 1}, wantOn: true},
		{name: "create, disabled", kind: cfn.RequestCreate, state: disabled,
			wantCalls: map[string]int{actionGet: 1, actionEnable: 1}, wantOn: true},
		{name: "update, enabled", kind: cfn.RequestUpdate, state: enabled,
			wantCalls: map[string]int{actionGet: 1}, wantOn: true},
		{name: "update, disabled", kind: cfn.RequestUpdate, state: disabled,
			wantCalls: map[string]int{actionGet: 1, actionEnable: 1}, wantOn: true},
		{name: "update, never enabled", kind: cfn.RequestUpdate, state: neverEnabled,
			wantCalls: map[string]int{actionGet: 1, actionEnable: 1}, wantOn: true},
		// The account is on, but the read still found it off (an injected
		// 404 FeatureDisabled, as for an account never enabled): the Enable
		// meets FeatureEnabled, and the state is read again.
		{name: "create, enabled by someone else meanwhile", kind: cfn.RequestCreate, state: enabled, raceEnable: true,
			wantCalls: map[string]int{actionGet: 2, actionEnable: 1}, wantOn: true},
		{name: "delete, enabled", kind: cfn.RequestDelete, state: enabled,
			wantCalls: map[string]int{}, wantOn: true},
		{name: "delete, never enabled", kind: cfn.RequestDelete, state: neverEnabled,
			wantCalls: map[string]int{}, wantOn: false},
		{name: "delete with an unknown property", kind: cfn.RequestDelete, state: enabled, props: with(serviceProps, "Enabled", "false"),
			wantCalls: map[string]int{}, wantOn: true},
		{name: "delete without an IAM client", kind: cfn.RequestDelete, state: enabled, noClient: true,
			wantCalls: map[string]int{}, wantOn: true},
		{name: "create with an unknown property", kind: cfn.RequestCreate, state: neverEnabled, props: with(serviceProps, "Enabled", "true"),
			wantErr:   []string{"property Enabled is not part of the Custom::AwsOutboundWebIdentityFederation contract"},
			wantCalls: map[string]int{}, wantOn: false},
		{name: "create with a Chainguard target's property", kind: cfn.RequestCreate, state: neverEnabled, props: with(serviceProps, PropIssuer, "https://issuer.enforce.dev"),
			wantErr:   []string{"property Issuer is not part of the Custom::AwsOutboundWebIdentityFederation contract: it takes no properties besides CloudFormation's ServiceToken and ServiceTimeout"},
			wantCalls: map[string]int{}, wantOn: false},
		{name: "update with an unknown property", kind: cfn.RequestUpdate, state: disabled, props: with(serviceProps, "Enabled", "true"),
			wantErr:   []string{"property Enabled is not part of the Custom::AwsOutboundWebIdentityFederation contract"},
			wantCalls: map[string]int{}, wantOn: false},
		{name: "create without an IAM client", kind: cfn.RequestCreate, state: neverEnabled, noClient: true,
			wantErr:   []string{"the provisioner has no IAM client for outbound identity federation"},
			wantCalls: map[string]int{}, wantOn: false},
		{name: "create, reading denied", kind: cfn.RequestCreate, state: neverEnabled, deny: actionGet,
			wantErr: []string{"read the outbound identity federation state (iam:GetOutboundWebIdentityFederationInfo): AWS refused: ",
				"the provisioner role needs iam:GetOutboundWebIdentityFederationInfo and iam:EnableOutboundWebIdentityFederation", "AccessDenied"},
			wantCalls: map[string]int{actionGet: 1}, wantOn: false},
		{name: "update, enabling denied", kind: cfn.RequestUpdate, state: disabled, deny: actionEnable,
			wantErr: []string{"enable outbound identity federation (iam:EnableOutboundWebIdentityFederation): AWS refused: ",
				"the provisioner role needs iam:GetOutboundWebIdentityFederationInfo and iam:EnableOutboundWebIdentityFederation", "AccessDenied"},
			wantCalls: map[string]int{actionGet: 1, actionEnable: 1}, wantOn: false},
		// Refused before any action (emulator.Calls counts none), by the
		// stand-in itself (AWS's message).
		{name: "create with credentials AWS does not know", kind: cfn.RequestCreate, state: neverEnabled, unknownKey: true,
			wantErr: []string{"read the outbound identity federation state (iam:GetOutboundWebIdentityFederationInfo): ", "InvalidClientTokenId",
				"The security token included in the request is invalid"},
			wantCalls: map[string]int{}, wantOn: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := emulatortest.NewEnv(t, emulator.Options{})
			account := e.ProvisionerPrincipal.Account
			var issuer string
			switch tt.state {
			case enabled:
				issuer = e.EnableWebIdentityFederation(account)
			case disabled:
				issuer = e.EnableWebIdentityFederation(account)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				// Out of band (before the calls counted).
				if _, err := emulatortest.IAMClient(e.Emulator, e.ProvisionerCredentials).DisableOutboundWebIdentityFederation(ctx, &awsiam.DisableOutboundWebIdentityFederationInput{}); err != nil {
					t.Fatalf("disable: %v", err)
				}
			}
			if tt.deny != "" {
				e.FailNextAWS(tt.deny, 1, "AccessDenied", http.StatusForbidden)
			}
			if tt.raceEnable {
				e.FailNextAWS(actionGet, 1, "FeatureDisabled", http.StatusNotFound)
			}
			creds := e.ProvisionerCredentials
			if tt.unknownKey {
				creds = aws.Credentials{AccessKeyID: "ASIAUNKNOWNUNKNOWN00", SecretAccessKey: "secret", SessionToken: "session"}
			}
			cfg := Config{Credentials: noCall, Margin: time.Second, Federation: emulatortest.IAMClient(e.Emulator, creds)}
			if tt.noClient {
				cfg.Federation = nil
			}
			props := tt.props
			if props == nil {
				props = serviceProps
			}
			physicalID := ""
			if tt.kind != cfn.RequestCreate {
				physicalID = "outbound-web-identity-federation"
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			before := iamCallsSince(e.Emulator, nil)
			id, data, err := New(cfg, nil).Handle(ctx, federationEvent(tt.kind, physicalID, props))
			calls := iamCallsSince(e.Emulator, before)

			gotIssuer, on := e.WebIdentityFederation(account)
			switch {
			case tt.wantErr != nil:
				wantFailed(t, answer{id, data, err}, physicalID, tt.wantErr...)
			case tt.kind == cfn.RequestDelete:
				wantSuccess(t, answer{id, data, err}, physicalID, nil)
			default:
				if issuer == "" {
					issuer = gotIssuer // enabled by this event
				}
				wantSuccess(t, answer{id, data, err}, "outbound-web-identity-federation", map[string]any{"IssuerIdentifier": issuer})
				if gotIssuer != issuer || !strings.HasPrefix(issuer, e.AWSURL()+"/federation/") {
					t.Fatalf("the account's issuer is %q, the event answered %q: want the same, under %s/federation/", gotIssuer, issuer, e.AWSURL())
				}
			}
			if on != tt.wantOn {
				t.Fatalf("federation enabled afterwards: %v, want %v", on, tt.wantOn)
			}
			if !maps.Equal(calls, tt.wantCalls) {
				t.Fatalf("IAM calls = %v, want %v", calls, tt.wantCalls)
			}
			if n := calls[actionDisable]; n != 0 {
				t.Fatalf("%s was called %d times", actionDisable, n)
			}
		})
	}
}

// A stack's life: Create enables, a second Create (another stack, or a
// replay) and an Update find it on and make no Enable call, Delete leaves
// it on, and a later stack's Create finds the same issuer.
func TestFederationResourceLifecycle(t *testing.T) {
	e := emulatortest.NewEnv(t, emulator.Options{})
	account := e.ProvisionerPrincipal.Account
	h := New(Config{Credentials: noCall, Margin: time.Second, Federation: emulatortest.IAMClient(e.Emulator, e.ProvisionerCredentials)}, nil)
	props := map[string]any{"ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:chainguard-provisioner"}
	send := func(kind cfn.RequestType, physicalID string) answer {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		id, data, err := h.Handle(ctx, federationEvent(kind, physicalID, props))
		return answer{id, data, err}
	}

	a := send(cfn.RequestCreate, "")
	issuer, on := e.WebIdentityFederation(account)
	wantSuccess(t, a, "outbound-web-identity-federation", map[string]any{"IssuerIdentifier": issuer})
	if !on {
		t.Fatal("Create left the account's federation off")
	}
	for _, ev := range []struct {
		kind cfn.RequestType
		id   string
	}{{cfn.RequestCreate, ""}, {cfn.RequestUpdate, a.id}, {cfn.RequestDelete, a.id}, {cfn.RequestCreate, ""}} {
		enables := e.Calls(actionEnable)
		a := send(ev.kind, ev.id)
		if ev.kind == cfn.RequestDelete {
			wantSuccess(t, a, a.id, nil)
		} else {
			wantSuccess(t, a, "outbound-web-identity-federation", map[string]any{"IssuerIdentifier": issuer})
		}
		if n := e.Calls(actionEnable) - enables; n != 0 {
			t.Fatalf("%s made %d Enable calls, want none: it is on", ev.kind, n)
		}
		if got, on := e.WebIdentityFederation(account); !on || got != issuer {
			t.Fatalf("after %s the account's federation is %q, enabled %v; want %q, enabled", ev.kind, got, on, issuer)
		}
	}
	if got := iamCallsSince(e.Emulator, nil); got[actionEnable] != 1 || got[actionDisable] != 0 {
		t.Fatalf("IAM calls = %v, want one Enable in all and no Disable", got)
	}
}
