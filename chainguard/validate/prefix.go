package validate

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// The structural rule for trust patterns: every value a pattern matches
// must start with an allowed literal prefix, such as
// "arn:aws:sts::111122223333:assumed-role/my-role/" for an ARN pattern or
// "AROA1234567890ABCDEFG:" for a user ID pattern; what follows the prefix
// may be anything.
//
// It is proved, not sampled: the pattern's program (syntax.Compile of the
// simplified syntax tree) is run on sets of states, one character at a
// time, from the start of the value. At each step every character the
// program can read next is considered (grouped into intervals that lead to
// the same states), and each must extend the text read so far towards an
// allowed prefix. As the allowed prefixes are short, the walk is small; once
// a complete prefix has been read the walk stops. So optional pieces,
// alternatives, groups, \Q..\E, fold-case flags and factored common prefixes
// all face the same test, whatever Simplify made of them.
//
// The model over-approximates the matcher where it is cheap to (word
// boundaries always hold), which can only make the proof stricter.

// maxNodes bounds the number of prefixes a proof visits, and maxStates the
// number of state sets a search for an example value visits.
const (
	maxNodes  = 1024
	maxStates = 1024
)

// grammar describes the literal prefixes a pattern's matches may start with.
type grammar interface {
	// classify reports whether text can still grow into an allowed value
	// (open), and the principal it names when text is a complete allowed
	// prefix after which anything may follow (prefix), or an allowed whole
	// value that nothing may follow (whole).
	classify(text string) (open bool, prefix, whole string)
	// free reports whether the character after text is part of a principal
	// name the grammar leaves open (to discover it): the pattern must spell
	// it literally, one character at a time.
	free(text string) bool
}

// problemKind says how a pattern broke the structural rule.
type problemKind int

const (
	strayValue problemKind = iota // a value outside the allowed prefixes
	looseName                     // a character class where the principal name must be literal
	tooComplex                    // the proof ran out of budget
)

// problem is a break of the structural rule.
type problem struct {
	kind    problemKind
	read    string // the literal text read before the offending character
	example string // a value the pattern matches that shows the problem, if shown
	shown   bool
	// other is, for a looseName, a second value the pattern matches that
	// names another principal ("" if none was found).
	other string
}

// proof is the outcome of checking a pattern against a grammar.
type proof struct {
	names    []string // the principals named by complete prefixes or whole values, in order, unique
	prefixed bool     // some value the pattern matches starts with a complete prefix
	problem  *problem // the problem that stopped the proof, if any
}

func (p *proof) addName(n string) {
	if !slices.Contains(p.names, n) {
		p.names = append(p.names, n)
	}
}

// machine runs a compiled pattern on sets of states.
type machine struct {
	prog *syntax.Prog
	re   *regexp.Regexp  // confirms example values
	live map[string]bool // states known to lead to a match, by key
}

// state is the set of the program's rune instructions waiting for the next
// character, with whether a match ends here if the value ends here
// (matchEnd) or whatever follows (matchAny: the pattern is not anchored at
// the end on this path).
type state struct {
	runes              []uint32
	matchEnd, matchAny bool
}

func (s state) dead() bool { return len(s.runes) == 0 && !s.matchEnd }

func (s state) key() string {
	var b strings.Builder
	b.WriteString(strconv.FormatBool(s.matchEnd))
	b.WriteString(strconv.FormatBool(s.matchAny))
	for _, pc := range s.runes {
		b.WriteByte(',')
		b.WriteString(strconv.FormatUint(uint64(pc), 10))
	}
	return b.String()
}

// closure returns the state reached from pcs without reading a character;
// begin says whether nothing has been read yet.
func (m *machine) closure(pcs []uint32, begin bool) state {
	var st state
	st.runes = m.follow(pcs, begin, false, &st.matchAny)
	m.follow(pcs, begin, true, &st.matchEnd)
	st.matchEnd = st.matchEnd || st.matchAny
	return st
}

