package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"strings"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// engineRoleID is a role unique ID as a CloudFormation engine assigns it:
// not the one the emulator derives from the role name.
const engineRoleID = "AROAENGINEASSIGNED123"

// The provisioner stack's TrustSpec output in each trust mode, formatted as
// stacks/provisioner.go formats it (there with the resolved role name,
// role unique ID and function name of the deployment).
func awsTrustSpec(name, account, partition, roleName, fnName, roleID string) string {
	return fmt.Sprintf(
		`{"name":"%s","description":"CDK provisioner (assumed-role principal of its Lambda function)","aws_identity":{"aws_account":"%s","arn":"arn:%s:sts::%s:assumed-role/%s/%s","user_id":"%s:%s"}}`,
		name, account, partition, account, roleName, fnName, roleID, fnName)
}

func claimTrustSpec(name, issuer, subject, audience string) string {
	return fmt.Sprintf(
		`{"name":"%s","description":"CDK provisioner (web identity of its IAM role)","claim_match":{"issuer":"%s","subject":"%s","audience":"%s"}}`,
		name, issuer, subject, audience)
}

// running is a started chainguard-emulator process.
type running struct {
	out    Output
	stderr *strings.Builder
}

// start runs the built command with args, reads its JSON description and
// stops it (SIGTERM) when the test ends, checking that it exits cleanly and
// that no secret reached its logs.
func start(t *testing.T, bin string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, args...)
	r := &running{stderr: &strings.Builder{}}
	cmd.Stderr = r.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	t.Cleanup(func() {
		defer cancel()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("after SIGTERM: %v\nstderr:\n%s", err, r.stderr)
		}
		for _, s := range secrets {
			if strings.Contains(r.stderr.String(), s) {
				t.Errorf("a secret reached the logs:\n%s", r.stderr)
			}
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the JSON line: %v\nstderr:\n%s", err, r.stderr)
	}
	if err := json.Unmarshal([]byte(line), &r.out); err != nil {
		t.Fatalf("stdout %q is not the JSON description: %v", line, err)
	}
	secrets = append(secrets, r.out.Provisioner.Credentials.SecretAccessKey, r.out.Provisioner.Credentials.SessionToken)
	return r
}

