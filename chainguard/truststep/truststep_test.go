package truststep

import (
	"strings"
	"testing"
)

func TestFromOutputs(t *testing.T) {
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
		{name: "partition disagrees", cmd: strings.Replace(cmd, "--aws-partition=aws", "--aws-partition=aws-cn", 1), spec: spec, wantErr: `command's --aws-partition is "aws-cn"`},
		{name: "account disagrees", cmd: strings.Replace(cmd, "--aws-account-id=111122223333", "--aws-account-id=999999999999", 1), spec: spec, wantErr: `--aws-account-id`},
		{name: "name disagrees", cmd: strings.Replace(cmd, "role cdk-provisioner", "role other", 1), spec: spec, wantErr: `command's name is "other"`},
		{name: "session disagrees", cmd: cmd, spec: strings.Replace(spec, "PQ:Prov-Fn", "PQ:Other", 1), wantErr: `session "Other" is not the arn's "Prov-Fn"`},
		{name: "not an assumed-role arn", cmd: cmd, spec: strings.Replace(spec, "sts::111122223333:assumed-role", "iam::111122223333:role", 1), wantErr: "output TrustSpec: arn: assumed-role ARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outputs := map[string]string{}
			if tt.cmd != "" {
				outputs[OutputTrustCommand] = tt.cmd
			}
			if tt.spec != "" {
				outputs[OutputTrustSpec] = tt.spec
			}
			req, err := FromOutputs(outputs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FromOutputs err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Parent != group || req.Role != "owner" || req.Identity.GetAwsIdentity().GetUserId() != "AROAABCDEFGHIJKLMNOPQ:Prov-Fn" {
				t.Fatalf("FromOutputs = %+v", req)
			}
		})
	}
}

