package validate

import (
	"errors"
	"regexp"
	"regexp/syntax"
	"slices"
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
	arnPat := func(p string) func() error { return func() error { return ARNPattern(p, acct, role) } }
	userPat := func(p string) func() error { return func() error { return UserIDPattern(p, false) } }
	assumed := func(v string) func() error {
		return func() error { _, err := AssumedRoleARN(v); return err }
	}
	sessPat := func(p string) func() error { return func() error { return SessionPattern(p) } }
	roleARN := func(v string) func() error {
		return func() error { _, err := RoleARN(v); return err }
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
		{"role arn path", roleARN("arn:aws:iam::111122223333:role/service-role/x/my-role"), ""},
		{"role arn is session", roleARN(goodARN), `is the ARN of a role session, not of the role: the role's ARN is arn:aws:iam::111122223333:role/ROLE`},
		{"role arn user", roleARN("arn:aws:iam::111122223333:user/bob"), `the resource "user/bob" does not start with "role/"`},
		{"role arn empty name", roleARN("arn:aws:iam::111122223333:role/path/"), `IAM role name is empty`},
		{"role arn bad path", roleARN("arn:aws:iam::111122223333:role//x"), `has an invalid role path "//"`},

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

		// ARN patterns
		{"arn pattern", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/.*$`), ""},
		{"arn pattern partitions", arnPat(`^arn:(aws|aws-cn|aws-us-gov):sts::111122223333:assumed-role/my-role/[\w+=,.@-]+$`), ""},
		{"arn pattern bounded session", arnPat(`^arn:(?:aws|aws-cn|aws-us-gov):sts::111122223333:assumed-role/my-role/[\w+=,.@-]{2,64}$`), ""},
		{"arn pattern too complex", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/(.?){1000}(.?){1000}$`), `is too complex (large repetition counts or many alternatives): trust patterns are short`},
		{"arn pattern one session", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/my-function$`), ""},
		{"arn pattern sessions", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/(?:fn-a|fn-b|i-[0-9a-f]+)$`), ""},
		{"arn pattern role or session", arnPat(`^arn:aws:(?:sts::111122223333:assumed-role/my-role/.+|iam::111122223333:role/my-role)$`), ""},
		{"arn pattern quoted role", func() error {
			return ARNPattern(`^arn:aws:sts::111122223333:assumed-role/svc\.app\+1/.*$`, acct, "svc.app+1")
		}, ""},
		{"arn pattern empty", arnPat(""), `ARN pattern is empty: expected an anchored regular expression, e.g. "^arn:aws:sts::111122223333:assumed-role/my-role/.*$"`},
		{"arn pattern no compile", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/(.*$`), `does not compile as a Go (RE2) regular expression: error parsing regexp: missing closing )`},
		{"arn pattern lookahead", arnPat(`^arn:aws:sts::111122223333:assumed-role/(?!x)my-role/.*$`), `does not compile as a Go (RE2) regular expression: error parsing regexp: invalid or unsupported Perl syntax`},
		{"arn pattern unanchored", arnPat(`arn:aws:sts::111122223333:assumed-role/my-role/.*`), `is not anchored at both ends, so it also matches values that merely contain a match: start it with "^" and end it with "$"`},
		{"arn pattern no end anchor", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/`), `is not anchored at both ends`},
		{"arn pattern top alternation", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/.*$|.*`), `a top-level "|" lets an alternative escape the anchors: group the alternatives inside them, as in "^(?:a|b)$"`},
		{"arn pattern multiline", arnPat(`(?m)^arn:aws:sts::111122223333:assumed-role/my-role/.*$`), `uses multi-line mode (?m), where ^ and $ match at every line break`},
		{"arn pattern no account", arnPat(`^arn:aws:sts::\d{12}:assumed-role/my-role/.*$`), `does not contain the account ID 111122223333 literally`},
		{"arn pattern no role", arnPat(`^arn:aws:sts::111122223333:assumed-role/.*/my-function$`), `does not contain the role name my-role written literally`},
		{"arn pattern unescaped dot", func() error {
			return ARNPattern(`^arn:aws:sts::111122223333:assumed-role/svc.app/.*$`, acct, "svc.app")
		}, `does not contain the role name svc.app written literally (regexp-quoted: "svc\\.app")`},
		{"arn pattern other account", arnPat(`^arn:aws:sts::(111122223333|\d{12}):assumed-role/my-role/.*$`), `admits account 000000000000, e.g. "arn:aws:sts::000000000000:assumed-role/my-role/x": a pattern must match only account 111122223333`},
		{"arn pattern any account", arnPat(`^arn:aws:sts::(111122223333|.*):assumed-role/my-role/.*$`), `admits another account, e.g. "arn:aws:sts::111122223334:assumed-role/my-role/x"`},
		{"arn pattern any role", arnPat(`^arn:aws:sts::111122223333:assumed-role/(my-role|.*)/fn$`), `admits role "x", e.g. "arn:aws:sts::111122223333:assumed-role/x/fn"`},
		{"arn pattern role prefix", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role.*$`), `admits another role, e.g. "arn:aws:sts::111122223333:assumed-role/my-role-admin/"`},
		{"arn pattern role suffix", arnPat(`^arn:aws:sts::111122223333:assumed-role/.*my-role/.*$`), `admits role "xmy-role", e.g. "arn:aws:sts::111122223333:assumed-role/xmy-role/x"`},
		{"arn pattern spans fields", arnPat(`^arn:aws:sts::111122223333.*my-role.*$`), `admits another role, e.g. "arn:aws:sts::111122223333:assumed-role/my-role-admin/x"`},
		{"arn pattern second role", arnPat(`^arn:aws:sts::111122223333:assumed-role/(?:my-role|other)/fn$`), `admits role "other", e.g. "arn:aws:sts::111122223333:assumed-role/other/fn": a pattern must match only role "my-role"`},
		{"arn pattern role path", arnPat(`^arn:aws:(?:sts::111122223333:assumed-role/my-role/.*|iam::111122223333:role/my-role(?:/.*)?)$`), `admits role "x", e.g. "arn:aws:iam::111122223333:role/my-role/x"`},
		{"arn pattern many stars", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/.*-.*-.*-.*-.*$`), ""},
		{"arn pattern branch after big branch", arnPat(`^arn:aws:sts::111122223333:assumed-role/(?:my-role/.*.*.*.*.*|evil/x)$`), `admits role "evil", e.g. "arn:aws:sts::111122223333:assumed-role/evil/x"`},
		{"arn pattern branch after many", arnPat(`^arn:aws:sts::111122223333:assumed-role/(?:my-role/` + strings.Repeat(`(?:a|b|c|d)`, 6) + `|evil/x)$`), `admits role "evil"`},
		{"arn pattern role arn only", arnPat(`^arn:aws:iam::111122223333:role/my-role$`), `matches no assumed-role ARN of role "my-role" in account 111122223333, so no caller could ever use this identity`},
		// ARN patterns: bypasses of sample-based checks, closed by the structural rule
		{"arn pattern optional prefix hides an account", arnPat(`^x?x?x?x?x?x?x?x?x?arn:aws:sts::(?:111122223333|444455556666):assumed-role/my-role/.*$`), `admits account 444455556666, e.g. "arn:aws:sts::444455556666:assumed-role/my-role/": a pattern must match only account 111122223333`},
		{"arn pattern optional prefix", arnPat(`^(?:evil)?arn:aws:sts::111122223333:assumed-role/my-role/.*$`), `matches "evilarn:aws:sts::111122223333:assumed-role/my-role/", which does not start with "arn:aws:sts::111122223333:assumed-role/my-role/": every value an ARN pattern matches must start with arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/ written literally`},
		{"arn pattern optional prefix repeated", arnPat(`^x{0,40}arn:aws:sts::111122223333:assumed-role/my-role/.*$`), `matches "xarn:aws:sts::111122223333:assumed-role/my-role/"`},
		{"arn pattern alternative hides an account", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|y?y?y?y?y?y?y?y?y?arn:aws:sts::444455556666:assumed-role/evil/.*)$`), `admits account 444455556666, e.g. "arn:aws:sts::444455556666:assumed-role/evil/"`},
		{"arn pattern alternative hides a role", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|z?z?z?z?z?z?z?z?arn:aws:sts::111122223333:assumed-role/evil/.*)$`), `admits role "evil", e.g. "arn:aws:sts::111122223333:assumed-role/evil/"`},
		{"arn pattern nested groups hide an account", arnPat(`^(?:(?:arn:aws:sts::111122223333:assumed-role/my-role/(.*))|(?:(?:w?)+(?:arn:aws:sts::(?:(?:4444)55556666)):assumed-role/(?:my-role)/.*))$`), `admits account 444455556666`},
		{"arn pattern class in the account", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|arn:aws:sts::11112222333[0-9]:assumed-role/my-role/fn-[a-z]{1,9}-[a-z]{1,9}-[a-z]{1,9})$`), `admits account 111122223330, e.g. "arn:aws:sts::111122223330:assumed-role/my-role/fn-x-x-x"`},
		{"arn pattern one-character class in the account", arnPat(`^arn:aws:sts::11112222333[3]:assumed-role/my-role/.*$`), `does not contain the account ID 111122223333 literally`},
		{"arn pattern fold case", arnPat(`(?i)^arn:aws:sts::111122223333:assumed-role/my-role/.*$`), `admits role "my-rolE", e.g. "arn:aws:sts::111122223333:assumed-role/my-rolE/": a pattern must match only role "my-role" (drop the (?i) flag: ARNs are matched case-sensitively)`},
		{"arn pattern fold case in the service", arnPat(`^arn:aws:(?i:sts)::111122223333:assumed-role/my-role/.*$`), `matches "arn:aws:stS::111122223333:assumed-role/my-role/", which does not start with "arn:aws:sts::111122223333:assumed-role/my-role/" (drop the (?i) flag: ARNs are matched case-sensitively): every value`},
		{"arn pattern fold case in the role", arnPat(`^arn:aws:sts::111122223333:assumed-role/(?i:my-role)/.*$`), `admits role "MY-ROLE"`},
		{"arn pattern fold case in the session", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/(?i:fn-[a-z]+)$`), ""},
		{"arn pattern quoted", arnPat(`^\Qarn:aws:sts::111122223333:assumed-role/my-role/\E.*$`), ""},
		{"arn pattern quoted without the slash", arnPat(`^\Qarn:aws:sts::111122223333:assumed-role/my-role\E.*$`), `admits another role, e.g. "arn:aws:sts::111122223333:assumed-role/my-role-admin/"`},
		{"arn pattern repeated prefix", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/)+$`), ""},
		{"arn pattern optional repeated prefix", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/)*.*$`), `admits another account`},
		{"arn pattern nested groups", arnPat(`^(?:(arn:(?:aws|aws-us-gov)):(?:sts)::(111122223333):(?:assumed-role/(my-role))/)(.*)$`), ""},
		{"arn pattern factored partitions", arnPat(`^arn:(?:aws|aws-cn|aws-us-gov):sts::111122223333:assumed-role/my-role/.*$`), ""},
		{"arn pattern unknown partition", arnPat(`^arn:(?:aws|aws-eu):sts::111122223333:assumed-role/my-role/.*$`), `matches "arn:aws-eu:sts::111122223333:assumed-role/my-role/", which does not start with`},
		{"arn pattern empty alternative", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|)$`), `matches "", which does not start with`},
		{"arn pattern optional role suffix", arnPat(`^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|arn:aws:sts::111122223333:assumed-role/my-role-?/x)$`), `admits role "my-role-", e.g. "arn:aws:sts::111122223333:assumed-role/my-role-/x"`},
		{"arn pattern word boundary", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role\b.*$`), `admits another role`},
		{"arn pattern role arn with a path", arnPat(`^arn:aws:(?:sts::111122223333:assumed-role/my-role/.*|iam::111122223333:role/a/my-role)$`), `matches "arn:aws:iam::111122223333:role/a/my-role", which does not start with`},
		{"arn pattern construct session pattern", arnPat(`^arn:aws:sts::111122223333:assumed-role/my-role/(?:[0-9a-f]{32}|i-[0-9a-f]{17})$`), ""},
		{"arn pattern bad account arg", func() error { return ARNPattern(`^x$`, "1", role) }, `AWS account ID "1" is not valid`},
		{"arn pattern bad role arg", func() error { return ARNPattern(`^x$`, acct, "") }, `IAM role name is empty`},

		// User ID patterns
		{"user id pattern pinned", userPat(`^AROA1234567890ABCDEFG:.*$`), ""},
		{"user id pattern pinned session", userPat(`^AROA1234567890ABCDEFG:my-function$`), ""},
		{"user id pattern pinned group", userPat(`^(AROA1234567890ABCDEFG):fn$`), ""},
		{"user id pattern pinned alternation", userPat(`^AROA1234567890ABCDEFG:(?:a|b)$`), ""},
		{"user id pattern unpinned opt-in", func() error { return UserIDPattern(`^AROA(.*):my-function$`, true) }, ""},
		{"user id pattern empty", userPat(""), `user ID pattern is empty: expected an anchored regular expression, e.g. "^AROA1234567890ABCDEFG:my-function$"`},
		{"user id pattern no compile", userPat(`^AROA1234567890ABCDEFG:[$`), `does not compile as a Go (RE2) regular expression`},
		{"user id pattern unanchored", userPat(`AROA1234567890ABCDEFG:.*`), `is not anchored at both ends`},
		{"user id pattern reference", userPat(`^AROA(.*):my-function$`), `user ID pattern "^AROA(.*):my-function$" does not pin a role unique ID (it matches "AROAZZZZZZZZZZZZZZZZZ:my-function", a session of another role): it trusts any role whose session name matches`},
		{"user id pattern opt-in named", userPat(`^AROA[A-Z0-9]{17}:fn$`), `or set AllowUnpinnedUserID to accept that risk`},
		{"user id pattern anything", userPat(`^.*$`), `does not pin a role unique ID`},
		{"user id pattern fold case", userPat(`(?i)^AROA1234567890ABCDEFG:.*$`), `drop the (?i) flag: the role ID must be matched case-sensitively`},
		{"user id pattern short id", userPat(`^AROA1234567890:.*$`), `does not pin a role unique ID`},
		{"user id pattern opt-in still anchored", func() error { return UserIDPattern(`AROA.*`, true) }, `is not anchored at both ends`},
		{"user id pattern no colon after the id", userPat(`^AROA1234567890ABCDEFGZ?.*$`), `user ID pattern "^AROA1234567890ABCDEFGZ?.*$" does not require ":" right after the role unique ID AROA1234567890ABCDEFG: it also matches "AROA1234567890ABCDEFG"; a role unique ID is exactly 21 characters and the session name follows a ":", so write it as "^AROA1234567890ABCDEFG:...$"`},
		{"user id pattern longer id", userPat(`^AROA1234567890ABCDEFG(?::.*|Z:.*)$`), `does not require ":" right after the role unique ID AROA1234567890ABCDEFG: it also matches "AROA1234567890ABCDEFGZ:"`},
		{"user id pattern optional prefix", userPat(`^x?AROA1234567890ABCDEFG:.*$`), `does not pin a role unique ID (it matches "xAROA1234567890ABCDEFG:")`},
		{"user id pattern two ids", userPat(`^(?:AROA1234567890ABCDEFG|AROA1234567890ABCDEFH):fn$`), `does not pin a role unique ID (it matches "AROA1234567890ABCDEFG:fn" and "AROA1234567890ABCDEFH:fn", sessions of two roles)`},
		{"user id pattern two distinct ids", userPat(`^(?:AROA1234567890ABCDEFG:a|AROA0000000000000000Z:b)$`), `admits the sessions of 2 roles (AROA0000000000000000Z, AROA1234567890ABCDEFG): pin exactly one role unique ID`},
		{"user id pattern class in the id", userPat(`^AROA1234567890ABCDE[A-Z]{2}:.*$`), `does not pin a role unique ID`},
		{"user id pattern quoted", userPat(`^\QAROA1234567890ABCDEFG:\E.+$`), ""},
		{"user id pattern nested groups", userPat(`^(?:(AROA1234567890)(?:ABCDEFG)(:))(.*)$`), ""},
		{"user id pattern construct session pattern", userPat(`^AROAEXAMPLE0EXAMPLE01:(?:[0-9a-f]{32}|i-[0-9a-f]{17})$`), ""},
		{"user id pattern no colon with opt-in", func() error { return UserIDPattern(`^AROA1234567890ABCDEFGZ?.*$`, true) }, ""},
		{"user id pattern escape alternation", userPat(`^AROA1234567890ABCDEFG:fn$|^.*$`), `does not pin a role unique ID`},
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

func TestRoleARNParts(t *testing.T) {
	tests := []struct {
		in   string
		want Role
	}{
		{"arn:aws:iam::111122223333:role/my-role", Role{"aws", acct, "/", role}},
		{"arn:aws-us-gov:iam::111122223333:role/service-role/a/my-role", Role{"aws-us-gov", acct, "/service-role/a/", role}},
	}
	for _, tt := range tests {
		got, err := RoleARN(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.in, got, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func TestARNPatternRole(t *testing.T) {
	tests := []struct {
		name     string
		pattern  string
		account  string
		wantRole string
		wantErr  string
	}{
		{"single role", `^arn:aws:sts::111122223333:assumed-role/my-role/.*$`, acct, "my-role", ""},
		{"quoted role", `^arn:aws:sts::111122223333:assumed-role/svc\.app/fn-[0-9]+$`, acct, "svc.app", ""},
		{"two roles", `^arn:aws:sts::111122223333:assumed-role/(?:a-role|b-role)/.*$`, acct, "a-role", `admits role "b-role"`},
		{"other account", `^arn:aws:sts::222233334444:assumed-role/my-role/.*$`, acct, "", `matches no assumed-role ARN of a single named role in account 111122223333`},
		{"alternative hides an account", `^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|y?y?y?y?y?y?y?y?y?arn:aws:sts::444455556666:assumed-role/evil/.*)$`, acct, "my-role", `admits account 444455556666`},
		{"optional role suffix", `^arn:aws:sts::111122223333:assumed-role/my-role(?:-admin)?/.*$`, acct, "my-role", `admits role "my-role-admin"`},
		{"fold case", `(?i)^arn:aws:sts::111122223333:assumed-role/my-role/.*$`, acct, "my-role", `(drop the (?i) flag: ARNs are matched case-sensitively)`},
		{"class in the role", `^arn:aws:sts::111122223333:assumed-role/my-rol[a-z]/.*$`, acct, "", `does not name a role literally: it admits role "my-rolx", e.g. "arn:aws:sts::111122223333:assumed-role/my-rolx/", and so any role`},
		{"role without its slash", `^arn:aws:sts::111122223333:assumed-role/my-role.*$`, acct, "", `does not name a role literally`},
		{"role arn or session", `^arn:aws:(?:sts::111122223333:assumed-role/my-role/.+|iam::111122223333:role/my-role)$`, acct, "my-role", ""},
		{"partitions", `^arn:(?:aws|aws-cn|aws-us-gov):sts::111122223333:assumed-role/svc\.app/.*$`, acct, "svc.app", ""},
		{"unanchored", `arn:aws:sts::111122223333:assumed-role/my-role/.*`, acct, "", `is not anchored at both ends`},
		{"bad account", `^x$`, "1", "", `AWS account ID "1" is not valid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ARNPatternRole(tt.pattern, tt.account)
			if got != tt.wantRole {
				t.Errorf("role = %q, want %q", got, tt.wantRole)
			}
			if (err != nil) != (tt.wantErr != "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestStructuralRule checks the proof alone, without the sample-based
// probes that run before it: it must reject every pattern that admits
// another account or role (including those the probes let through) and
// accept the valid ones.
func TestStructuralRule(t *testing.T) {
	tests := []struct {
		name, pattern string
		grammar       grammar
		wantNames     []string // principals the pattern admits
		wantProblem   bool
	}{
		{"arn", `^arn:aws:sts::111122223333:assumed-role/my-role/.*$`, arnGrammar{acct, role}, []string{role}, false},
		{"arn partitions", `^arn:(aws|aws-cn|aws-us-gov):sts::111122223333:assumed-role/my-role/[\w+=,.@-]+$`, arnGrammar{acct, role}, []string{role}, false},
		{"arn role arn", `^arn:aws:(?:sts::111122223333:assumed-role/my-role/.+|iam::111122223333:role/my-role)$`, arnGrammar{acct, role}, []string{role}, false},
		{"arn quoted", `^\Qarn:aws:sts::111122223333:assumed-role/my-role/\E(?i:.*)$`, arnGrammar{acct, role}, []string{role}, false},
		{"arn optional prefix", `^x?x?x?x?x?x?x?x?x?arn:aws:sts::(?:111122223333|444455556666):assumed-role/my-role/.*$`, arnGrammar{acct, role}, []string{role}, true},
		{"arn alternative", `^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|y?y?y?y?y?y?y?y?y?arn:aws:sts::444455556666:assumed-role/evil/.*)$`, arnGrammar{acct, role}, []string{role}, true},
		{"arn any account", `^arn:aws:sts::(111122223333|.*):assumed-role/my-role/.*$`, arnGrammar{acct, role}, []string{role}, true},
		{"arn role prefix", `^arn:aws:sts::111122223333:assumed-role/my-role.*$`, arnGrammar{acct, role}, nil, true},
		{"arn fold case", `(?i)^arn:aws:sts::111122223333:assumed-role/my-role/.*$`, arnGrammar{acct, role}, []string{role}, true},
		{"arn unanchored end", `^arn:aws:iam::111122223333:role/my-role`, arnGrammar{acct, role}, nil, true},
		{"arn unanchored start", `arn:aws:sts::111122223333:assumed-role/my-role/.*$`, arnGrammar{acct, role}, []string{role}, true},
		{"arn dead branch", `^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|x[^\x00-\x{10FFFF}])$`, arnGrammar{acct, role}, []string{role}, false},
		{"arn long branch", `^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|a{1000}a{1000}a{100})$`, arnGrammar{acct, role}, []string{role}, true},
		{"arn discover", `^arn:aws:sts::111122223333:assumed-role/(?:b-role|a-role)/.*$`, arnGrammar{account: acct}, []string{"a-role", "b-role"}, false},
		{"arn discover class", `^arn:aws:sts::111122223333:assumed-role/[a-z]-role/.*$`, arnGrammar{account: acct}, nil, true},
		{"user id", `^AROA1234567890ABCDEFG:.*$`, userIDGrammar{}, []string{roleID}, false},
		{"user id no colon", `^AROA1234567890ABCDEFGZ?.*$`, userIDGrammar{}, nil, true},
		{"user id two", `^(?:AROA1234567890ABCDEFG:a|AROA0000000000000000Z:b)$`, userIDGrammar{}, []string{"AROA0000000000000000Z", roleID}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileAnchored("pattern", tt.pattern, "")
			if err != nil { // the proof runs on any pattern; build it by hand
				tree, perr := syntax.Parse(tt.pattern, syntax.Perl)
				if perr != nil {
					t.Fatal(perr)
				}
				prog, perr := syntax.Compile(tree.Simplify())
				if perr != nil {
					t.Fatal(perr)
				}
				c = compiled{re: regexp.MustCompile(tt.pattern), tree: tree, prog: prog}
			}
			_, discover := tt.grammar.(arnGrammar)
			p := c.machine().prove(tt.grammar, !discover || tt.grammar.(arnGrammar).role != "")
			if !tt.wantProblem && !slices.Equal(p.names, tt.wantNames) {
				t.Errorf("names = %q, want %q", p.names, tt.wantNames)
			}
			if got := p.problem != nil; got != tt.wantProblem {
				t.Errorf("problem = %+v, want a problem: %v", p.problem, tt.wantProblem)
			}
			if pr := p.problem; pr != nil && pr.shown && !c.re.MatchString(pr.example) {
				t.Errorf("example %q of problem %+v does not match", pr.example, *pr)
			}
		})
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
