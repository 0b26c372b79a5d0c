package localrun

import (
	"strings"
	"testing"
)

func TestParseTrustStep(t *testing.T) {
	const (
		group = "0123456789abcdef0123456789abcdef01234567"
		cmd   = "chainctl iam identities create aws role cdk-provisioner --parent=" + group +
			" --aws-account-id=111122223333 --aws-partition=aws --aws-role-name=Prov-Role-ABC --aws-role-id=AROAABCDEFGHIJKLMNOPQ --role=owner -o id"
		spec = `{"name":"cdk-provisioner","description":"d","aws_identity":{"aws_account":"111122223333",` +
			`"arn":"arn:aws:sts::111122223333:assumed-role/Prov-Role-ABC/Prov-Fn","user_id":"AROAABCDEFGHIJKLMNOPQ:Prov-Fn"}}`
	)
	tests := []struct {
		name    string
		cmd     string
		spec    string
		wantErr string
	}{
		{name: "ok", cmd: cmd, spec: spec},
		{name: "no command", spec: spec, wantErr: "no TrustCommand output"},
		{name: "no spec", cmd: cmd, wantErr: "no TrustSpec output"},
		{name: "spec not json", cmd: cmd, spec: `{`, wantErr: "not a Chainguard identity spec"},
		{name: "spec unknown field", cmd: cmd, spec: `{"name":"x","aws":{}}`, wantErr: "not a Chainguard identity spec"},
		{name: "spec without aws identity", cmd: cmd, spec: `{"name":"cdk-provisioner"}`, wantErr: "neither an aws_identity nor a claim_match"},
		{name: "other command", cmd: "chainctl iam identities create github x", spec: spec, wantErr: "does not start with"},
		{name: "bad parent", cmd: strings.Replace(cmd, group, "nope", 1), spec: spec, wantErr: "nope"},
		{name: "no role", cmd: strings.Replace(cmd, " --role=owner", "", 1), spec: spec, wantErr: "has no --role"},
		{name: "role name disagrees", cmd: strings.Replace(cmd, "--aws-role-name=Prov-Role-ABC", "--aws-role-name=Other", 1), spec: spec, wantErr: `command's --aws-role-name is "Other"`},
		{name: "role id disagrees", cmd: strings.Replace(cmd, "AROAABCDEFGHIJKLMNOPQ", "AROAZZZZZZZZZZZZZZZZZ", 1), spec: spec, wantErr: `--aws-role-id`},
		{name: "account disagrees", cmd: strings.Replace(cmd, "--aws-account-id=111122223333", "--aws-account-id=999999999999", 1), spec: spec, wantErr: `--aws-account-id`},
		{name: "name disagrees", cmd: strings.Replace(cmd, "role cdk-provisioner", "role other", 1), spec: spec, wantErr: `command's name is "other"`},
		{name: "session disagrees", cmd: cmd, spec: strings.Replace(spec, "PQ:Prov-Fn", "PQ:Other", 1), wantErr: `session "Other" is not the arn's "Prov-Fn"`},
		{name: "not an assumed-role arn", cmd: cmd, spec: strings.Replace(spec, "sts::111122223333:assumed-role", "iam::111122223333:role", 1), wantErr: "TrustSpec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outputs := map[string]string{}
			if tt.cmd != "" {
				outputs[outputTrustCommand] = tt.cmd
			}
			if tt.spec != "" {
				outputs[outputTrustSpec] = tt.spec
			}
			req, err := parseTrustStep(outputs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseTrustStep err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.parent != group || req.role != "owner" || req.identity.GetAwsIdentity().GetUserId() != "AROAABCDEFGHIJKLMNOPQ:Prov-Fn" {
				t.Fatalf("parseTrustStep = %+v", req)
			}
		})
	}
}

