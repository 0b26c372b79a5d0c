package validate

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// Trust patterns are Go regular expressions (RE2 syntax), which is what the
// Chainguard service evaluates. Besides compiling and being anchored, a
// pattern must not admit a principal other than the intended one. That is
// checked in two steps:
//
//  1. sample strings the pattern matches are generated from its syntax tree
//     (every branch of an alternation, zero and one repetition of a star,
//     ...); a sample that is an ARN of another account or role proves the
//     pattern too broad;
//  2. each sample naming the intended account and role is changed into
//     probes (another account, another role, the role name with a prefix or
//     a suffix, the role name as a path segment) and the pattern must match
//     none of them.
//
// This is a test, not a proof: it catches the usual mistakes (".*" or a
// character class in the account or role position, a top-level alternation,
// an unescaped or unterminated role name) and is backed by the structural
// rules (literal account and role name, anchoring).

// maxInst bounds the size of a trust pattern once compiled: real trust
// patterns need a few hundred instructions; huge ones (e.g. "(.?){1000}"
// nested) would make matching, here and in the service, slow.
const maxInst = 5000

// maxSampleLen bounds the length of a generated sample (AWS ARNs are at
// most 2048 characters).
const maxSampleLen = 2048

// maxSamples bounds the number of sample strings generated per pattern, so
// that a pattern with many alternations cannot make validation slow.
const maxSamples = 256

// compileAnchored compiles a trust pattern and checks that it is anchored at
// both ends. what names the pattern in messages, example is a valid one.
func compileAnchored(what, pattern, example string) (*regexp.Regexp, *syntax.Regexp, error) {
	if pattern == "" {
		return nil, nil, invalidf("%s is empty: expected an anchored regular expression, e.g. %q", what, example)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, nil, invalidf("%s %q does not compile as a Go (RE2) regular expression: %v; e.g. %q", what, pattern, err, example)
	}
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil { // Compile parsed it already; this only hands us the tree
		return nil, nil, invalidf("%s %q does not parse: %v", what, pattern, err)
	}
	if prog, err := syntax.Compile(tree.Simplify()); err != nil || len(prog.Inst) > maxInst {
		return nil, nil, invalidf("%s %q is too complex (large repetition counts or many alternatives): trust patterns are short, e.g. %q", what, pattern, example)
	}
	if usesLineAnchors(tree) {
		return nil, nil, invalidf("%s %q uses multi-line mode (?m), where ^ and $ match at every line break: remove the (?m) flag so that ^ and $ anchor the whole value, e.g. %q", what, pattern, example)
	}
	if !anchored(tree, syntax.OpBeginText) || !anchored(tree, syntax.OpEndText) {
		hint := `start it with "^" and end it with "$"`
		if tree.Op == syntax.OpAlternate {
			hint = `a top-level "|" lets an alternative escape the anchors: group the alternatives inside them, as in "^(?:a|b)$"`
		}
		return nil, nil, invalidf("%s %q is not anchored at both ends, so it also matches values that merely contain a match: %s, e.g. %q", what, pattern, hint, example)
	}
	return re, tree, nil
}

// anchored reports whether every match of re must start (op = OpBeginText)
// or end (op = OpEndText) at the edge of the value.
func anchored(re *syntax.Regexp, op syntax.Op) bool {
	switch re.Op {
	case op:
		return true
	case syntax.OpCapture:
		return anchored(re.Sub[0], op)
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if !anchored(s, op) {
				return false
			}
		}
		return true
	case syntax.OpConcat:
		subs := re.Sub
		for i := range subs {
			s := subs[i]
			if op == syntax.OpEndText {
				s = subs[len(subs)-1-i]
			}
			if anchored(s, op) {
				return true
			}
			if s.Op != syntax.OpEmptyMatch {
				return false
			}
		}
	}
	return false
}

// usesLineAnchors reports whether re holds a multi-line ^ or $.
func usesLineAnchors(re *syntax.Regexp) bool {
	if re.Op == syntax.OpBeginLine || re.Op == syntax.OpEndLine {
		return true
	}
	for _, s := range re.Sub {
		if usesLineAnchors(s) {
			return true
		}
	}
	return false
}

