package handler

import (
	"slices"
	"strings"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
)

// The cfn tags of the property structs are the contract the Prop constants
// name, and every field of trust.AWS comes from one of them.
func TestPropertyTagsAreTheContract(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want []string
	}{
		{"target", Target{}, []string{PropProvisionerIdentity, PropIssuer, PropAPIURL}},
		{"group", groupProperties{}, []string{PropName, PropDescription, PropParent, PropOwned}},
		{"identity", identityProperties{}, []string{PropName, PropDescription, PropGroup, PropRoles, PropTrust,
			PropAwsAccount, PropAwsPartition, PropAwsRoleName, PropAwsRoleID, PropAwsSession, PropAwsSessionPattern,
			PropAwsRolePath, PropAwsIssuer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cfnTags(tt.v); !slices.Equal(got, tt.want) {
				t.Fatalf("cfn tags = %v, want %v", got, tt.want)
			}
		})
	}
	for field, want := range map[string]string{
		"Account": PropAwsAccount, "Partition": PropAwsPartition, "RoleName": PropAwsRoleName,
		"RoleID": PropAwsRoleID, "Session": PropAwsSession, "SessionPattern": PropAwsSessionPattern,
		"RolePath": PropAwsRolePath, "Issuer": PropAwsIssuer, "Audience": PropIssuer,
	} {
		if got := trustProperty(field); got != want {
			t.Errorf("trust field %s maps to %q, want %q", field, got, want)
		}
	}
}

// The identity's trust is the structure the properties describe; the
// provisioner builds the anchored aws_identity from it.
func TestParseIdentityTrust(t *testing.T) {
	tests := []struct {
		name    string
		props   map[string]any
		want    trust.AWS
		wantArn string // arn or arn_pattern built from it
	}{
		{"exact", validIdentity(),
			trust.AWS{Account: "111122223333", Partition: "aws", RoleName: "aws-auth", RoleID: "AROA1234567890ABCDEFG", Session: "my-fn"},
			"arn:aws:sts::111122223333:assumed-role/aws-auth/my-fn"},
		{"pattern, role name quoted", with(validIdentity(), PropAwsRoleName, "ecs.task", PropAwsSession, nil, PropAwsSessionPattern, `[0-9a-f]{32}`),
			trust.AWS{Account: "111122223333", Partition: "aws", RoleName: "ecs.task", RoleID: "AROA1234567890ABCDEFG", SessionPattern: `[0-9a-f]{32}`},
			`^arn:aws:sts::111122223333:assumed-role/ecs\.task/(?:[0-9a-f]{32})$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := parseIdentity(tt.props, testOwner)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Trust != tt.want {
				t.Fatalf("trust = %+v, want %+v", spec.Trust, tt.want)
			}
			id := spec.Trust.(trust.AWS).AWSIdentity()
			if got := id.GetArn() + id.GetArnPattern(); got != tt.wantArn {
				t.Fatalf("built ARN = %q, want %q", got, tt.wantArn)
			}
		})
	}
}

// The web-identity trust is the account's federation issuer and the role's
// ARN, with the event's Issuer (the Chainguard STS) as the audience.
func TestParseIdentityWebIdentity(t *testing.T) {
	const issuer = "https://0b1c2d3e-0000-4000-8000-000000000000.tokens.sts.global.api.aws"
	web := with(validIdentity(), PropTrust, TrustWebIdentity, PropAwsRoleID, nil, PropAwsSession, nil, PropAwsIssuer, issuer)
	tests := []struct {
		name        string
		props       map[string]any
		want        trust.WebIdentity
		wantSubject string
		wantErr     string
	}{
		{name: "default path", props: web,
			want:        trust.WebIdentity{Account: "111122223333", Partition: "aws", RoleName: "aws-auth", RolePath: "/", Issuer: issuer, Audience: "http://127.0.0.1:1"},
			wantSubject: "arn:aws:iam::111122223333:role/aws-auth"},
		{name: "role path", props: with(web, PropAwsRolePath, "/service-role/"),
			want:        trust.WebIdentity{Account: "111122223333", Partition: "aws", RoleName: "aws-auth", RolePath: "/service-role/", Issuer: issuer, Audience: "http://127.0.0.1:1"},
			wantSubject: "arn:aws:iam::111122223333:role/service-role/aws-auth"},
		{name: "no issuer", props: with(web, PropAwsIssuer, nil), wantErr: "property AwsIssuer is missing: set it, e.g. the account's outbound identity federation issuer"},
		{name: "http issuer", props: with(web, PropAwsIssuer, "http://example.com"), wantErr: "property AwsIssuer: web identity issuer \"http://example.com\" uses plain http"},
		{name: "bad path", props: with(web, PropAwsRolePath, "service-role"), wantErr: "property AwsRolePath: IAM role path \"service-role\" is not valid"},
		{name: "role ID", props: with(web, PropAwsRoleID, "AROA1234567890ABCDEFG"),
			wantErr: "property AwsRoleId does not apply to Trust WebIdentity: remove it (it belongs to the other trust kind); the web-identity trust pins no role unique ID and no session"},
		{name: "session pattern", props: with(web, PropAwsSessionPattern, ".+"), wantErr: "property AwsSessionPattern does not apply to Trust WebIdentity"},
		{name: "issuer on caller identity", props: with(validIdentity(), PropAwsIssuer, issuer), wantErr: "property AwsIssuer does not apply to Trust CallerIdentity"},
		{name: "unknown kind", props: with(web, PropTrust, "OIDC"), wantErr: "property Trust is \"OIDC\": want \"CallerIdentity\""},
		{name: "other partition", props: with(web, PropAwsPartition, "aws-cn"), wantErr: "property AwsPartition: partition \"aws-cn\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := parseIdentity(tt.props, testOwner)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.Trust != tt.want {
				t.Fatalf("trust = %+v, want %+v", spec.Trust, tt.want)
			}
			if got := spec.Trust.(trust.WebIdentity).ClaimMatch().GetSubject(); got != tt.wantSubject {
				t.Fatalf("subject = %q, want %q", got, tt.wantSubject)
			}
		})
	}
}

// Delete reads the Target alone: properties a Create would refuse (retired,
// unknown, or not even strings) do not stop it.
func TestParseTargetIgnoresOtherProperties(t *testing.T) {
	p := with(validIdentity(), "AwsArn", "x", "FutureProperty", 1.0, PropAwsAccount, 12.0)
	got, err := parseTarget(p)
	if err != nil {
		t.Fatalf("parseTarget: %v", err)
	}
	if want := (Target{Provisioner: root + "/aaaaaaaaaaaaaaaa", Issuer: "http://127.0.0.1:1", APIURL: "http://127.0.0.1:2"}); got != want {
		t.Fatalf("parseTarget = %+v, want %+v", got, want)
	}
	if _, err := parseTarget(with(p, PropIssuer, true)); err == nil || !strings.Contains(err.Error(), "property Issuer is a bool") {
		t.Fatalf("parseTarget with a non-string Issuer: error %v, want one naming the property", err)
	}
}
