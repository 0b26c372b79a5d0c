package validate

import (
	"hash/fnv"
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"unicode"
)

// arnSeeds are patterns the ARN fuzz test starts from: valid ones, the usual
// mistakes and the bypasses the structural rule closes.
var arnSeeds = []string{
	`^arn:aws:sts::111122223333:assumed-role/my-role/.*$`,
	`^arn:(aws|aws-cn):sts::111122223333:assumed-role/my-role/[\w+=,.@-]+$`,
	`^arn:aws:sts::(111122223333|\d{12}):assumed-role/my-role/.*$`,
	`^arn:aws:sts::111122223333:assumed-role/(my-role|.*)/fn$`,
	`^arn:aws:sts::111122223333.*my-role.*$`,
	`^x?x?x?x?x?x?x?x?x?arn:aws:sts::(?:111122223333|444455556666):assumed-role/my-role/.*$`,
	`^(?:arn:aws:sts::111122223333:assumed-role/my-role/.*|y?y?y?y?y?y?y?y?y?arn:aws:sts::444455556666:assumed-role/evil/.*)$`,
	`(?i)^arn:aws:sts::111122223333:assumed-role/my-role/.*$`,
	`^\Qarn:aws:sts::111122223333:assumed-role/my-role/\E.*$`,
	`^(?:arn:aws:sts::111122223333:assumed-role/my-role/)+$`,
	`^arn:aws:(?:sts::111122223333:assumed-role/my-role/.+|iam::111122223333:role/my-role)$`,
	`^a$|.*`, `(?m)^x$`, `^(?:x{2,5}|y*)+$`, `[`, ``,
}

// userIDSeeds are the user ID fuzz test's starting patterns.
var userIDSeeds = []string{
	`^AROA1234567890ABCDEFG:.*$`, `^AROA(.*):fn$`, `(?i)^AROA1234567890ABCDEFG:.*$`,
	`^(AROA1234567890ABCDEFG|AROAZZZZZZZZZZZZZZZZZ):fn$`, `^.*$`, `AROA`, `(`,
	`^AROA1234567890ABCDEFGZ?.*$`, `^x?AROA1234567890ABCDEFG:.*$`, `^\QAROA1234567890ABCDEFG:\E.+$`,
}

// foreignARNs are ARNs of another account or role than acct / role.
var foreignARNs = []string{
	"arn:aws:sts::999999999999:assumed-role/my-role/x",
	"arn:aws:sts::444455556666:assumed-role/my-role/my-function",
	"arn:aws:sts::111122223334:assumed-role/my-role/my-function",
	"arn:aws:sts::111122223333:assumed-role/other-role/x",
	"arn:aws:sts::111122223333:assumed-role/my-role-admin/my-function",
	"arn:aws:sts::111122223333:assumed-role/xmy-role/x",
	"arn:aws:sts::444455556666:assumed-role/evil/x",
	"xarn:aws:sts::111122223333:assumed-role/my-role/x",
}

// FuzzARNPattern checks that ARNPattern and ARNPatternRole never panic and
// that an accepted pattern matches only values that start with the
// assumed-role ARN prefix of its account and role (or are exactly the
// role's IAM ARN): neither fixed foreign ARNs nor any of the strings
// generated from the pattern itself (at random and by the sample
// generator) may break that.
func FuzzARNPattern(f *testing.F) {
	for _, s := range arnSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		errRole := ARNPattern(pattern, acct, role)
		found, errAny := ARNPatternRole(pattern, acct)
		if errRole == nil {
			checkARNMatches(t, "ARNPattern", pattern, role)
		}
		if errAny == nil {
			if IAMRoleName(found) != nil {
				t.Fatalf("ARNPatternRole accepted %q with role %q, not a valid role name", pattern, found)
			}
			checkARNMatches(t, "ARNPatternRole", pattern, found)
		}
	})
}

