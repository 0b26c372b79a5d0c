package validate

import "regexp/syntax"

// Role session names: 2 to 64 characters from iamNameChars (AWS STS
// AssumeRole, RoleSessionName).
const (
	minSessionLen = 2
	maxSessionLen = 64
)

// sessionAlphabet is every character a role session name may hold.
const sessionAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-"

// maxInst bounds the size of a session pattern once compiled: real ones need
// a few dozen instructions; huge ones (e.g. "(.?){1000}" repeated) would make
// matching, here and in the service, slow.
const maxInst = 5000

// SessionPattern checks a regular expression for the session name alone, as
// a trust of "any session of one role whose name matches" embeds it: between
// the role name and the end of the ARN pattern, and after the role unique ID
// and ":" in the user ID pattern, grouped and anchored by the caller. It must
// compile on its own (so that it cannot close the caller's group and escape
// the anchors) and inside that group (a \Q quote left open would swallow
// the group's end), must not anchor itself (^, $, \A, \z or their (?m) forms; a
// literal \$ or a negated class like [^/] is fine), and must match at least
// one valid role session name (2 to 64 characters from letters, digits and
// "+=,.@_-"), or no caller could ever use the identity.
func SessionPattern(pattern string) error {
	const want = "give a regular expression for the session name only, e.g. `[0-9a-f]{32}` for ECS task IDs"
	if pattern == "" {
		return invalidf("the session pattern is empty: %s", want)
	}
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return invalidf("the session pattern %q does not compile (%v): %s", pattern, err, want)
	}
	if _, err := syntax.Parse("(?:"+pattern+")$", syntax.Perl); err != nil {
		// Only an unterminated \Q quote parses alone but not embedded: it
		// would swallow the ")$" the trust closes it with.
		return invalidf("the session pattern %q does not compile once embedded in the trust (%v): end a \\Q quote with \\E; %s", pattern, err, want)
	}
	if hasAnchor(tree) {
		return invalidf("the session pattern %q has an anchor: leave out ^ and $ (and \\A, \\z, (?m)), the whole pattern is anchored for you, with the account, role and role unique ID pinned; %s", pattern, want)
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil || len(prog.Inst) > maxInst {
		return invalidf("the session pattern %q is too complex (large repetition counts or many alternatives): %s", pattern, want)
	}
	if !matchesSessionName(prog) {
		return invalidf("the session pattern %q matches no valid role session name (AWS session names are %d to %d characters from letters, digits and \"+=,.@_-\"), so no session could ever assume the identity: %s", pattern, minSessionLen, maxSessionLen, want)
	}
	return nil
}

// hasAnchor reports whether re holds a beginning or end of text or line.
func hasAnchor(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		return true
	}
	for _, s := range re.Sub {
		if hasAnchor(s) {
			return true
		}
	}
	return false
}

// nfaState is a thread of the pattern's program: the instruction it is at
// and whether the character before it was a word character (all a \b or \B
// needs to know about the past).
type nfaState struct {
	pc       uint32
	prevWord bool
}

// matchesSessionName reports whether prog matches, as a whole, at least one
// string of minSessionLen to maxSessionLen characters from sessionAlphabet.
//
// It runs the program's NFA on all such strings at once: after k steps the
// state set holds every thread some string of length k can reach, so the
// pattern matches a string of length k exactly when that set can reach
// InstMatch at the end of the text. Zero-width assertions (\b, \B) depend on
// the characters on either side only through "word or not", so threads carry
// that bit and each step is taken separately for word and non-word
// characters. The character before the session name is "/" in the ARN and ":"
// in the user ID: a non-word character, as at the start.
func matchesSessionName(prog *syntax.Prog) bool {
	// consumes[pc][w]: instruction pc consumes some character of the
	// alphabet that is a word character (w) or not (!w).
	consumes := make([][2]bool, len(prog.Inst))
	for pc := range prog.Inst {
		for _, c := range sessionAlphabet {
			if consumesRune(&prog.Inst[pc], c) {
				consumes[pc][b2i(syntax.IsWordChar(c))] = true
			}
		}
	}
	cur := map[nfaState]bool{{pc: uint32(prog.Start)}: true}
	for n := 0; len(cur) > 0; n++ {
		if _, match := closure(prog, cur, -1); match && n >= minSessionLen {
			return true
		}
		if n == maxSessionLen {
			return false
		}
		next := map[nfaState]bool{}
		for _, word := range []bool{false, true} {
			rep := '-' // a representative character of the class
			if word {
				rep = 'a'
			}
			consumers, _ := closure(prog, cur, rep)
			for _, pc := range consumers {
				if consumes[pc][b2i(word)] {
					next[nfaState{pc: prog.Inst[pc].Out, prevWord: word}] = true
				}
			}
		}
		cur = next
	}
	return false
}

// closure follows the zero-width instructions from the threads in cur as
// they stand before next: a representative word or non-word character, or
// -1 for the end of the text. It returns the instructions reached that
// consume a character, and whether InstMatch is reached.
func closure(prog *syntax.Prog, cur map[nfaState]bool, next rune) (consumers []uint32, match bool) {
	seen := map[nfaState]bool{}
	stack := make([]nfaState, 0, len(cur))
	for s := range cur {
		stack = append(stack, s)
	}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[s] {
			continue
		}
		seen[s] = true
		in := &prog.Inst[s.pc]
		switch in.Op {
		case syntax.InstMatch:
			match = true
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, nfaState{in.Out, s.prevWord}, nfaState{in.Arg, s.prevWord})
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, nfaState{in.Out, s.prevWord})
		case syntax.InstEmptyWidth:
			prev := '/'
			if s.prevWord {
				prev = 'a'
			}
			if syntax.EmptyOp(in.Arg)&^syntax.EmptyOpContext(prev, next) == 0 {
				stack = append(stack, nfaState{in.Out, s.prevWord})
			}
		case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			consumers = append(consumers, s.pc)
		}
	}
	return consumers, match
}

// consumesRune reports whether the consuming instruction in matches c.
func consumesRune(in *syntax.Inst, c rune) bool {
	switch in.Op {
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return c != '\n'
	case syntax.InstRune, syntax.InstRune1:
		return in.MatchRune(c) // case folding included
	}
	return false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
