package trust

import (
	"hash/fnv"
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"unicode"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// sessionSeeds are the session patterns the fuzz tests start from: valid
// ones, ones matching no session name, and attempts to escape the group the
// pattern is embedded in.
var sessionSeeds = []string{
	`[0-9a-f]{32}`, `.+`, `[^/]+`, `a\$b`, `a`, `x{65,}`, `\bi-[0-9a-f]{8,17}\b`, `\Bab`, `ab\B`,
	`(?i)eks-[a-z]+`, `[/:]+|ab`, `(?:a|b\b-)c`, `^x$`, `(`, ``,
	`x)|(.*`, `\Q.*`, `.*\E`, `a|.*`, `(?s).*`, `[\s\S]*`, `(?m)x$\n.*`, `.*)|^(?:.*`, `ab)$|^(x`,
}

// roleSeeds are role names, some with regexp metacharacters.
var roleSeeds = []string{"aws-auth", "ecs.task", "a+b=c,d@e_f", "x"}

// FuzzSessionPattern checks, for any role name and session pattern, that
// Validate never panics and that a trust it accepts is one role of one
// account: the built patterns compile, every ARN they match (of strings
// generated from them and from the session pattern, and of other
// principals') starts with arn:aws:sts::ACCOUNT:assumed-role/ROLE/, and every
// user ID with ROLEID:. A pattern refused as matching no valid session name
// indeed admits none of the valid names generated from it.
func FuzzSessionPattern(f *testing.F) {
	for i, s := range sessionSeeds {
		f.Add(roleSeeds[i%len(roleSeeds)], s)
	}
	f.Fuzz(func(t *testing.T, roleName, pattern string) {
		a := AWS{Account: acct, Partition: "aws", RoleName: roleName, RoleID: roleID, SessionPattern: pattern}
		err := a.Validate()
		if err != nil {
			if strings.Contains(err.Error(), "matches no valid role session name") {
				embedded := regexp.MustCompile(`^/(?:` + pattern + `)$`)
				for _, s := range generated(t, pattern) {
					if validate.SessionName(s) == nil && embedded.MatchString("/"+s) {
						t.Fatalf("Validate() = %v, but %q matches the valid session name %q", err, pattern, s)
					}
				}
			}
			return
		}
		id := a.AWSIdentity()
		arnRE, err := regexp.Compile(id.GetArnPattern())
		if err != nil {
			t.Fatalf("accepted %q (role %q), but the arn_pattern %q does not compile: %v", pattern, roleName, id.GetArnPattern(), err)
		}
		userRE, err := regexp.Compile(id.GetUserIdPattern())
		if err != nil {
			t.Fatalf("accepted %q (role %q), but the user_id_pattern %q does not compile: %v", pattern, roleName, id.GetUserIdPattern(), err)
		}
		arnPrefix := "arn:aws:sts::" + acct + ":assumed-role/" + roleName + "/"
		userPrefix := roleID + ":"
		sessions := append(generated(t, pattern), "", "x", "/", ":")
		var arns, userIDs []string
		for _, s := range sessions {
			arns = append(arns, arnPrefix+s, "arn:aws:sts::999999999999:assumed-role/"+roleName+"/"+s,
				"arn:aws:sts::"+acct+":assumed-role/"+roleName+"x/"+s, "arn:aws:sts::"+acct+":assumed-role/"+s, "x"+arnPrefix+s, s)
			userIDs = append(userIDs, userPrefix+s, "AROA9999999999ABCDEFG:"+s, "x"+userPrefix+s, s)
		}
		arns = append(arns, generated(t, id.GetArnPattern())...)
		userIDs = append(userIDs, generated(t, id.GetUserIdPattern())...)
		for _, v := range arns {
			if arnRE.MatchString(v) && !strings.HasPrefix(v, arnPrefix) {
				t.Fatalf("session pattern %q (role %q): arn_pattern %q matches %q, outside %s", pattern, roleName, arnRE, v, arnPrefix)
			}
		}
		for _, v := range userIDs {
			if userRE.MatchString(v) && !strings.HasPrefix(v, userPrefix) {
				t.Fatalf("session pattern %q: user_id_pattern %q matches %q, outside %s", pattern, userRE, v, userPrefix)
			}
		}
	})
}

// FuzzSession checks that an accepted exact session gives exactly the ARN
// and user ID of that session of the role: one principal.
func FuzzSession(f *testing.F) {
	for i, s := range []string{"my-function", "a", "a/b", "x:y", "fn\n", "..", strings.Repeat("s", 65)} {
		f.Add(roleSeeds[i%len(roleSeeds)], s)
	}
	f.Fuzz(func(t *testing.T, roleName, session string) {
		a := AWS{Account: acct, Partition: "aws", RoleName: roleName, RoleID: roleID, Session: session}
		if a.Validate() != nil {
			return
		}
		id := a.AWSIdentity()
		arn, err := validate.AssumedRoleARN(id.GetArn())
		if err != nil || arn != (validate.AssumedRole{Partition: "aws", Account: acct, Role: roleName, Session: session}) {
			t.Fatalf("session %q of role %q: arn %q parses as %+v (%v)", session, roleName, id.GetArn(), arn, err)
		}
		if id.GetUserId() != roleID+":"+session || validate.UserID(id.GetUserId()) != nil {
			t.Fatalf("session %q: user_id %q, want %s:%s", session, id.GetUserId(), roleID, session)
		}
	})
}

// generated returns strings built from pattern's syntax tree by random
// walks (every choice at random, seeded by the pattern).
func generated(t *testing.T, pattern string) []string {
	t.Helper()
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		t.Fatalf("accepted pattern %q does not parse: %v", pattern, err)
	}
	h := fnv.New64a()
	h.Write([]byte(pattern))
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	var out []string
	for range 300 {
		var b strings.Builder
		randomMatch(&b, tree, rng)
		out = append(out, b.String())
	}
	return out
}