// follow walks the empty transitions from pcs, with the value ending here
// (atEnd) or not, returning the rune instructions reached and setting
// *match when the match instruction is reached.
func (m *machine) follow(pcs []uint32, begin, atEnd bool, match *bool) []uint32 {
	seen := make([]bool, len(m.prog.Inst))
	stack := slices.Clone(pcs)
	var runes []uint32
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pc] {
			continue
		}
		seen[pc] = true
		in := &m.prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.Arg, in.Out)
		case syntax.InstNop, syntax.InstCapture:
			stack = append(stack, in.Out)
		case syntax.InstEmptyWidth:
			op := syntax.EmptyOp(in.Arg)
			if (op&syntax.EmptyBeginText == 0 || begin) && (op&syntax.EmptyEndText == 0 || atEnd) {
				stack = append(stack, in.Out)
			}
		case syntax.InstMatch:
			*match = true
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			if !atEnd {
				runes = append(runes, pc)
			}
		}
	}
	slices.Sort(runes)
	return runes
}

// step returns the state after reading r in st.
func (m *machine) step(st state, r rune) state {
	var next []uint32
	for _, pc := range st.runes {
		if in := &m.prog.Inst[pc]; in.MatchRune(r) {
			next = append(next, in.Out)
		}
	}
	return m.closure(next, false)
}