// call sends a request to the control endpoint and decodes its JSON answer
// into v (if not nil); it returns the status code and the raw body.
func (r *running) call(t *testing.T, method, path, contentType string, body any, v any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, r.out.ControlURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("%s %s answered %s, not the JSON expected: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// register registers a principal through POST /principals and returns its
// credentials.
func (r *running) register(t *testing.T, roleARN, roleID, session string) Principal {
	t.Helper()
	var p Principal
	code, raw := r.call(t, http.MethodPost, "/principals", "application/json",
		map[string]string{"role_arn": roleARN, "role_id": roleID, "session_name": session}, &p)
	if code != http.StatusOK {
		t.Fatalf("POST /principals = %d %s", code, raw)
	}
	return p
}

func (p Principal) creds() aws.Credentials {
	return aws.Credentials{AccessKeyID: p.Credentials.AccessKeyID, SecretAccessKey: p.Credentials.SecretAccessKey, SessionToken: p.Credentials.SessionToken}
}

// exchange exchanges an AWS token of the principal p for a Chainguard token
// as identity: a signed GetCallerIdentity request, or with web a web
// identity token from the AWS stand-in. It retries while the identity has
// not propagated yet (NotFound), as a client right after the trust step
// does, for at most 10 s.
func (r *running) exchange(ctx context.Context, p Principal, identity string, web bool) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var awsTok string
		var err error
		if web {
			client := awssts.New(awssts.Options{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: p.creds()}, BaseEndpoint: aws.String(r.out.AWSURL)})
			var got *awssts.GetWebIdentityTokenOutput
			got, err = client.GetWebIdentityToken(ctx, &awssts.GetWebIdentityTokenInput{
				Audience: []string{r.out.IssuerURL}, SigningAlgorithm: aws.String("ES384"), DurationSeconds: aws.Int32(300),
			})
			if err != nil {
				return "", fmt.Errorf("GetWebIdentityToken: %w", err)
			}
			awsTok = aws.ToString(got.WebIdentityToken)
		} else if awsTok, err = cgaws.GenerateToken(ctx, p.creds(), r.out.IssuerURL, identity); err != nil {
			return "", err
		}
		pair, err := sts.New(r.out.IssuerURL, r.out.APIURL, sts.WithIdentity(identity)).Exchange(ctx, awsTok)
		if err == nil {
			return pair.AccessToken, nil
		}
		if status.Code(err) != codes.NotFound || time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestControl takes the principals of a deployed provisioner function, as
// a CloudFormation engine assigned them (a role path, a role unique ID of
// its own), through the control endpoint: register the principal, run the
// trust step from the TrustSpec the provisioner stack prints, then exchange
// as that principal for the new identity and list the group's repos with
// the token, in both trust modes. A principal of the same role name and
// session but another unique ID (a re-created role) is refused in the
// caller-identity mode.
func TestControl(t *testing.T) {
	bin := build(t)
	const (
		account = "000000000000"
		path    = "/cdk/"
		role    = "ChainguardProvisioner-Role1ABCDEF"
		fn      = "ChainguardProvisioner-Function2GHIJK"
	)
	roleARN := "arn:aws:iam::" + account + ":role" + path + role
	tests := []struct {
		name string
		args []string
		web  bool
		// spec is the TrustSpec output; asObject sends it as the object
		// it encodes instead of the JSON string the output holds.
		spec     func(out Output) string
		asObject bool
	}{
		{
			name: "caller identity",
			spec: func(Output) string { return awsTrustSpec("cdk-provisioner", account, "aws", role, fn, engineRoleID) },
		},
		{
			name:     "caller identity, spec as an object",
			spec:     func(Output) string { return awsTrustSpec("cdk-provisioner", account, "aws", role, fn, engineRoleID) },
			asObject: true,
		},
		{
			name: "web identity",
			args: []string{"-web-identity", "-account", account},
			web:  true,
			spec: func(out Output) string {
				return claimTrustSpec("cdk-provisioner", out.WebIdentityIssuer, roleARN, out.IssuerURL)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r := start(t, bin, tt.args...)
			p := r.register(t, roleARN, engineRoleID, fn)
			want := "arn:aws:sts::" + account + ":assumed-role/" + role + "/" + fn
			if p.AWSPrincipal.ARN != want || p.AWSPrincipal.UserID != engineRoleID+":"+fn || p.RoleARN != roleARN ||
				p.RoleID != engineRoleID || p.RoleName != role || p.SessionName != fn || p.Credentials.SecretAccessKey == "" {
				t.Fatalf("POST /principals = %+v, want principal %s (%s:%s) of role %s", p, want, engineRoleID, fn, roleARN)
			}

			var spec any = tt.spec(r.out)
			if tt.asObject {
				spec = json.RawMessage(spec.(string))
			}
			var step TrustStepResponse
			code, raw := r.call(t, http.MethodPost, "/trust-step", "application/json",
				map[string]any{"trust_spec": spec, "parent": r.out.Group}, &step)
			if code != http.StatusOK {
				t.Fatalf("POST /trust-step = %d %s", code, raw)
			}
			if step.Parent != r.out.Group || step.Role != "owner" || step.Name != "cdk-provisioner" || !strings.HasPrefix(step.Identity, r.out.Group+"/") {
				t.Fatalf("POST /trust-step = %+v, want an identity cdk-provisioner in %s with owner", step, r.out.Group)
			}
			var st StateResponse
			if code, raw := r.call(t, http.MethodGet, "/state", "", nil, &st); code != http.StatusOK {
				t.Fatalf("GET /state = %d %s", code, raw)
			}
			bound := false
			for _, b := range st.RoleBindings {
				bound = bound || (b.Identity == step.Identity && b.Group == r.out.Group && b.Role == "owner")
			}
			if !bound {
				t.Errorf("GET /state has no owner binding of %s on %s: %+v", step.Identity, r.out.Group, st.RoleBindings)
			}

			tok, err := r.exchange(ctx, p, step.Identity, tt.web)
			if err != nil {
				t.Fatalf("exchange as the registered principal for the trust step's identity: %v\nstderr:\n%s", err, r.stderr)
			}
			rc, err := registry.NewClients(ctx, r.out.APIURL, tok)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = rc.Close() }()
			repos, err := rc.Registry().ListRepos(ctx, &registry.RepoFilter{Uidp: &common.UIDPFilter{ChildrenOf: r.out.Group}})
			if err != nil || len(repos.GetItems()) != len(r.out.Repos) {
				t.Fatalf("ListRepos = %v, %v; want the %d repos of the group", repos, err, len(r.out.Repos))
			}

			if !tt.web {
				// The same role name and session, another unique ID: the
				// role deleted and re-created under its name.
				other := r.register(t, roleARN, "AROAOTHERROLE12345678", fn)
				_, err := r.exchange(ctx, other, step.Identity, false)
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("exchange as a re-created role = %v, want PermissionDenied", err)
				}
			}
		})
	}
}

