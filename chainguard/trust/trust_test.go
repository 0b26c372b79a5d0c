package trust

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"google.golang.org/protobuf/proto"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

const (
	acct   = "111122223333"
	role   = "aws-auth"
	roleID = "AROA1234567890ABCDEFG"
)

func exact() AWS {
	return AWS{Account: acct, Partition: "aws", RoleName: role, RoleID: roleID, Session: "my-function"}
}

func TestValidate(t *testing.T) {
	with := func(f func(*AWS)) AWS {
		a := exact()
		f(&a)
		return a
	}
	tests := []struct {
		name       string
		in         AWS
		wantFields []string // nil = valid
		wantErr    string   // substring of the message
	}{
		{"exact", exact(), nil, ""},
		{"pattern", with(func(a *AWS) { a.Session, a.SessionPattern = "", `[0-9a-f]{32}` }), nil, ""},
		{"role name with regexp characters", with(func(a *AWS) { a.RoleName = "ecs.task+x" }), nil, ""},

		{"no account", with(func(a *AWS) { a.Account = "" }), []string{"Account"}, `Account: AWS account ID is empty: expected exactly 12 digits`},
		{"bad account", with(func(a *AWS) { a.Account = "1111-2222-3333" }), []string{"Account"}, `write it without dashes: "111122223333"`},
		{"no partition", with(func(a *AWS) { a.Partition = "" }), []string{"Partition"}, `Partition: partition "": Chainguard verifies AWS callers only in the aws partition`},
		{"gov partition", with(func(a *AWS) { a.Partition = "aws-us-gov" }), []string{"Partition"}, `partition "aws-us-gov": Chainguard verifies AWS callers only in the aws partition`},
		{"no role", with(func(a *AWS) { a.RoleName = "" }), []string{"RoleName"}, `RoleName: IAM role name is empty`},
		{"role with a path", with(func(a *AWS) { a.RoleName = "service-role/x" }), []string{"RoleName"}, `has the character "/"`},
		{"no role ID", with(func(a *AWS) { a.RoleID = "" }), []string{"RoleID"}, `RoleID: role unique ID is empty`},
		{"user ID as role ID", with(func(a *AWS) { a.RoleID = "AIDA1234567890ABCDEFG" }), []string{"RoleID"}, `only IAM roles (AROA...) are supported`},
		{"neither session", with(func(a *AWS) { a.Session = "" }), []string{"Session", "SessionPattern"}, `Session or SessionPattern: neither is set: set exactly one: a session name to trust one session`},
		{"both sessions", with(func(a *AWS) { a.SessionPattern = ".+" }), []string{"Session", "SessionPattern"}, `both are set: set exactly one`},
		{"bad session", with(func(a *AWS) { a.Session = "a:b" }), []string{"Session"}, `Session: role session name "a:b" has the character ":"`},
		{"anchored pattern", with(func(a *AWS) { a.Session, a.SessionPattern = "", `^x+$` }), []string{"SessionPattern"}, `SessionPattern: the session pattern "^x+$" has an anchor`},
		{"pattern escaping its group", with(func(a *AWS) { a.Session, a.SessionPattern = "", `x)|(.*` }), []string{"SessionPattern"}, `does not compile`},
		{"pattern with an open quote", with(func(a *AWS) { a.Session, a.SessionPattern = "", `\Q.*` }), []string{"SessionPattern"}, `does not compile once embedded in the trust`},
		{"pattern matching no session", with(func(a *AWS) { a.Session, a.SessionPattern = "", `[/:]+` }), []string{"SessionPattern"}, `matches no valid role session name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := wantValidation(t, tt.in.Validate(), tt.wantFields, tt.wantErr)
			if fe != nil && (strings.Contains(fe.Err.Error(), "Session") || strings.Contains(fe.Err.Error(), "RoleID")) {
				t.Errorf("Err %q names a Go field: callers name their own", fe.Err)
			}
		})
	}
}

// wantValidation checks an error of Validate: nil when wantFields is nil,
// else a *FieldError for exactly wantFields that matches
// validate.ErrInvalid and whose message contains wantErr. It returns the
// *FieldError (nil for a valid input).
func wantValidation(t *testing.T, err error, wantFields []string, wantErr string) *FieldError {
	t.Helper()
	if wantFields == nil {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return nil
	}
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("error %v\nwant one containing %q", err, wantErr)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || !slices.Equal(fe.Fields, wantFields) {
		t.Fatalf("error %#v, want a *FieldError for %v", err, wantFields)
	}
	if !errors.Is(err, validate.ErrInvalid) {
		t.Errorf("error %q does not match validate.ErrInvalid", err)
	}
	return fe
}

func TestAWSIdentity(t *testing.T) {
	tests := []struct {
		name string
		in   AWS
		want *iam.Identity_AWSIdentity
	}{
		{"exact", exact(), &iam.Identity_AWSIdentity{
			AwsAccount: acct,
			AwsArn:     &iam.Identity_AWSIdentity_Arn{Arn: "arn:aws:sts::111122223333:assumed-role/aws-auth/my-function"},
			AwsUserId:  &iam.Identity_AWSIdentity_UserId{UserId: "AROA1234567890ABCDEFG:my-function"},
		}},
		{"pattern, role name quoted, alternatives kept inside the group",
			AWS{Account: acct, Partition: "aws", RoleName: "ecs.task", RoleID: roleID, SessionPattern: `[0-9a-f]{32}|i-[0-9a-f]{17}`},
			&iam.Identity_AWSIdentity{
				AwsAccount: acct,
				AwsArn:     &iam.Identity_AWSIdentity_ArnPattern{ArnPattern: `^arn:aws:sts::111122223333:assumed-role/ecs\.task/(?:[0-9a-f]{32}|i-[0-9a-f]{17})$`},
				AwsUserId:  &iam.Identity_AWSIdentity_UserIdPattern{UserIdPattern: `^AROA1234567890ABCDEFG:(?:[0-9a-f]{32}|i-[0-9a-f]{17})$`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.in.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tt.in.AWSIdentity(); !proto.Equal(got, tt.want) {
				t.Fatalf("AWSIdentity() = %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestPatternAdmitsOnlyItsRole checks the built patterns against callers of
// this role and of others, as the service matches them.
func TestPatternAdmitsOnlyItsRole(t *testing.T) {
	a := AWS{Account: acct, Partition: "aws", RoleName: "ecs.task", RoleID: roleID, SessionPattern: `.+`}
	id := a.AWSIdentity()
	arnRE, userRE := regexp.MustCompile(id.GetArnPattern()), regexp.MustCompile(id.GetUserIdPattern())
	tests := []struct {
		name, arn, userID string
		want              bool
	}{
		{"a session of the role", "arn:aws:sts::111122223333:assumed-role/ecs.task/0123", roleID + ":0123", true},
		{"a session whose name holds a slash", "arn:aws:sts::111122223333:assumed-role/ecs.task/a/b", roleID + ":a/b", true}, // no valid session name has one: AWS never reports it
		{"the role name's dot as a wildcard", "arn:aws:sts::111122223333:assumed-role/ecsXtask/0123", "AROA9999999999ABCDEFG:0123", false},
		{"another account", "arn:aws:sts::999999999999:assumed-role/ecs.task/0123", "AROA9999999999ABCDEFG:0123", false},
		{"another partition", "arn:aws-cn:sts::111122223333:assumed-role/ecs.task/0123", "AROA9999999999ABCDEFG:0123", false},
		{"a role with the name as prefix", "arn:aws:sts::111122223333:assumed-role/ecs.task-admin/0123", "AROA9999999999ABCDEFG:0123", false},
		{"a prefix before the ARN", "xarn:aws:sts::111122223333:assumed-role/ecs.task/0123", "x" + roleID + ":0123", false},
		{"a line break after the ARN", "arn:aws:sts::111122223333:assumed-role/ecs.task/0123\n", roleID + ":0123\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := arnRE.MatchString(tt.arn); got != tt.want {
				t.Errorf("arn_pattern matches %q = %v, want %v", tt.arn, got, tt.want)
			}
			if got := userRE.MatchString(tt.userID); got != tt.want {
				t.Errorf("user_id_pattern matches %q = %v, want %v", tt.userID, got, tt.want)
			}
		})
	}
}

func webIdentity() WebIdentity {
	return WebIdentity{
		Account: acct, Partition: "aws", RoleName: role, RolePath: "/",
		Issuer:   "https://0b1c2d3e-0000-4000-8000-000000000000.tokens.sts.global.api.aws",
		Audience: "https://issuer.enforce.dev",
	}
}

func TestWebIdentityValidate(t *testing.T) {
	with := func(f func(*WebIdentity)) WebIdentity {
		w := webIdentity()
		f(&w)
		return w
	}
	tests := []struct {
		name       string
		in         WebIdentity
		wantFields []string // nil = valid
		wantErr    string
	}{
		{"valid", webIdentity(), nil, ""},
		{"role with a path", with(func(w *WebIdentity) { w.RolePath = "/service-role/" }), nil, ""},
		{"emulator issuer", with(func(w *WebIdentity) { w.Issuer = "http://127.0.0.1:4566/federation/x" }), nil, ""},

		{"no account", with(func(w *WebIdentity) { w.Account = "" }), []string{"Account"}, `AWS account ID is empty`},
		{"gov partition", with(func(w *WebIdentity) { w.Partition = "aws-us-gov" }), []string{"Partition"}, `partition "aws-us-gov": Chainguard's documentation covers outbound identity federation in the aws partition only`},
		{"no role", with(func(w *WebIdentity) { w.RoleName = "" }), []string{"RoleName"}, `IAM role name is empty`},
		{"path in the name", with(func(w *WebIdentity) { w.RoleName = "service-role/x" }), []string{"RoleName"}, `has the character "/"`},
		{"no path", with(func(w *WebIdentity) { w.RolePath = "" }), []string{"RolePath"}, `IAM role path is empty`},
		{"no issuer", with(func(w *WebIdentity) { w.Issuer = "" }), []string{"Issuer"}, `web identity issuer is empty`},
		{"http issuer", with(func(w *WebIdentity) { w.Issuer = "http://x.tokens.sts.global.api.aws" }), []string{"Issuer"}, `uses plain http`},
		{"no audience", with(func(w *WebIdentity) { w.Audience = "" }), []string{"Audience"}, `audience (the Chainguard issuer URL) is empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantValidation(t, tt.in.Validate(), tt.wantFields, tt.wantErr)
		})
	}
}

func TestClaimMatch(t *testing.T) {
	tests := []struct {
		name, path, wantSubject string
	}{
		{"root path", "/", "arn:aws:iam::111122223333:role/aws-auth"},
		{"nested path", "/service-role/team/", "arn:aws:iam::111122223333:role/service-role/team/aws-auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := webIdentity()
			w.RolePath = tt.path
			want := &iam.Identity_ClaimMatch{
				Iss: &iam.Identity_ClaimMatch_Issuer{Issuer: w.Issuer},
				Sub: &iam.Identity_ClaimMatch_Subject{Subject: tt.wantSubject},
				Aud: &iam.Identity_ClaimMatch_Audience{Audience: w.Audience},
			}
			if got := w.ClaimMatch(); !proto.Equal(got, want) {
				t.Errorf("ClaimMatch() = %v\nwant %v", got, want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	tests := []struct {
		name string
		in   Relationship
		want func(*iam.Identity) bool
	}{
		{"caller identity", exact(), func(id *iam.Identity) bool {
			return proto.Equal(id.GetAwsIdentity(), exact().AWSIdentity()) && id.GetClaimMatch() == nil
		}},
		{"web identity", webIdentity(), func(id *iam.Identity) bool {
			return proto.Equal(id.GetClaimMatch(), webIdentity().ClaimMatch()) && id.GetAwsIdentity() == nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The other kind first: Apply replaces the relationship.
			id := &iam.Identity{Name: "x"}
			if _, ok := tt.in.(AWS); ok {
				webIdentity().Apply(id)
			} else {
				exact().Apply(id)
			}
			tt.in.Apply(id)
			if !tt.want(id) {
				t.Errorf("after Apply the identity is %v", id)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	caller := AWS{Account: "111122223333", Partition: "aws", RoleName: "role-a", RoleID: "AROA1234567890ABCDEFG", Session: "fn"}
	pattern := caller
	pattern.Session, pattern.SessionPattern = "", "[0-9a-f]{32}"
	web := WebIdentity{Account: "111122223333", Partition: "aws", RoleName: "r", RolePath: "/", Issuer: "https://x.tokens.sts.global.api.aws", Audience: "https://issuer.enforce.dev"}
	for _, tt := range []struct {
		name string
		tr   Relationship
		want string
	}{
		{"exact session", caller, "arn:aws:sts::111122223333:assumed-role/role-a/fn (user ID AROA1234567890ABCDEFG:fn) of account 111122223333"},
		{"session pattern", pattern, `matching ^arn:aws:sts::111122223333:assumed-role/role-a/(?:[0-9a-f]{32})$ (user ID matching ^AROA1234567890ABCDEFG:(?:[0-9a-f]{32})$) of account 111122223333`},
		{"web identity", web, "web identity tokens with iss https://x.tokens.sts.global.api.aws, sub arn:aws:iam::111122223333:role/r and aud https://issuer.enforce.dev"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given an identity with the trust, when it is described
			id := &iam.Identity{}
			tt.tr.Apply(id)
			// then the words name exactly what it trusts
			if got := Describe(id); got != tt.want {
				t.Errorf("Describe = %q\nwant       %q", got, tt.want)
			}
		})
	}
	if got := Describe(&iam.Identity{}); !strings.Contains(got, "another kind") {
		t.Errorf("Describe of an identity without AWS trust = %q", got)
	}
}
