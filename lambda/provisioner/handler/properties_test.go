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
		{"identity", identityProperties{}, []string{PropName, PropDescription, PropGroup, PropRoles,
			PropAwsAccount, PropAwsPartition, PropAwsRoleName, PropAwsRoleID, PropAwsSession, PropAwsSessionPattern}},
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
