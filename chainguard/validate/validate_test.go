package validate

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator"
)

const (
	acct    = "111122223333"
	role    = "my-role"
	roleID  = "AROA1234567890ABCDEFG"
	goodARN = "arn:aws:sts::111122223333:assumed-role/my-role/my-function"
)

func TestValidators(t *testing.T) {
	assumed := func(v string) func() error {
		return func() error { _, err := AssumedRoleARN(v); return err }
	}
	sessPat := func(p string) func() error { return func() error { return SessionPattern(p) } }
	roleARN := func(v string) func() error {
		return func() error { _, err := IAMRoleARN(v); return err }
	}
	tests := []struct {
		name    string
		check   func() error
		wantErr string // substring of the message; "" = valid
	}{
		// UIDP
		{"uidp root", func() error { return UIDP("group", "0123456789abcdef0123456789abcdef01234567") }, ""},
		{"uidp child", func() error { return UIDP("group", "0123456789abcdef0123456789abcdef01234567/89abcdef01234567") }, ""},
		{"uidp empty", func() error { return UIDP("group", "") }, `group is empty: expected 40 lowercase hex characters`},
		{"uidp short", func() error { return UIDP("parent group", "abc") }, `parent group "abc" is not a Chainguard UIDP: expected 40 lowercase hex characters, optionally followed by "/" and 16`},
		{"uidp upper", func() error { return UIDP("group", "0123456789ABCDEF0123456789abcdef01234567") }, `it has uppercase letters; UIDPs are lowercase: "0123456789abcdef0123456789abcdef01234567"`},
		{"uidp trailing slash", func() error { return UIDP("group", "0123456789abcdef0123456789abcdef01234567/") }, `remove the trailing "/"`},
		{"uidp space", func() error { return UIDP("group", " 0123456789abcdef0123456789abcdef01234567") }, `has leading or trailing white space`},
		{"uidp bad child", func() error { return UIDP("group", "0123456789abcdef0123456789abcdef01234567/89ab") }, `is not a Chainguard UIDP`},

		// IAM role path
		{"path root", func() error { return IAMRolePath("/") }, ""},
		{"path nested", func() error { return IAMRolePath("/service-role/team/") }, ""},
		{"path empty", func() error { return IAMRolePath("") }, `IAM role path is empty: expected "/"`},
		{"path without trailing slash", func() error { return IAMRolePath("/service-role") }, `IAM role path "/service-role" is not valid`},
		{"path relative", func() error { return IAMRolePath("service-role/") }, `is not valid`},
		{"path with space", func() error { return IAMRolePath("/a b/") }, `is not valid`},
		{"path too long", func() error { return IAMRolePath("/" + strings.Repeat("a", 511) + "/") }, `is 513 characters long`},

		// Federation issuer
		{"issuer aws", func() error {
			return FederationIssuer("https://0b1c2d3e-0000-4000-8000-000000000000.tokens.sts.global.api.aws")
		}, ""},
		{"issuer emulator", func() error { return FederationIssuer("http://127.0.0.1:4566/federation/0b1c2d3e") }, ""},
		{"issuer empty", func() error { return FederationIssuer("") }, `web identity issuer is empty: expected the issuer URL of the account's outbound identity federation`},
		{"issuer plain http", func() error { return FederationIssuer("http://example.com") }, `uses plain http: Chainguard discovers issuers over https only`},
		{"issuer trailing slash", func() error { return FederationIssuer("https://x.tokens.sts.global.api.aws/") }, `ends with "/": remove it`},
		{"issuer query", func() error { return FederationIssuer("https://x.tokens.sts.global.api.aws?a=b") }, `without query or fragment`},
		{"issuer host only", func() error { return FederationIssuer("x.tokens.sts.global.api.aws") }, `is not an absolute URL`},
		{"issuer user info", func() error { return FederationIssuer("https://user:secret@x.tokens.sts.global.api.aws") }, `must not hold a user name or password`},

		// AWS account
		{"account", func() error { return AWSAccount(acct) }, ""},
		{"account empty", func() error { return AWSAccount("") }, `AWS account ID is empty: expected exactly 12 digits, e.g. "111122223333"`},
		{"account short", func() error { return AWSAccount("12345") }, `AWS account ID "12345" is not valid: expected exactly 12 digits, e.g. "111122223333" (5 characters given)`},
		{"account dashes", func() error { return AWSAccount("1111-2222-3333") }, `write it without dashes: "111122223333"`},
		{"account letters", func() error { return AWSAccount("11112222333a") }, `is not valid: expected exactly 12 digits`},

		// Names and descriptions
		{"name", func() error { return Name("group name", "example-group") }, ""},
		{"name empty", func() error { return Name("group name", "") }, `group name is empty: use lowercase letters, digits, spaces, ".", "_" and "-", e.g. "example-group"`},
		{"name upper", func() error { return Name("identity name", "AWS-Auth") }, `identity name "AWS-Auth" is not valid: Chainguard names are lowercase, e.g. "aws-auth"`},
		{"name slash", func() error { return Name("group name", "a/b") }, `group name "a/b" is not valid: use lowercase letters`},
		{"name of 3 characters", func() error { return Name("group name", "abc") }, ""},
		{"name of 63 characters", func() error { return Name("group name", strings.Repeat("n", 63)) }, ""},
		{"name of 2 characters", func() error { return Name("group name", "ab") }, `group name "ab" is too short: Chainguard names are 3 to 63 characters, e.g. "example-group"`},
		{"name of 1 character", func() error { return Name("identity name", "x") }, `identity name "x" is too short: Chainguard names are 3 to 63 characters`},
		{"name of 64 characters", func() error { return Name("identity name", strings.Repeat("n", 64)) }, `is 64 characters long: Chainguard names are 3 to 63 characters`},
		{"description", func() error { return Description("The aws-auth identity.") }, ""},
		{"description empty", func() error { return Description("") }, ""},
		{"description newline", func() error { return Description("a\nb") }, `description "a\nb" is not valid: it may hold letters, digits, punctuation and plain spaces only (no tabs or line breaks)`},
		{"description long", func() error { return Description(strings.Repeat("a", 513)) }, `description is 513 characters long: at most 512 are allowed`},

		// Chainguard role names
		{"role name", func() error { return RoleName("registry.pull") }, ""},
		{"role name empty", func() error { return RoleName(" ") }, `role name is empty: expected the name of a Chainguard role, e.g. "viewer"`},
		{"role name comma", func() error { return RoleName("viewer,owner") }, `role name "viewer,owner" is not valid: it holds a comma; give each role separately`},
		{"role name upper", func() error { return RoleName("Viewer") }, `role name "Viewer" is not valid: expected the name of a Chainguard role`},

		// IAM role and session names
		{"iam role name", func() error { return IAMRoleName("aws-auth+x=y,z.w@v_u") }, ""},
		{"iam role name empty", func() error { return IAMRoleName("") }, `IAM role name is empty: expected 1 to 64 characters from letters, digits and "+=,.@_-", e.g. "my-role"`},
		{"iam role name long", func() error { return IAMRoleName(strings.Repeat("r", 65)) }, `is 65 characters long: expected 1 to 64 characters`},
		{"iam role name slash", func() error { return IAMRoleName("path/role") }, `IAM role name "path/role" has the character "/", which is not allowed`},
		{"session name", func() error { return SessionName("my-function") }, ""},
		{"session name short", func() error { return SessionName("f") }, `role session name "f" is too short: expected 2 to 64 characters`},
		{"session name colon", func() error { return SessionName("a:b") }, `has the character ":", which is not allowed`},

		// Session patterns (the session part of a trust, anchored by the caller)
		{"session pattern ecs task", sessPat(`[0-9a-f]{32}`), ""},
		{"session pattern any", sessPat(`.+`), ""},
		{"session pattern negated class", sessPat(`[^/]+`), ""},
		{"session pattern literal dollar, optional", sessPat(`[0-9a-f]{32}\$?`), ""},
		{"session pattern word boundaries", sessPat(`\bi-[0-9a-f]{8,17}\b`), ""},
		{"session pattern case-insensitive", sessPat(`(?i)EKS-[A-Z]+`), ""},
		{"session pattern exactly 64", sessPat(`x{64}`), ""},
		{"session pattern empty", sessPat(``), "the session pattern is empty: give a regular expression for the session name only"},
		{"session pattern anchored", sessPat(`^task$`), `the session pattern "^task$" has an anchor: leave out ^ and $`},
		{"session pattern multi-line anchor", sessPat(`(?m)^x`), `the session pattern "(?m)^x" has an anchor`},
		{"session pattern \\A \\z", sessPat(`\Ax\z`), `has an anchor`},
		{"session pattern escaping its group", sessPat(`x)|(.*`), `the session pattern "x)|(.*" does not compile`},
		{"session pattern too complex", sessPat(`(.?){1000}(.?){1000}`), `is too complex`},
		{"session pattern one character", sessPat(`a`), `the session pattern "a" matches no valid role session name (AWS session names are 2 to 64 characters from letters, digits and "+=,.@_-"), so no session could ever assume the identity`},
		{"session pattern too long", sessPat(`x{65,}`), `matches no valid role session name`},
		{"session pattern only a literal dollar", sessPat(`a\$b`), `matches no valid role session name`},
		{"session pattern slashes", sessPat(`[/:]+`), `matches no valid role session name`},
		{"session pattern space", sessPat(`my task`), `matches no valid role session name`},
		{"session pattern not a word boundary at its start", sessPat(`\Bab`), `matches no valid role session name`},
		{"session pattern not a word boundary at its end", sessPat(`ab\B`), `matches no valid role session name`},
		{"session pattern no match at all", sessPat(`[^\x00-\x{10FFFF}]`), `matches no valid role session name`},

		// Assumed-role ARNs
		{"assumed arn", assumed(goodARN), ""},
		{"assumed arn gov", assumed("arn:aws-us-gov:sts::111122223333:assumed-role/r/s1"), ""},
		{"assumed arn cn", assumed("arn:aws-cn:sts::111122223333:assumed-role/r/s1"), ""},
		{"assumed arn empty", assumed(""), `assumed-role ARN is empty: expected e.g. "arn:aws:sts::111122223333:assumed-role/my-role/my-function"`},
		{"assumed arn not arn", assumed("my-role"), `assumed-role ARN "my-role" is not an ARN: expected the form "arn:aws:sts::111122223333:assumed-role/my-role/my-function"`},
		{"assumed arn partition", assumed("arn:aws-eu:sts::111122223333:assumed-role/r/s1"), `names partition "aws-eu": expected one of aws, aws-cn, aws-us-gov`},
		{"assumed arn region", assumed("arn:aws:sts:us-east-1:111122223333:assumed-role/r/s1"), `names region "us-east-1": IAM and STS ARNs have no region`},
		{"assumed arn account", assumed("arn:aws:sts::1111:assumed-role/r/s1"), `AWS account ID "1111" is not valid`},
		{"assumed arn is role arn", assumed("arn:aws:iam::111122223333:role/my-role"), `is the ARN of the IAM role itself, but AWS reports a caller by its session ARN arn:aws:sts::111122223333:assumed-role/ROLE/SESSION`},
		{"assumed arn service", assumed("arn:aws:iam::111122223333:user/bob"), `names service "iam": assumed-role ARNs belong to "sts"`},
		{"assumed arn resource", assumed("arn:aws:sts::111122223333:federated-user/bob"), `the resource "federated-user/bob" does not start with "assumed-role/"`},
		{"assumed arn no session", assumed("arn:aws:sts::111122223333:assumed-role/my-role"), `has no session name: expected "assumed-role/ROLE/SESSION"`},
		{"assumed arn bad session", assumed("arn:aws:sts::111122223333:assumed-role/my-role/a/b"), `role session name "a/b" has the character "/"`},
		{"assumed arn bad role", assumed("arn:aws:sts::111122223333:assumed-role/my role/fn"), `IAM role name "my role" has the character " "`},

		// IAM role ARNs
		{"role arn", roleARN("arn:aws:iam::111122223333:role/my-role"), ""},
		{"role arn with path", roleARN("arn:aws:iam::111122223333:role/service-role/team/my-role"), ""},
		{"role arn gov", roleARN("arn:aws-us-gov:iam::111122223333:role/r"), ""},
		{"role arn empty", roleARN(""), `IAM role ARN is empty: expected e.g. "arn:aws:iam::111122223333:role/service-role/my-role"`},
		{"role arn name only", roleARN("my-role"), `IAM role ARN "my-role" is not an ARN`},
		{"role arn region", roleARN("arn:aws:iam:us-east-1:111122223333:role/r"), `names region "us-east-1"`},
		{"role arn account", roleARN("arn:aws:iam::1111:role/r"), `AWS account ID "1111" is not valid`},
		{"role arn is session arn", roleARN(goodARN), `is the ARN of a session of the role (assumed-role), not of the role: expected arn:aws:iam::111122223333:role/PATH/ROLE`},
		{"role arn service", roleARN("arn:aws:lambda::111122223333:role/r"), `names service "lambda": role ARNs belong to "iam"`},
		{"role arn user", roleARN("arn:aws:iam::111122223333:user/bob"), `the resource "user/bob" does not start with "role/"`},
		{"role arn no name", roleARN("arn:aws:iam::111122223333:role/service-role/"), `IAM role name is empty`},
		{"role arn bad path", roleARN("arn:aws:iam::111122223333:role/a b/r"), `IAM role path "/a b/" is not valid`},
		{"role arn bad name", roleARN("arn:aws:iam::111122223333:role/r:x"), `IAM role name "r:x" has the character ":"`},

		// Role unique IDs
		{"role id", func() error { return RoleID(roleID) }, ""},
		{"role id empty", func() error { return RoleID("") }, `role unique ID is empty: expected AROA followed by 17 uppercase letters or digits (from "aws iam get-role --role-name ROLE --query Role.RoleId"), e.g. "AROA1234567890ABCDEFG"`},
		{"role id short", func() error { return RoleID("AROA123") }, `role unique ID "AROA123" is not valid: expected AROA followed by 17`},
		{"role id lowercase", func() error { return RoleID("aroa1234567890abcdefg") }, `is not valid`},
		{"role id iam user", func() error { return RoleID("AIDA1234567890ABCDEFG") }, `is the unique ID of an IAM user (AIDA...): only IAM roles (AROA...) are supported`},

		// User IDs
		{"user id", func() error { return UserID(roleID + ":my-function") }, ""},
		{"user id empty", func() error { return UserID("") }, `user ID is empty: expected the role's unique ID (AROA followed by 17 uppercase letters or digits`},
		{"user id no session", func() error { return UserID(roleID) }, `user ID "AROA1234567890ABCDEFG" has no session name: append ":" and the session name (for a Lambda function, its name), e.g. "AROA1234567890ABCDEFG:my-function"`},
		{"user id short id", func() error { return UserID("AROA123:fn") }, `user ID "AROA123:fn" does not start with a role unique ID: "AROA123" is not AROA followed by 17 uppercase letters or digits`},
		{"user id iam user", func() error { return UserID("AIDA1234567890ABCDEFG:fn") }, `starts with the unique ID of an IAM user (AIDA...): only IAM roles (AROA...) are supported`},
		{"user id bad session", func() error { return UserID(roleID + ":f") }, `role session name "f" is too short`},

		// Service URLs
		{"url https", func() error { return ServiceURL("issuer URL", "https://issuer.enforce.dev") }, ""},
		{"url local http", func() error { return ServiceURL("API URL", "http://127.0.0.1:41234") }, ""},
		{"url localhost", func() error { return ServiceURL("API URL", "http://localhost:8080") }, ""},
		{"url empty", func() error { return ServiceURL("issuer URL", "") }, `issuer URL is empty: e.g. "https://issuer.enforce.dev"`},
		{"url remote http", func() error { return ServiceURL("issuer URL", "http://issuer.enforce.dev") }, `issuer URL "http://issuer.enforce.dev" uses plain http: use https (plain http is accepted only for 127.0.0.1 or localhost`},
		{"url no scheme", func() error { return ServiceURL("API URL", "127.0.0.1:8080") }, `API URL "127.0.0.1:8080"`},
		{"url bare host", func() error { return ServiceURL("API URL", "console-api.enforce.dev") }, `is not an absolute URL: it needs a scheme and a host`},
		{"url trailing slash", func() error { return ServiceURL("issuer URL", "https://issuer.enforce.dev/") }, `ends with "/": remove it, Chainguard compares the issuer URL exactly`},
		{"url path", func() error { return ServiceURL("API URL", "https://x.dev/api?q=1") }, `must be only a scheme and a host (with an optional port), without path, query or fragment`},
		{"url userinfo", func() error { return ServiceURL("API URL", "https://user:s3cret@x.dev") }, `must not hold a user name or password`},
		{"url grpc scheme", func() error { return ServiceURL("API URL", "grpc://x.dev") }, `has scheme "grpc": use https`},
	}
	bad := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got nil", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q\ndoes not contain %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not match ErrInvalid", err)
			}
			// Messages start lowercase, or with an acronym such as ARN or AWS.
			if first, _, _ := strings.Cut(err.Error(), " "); strings.ToLower(first) != first && strings.ToUpper(first) != first {
				t.Errorf("message starts with a capital letter: %q", err)
			}
		})
		if tt.wantErr != "" {
			bad++
		}
	}
	if bad < 30 {
		t.Errorf("only %d bad inputs in the table, want at least 30", bad)
	}
}

