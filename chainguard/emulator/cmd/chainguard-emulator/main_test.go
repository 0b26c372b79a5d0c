package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cgaws "chainguard.dev/sdk/auth/aws"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"chainguard.dev/sdk/sts"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
)

// engineRoleARN is the ARN of a role a CloudFormation engine deployed, with
// a path.
const engineRoleARN = "arn:aws:iam::000000000000:role/cdk/Prov-Role"

// binDir holds the command built for the tests (build), removed by TestMain.
var (
	binDir    string
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// build compiles the command once per test binary run.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "chainguard-emulator-test"); buildErr != nil {
			return
		}
		bin := filepath.Join(binDir, "chainguard-emulator")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		builtBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestCommand(t *testing.T) {
	bin := build(t)
	tests := []struct {
		name   string
		args   []string
		signal syscall.Signal
	}{
		{"SIGTERM", []string{"-listen", "127.0.0.1:0", "-repos", "nginx, go", "-group-name", "my-group", "-token-ttl", "10m"}, syscall.SIGTERM},
		{"SIGINT", nil, syscall.SIGINT},
		{"strict settings", []string{"-propagation-delay", "200ms", "-omit-expiry", "-unique-identity-names", "-stateless-tokens", "-ignore-output-only", "-page-size", "2"}, syscall.SIGTERM},
		{"web identity", []string{"-web-identity"}, syscall.SIGTERM},
		// The real principal of a function a CloudFormation engine
		// deployed: a role with a path and a unique ID of the engine's.
		{"engine principal", []string{"-account", "000000000000", "-provisioner-role", engineRoleARN, "-provisioner-role-id", engineRoleID, "-provisioner-session", "Prov-Fn"}, syscall.SIGTERM},
		{"engine principal, web identity", []string{"-web-identity", "-account", "000000000000", "-provisioner-role", engineRoleARN, "-provisioner-role-id", engineRoleID, "-provisioner-session", "Prov-Fn",
			"-workload-role", "Auth-Role", "-workload-role-id", "AROAWORKLOADROLE12345", "-workload-session", "Auth-Fn"}, syscall.SIGTERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill() }()

			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("read the JSON line: %v\nstderr:\n%s", err, stderr.String())
			}
			var out Output
			if err := json.Unmarshal([]byte(line), &out); err != nil {
				t.Fatalf("stdout %q is not the JSON description: %v", line, err)
			}
			wantRepos, wantGroup := []string{"nginx", "python", "static"}, "example-group"
			if slices.Contains(tt.args, "-repos") {
				wantRepos, wantGroup = []string{"nginx", "go"}, "my-group"
			}
			strict := slices.Contains(tt.args, "-omit-expiry")
			if strict && (out.PropagationDelay != "200ms" || !out.OmitExpiry || !out.UniqueIdentityNames || !out.StatelessTokens || !out.IgnoreOutputOnly || out.PageSize != 2) {
				t.Errorf("settings printed: delay %q, omit expiry %v, unique names %v, stateless tokens %v, ignore output-only %v, page size %d; want the flags'",
					out.PropagationDelay, out.OmitExpiry, out.UniqueIdentityNames, out.StatelessTokens, out.IgnoreOutputOnly, out.PageSize)
			}
			var names []string
			for _, r := range out.Repos {
				names = append(names, r.Name)
			}
			if !slices.Equal(names, wantRepos) || out.GroupName != wantGroup || !strings.HasPrefix(out.Group, out.RootGroup+"/") {
				t.Errorf("seeded group %s %q with repos %v, want %q under root %s with %v", out.Group, out.GroupName, names, wantGroup, out.RootGroup, wantRepos)
			}
			wantWorkload := "arn:aws:sts::111122223333:assumed-role/aws-auth/aws-auth"
			if slices.Contains(tt.args, "000000000000") {
				wantWorkload = "arn:aws:sts::000000000000:assumed-role/aws-auth/aws-auth"
			}
			if slices.Contains(tt.args, "-workload-role-id") {
				wantWorkload = "arn:aws:sts::000000000000:assumed-role/Auth-Role/Auth-Fn"
				if w := out.Workload; w.RoleID != "AROAWORKLOADROLE12345" || w.AWSPrincipal.UserID != "AROAWORKLOADROLE12345:Auth-Fn" || w.RoleARN != "arn:aws:iam::000000000000:role/Auth-Role" {
					t.Errorf("workload printed %+v, want the flags' role ID, session and role", w)
				}
			}
			if out.Roles["owner"] == "" || out.Workload.AWSPrincipal.ARN != wantWorkload {
				t.Errorf("output lacks roles or the workload principal: %+v", out)
			}
			if !strings.HasPrefix(out.ControlURL, "http://127.0.0.1:") || !strings.HasPrefix(out.TrustStepUser, out.RootGroup+"/") {
				t.Errorf("control_url %q, trust_step_user %q: want a loopback URL and an identity in the root group", out.ControlURL, out.TrustStepUser)
			}
			if slices.Contains(tt.args, "-provisioner-role-id") {
				p := out.Provisioner
				want := emulator.AWSPrincipal{Account: "000000000000", ARN: "arn:aws:sts::000000000000:assumed-role/Prov-Role/Prov-Fn", UserID: engineRoleID + ":Prov-Fn", RoleARN: engineRoleARN}
				if p.AWSPrincipal != want || p.RoleID != engineRoleID || p.RoleName != "Prov-Role" || p.SessionName != "Prov-Fn" || p.RoleARN != engineRoleARN {
					t.Errorf("provisioner printed %+v, want principal %+v", p, want)
				}
			}

			// The printed provisioner can exchange and list the group's repos
			// (verification happens in the emulator process).
			p := out.Provisioner
			creds := aws.Credentials{AccessKeyID: p.Credentials.AccessKeyID, SecretAccessKey: p.Credentials.SecretAccessKey, SessionToken: p.Credentials.SessionToken}
			web := slices.Contains(tt.args, "-web-identity")
			if web != (out.WebIdentityIssuer != "") || out.AWSURL != out.AWSSTSURL {
				t.Errorf("web_identity_issuer %q, aws_url %q, aws_sts_url %q: want an issuer exactly with -web-identity, and one AWS URL", out.WebIdentityIssuer, out.AWSURL, out.AWSSTSURL)
			}
			var awsTok string
			if web {
				// The provisioner proves itself with a web identity token
				// from the printed AWS URL, as the provisioner function
				// does with AWS_ENDPOINT_URL_STS.
				client := awssts.New(awssts.Options{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: creds}, BaseEndpoint: aws.String(out.AWSURL)})
				got, err := client.GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{
					Audience: []string{out.IssuerURL}, SigningAlgorithm: aws.String("ES384"), DurationSeconds: aws.Int32(300),
				})
				if err != nil {
					t.Fatalf("GetWebIdentityToken as the printed provisioner: %v", err)
				}
				awsTok = aws.ToString(got.WebIdentityToken)
			} else if awsTok, err = cgaws.GenerateToken(ctx, creds, out.IssuerURL, p.Identity); err != nil {
				t.Fatal(err)
			}
			pair, err := sts.New(out.IssuerURL, out.APIURL, sts.WithIdentity(p.Identity)).Exchange(ctx, awsTok)
			if err != nil {
				t.Fatalf("exchange as the printed provisioner: %v\nstderr:\n%s", err, stderr.String())
			}
			if strict && !pair.Expiry.IsZero() {
				t.Errorf("exchange with -omit-expiry returned expiry %s, want none", pair.Expiry)
			}
			rc, err := registry.NewClients(ctx, out.APIURL, pair.AccessToken)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			repos, err := rc.Registry().ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: out.Group}})
			if err != nil || len(repos.GetItems()) != len(wantRepos) {
				t.Fatalf("ListRepos = %v, %v; want %d repos", repos, err, len(wantRepos))
			}

			if err := cmd.Process.Signal(tt.signal); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("after %v: %v\nstderr:\n%s", tt.signal, err, stderr.String())
			}
			if s := stderr.String(); strings.Contains(s, p.Credentials.SecretAccessKey) || strings.Contains(s, pair.AccessToken) {
				t.Errorf("a secret reached the logs:\n%s", s)
			}
		})
	}
}

func TestCommandRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"non-loopback listen address", []string{"-listen", "0.0.0.0:0"}, "not a loopback address"},
		{"invalid group name", []string{"-group-name", "Bad Group"}, "group name"},
		{"invalid account", []string{"-account", "123"}, "account"},
		{"positional argument", []string{"extra"}, "unexpected arguments"},
		{"negative propagation delay", []string{"-propagation-delay", "-1s"}, "negative"},
		{"token TTL under a second", []string{"-token-ttl", "500ms"}, "whole seconds"},
		{"non-loopback control address", []string{"-control-listen", "0.0.0.0:0"}, `-control-listen "0.0.0.0:0" is not a loopback address`},
		{"remote control address", []string{"-control-listen", "192.0.2.1:8080"}, `-control-listen "192.0.2.1:8080" is not a loopback address`},
		{"control address without port", []string{"-control-listen", "127.0.0.1"}, `-control-listen "127.0.0.1" is not host:port`},
		{"role ID too short", []string{"-provisioner-role-id", "AROA123"}, `-provisioner-role-id: role unique ID "AROA123" is not valid`},
		{"role ID of a user", []string{"-workload-role-id", "AIDAENGINEASSIGNED123"}, `-workload-role-id: role unique ID "AIDAENGINEASSIGNED123" is the unique ID of an IAM user`},
		{"role ARN in another account", []string{"-provisioner-role", engineRoleARN}, `-provisioner-role "` + engineRoleARN + `" is in account 000000000000, not in -account 111122223333: pass -account 000000000000`},
		{"session ARN for a role", []string{"-workload-role", "arn:aws:sts::111122223333:assumed-role/r/s"}, "-workload-role: IAM role ARN"},
		{"role name with a slash", []string{"-workload-role", "cdk/role"}, `-workload-role: IAM role name "cdk/role" has the character "/"`},
		{"session too short", []string{"-provisioner-session", "f"}, `-provisioner-session: role session name "f" is too short`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			err := run(tt.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q on stdout despite the error", stdout.String())
			}
		})
	}
}