// checkARNMatches fails t when pattern matches a value outside the ARNs of
// roleName in acct.
func checkARNMatches(t *testing.T, fn, pattern, roleName string) {
	t.Helper()
	re := regexp.MustCompile(pattern) // accepted patterns compile
	for _, s := range append(generated(t, pattern), foreignARNs...) {
		if re.MatchString(s) && !ownARN(s, roleName) {
			t.Fatalf("%s accepted %q for role %q in account %s, but it matches %q", fn, pattern, roleName, acct, s)
		}
	}
}

// ownARN reports whether s is an ARN of roleName in acct: it starts with an
// assumed-role ARN prefix or is the IAM role ARN.
func ownARN(s, roleName string) bool {
	for _, p := range partitions {
		if strings.HasPrefix(s, "arn:"+p+":sts::"+acct+":assumed-role/"+roleName+"/") || s == "arn:"+p+":iam::"+acct+":role/"+roleName {
			return true
		}
	}
	return false
}

// FuzzUserIDPattern checks that UserIDPattern never panics, that the
// opt-in only relaxes it, and that a pattern it accepts without the opt-in
// matches only values that start with one role unique ID and ":" (checked
// on sessions of other roles and on strings generated from the pattern).
func FuzzUserIDPattern(f *testing.F) {
	for _, s := range userIDSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		if UserIDPattern(pattern, true) != nil {
			if UserIDPattern(pattern, false) == nil {
				t.Fatalf("%q accepted without the opt-in but rejected with it", pattern)
			}
			return
		}
		if UserIDPattern(pattern, false) != nil {
			return
		}
		re := regexp.MustCompile(pattern)
		if re.MatchString("AROAZZZZZZZZZZZZZZZZZ:my-function") && re.MatchString("AROAYYYYYYYYYYYYYYYYY:my-function") {
			t.Fatalf("UserIDPattern accepted %q, which matches sessions of two roles", pattern)
		}
		id := ""
		for _, s := range generated(t, pattern) {
			if !re.MatchString(s) {
				continue
			}
			head, _, ok := strings.Cut(s, ":")
			if !ok || !roleIDRE.MatchString(head) || id != "" && head != id {
				t.Fatalf("UserIDPattern accepted %q, but it matches %q (role unique ID %q seen before)", pattern, s, id)
			}
			id = head
		}
	})
}

// generated returns strings built from pattern's syntax tree: random walks
// (every choice at random, seeded by the pattern) and the sample
// generator's strings.
func generated(t *testing.T, pattern string) []string {
	t.Helper()
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		t.Fatalf("accepted pattern %q does not parse: %v", pattern, err)
	}
	h := fnv.New64a()
	h.Write([]byte(pattern))
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	out := gen(tree.Simplify())
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
	if b.Len() > maxSampleLen {
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

// sessionSeeds are the session pattern fuzz test's starting patterns.
var sessionSeeds = []string{
	`[0-9a-f]{32}`, `.+`, `[^/]+`, `a\$b`, `a`, `x{65,}`, `\bi-[0-9a-f]{8,17}\b`, `\Bab`, `ab\B`,
	`(?i)eks-[a-z]+`, `[/:]+|ab`, `(?:a|b\b-)c`, `^x$`, `(`, ``,
}

// FuzzSessionPattern checks that SessionPattern never panics and that a
// pattern it refuses as matching no valid session name indeed matches none
// of the valid session names generated from it, embedded as the trust
// embeds it (after a "/", up to the end).
func FuzzSessionPattern(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		err := SessionPattern(pattern)
		if err == nil || !strings.Contains(err.Error(), "matches no valid role session name") {
			return
		}
		embedded := regexp.MustCompile(`^/(?:` + pattern + `)$`)
		for _, s := range generated(t, pattern) {
			if SessionName(s) == nil && embedded.MatchString("/"+s) {
				t.Fatalf("SessionPattern(%q) = %v, but it matches the valid session name %q", pattern, err, s)
			}
		}
	})
}
