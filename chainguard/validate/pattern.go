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
// pattern must not admit a principal other than the intended one. What
// guarantees that is a structural rule, proved on the pattern's program (see
// prefix.go): every value an ARN pattern matches starts with the literal
// prefix arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/ (or is exactly the
// IAM role ARN arn:PARTITION:iam::ACCOUNT:role/ROLE), and every value a
// pinned user ID pattern matches starts with ROLEID: for one role unique ID.
//
// Before the proof, sample strings are generated from the syntax tree and
// turned into probes (another account, another role, the role name with a
// prefix or a suffix): they catch the usual mistakes early and name them in
// the message ("admits account ..."). They are a test, not a proof; the
// proof has the last word.

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

// compiled is a trust pattern in the three forms the checks use.
type compiled struct {
	re   *regexp.Regexp
	tree *syntax.Regexp // as parsed
	prog *syntax.Prog   // of the simplified tree
}

func (c compiled) machine() *machine {
	return &machine{prog: c.prog, re: c.re, live: map[string]bool{}}
}

// compileAnchored compiles a trust pattern and checks that it is anchored at
// both ends. what names the pattern in messages, example is a valid one.
func compileAnchored(what, pattern, example string) (compiled, error) {
	if pattern == "" {
		return compiled{}, invalidf("%s is empty: expected an anchored regular expression, e.g. %q", what, example)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return compiled{}, invalidf("%s %q does not compile as a Go (RE2) regular expression: %v; e.g. %q", what, pattern, err, example)
	}
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil { // Compile parsed it already; this only hands us the tree
		return compiled{}, invalidf("%s %q does not parse: %v", what, pattern, err)
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil || len(prog.Inst) > maxInst {
		return compiled{}, invalidf("%s %q is too complex (large repetition counts or many alternatives): trust patterns are short, e.g. %q", what, pattern, example)
	}
	if usesLineAnchors(tree) {
		return compiled{}, invalidf("%s %q uses multi-line mode (?m), where ^ and $ match at every line break: remove the (?m) flag so that ^ and $ anchor the whole value, e.g. %q", what, pattern, example)
	}
	if !anchored(tree, syntax.OpBeginText) || !anchored(tree, syntax.OpEndText) {
		hint := `start it with "^" and end it with "$"`
		if tree.Op == syntax.OpAlternate {
			hint = `a top-level "|" lets an alternative escape the anchors: group the alternatives inside them, as in "^(?:a|b)$"`
		}
		return compiled{}, invalidf("%s %q is not anchored at both ends, so it also matches values that merely contain a match: %s, e.g. %q", what, pattern, hint, example)
	}
	return compiled{re: re, tree: tree, prog: prog}, nil
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
// account ID and the regexp-quoted role name, and every value it matches
// must start with arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/ (or be
// exactly the role's IAM ARN), so that it cannot admit another account or
// another role (the session may vary).
func ARNPattern(pattern, account, roleName string) error {
	if err := AWSAccount(account); err != nil {
		return invalidf("ARN pattern %q: %v", pattern, err)
	}
	if err := IAMRoleName(roleName); err != nil {
		return invalidf("ARN pattern %q: %v", pattern, err)
	}
	example := arnPatternExample(account, roleName)
	const what = "ARN pattern"
	c, err := compileAnchored(what, pattern, example)
	if err != nil {
		return err
	}
	if !strings.Contains(pattern, account) {
		return invalidf("%s %q does not contain the account ID %s literally: write the account as is (no \".*\", \"\\d\" or character class), e.g. %q", what, pattern, account, example)
	}
	if q := regexp.QuoteMeta(roleName); !strings.Contains(pattern, q) {
		return invalidf("%s %q does not contain the role name %s written literally (regexp-quoted: %q): e.g. %q", what, pattern, roleName, q, example)
	}
	if err := probeARNPattern(c, account, roleName, example); err != nil {
		return err
	}
	p := c.machine().prove(arnGrammar{account: account, role: roleName}, true)
	if pr := p.problem; pr != nil {
		return arnProblem(pattern, account, roleName, example, c.tree, *pr)
	}
	if !p.prefixed {
		return invalidf("%s %q matches no assumed-role ARN of role %q in account %s, so no caller could ever use this identity (AWS reports callers as arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION): e.g. %q", what, pattern, roleName, account, example)
	}
	return nil
}

// probeARNPattern looks for an ARN of another account or role among the
// sample strings the pattern matches and their probes, to name the mistake
// in the message. It is not the proof: passing it proves nothing.
func probeARNPattern(c compiled, account, roleName, example string) error {
	const what = "ARN pattern"
	pattern := c.re.String()
	var arns []sampleARN
	for _, s := range append(samples(c.tree, c.re), canonical(c.re, account, roleName)...) {
		if a, ok := parseSample(s); ok {
			arns = append(arns, a)
		}
	}
	// First the strings the pattern is known to match, then the probes.
	for _, a := range arns {
		switch {
		case a.account != account:
			return invalidf("%s %q admits account %s, e.g. %q: a pattern must match only account %s, e.g. %q", what, pattern, a.account, a.with(a.account, a.role), account, example)
		case a.role != roleName:
			return invalidf("%s %q admits role %q, e.g. %q: a pattern must match only role %q, e.g. %q", what, pattern, a.role, a.with(a.account, a.role), roleName, example)
		}
	}
	for _, a := range arns {
		for _, p := range a.probes() {
			if c.re.MatchString(p.value) {
				return invalidf("%s %q admits %s, e.g. %q: a pattern must match only role %q in account %s (the session may vary), e.g. %q", what, pattern, p.what, p.value, roleName, account, example)
			}
		}
	}
	return nil
}

// arnProblem words a break of the structural rule of ARN patterns.
func arnProblem(pattern, account, roleName, example string, tree *syntax.Regexp, pr problem) error {
	const what = "ARN pattern"
	if pr.kind == tooComplex {
		return invalidf("%s %q is too complex to check: it branches too often before the role name; write the prefix \"arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/\" literally, e.g. %q", what, pattern, example)
	}
	hint := ""
	if usesFoldCase(tree) && pr.shown && foldsToOwn(pr.example, account, roleName) {
		hint = " (drop the (?i) flag: ARNs are matched case-sensitively)"
	}
	if a, ok := parseSample(pr.example); ok && pr.shown {
		switch {
		case a.account != account:
			return invalidf("%s %q admits account %s, e.g. %q: a pattern must match only account %s%s, e.g. %q", what, pattern, a.account, pr.example, account, hint, example)
		case a.role != roleName:
			return invalidf("%s %q admits role %q, e.g. %q: a pattern must match only role %q%s, e.g. %q", what, pattern, a.role, pr.example, roleName, hint, example)
		}
	}
	matches := fmt.Sprintf("can match a value that starts with %q and then leaves that prefix", pr.read)
	if pr.shown {
		matches = fmt.Sprintf("matches %q", pr.example)
	}
	want := "arn:aws:sts::" + account + ":assumed-role/" + roleName + "/"
	return invalidf("%s %q %s, which does not start with %q%s: every value an ARN pattern matches must start with arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/ written literally (only the partition may vary), so that no optional piece, alternative or character class can admit another account or role; e.g. %q", what, pattern, matches, want, hint, example)
}

// foldsToOwn reports whether v differs from an ARN of roleName in account
// only by case.
func foldsToOwn(v, account, roleName string) bool {
	for _, p := range partitions {
		want := "arn:" + p + ":sts::" + account + ":assumed-role/" + roleName + "/"
		if len(v) >= len(want) && strings.EqualFold(v[:len(want)], want) {
			return true
		}
	}
	return false
}

// ARNPatternRole checks an arn_pattern like [ARNPattern] when the role name
// is not given separately: the role is the one the pattern spells out
// literally after "assumed-role/". It returns that role name.
func ARNPatternRole(pattern, account string) (string, error) {
	if err := AWSAccount(account); err != nil {
		return "", invalidf("ARN pattern %q: %v", pattern, err)
	}
	example := arnPatternExample(account, exampleRole)
	c, err := compileAnchored("ARN pattern", pattern, example)
	if err != nil {
		return "", err
	}
	p := c.machine().prove(arnGrammar{account: account}, false)
	if pr := p.problem; pr != nil && pr.kind == looseName {
		admits := fmt.Sprintf("it admits role names it does not spell out after %q", pr.read)
		if a, ok := parseSample(pr.example); ok && pr.shown {
			admits = fmt.Sprintf("it admits role %q, e.g. %q, and so any role", a.role, pr.example)
		} else if pr.shown {
			admits = fmt.Sprintf("it admits role names it does not spell out, e.g. %q", pr.example)
		}
		return "", invalidf("ARN pattern %q does not name a role literally: %s; write the role name (regexp-quoted) in the role position, e.g. %q", pattern, admits, example)
	}
	if len(p.names) == 0 {
		if pr := p.problem; pr != nil && pr.kind == tooComplex {
			return "", arnProblem(pattern, account, exampleRole, example, c.tree, *pr)
		}
		return "", invalidf("ARN pattern %q matches no assumed-role ARN of a single named role in account %s (AWS reports callers as arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION; write the account and role name literally): e.g. %q", pattern, account, example)
	}
	// The walk found the role(s) the pattern names: take the one written
	// first in the pattern (as is, e.g. not in another case under (?i));
	// the proof for that role tells whether the pattern admits anything else.
	role, at := p.names[0], len(pattern)
	for _, n := range p.names {
		if i := strings.Index(pattern, regexp.QuoteMeta(n)); i >= 0 && i < at {
			role, at = n, i
		}
	}
	return role, ARNPattern(pattern, account, role)
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
// and, unless allowUnpinned opts in to trusting any role whose sessions
// match (AllowUnpinnedUserID), every value it matches must start with one
// literal role unique ID (AROA followed by 17 uppercase letters or digits)
// and ":".
func UserIDPattern(pattern string, allowUnpinned bool) error {
	const what = "user ID pattern"
	const example = "^" + exampleRoleID + ":" + exampleSession + "$"
	c, err := compileAnchored(what, pattern, example)
	if err != nil {
		return err
	}
	if allowUnpinned {
		return nil
	}
	p := c.machine().prove(userIDGrammar{}, true)
	pr := p.problem
	if pr == nil && len(p.names) == 1 {
		return nil
	}
	if len(p.names) > 1 {
		return invalidf("%s %q admits the sessions of %d roles (%s): pin exactly one role unique ID (from %q), e.g. %q, or set AllowUnpinnedUserID to accept any role whose sessions match", what, pattern, len(p.names), strings.Join(p.names, ", "), exampleGetRoleID, example)
	}
	if pr != nil && pr.kind == strayValue && roleIDRE.MatchString(pr.read) {
		matches := ""
		if pr.shown {
			matches = fmt.Sprintf(": it also matches %q", pr.example)
		}
		return invalidf("%s %q does not require \":\" right after the role unique ID %s%s; a role unique ID is exactly 21 characters and the session name follows a \":\", so write it as %q, e.g. %q", what, pattern, pr.read, matches, "^"+pr.read+":...$", "^"+pr.read+":"+exampleSession+"$")
	}
	admits := ""
	for _, s := range samples(c.tree, c.re) {
		_, rest, ok := strings.Cut(s, ":")
		if !ok {
			continue
		}
		if p := "AROAZZZZZZZZZZZZZZZZZ:" + rest; c.re.MatchString(p) {
			admits = fmt.Sprintf(" (it matches %q, a session of another role)", p)
			break
		}
	}
	switch {
	case admits != "" || pr == nil || !pr.shown:
	case pr.kind == looseName && pr.other != "":
		admits = fmt.Sprintf(" (it matches %q and %q, sessions of two roles)", pr.example, pr.other)
	default:
		admits = fmt.Sprintf(" (it matches %q)", pr.example)
	}
	if usesFoldCase(c.tree) {
		admits += " (drop the (?i) flag: the role ID must be matched case-sensitively)"
	}
	return invalidf("%s %q does not pin a role unique ID%s: it trusts any role whose session name matches, including roles created later or re-created under the same name by anyone allowed to create roles in the account; start the pattern with the role's literal unique ID (AROA followed by 17 uppercase letters or digits, from %q) and \":\", e.g. %q, or set AllowUnpinnedUserID to accept that risk", what, pattern, admits, exampleGetRoleID, example)
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