// ARNPattern checks an arn_pattern for an identity trusted by role roleName
// in account: it must compile, be anchored ^...$, contain the literal
// account ID and the regexp-quoted role name, and match no ARN of another
// account or another role (the session may vary).
func ARNPattern(pattern, account, roleName string) error {
	if err := AWSAccount(account); err != nil {
		return invalidf("ARN pattern %q: %v", pattern, err)
	}
	if err := IAMRoleName(roleName); err != nil {
		return invalidf("ARN pattern %q: %v", pattern, err)
	}
	example := arnPatternExample(account, roleName)
	const what = "ARN pattern"
	re, tree, err := compileAnchored(what, pattern, example)
	if err != nil {
		return err
	}
	if !strings.Contains(pattern, account) {
		return invalidf("%s %q does not contain the account ID %s literally: write the account as is (no \".*\", \"\\d\" or character class), e.g. %q", what, pattern, account, example)
	}
	if q := regexp.QuoteMeta(roleName); !strings.Contains(pattern, q) {
		return invalidf("%s %q does not contain the role name %s written literally (regexp-quoted: %q): e.g. %q", what, pattern, roleName, q, example)
	}
	var arns []sampleARN
	for _, s := range append(samples(tree, re), canonical(re, account, roleName)...) {
		if a, ok := parseSample(s); ok {
			arns = append(arns, a)
		}
	}
	// First the strings the pattern is known to match, then the probes.
	own := 0
	for _, a := range arns {
		switch {
		case a.account != account:
			return invalidf("%s %q admits account %s, e.g. %q: a pattern must match only account %s, e.g. %q", what, pattern, a.account, a.with(a.account, a.role), account, example)
		case a.role != roleName:
			return invalidf("%s %q admits role %q, e.g. %q: a pattern must match only role %q, e.g. %q", what, pattern, a.role, a.with(a.account, a.role), roleName, example)
		case a.assumed:
			own++
		}
	}
	for _, a := range arns {
		for _, p := range a.probes() {
			if re.MatchString(p.value) {
				return invalidf("%s %q admits %s, e.g. %q: a pattern must match only role %q in account %s (the session may vary), e.g. %q", what, pattern, p.what, p.value, roleName, account, example)
			}
		}
	}
	if own == 0 {
		return invalidf("%s %q matches no assumed-role ARN of role %q in account %s, so no caller could ever use this identity (AWS reports callers as arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION): e.g. %q", what, pattern, roleName, account, example)
	}
	return nil
}

// ARNPatternRole checks an arn_pattern like [ARNPattern] when the role name
// is not given separately: the role is the one named by the assumed-role
// ARNs the pattern matches. It returns that role name.
func ARNPatternRole(pattern, account string) (string, error) {
	if err := AWSAccount(account); err != nil {
		return "", invalidf("ARN pattern %q: %v", pattern, err)
	}
	example := arnPatternExample(account, exampleRole)
	re, tree, err := compileAnchored("ARN pattern", pattern, example)
	if err != nil {
		return "", err
	}
	var loose *sampleARN
	for _, s := range samples(tree, re) {
		a, ok := parseSample(s)
		if !ok || !a.assumed || a.account != account {
			continue
		}
		if strings.Contains(pattern, regexp.QuoteMeta(a.role)) {
			return a.role, ARNPattern(pattern, account, a.role)
		}
		if loose == nil {
			loose = &a
		}
	}
	if loose != nil {
		return "", invalidf("ARN pattern %q does not name a role literally: it admits role %q, e.g. %q, and so any role; write the role name (regexp-quoted) in the role position, e.g. %q", pattern, loose.role, loose.with(loose.account, loose.role), example)
	}
	return "", invalidf("ARN pattern %q matches no assumed-role ARN of a single named role in account %s (AWS reports callers as arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION; write the account and role name literally): e.g. %q", pattern, account, example)
}