func TestIAMRoleARNParts(t *testing.T) {
	for _, tt := range []struct {
		arn  string
		want Role
	}{
		{"arn:aws:iam::111122223333:role/my-role", Role{Partition: "aws", Account: acct, Path: "/", Name: "my-role"}},
		{"arn:aws-cn:iam::111122223333:role/service-role/team/r", Role{Partition: "aws-cn", Account: acct, Path: "/service-role/team/", Name: "r"}},
	} {
		got, err := IAMRoleARN(tt.arn)
		if err != nil || got != tt.want || got.String() != tt.arn {
			t.Errorf("IAMRoleARN(%q) = %+v (%s), %v; want %+v", tt.arn, got, got, err, tt.want)
		}
	}
}

func TestAssumedRoleARNParts(t *testing.T) {
	got, err := AssumedRoleARN("arn:aws-cn:sts::111122223333:assumed-role/my-role/my-function")
	if err != nil {
		t.Fatal(err)
	}
	want := AssumedRole{Partition: "aws-cn", Account: acct, Role: role, Session: "my-function"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s := got.String(); s != "arn:aws-cn:sts::111122223333:assumed-role/my-role/my-function" {
		t.Errorf("String() = %q", s)
	}
}

// TestErrInvalidShared checks that errors of this package and of the locator
// subpackage match both packages' ErrInvalid, so callers may use either.
func TestErrInvalidShared(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"validate.AWSAccount", AWSAccount("12")},
		{"validate.UIDP", UIDP("group", "abc")},
		{"locator.ServiceURL", locator.ServiceURL("API URL", "ftp://x.dev")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("want an error, got nil")
			}
			if !errors.Is(tt.err, ErrInvalid) || !errors.Is(tt.err, locator.ErrInvalid) {
				t.Errorf("error %q does not match both validate.ErrInvalid and locator.ErrInvalid", tt.err)
			}
		})
	}
}

func TestSessionAlphabetIsTheSessionNameCharacters(t *testing.T) {
	// given the characters a session name may hold, as SessionName checks them
	one := regexp.MustCompile(`^` + iamNameChars + `$`)

	// then the alphabet SessionPattern explores holds exactly those (all ASCII)
	for r := rune(0); r < 256; r++ {
		if in, want := strings.ContainsRune(sessionAlphabet, r), one.MatchString(string(r)); in != want {
			t.Errorf("%q: in sessionAlphabet = %v, a session name character = %v", r, in, want)
		}
	}
}