func TestFromOutputsWebIdentity(t *testing.T) {
	const (
		group  = "0123456789abcdef0123456789abcdef01234567"
		issuer = "http://127.0.0.1:4000/federation/b0c1b644-5080-4b26-84cb-65ec08e531a7"
		role   = "arn:aws:iam::111122223333:role/Prov-Role-ABC"
		cmd    = "chainctl iam identities create cdk-provisioner --identity-issuer=" + issuer + " --subject=" + role +
			" --parent=" + group + " --role=owner -o id"
		spec = `{"name":"cdk-provisioner","description":"d","claim_match":{"issuer":"` + issuer + `","subject":"` + role + `","audience":"http://127.0.0.1:5000"}}`
	)
	outputs := func() map[string]string {
		return map[string]string{OutputTrustCommand: cmd, OutputTrustSpec: spec, OutputWebIdentityIssuer: issuer, OutputProvisionerRoleArn: role}
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
			o[OutputTrustCommand] = "chainctl iam identities create aws role cdk-provisioner --parent=" + group + " --role=owner"
		}, wantErr: `unexpected argument "role"`},
		{name: "issuer disagrees with the command", change: func(o map[string]string) {
			o[OutputTrustCommand] = strings.Replace(cmd, "--identity-issuer="+issuer, "--identity-issuer=https://other.example", 1)
		}, wantErr: "--identity-issuer"},
		{name: "issuer disagrees with the stack's issuer output", change: func(o map[string]string) {
			o[OutputWebIdentityIssuer] = "https://other.example"
		}, wantErr: "output WebIdentityIssuer"},
		{name: "no issuer output", change: func(o map[string]string) { delete(o, OutputWebIdentityIssuer) }, wantErr: "output WebIdentityIssuer"},
		{name: "subject disagrees with the command", change: func(o map[string]string) {
			o[OutputTrustCommand] = strings.Replace(cmd, "--subject="+role, "--subject="+role+"X", 1)
		}, wantErr: "--subject"},
		{name: "subject is not the provisioner role", change: func(o map[string]string) {
			o[OutputProvisionerRoleArn] = role + "X"
		}, wantErr: "output ProvisionerRoleArn"},
		{name: "subject not a role ARN", change: func(o map[string]string) {
			o[OutputTrustSpec] = strings.Replace(spec, role, "arn:aws:sts::111122223333:assumed-role/R/S", 1)
		}, wantErr: "subject: IAM role ARN \"arn:aws:sts::111122223333:assumed-role/R/S\" is the ARN of a session"},
		{name: "issuer with a trailing slash", change: func(o map[string]string) {
			o[OutputTrustSpec] = strings.Replace(spec, issuer, issuer+"/", 1)
		}, wantErr: `ends with "/"`},
		{name: "subject pattern", change: func(o map[string]string) {
			o[OutputTrustSpec] = strings.Replace(spec, `"subject":`, `"subject_pattern":`, 1)
		}, wantErr: "not an exact issuer, subject and audience"},
		{name: "extra claims", change: func(o map[string]string) {
			o[OutputTrustSpec] = strings.Replace(spec, `"audience":`, `"claims":{"x":"y"},"audience":`, 1)
		}, wantErr: "not an exact issuer, subject and audience"},
		{name: "no audience", change: func(o map[string]string) {
			o[OutputTrustSpec] = strings.Replace(spec, `,"audience":"http://127.0.0.1:5000"`, "", 1)
		}, wantErr: "audience of TrustSpec"},
		{name: "name disagrees", change: func(o map[string]string) {
			o[OutputTrustCommand] = strings.Replace(cmd, "create cdk-provisioner", "create other", 1)
		}, wantErr: `the command's name is "other"`},
		{name: "neither kind", change: func(o map[string]string) {
			o[OutputTrustSpec] = `{"name":"cdk-provisioner"}`
		}, wantErr: "neither an aws_identity nor a claim_match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := outputs()
			tt.change(o)
			req, err := FromOutputs(o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FromOutputs err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cm := req.Identity.GetClaimMatch()
			if req.Parent != group || req.Role != "owner" || cm.GetIssuer() != issuer || cm.GetSubject() != o[OutputProvisionerRoleArn] || cm.GetAudience() != "http://127.0.0.1:5000" {
				t.Fatalf("FromOutputs = %+v", req)
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	const (
		aws = `{"name":"cdk-provisioner","description":"d","aws_identity":{"aws_account":"111122223333",` +
			`"arn":"arn:aws:sts::111122223333:assumed-role/Prov-Role-ABC/Prov-Fn","user_id":"AROAABCDEFGHIJKLMNOPQ:Prov-Fn"}}`
		claim = `{"name":"cdk-provisioner","claim_match":{"issuer":"https://x.tokens.sts.global.api.aws",` +
			`"subject":"arn:aws:iam::111122223333:role/service-role/Prov","audience":"https://issuer.enforce.dev"}}`
	)
	tests := []struct {
		name, spec, wantErr string
	}{
		{name: "aws_identity", spec: aws},
		{name: "claim_match", spec: claim},
		{name: "empty", spec: ``, wantErr: "not a Chainguard identity spec"},
		{name: "no name", spec: strings.Replace(aws, `"name":"cdk-provisioner",`, "", 1), wantErr: "name of TrustSpec is empty"},
		{name: "upper-case name", spec: strings.Replace(aws, `"name":"cdk-provisioner"`, `"name":"CDK"`, 1), wantErr: `name of TrustSpec "CDK" is not valid`},
		{name: "account is not the arn's", spec: strings.Replace(aws, `"aws_account":"111122223333"`, `"aws_account":"999999999999"`, 1), wantErr: `aws_account "999999999999" is not the account of the arn "111122223333"`},
		{name: "user id of an IAM user", spec: strings.Replace(aws, `"user_id":"AROA`, `"user_id":"AIDA`, 1), wantErr: "output TrustSpec: user_id: user ID"},
		{name: "arn pattern", spec: strings.Replace(aws, `"arn":`, `"arn_pattern":`, 1), wantErr: "arn: assumed-role ARN is empty"},
		{name: "issuer not a URL", spec: strings.Replace(claim, "https://x.tokens", "x.tokens", 1), wantErr: "output TrustSpec: issuer: web identity issuer"},
		{name: "subject is a role name", spec: strings.Replace(claim, "arn:aws:iam::111122223333:role/service-role/Prov", "Prov", 1), wantErr: `output TrustSpec: subject: IAM role ARN "Prov" is not an ARN`},
		{name: "audience pattern", spec: strings.Replace(claim, `"audience":`, `"audience_pattern":`, 1), wantErr: "not an exact issuer, subject and audience"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || id.GetName() != "cdk-provisioner" {
				t.Fatalf("ParseSpec = %v, %v", id, err)
			}
		})
	}
}