// canonical returns the plain ARNs of role roleName in account that re
// matches: they catch patterns whose generated samples miss the ARN shape
// (e.g. ".*" spanning the ":assumed-role/" separator).
func canonical(re *regexp.Regexp, account, roleName string) []string {
	var out []string
	for _, p := range partitions {
		for _, s := range []string{"arn:" + p + ":iam::" + account + ":role/" + roleName,
			"arn:" + p + ":sts::" + account + ":assumed-role/" + roleName + "/x",
			"arn:" + p + ":sts::" + account + ":assumed-role/" + roleName + "/" + exampleSession} {
			if re.MatchString(s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func arnPatternExample(account, roleName string) string {
	return "^arn:aws:sts::" + account + ":assumed-role/" + regexp.QuoteMeta(roleName) + "/.*$"
}

// UserIDPattern checks a user_id_pattern: it must compile, be anchored ^...$
// and start with a literal role unique ID (AROA followed by 17 uppercase
// letters or digits), unless allowUnpinned opts in to trusting any role whose
// sessions match (AllowUnpinnedUserID).
func UserIDPattern(pattern string, allowUnpinned bool) error {
	const what = "user ID pattern"
	const example = "^" + exampleRoleID + ":" + exampleSession + "$"
	re, tree, err := compileAnchored(what, pattern, example)
	if err != nil {
		return err
	}
	prefix, _ := literalPrefix(tree)
	if len(prefix) >= 21 && roleIDRE.MatchString(prefix[:21]) {
		return nil
	}
	if allowUnpinned {
		return nil
	}
	admits := ""
	for _, s := range samples(tree, re) {
		_, rest, ok := strings.Cut(s, ":")
		if !ok {
			continue
		}
		if p := "AROAZZZZZZZZZZZZZZZZZ:" + rest; re.MatchString(p) {
			admits = fmt.Sprintf(" (it matches %q, a session of another role)", p)
			break
		}
	}
	if strings.Contains(pattern, "(?i") {
		admits += " (drop the (?i) flag: the role ID must be matched case-sensitively)"
	}
	return invalidf("%s %q does not pin a role unique ID%s: it trusts any role whose session name matches, including roles created later or re-created under the same name by anyone allowed to create roles in the account; start the pattern with the role's literal unique ID (AROA followed by 17 uppercase letters or digits, from %q), e.g. %q, or set AllowUnpinnedUserID to accept that risk", what, pattern, admits, exampleGetRoleID, example)
}

// literalPrefix returns the literal text every match of re starts with, and
// whether re matches exactly that text (up to zero-width assertions).
func literalPrefix(re *syntax.Regexp) (string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginText, syntax.OpEndText, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return "", true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return "", false
		}
		return string(re.Rune), true
	case syntax.OpCapture:
		return literalPrefix(re.Sub[0])
	case syntax.OpConcat:
		var b strings.Builder
		for _, s := range re.Sub {
			p, complete := literalPrefix(s)
			b.WriteString(p)
			if !complete {
				return b.String(), false
			}
		}
		return b.String(), true
	case syntax.OpAlternate:
		common, complete := literalPrefix(re.Sub[0])
		for _, s := range re.Sub[1:] {
			p, c := literalPrefix(s)
			if p != common || !c {
				complete = false
			}
			common = commonPrefix(common, p)
		}
		return common, complete
	}
	return "", false
}

func commonPrefix(a, b string) string {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return a[:i]
		}
	}
	return a[:n]
}

// samples returns strings re matches, generated from its syntax tree (at
// most maxSamples, each verified with re).
func samples(tree *syntax.Regexp, re *regexp.Regexp) []string {
	var out []string
	for _, s := range gen(tree) {
		if re.MatchString(s) {
			out = append(out, s)
		}
	}
	return out
}

// gen returns candidate strings for re: every alternative, zero and one
// repetition, one or a few representative characters per class; the full
// product of a concatenation when small, else a set covering every choice.
func gen(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpNoMatch:
		return nil
	case syntax.OpLiteral:
		return []string{string(re.Rune)}
	case syntax.OpCharClass:
		return classSamples(re.Rune)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return []string{"x", "/", ":"}
	case syntax.OpCapture:
		return gen(re.Sub[0])
	case syntax.OpStar, syntax.OpQuest:
		return capped(append(gen(re.Sub[0]), ""))
	case syntax.OpPlus:
		return gen(re.Sub[0])
	case syntax.OpRepeat:
		sub := gen(re.Sub[0])
		out := make([]string, 0, len(sub)+1)
		for _, s := range sub {
			if n := max(re.Min, 1); len(s)*n <= maxSampleLen {
				out = append(out, strings.Repeat(s, n))
			}
		}
		if re.Min == 0 {
			out = append(out, "")
		}
		return capped(out)
	case syntax.OpConcat:
		parts := make([][]string, len(re.Sub))
		size := 1
		for i, sub := range re.Sub {
			parts[i] = gen(sub)
			size = min(size*len(parts[i]), maxSamples+1)
		}
		if size <= maxSamples {
			return product(parts)
		}
		return cover(parts)
	case syntax.OpAlternate:
		// Round robin, so that every branch is sampled even when capped.
		subs := make([][]string, len(re.Sub))
		for i, sub := range re.Sub {
			subs[i] = gen(sub)
		}
		var out []string
		for k, added := 0, true; added; k++ {
			added = false
			for _, s := range subs {
				if k < len(s) {
					out, added = append(out, s[k]), true
				}
			}
		}
		return capped(out)
	}
	// Zero-width assertions and the empty match.
	return []string{""}
}

