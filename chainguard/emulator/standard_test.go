package emulator_test

import (
	"strings"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
)

func TestRolePrincipal(t *testing.T) {
	tests := []struct {
		name, arn, roleID, session string
		want                       emulator.AWSPrincipal
		wantErr                    string
	}{
		{
			name: "role with a path", arn: "arn:aws:iam::000000000000:role/cdk/Prov-Role", roleID: "AROAENGINEASSIGNED123", session: "Prov-Fn",
			want: emulator.AWSPrincipal{Account: "000000000000", ARN: "arn:aws:sts::000000000000:assumed-role/Prov-Role/Prov-Fn", UserID: "AROAENGINEASSIGNED123:Prov-Fn", RoleARN: "arn:aws:iam::000000000000:role/cdk/Prov-Role"},
		},
		{
			name: "other partition", arn: "arn:aws-cn:iam::111122223333:role/r", roleID: "AROAENGINEASSIGNED123", session: "fn",
			want: emulator.AWSPrincipal{Account: "111122223333", ARN: "arn:aws-cn:sts::111122223333:assumed-role/r/fn", UserID: "AROAENGINEASSIGNED123:fn", RoleARN: "arn:aws-cn:iam::111122223333:role/r"},
		},
		{name: "role name", arn: "r", roleID: "AROAENGINEASSIGNED123", session: "fn", wantErr: `"r" is not an IAM role ARN`},
		{name: "session ARN", arn: "arn:aws:sts::111122223333:assumed-role/r/fn", roleID: "AROAENGINEASSIGNED123", session: "fn", wantErr: "is not an IAM role ARN"},
		{name: "no role ID", arn: "arn:aws:iam::111122223333:role/r", session: "fn", wantErr: "required"},
		{name: "no session", arn: "arn:aws:iam::111122223333:role/r", roleID: "AROAENGINEASSIGNED123", wantErr: "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := emulator.RolePrincipal(tt.arn, tt.roleID, tt.session)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("RolePrincipal = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("RolePrincipal = %+v, %v; want %+v", got, err, tt.want)
			}
			if got.WebIdentitySubject() != tt.arn {
				t.Errorf("WebIdentitySubject = %q, want the role ARN %q", got.WebIdentitySubject(), tt.arn)
			}
		})
	}
}

// SeedStandard takes the principals it is given (a CloudFormation
// engine's), and refuses one outside its account.
func TestSeedStandardPrincipals(t *testing.T) {
	e, err := emulator.Start(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	prov, err := emulator.RolePrincipal("arn:aws:iam::000000000000:role/cdk/Prov-Role", "AROAENGINEASSIGNED123", "Prov-Fn")
	if err != nil {
		t.Fatal(err)
	}
	s := e.SeedStandard(emulator.StandardOptions{Account: "000000000000", RootName: "one", ProvisionerPrincipal: &prov})
	if s.ProvisionerPrincipal != prov || s.WorkloadPrincipal != emulator.AssumedRolePrincipal("000000000000", "aws-auth", "aws-auth") {
		t.Errorf("SeedStandard principals %+v and %+v, want %+v and the default workload", s.ProvisionerPrincipal, s.WorkloadPrincipal, prov)
	}
	var trusted bool
	for _, id := range e.State().Identities {
		trusted = trusted || (id.ID == s.Provisioner && id.AWS.GetUserId() == "AROAENGINEASSIGNED123:Prov-Fn" && id.AWS.GetArn() == prov.ARN)
	}
	if !trusted {
		t.Errorf("the seeded provisioner identity does not trust %+v exactly", prov)
	}

	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "is not in account 111122223333") {
			t.Errorf("SeedStandard with a principal of another account: panic %v, want one naming the account", r)
		}
	}()
	e.SeedStandard(emulator.StandardOptions{RootName: "two", WorkloadPrincipal: &prov})
}
