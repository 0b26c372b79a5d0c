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
		{name: "spec without aws identity", cmd: cmd, spec: `{"name":"cdk-provisioner"}`, wantErr: "has no aws_identity"},
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