// intervals splits the characters st can read into intervals of
// characters that all lead to the same next state.
func (m *machine) intervals(st state) [][2]rune {
	var ranges [][2]rune
	for _, pc := range st.runes {
		in := &m.prog.Inst[pc]
		switch {
		case in.Op == syntax.InstRuneAny:
			ranges = append(ranges, [2]rune{0, unicode.MaxRune})
		case in.Op == syntax.InstRuneAnyNotNL:
			ranges = append(ranges, [2]rune{0, '\n' - 1}, [2]rune{'\n' + 1, unicode.MaxRune})
		case len(in.Rune) == 1:
			r := in.Rune[0]
			ranges = append(ranges, [2]rune{r, r})
			if syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					ranges = append(ranges, [2]rune{f, f})
				}
			}
		default:
			for i := 0; i+1 < len(in.Rune); i += 2 {
				ranges = append(ranges, [2]rune{in.Rune[i], in.Rune[i+1]})
			}
		}
	}
	var cuts []rune
	for _, r := range ranges {
		cuts = append(cuts, r[0], r[1]+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	var out [][2]rune
	for i := 0; i+1 < len(cuts); i++ {
		lo := cuts[i]
		for _, r := range ranges {
			if r[0] <= lo && lo <= r[1] {
				out = append(out, [2]rune{lo, cuts[i+1] - 1})
				break
			}
		}
	}
	return out
}

// prove checks that every value the program matches starts with a prefix
// of g (or is a whole value of g), naming the principals it admits. It
// stops at the first problem; with strays false, values outside g are
// ignored instead (to discover the names a pattern spells out).
func (m *machine) prove(g grammar, strays bool) proof {
	var p proof
	nodes := 0
	report := func(pr problem) { p.problem = &pr }
	var walk func(read string, st state)
	walk = func(read string, st state) {
		if p.problem != nil {
			return
		}
		if nodes++; nodes > maxNodes {
			report(problem{kind: tooComplex, read: read})
			return
		}
		_, prefix, whole := g.classify(read)
		if prefix != "" {
			if m.leadsToMatch(st) {
				p.addName(prefix)
				p.prefixed = true
			}
			return
		}
		switch {
		case st.matchAny && strays:
			// Anything may follow read, e.g. the rest of another role's name.
			report(m.stray(read, read+"x"))
			return
		case st.matchEnd && whole != "":
			p.addName(whole)
		case st.matchEnd && strays:
			report(m.stray(read, read))
			return
		}
		allowed := func(r rune) bool {
			if r > unicode.MaxASCII { // allowed prefixes are ASCII
				return false
			}
			o, pre, wh := g.classify(read + string(r))
			return o || pre != "" || wh != ""
		}
		free := g.free(read)
		// Intervals of several allowed characters in a free name, of
		// allowed characters only, and of others.
		var loose, inside, outside [][2]rune
		for _, iv := range m.intervals(st) {
			lo, hi := iv[0], iv[1]
			if m.step(st, lo).dead() { // the same for every character of iv
				continue
			}
			all, some := hi <= unicode.MaxASCII, false
			for r := lo; r <= min(hi, unicode.MaxASCII); r++ {
				ok := allowed(r)
				all, some = all && ok, some || ok
			}
			switch {
			case hi > lo && some && free:
				loose = append(loose, iv)
			case all:
				inside = append(inside, iv)
			case strays:
				outside = append(outside, iv)
			}
		}
		if len(loose) > 0 {
			report(m.looseName(st, read, loose, allowed))
			return
		}
		for _, iv := range inside {
			for r := iv[0]; r <= iv[1]; r++ {
				walk(read+string(r), m.step(st, r))
			}
		}
		// Strays last, so that a problem further on, which messages can
		// name (another account, another role), is found first.
		for _, iv := range outside {
			if p.problem != nil {
				return
			}
			r := pick(iv[0], iv[1], func(r rune) bool { return !allowed(r) })
			if ex, shown, live := m.complete(m.step(st, r), read+string(r)); live {
				report(problem{kind: strayValue, read: read, example: ex, shown: shown})
			}
		}
	}
	start := []uint32{uint32(m.prog.Start)}
	if st := m.closure(start, false); strays && !st.dead() {
		// A match may start after the first character: the pattern is
		// not anchored at the start, so any text may come first.
		if ex, shown, live := m.complete(st, "x"); live {
			report(problem{kind: strayValue, example: ex, shown: shown})
		}
	}
	walk("", m.closure(start, true))
	return p
}

// leadsToMatch reports whether some value continues from st to a match
// (true when the search gives up), remembering the answer.
func (m *machine) leadsToMatch(st state) bool {
	k := st.key()
	live, ok := m.live[k]
	if !ok {
		_, _, live = m.complete(st, "")
		m.live[k] = live
	}
	return live
}

// looseName returns the problem of a principal name read as a character
// class, with two values that show different names (the intervals are
// those of several allowed characters where the name is read).
func (m *machine) looseName(st state, read string, loose [][2]rune, allowed func(rune) bool) problem {
	pr := problem{kind: looseName, read: read}
	var first rune = -1
	for _, r := range "x0aX_-.:/" {
		for _, iv := range loose {
			if first < 0 && iv[0] <= r && r <= iv[1] && allowed(r) {
				first = r
			}
		}
	}
	if first < 0 { // no character that reads well: one of the first interval
		first = pick(loose[0][0], loose[0][1], allowed)
	}
	pr.example, pr.shown, _ = m.complete(m.step(st, first), read+string(first))
	for _, iv := range loose {
		if r := pick(iv[0], iv[1], func(c rune) bool { return c != first && allowed(c) }); r != first && allowed(r) {
			pr.other, _, _ = m.complete(m.step(st, r), read+string(r))
			break
		}
	}
	return pr
}

// complete searches for a value the pattern matches that starts with read,
// from st (the state after read). It returns the problem kind's example
// (shown when found and confirmed) and whether there may be such a value:
// false only when the search proved there is none.
func (m *machine) complete(st state, read string) (example string, shown, live bool) {
	type item struct {
		st   state
		text string
	}
	queue := []item{{st, read}}
	seen := map[string]bool{st.key(): true}
	capped := false // a longer value was not looked for
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if it.st.matchEnd {
			ex, ok := m.confirm(it.text)
			return ex, ok, true
		}
		if len(it.text) >= maxSampleLen {
			capped = true
			continue
		}
		for _, iv := range m.intervals(it.st) {
			r := pick(iv[0], iv[1], func(rune) bool { return true })
			next := m.step(it.st, r)
			if next.dead() || seen[next.key()] {
				continue
			}
			if len(seen) >= maxStates {
				return "", false, true // unknown: assume there is one
			}
			seen[next.key()] = true
			queue = append(queue, item{next, it.text + string(r)})
		}
	}
	return "", false, capped
}