// randomMatch appends to b a random string re would match (up to
// assertions, which are ignored: the caller keeps only matched strings).
func randomMatch(b *strings.Builder, re *syntax.Regexp, rng *rand.Rand) {
	if b.Len() > 2048 { // longer than any ARN
		return
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && rng.IntN(2) == 0 {
				r = unicode.SimpleFold(r)
			}
			b.WriteRune(r)
		}
	case syntax.OpCharClass:
		if len(re.Rune) > 0 {
			i := 2 * rng.IntN(len(re.Rune)/2)
			b.WriteRune(randomRune(re.Rune[i], re.Rune[i+1], rng))
		}
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteRune(randomRune(0, unicode.MaxRune, rng))
	case syntax.OpCapture:
		randomMatch(b, re.Sub[0], rng)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := re.Min, re.Max
		switch re.Op {
		case syntax.OpStar:
			lo, hi = 0, 3
		case syntax.OpPlus:
			lo, hi = 1, 3
		case syntax.OpQuest:
			lo, hi = 0, 1
		}
		if hi < 0 {
			hi = lo + 3
		}
		for range lo + rng.IntN(hi-lo+1) {
			randomMatch(b, re.Sub[0], rng)
		}
	case syntax.OpConcat:
		for _, s := range re.Sub {
			randomMatch(b, s, rng)
		}
	case syntax.OpAlternate:
		randomMatch(b, re.Sub[rng.IntN(len(re.Sub))], rng)
	}
}

// randomRune returns a rune of [lo, hi], half of the time one of the
// characters that matter in ARNs and user IDs when the range has one.
func randomRune(lo, hi rune, rng *rand.Rand) rune {
	if rng.IntN(2) == 0 {
		const special = "x0A1:/-.a9Z"
		r := rune(special[rng.IntN(len(special))])
		if lo <= r && r <= hi {
			return r
		}
	}
	if hi-lo > 256 && rng.IntN(4) != 0 {
		hi = min(hi, max(lo, 0x7f)) // mostly ASCII
	}
	return lo + rng.Int32N(hi-lo+1)
}