// product returns every concatenation of one string from each part (the
// caller checks there are at most maxSamples), skipping overlong ones.
func product(parts [][]string) []string {
	out := []string{""}
	for _, p := range parts {
		next := make([]string, 0, len(out)*len(p))
		for _, a := range out {
			for _, b := range p {
				if len(a)+len(b) <= maxSampleLen {
					next = append(next, a+b)
				}
			}
		}
		out = next
	}
	return out
}

// cover returns concatenations in which every string of every part appears
// at least once (all other parts at their first string): linear in size
// where the full product would be too large.
func cover(parts [][]string) []string {
	base := make([]string, len(parts))
	for i, p := range parts {
		if len(p) == 0 {
			return nil
		}
		base[i] = p[0]
	}
	out := []string{strings.Join(base, "")}
	for i, p := range parts {
		for _, alt := range p[1:] {
			v := slices.Clone(base)
			v[i] = alt
			if s := strings.Join(v, ""); len(s) <= maxSampleLen {
				out = append(out, s)
			}
		}
	}
	return capped(out)
}

func capped(s []string) []string {
	if len(s) > maxSamples {
		return s[:maxSamples]
	}
	return s
}

// classSamples picks representatives of a character class given as ranges:
// a letter or digit when the class has one, so that samples look like names
// and accounts, plus the ARN separators "/" and ":" when the class admits
// them, so that samples reach into the next ARN field.
func classSamples(ranges []rune) []string {
	in := func(c rune) bool {
		for i := 0; i+1 < len(ranges); i += 2 {
			if ranges[i] <= c && c <= ranges[i+1] {
				return true
			}
		}
		return false
	}
	var out []string
	for _, c := range "xa0X_-." {
		if in(c) {
			out = append(out, string(c))
			break
		}
	}
	if out == nil && len(ranges) > 0 {
		out = append(out, string(ranges[0]))
	}
	for _, c := range "/:" {
		if in(c) && out[0] != string(c) {
			out = append(out, string(c))
		}
	}
	return out
}

// sampleARN is a matched string read as an IAM role or assumed-role ARN.
// The part after the role name (session, or nothing) is kept as is.
type sampleARN struct {
	assumed                  bool   // assumed-role ARN (else IAM role ARN)
	head                     string // "arn:PARTITION:SERVICE::"
	account, mid, role, tail string // mid: ":assumed-role/" or ":role/PATH"; tail: "/SESSION" or ""
}

// parseSample reads s as an assumed-role or IAM role ARN with a valid
// account and role name; the session may be anything (patterns vary it).
func parseSample(s string) (sampleARN, bool) {
	f := strings.SplitN(s, ":", 6)
	if len(f) != 6 || f[0] != "arn" || !isPartition(f[1]) || f[3] != "" || AWSAccount(f[4]) != nil {
		return sampleARN{}, false
	}
	a := sampleARN{head: strings.Join(f[:4], ":") + ":", account: f[4]}
	switch {
	case f[2] == "sts" && strings.HasPrefix(f[5], "assumed-role/"):
		rest := strings.TrimPrefix(f[5], "assumed-role/")
		role, session, ok := strings.Cut(rest, "/")
		if !ok {
			return sampleARN{}, false
		}
		a.assumed, a.mid, a.role, a.tail = true, ":assumed-role/", role, "/"+session
	case f[2] == "iam" && strings.HasPrefix(f[5], "role/"):
		rest := strings.TrimPrefix(f[5], "role")
		i := strings.LastIndexByte(rest, '/')
		a.mid, a.role = ":role"+rest[:i+1], rest[i+1:]
	default:
		return sampleARN{}, false
	}
	if IAMRoleName(a.role) != nil {
		return sampleARN{}, false
	}
	return a, true
}

func (a sampleARN) with(account, role string) string {
	return a.head + account + a.mid + role + a.tail
}

type probe struct{ what, value string }

// probes returns ARNs that differ from a in account or role only.
func (a sampleARN) probes() []probe {
	acct := []byte(a.account)
	acct[11] = '0' + (acct[11]-'0'+1)%10
	others := []string{string(acct), "999999999999", "000000000000"}
	var ps []probe
	for _, o := range others {
		if o != a.account {
			ps = append(ps, probe{"another account", a.with(o, a.role)})
		}
	}
	for _, r := range []string{"other-role", a.role + "-admin", "x" + a.role, a.role + "x", a.role[:len(a.role)-1]} {
		if r != a.role && r != "" && len(r) <= 64 {
			ps = append(ps, probe{"another role", a.with(a.account, r)})
		}
	}
	if !a.assumed {
		// An IAM role ARN whose path ends with the intended role name.
		ps = append(ps, probe{"another role", a.head + a.account + a.mid + a.role + "/other-role"})
	}
	return ps
}