// stray returns the problem of a value starting with read that leaves the
// allowed prefixes, shown by example when the pattern matches it.
func (m *machine) stray(read, example string) problem {
	ex, ok := m.confirm(example)
	return problem{kind: strayValue, read: read, example: ex, shown: ok}
}

// confirm returns v and whether the pattern matches it (the model
// over-approximates word boundaries, so a value it builds may not match).
func (m *machine) confirm(v string) (string, bool) {
	if m.re.MatchString(v) {
		return v, true
	}
	return "", false
}

// pick returns a character of [lo, hi] for which ok holds, preferring
// characters that read well in messages; it returns lo when none is found
// among the first few hundred.
func pick(lo, hi rune, ok func(rune) bool) rune {
	for _, r := range "x0aX_-.:/" {
		if lo <= r && r <= hi && ok(r) {
			return r
		}
	}
	for r := lo; r <= hi && r < lo+512; r++ {
		if unicode.IsPrint(r) && ok(r) {
			return r
		}
	}
	return lo
}

// arnGrammar allows the assumed-role ARN prefixes
// arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/ and the whole IAM role ARNs
// arn:PARTITION:iam::ACCOUNT:role/ROLE, for the given account and role; an
// empty role leaves the role name open, to be discovered.
type arnGrammar struct{ account, role string }

func (g arnGrammar) classify(s string) (open bool, prefix, whole string) {
	for _, p := range partitions {
		sts := "arn:" + p + ":sts::" + g.account + ":assumed-role/"
		iam := "arn:" + p + ":iam::" + g.account + ":role/"
		if len(s) < len(sts) && strings.HasPrefix(sts, s) || len(s) < len(iam) && strings.HasPrefix(iam, s) {
			open = true
		}
		if rest, ok := strings.CutPrefix(s, sts); ok {
			name, slash := strings.CutSuffix(rest, "/")
			switch {
			case g.role != "" && slash && name == g.role, g.role == "" && slash && iamRoleNameRE.MatchString(name):
				prefix = name
			case g.role != "" && strings.HasPrefix(g.role, rest), g.role == "" && (rest == "" || iamRoleNameRE.MatchString(rest)):
				open = true
			}
		}
		if rest, ok := strings.CutPrefix(s, iam); ok {
			if g.role != "" && rest == g.role || g.role == "" && iamRoleNameRE.MatchString(rest) {
				whole = rest
			}
			if g.role != "" && len(rest) < len(g.role) && strings.HasPrefix(g.role, rest) || g.role == "" && len(rest) < 64 && (rest == "" || iamRoleNameRE.MatchString(rest)) {
				open = true
			}
		}
	}
	return open, prefix, whole
}

func (g arnGrammar) free(s string) bool {
	if g.role != "" {
		return false
	}
	for _, p := range partitions {
		for _, h := range []string{"arn:" + p + ":sts::" + g.account + ":assumed-role/", "arn:" + p + ":iam::" + g.account + ":role/"} {
			if strings.HasPrefix(s, h) {
				return true
			}
		}
	}
	return false
}

// userIDGrammar allows the prefix ROLEID: where ROLEID is a role unique ID
// (AROA and 17 uppercase letters or digits), left open to be discovered.
type userIDGrammar struct{}

func (userIDGrammar) classify(s string) (open bool, prefix, whole string) {
	const head = "AROA"
	if len(s) <= len(head) {
		return strings.HasPrefix(head, s), "", ""
	}
	if id, ok := strings.CutSuffix(s, ":"); ok && roleIDRE.MatchString(id) {
		return false, id, ""
	}
	return len(s) <= len(exampleRoleID) && roleIDRE.MatchString(s+strings.Repeat("0", len(exampleRoleID)-len(s))), "", ""
}

func (userIDGrammar) free(s string) bool {
	return len(s) >= len("AROA") && len(s) < len(exampleRoleID)
}

// usesFoldCase reports whether re matches some literal case-insensitively.
func usesFoldCase(re *syntax.Regexp) bool {
	if re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase != 0 {
		return true
	}
	return slices.ContainsFunc(re.Sub, usesFoldCase)
}