func TestParseTrustStepWebIdentity(t *testing.T) {
	const (
		group  = "0123456789abcdef0123456789abcdef01234567"
		issuer = "http://127.0.0.1:4000/federation/b0c1b644-5080-4b26-84cb-65ec08e531a7"
		role   = "arn:aws:iam::111122223333:role/Prov-Role-ABC"
		cmd    = "chainctl iam identities create cdk-provisioner --identity-issuer=" + issuer + " --subject=" + role +
			" --parent=" + group + " --role=owner -o id"
		spec = `{"name":"cdk-provisioner","description":"d","claim_match":{"issuer":"` + issuer + `","subject":"` + role + `","audience":"http://127.0.0.1:5000"}}`
	)
	outputs := func() map[string]string {
		return map[string]string{outputTrustCommand: cmd, outputTrustSpec: spec, outputWebIdentityIssuer: issuer, outputProvisionerRoleArn: role}
	}
	tests := []struct {
		name    string
		change  func(map[string]string)
		wantErr string
	}{
		{name: "ok", change: func(map[string]string) {}},
		{name: "path in the role ARN", change: func(o map[string]string) {
			for k, v := range o {
				o[k] = strings.ReplaceAll(v, ":role/Prov", ":role/service-role/Prov")
			}
		}},
		{name: "caller-identity command", change: func(o map[string]string) {
			o[outputTrustCommand] = "chainctl iam identities create aws role cdk-provisioner --parent=" + group + " --role=owner"
		}, wantErr: `unexpected argument "role"`},
		{name: "issuer disagrees with the command", change: func(o map[string]string) {
			o[outputTrustCommand] = strings.Replace(cmd, "--identity-issuer="+issuer, "--identity-issuer=https://other.example", 1)
		}, wantErr: "--identity-issuer"},
		{name: "issuer disagrees with the stack's issuer output", change: func(o map[string]string) {
			o[outputWebIdentityIssuer] = "https://other.example"
		}, wantErr: "output WebIdentityIssuer"},
		{name: "no issuer output", change: func(o map[string]string) { delete(o, outputWebIdentityIssuer) }, wantErr: "output WebIdentityIssuer"},
		{name: "subject disagrees with the command", change: func(o map[string]string) {
			o[outputTrustCommand] = strings.Replace(cmd, "--subject="+role, "--subject="+role+"X", 1)
		}, wantErr: "--subject"},
		{name: "subject is not the provisioner role", change: func(o map[string]string) {
			o[outputProvisionerRoleArn] = role + "X"
		}, wantErr: "output ProvisionerRoleArn"},
		{name: "subject not a role ARN", change: func(o map[string]string) {
			o[outputTrustSpec] = strings.Replace(spec, role, "arn:aws:sts::111122223333:assumed-role/R/S", 1)
		}, wantErr: "is not an IAM role ARN"},
		{name: "issuer with a trailing slash", change: func(o map[string]string) {
			o[outputTrustSpec] = strings.Replace(spec, issuer, issuer+"/", 1)
		}, wantErr: `ends with "/"`},
		{name: "subject pattern", change: func(o map[string]string) {
			o[outputTrustSpec] = strings.Replace(spec, `"subject":`, `"subject_pattern":`, 1)
		}, wantErr: "not an exact issuer, subject and audience"},
		{name: "extra claims", change: func(o map[string]string) {
			o[outputTrustSpec] = strings.Replace(spec, `"audience":`, `"claims":{"x":"y"},"audience":`, 1)
		}, wantErr: "not an exact issuer, subject and audience"},
		{name: "no audience", change: func(o map[string]string) {
			o[outputTrustSpec] = strings.Replace(spec, `,"audience":"http://127.0.0.1:5000"`, "", 1)
		}, wantErr: "audience of TrustSpec"},
		{name: "name disagrees", change: func(o map[string]string) {
			o[outputTrustCommand] = strings.Replace(cmd, "create cdk-provisioner", "create other", 1)
		}, wantErr: `the command's name is "other"`},
		{name: "neither kind", change: func(o map[string]string) {
			o[outputTrustSpec] = `{"name":"cdk-provisioner"}`
		}, wantErr: "neither an aws_identity nor a claim_match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := outputs()
			tt.change(o)
			req, err := parseTrustStep(o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseTrustStep err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cm := req.identity.GetClaimMatch()
			if req.parent != group || req.role != "owner" || cm.GetIssuer() != issuer || cm.GetSubject() != o[outputProvisionerRoleArn] || cm.GetAudience() != "http://127.0.0.1:5000" {
				t.Fatalf("parseTrustStep = %+v", req)
			}
		})
	}
}