// TestControlRejects sends bad requests to the control endpoint: each is
// answered 4xx with the field it is about named.
func TestControlRejects(t *testing.T) {
	r := start(t, build(t))
	const (
		roleARN = "arn:aws:iam::111122223333:role/my-role"
		ctJSON  = "application/json"
	)
	okPrincipal := map[string]string{"role_arn": roleARN, "role_id": engineRoleID, "session_name": "my-fn"}
	with := func(field, value string) map[string]string {
		m := maps.Clone(okPrincipal)
		m[field] = value
		return m
	}
	spec := awsTrustSpec("cdk-provisioner", "111122223333", "aws", "my-role", "my-fn", engineRoleID)
	tests := []struct {
		name, method, path, contentType string
		body                            any
		wantCode                        int
		wantField, wantErr              string
	}{
		{"role ARN missing", "POST", "/principals", ctJSON, with("role_arn", ""), 400, "role_arn", "IAM role ARN is empty"},
		{"role name for a role ARN", "POST", "/principals", ctJSON, with("role_arn", "my-role"), 400, "role_arn", `IAM role ARN "my-role" is not an ARN`},
		{"session ARN for a role ARN", "POST", "/principals", ctJSON, with("role_arn", "arn:aws:sts::111122223333:assumed-role/my-role/my-fn"), 400, "role_arn", "is the ARN of a session of the role"},
		{"role ID missing", "POST", "/principals", ctJSON, with("role_id", ""), 400, "role_id", "role unique ID is empty"},
		{"role ID of a user", "POST", "/principals", ctJSON, with("role_id", "AIDAENGINEASSIGNED123"), 400, "role_id", "unique ID of an IAM user"},
		{"session name missing", "POST", "/principals", ctJSON, with("session_name", ""), 400, "session_name", "role session name is empty"},
		{"session name with a slash", "POST", "/principals", ctJSON, with("session_name", "a/b"), 400, "session_name", `has the character "/"`},
		{"unknown field", "POST", "/principals", ctJSON, with("role_name", "x"), 400, "role_name", `unknown field "role_name": the fields are role_arn, role_id, session_name`},
		{"wrong type", "POST", "/principals", ctJSON, `{"role_arn": 1}`, 400, "role_arn", "role_arn is a JSON number, want a string"},
		{"not JSON", "POST", "/principals", ctJSON, `role_arn=x`, 400, "", "not the JSON object expected"},
		{"empty body", "POST", "/principals", ctJSON, ``, 400, "", "the body is empty"},
		{"form post", "POST", "/principals", "application/x-www-form-urlencoded", `role_arn=x`, 415, "Content-Type", "is not application/json"},
		{"no content type", "POST", "/trust-step", "", `{}`, 415, "Content-Type", "is not application/json"},
		{"trust spec missing", "POST", "/trust-step", ctJSON, map[string]string{}, 400, "trust_spec", "trust_spec is missing"},
		{"trust spec not an identity", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": `{"nom":"x"}`}, 400, "trust_spec", "not a Chainguard identity spec"},
		{"trust spec a number", "POST", "/trust-step", ctJSON, `{"trust_spec": 5}`, 400, "trust_spec", "not a Chainguard identity spec"},
		{"trust spec with a pattern", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": strings.Replace(spec, `"arn":`, `"arn_pattern":`, 1)}, 400, "trust_spec", "arn: assumed-role ARN is empty"},
		{"trust spec with a session mismatch", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": strings.Replace(spec, ":my-fn", ":other-fn", 1)}, 400, "trust_spec", `the user_id's session "other-fn" is not the arn's "my-fn"`},
		{"parent not a UIDP", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": spec, "parent": "example-group"}, 400, "parent", `parent "example-group" is not a Chainguard UIDP`},
		{"parent unknown", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": spec, "parent": "0123456789abcdef0123456789abcdef01234567"}, 403, "parent", "lacks capability"},
		{"role not a role name", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": spec, "role": "viewer,owner"}, 400, "role", "holds a comma"},
		{"role not built in", "POST", "/trust-step", ctJSON, map[string]string{"trust_spec": spec, "role": "boss"}, 400, "role", `role "boss" is not a built-in role`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, raw := r.call(t, tt.method, tt.path, tt.contentType, tt.body, nil)
			var e ErrorResponse
			if err := json.Unmarshal(raw, &e); err != nil {
				t.Fatalf("%s %s = %d %q: not a JSON error: %v", tt.method, tt.path, code, raw, err)
			}
			if code != tt.wantCode || e.Field != tt.wantField || !strings.Contains(e.Error, tt.wantErr) {
				t.Fatalf("%s %s = %d %+v, want %d on field %q with %q", tt.method, tt.path, code, e, tt.wantCode, tt.wantField, tt.wantErr)
			}
			if tt.wantField != "" && !strings.HasPrefix(e.Error, tt.wantField) {
				t.Errorf("error %q does not start with the field %q", e.Error, tt.wantField)
			}
		})
	}

	// A request for another host name (DNS rebinding) is refused.
	req, err := http.NewRequest(http.MethodGet, r.out.ControlURL+"/state", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "attacker.example:80"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /state with Host %s = %d, want 403", req.Host, resp.StatusCode)
	}
	// Nothing was created by the refused requests.
	var st StateResponse
	r.call(t, http.MethodGet, "/state", "", nil, &st)
	for _, id := range st.Identities {
		if id.Name == "cdk-provisioner" {
			t.Errorf("a refused trust step created identity %+v", id)
		}
	}
}
