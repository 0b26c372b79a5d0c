package validate

import (
	"regexp"
	"testing"
)

// FuzzARNPattern checks that ARNPattern and ARNPatternRole never panic and
// that a pattern they accept matches none of a fixed set of ARNs of another
// account or another role.
func FuzzARNPattern(f *testing.F) {
	for _, s := range []string{
		`^arn:aws:sts::111122223333:assumed-role/my-role/.*$`,
		`^arn:(aws|aws-cn):sts::111122223333:assumed-role/my-role/[\w+=,.@-]+$`,
		`^arn:aws:sts::(111122223333|\d{12}):assumed-role/my-role/.*$`,
		`^arn:aws:sts::111122223333:assumed-role/(my-role|.*)/fn$`,
		`^arn:aws:sts::111122223333.*my-role.*$`,
		`^a$|.*`, `(?m)^x$`, `^(?:x{2,5}|y*)+$`, `[`, ``,
	} {
		f.Add(s)
	}
	foreign := []string{
		"arn:aws:sts::999999999999:assumed-role/my-role/x",
		"arn:aws:sts::111122223334:assumed-role/my-role/my-function",
		"arn:aws:sts::111122223333:assumed-role/other-role/x",
		"arn:aws:sts::111122223333:assumed-role/my-role-admin/my-function",
		"arn:aws:sts::111122223333:assumed-role/xmy-role/x",
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		errRole := ARNPattern(pattern, acct, role)
		_, errAny := ARNPatternRole(pattern, acct)
		if errRole != nil && errAny != nil {
			return
		}
		re := regexp.MustCompile(pattern) // accepted patterns compile
		for _, s := range foreign {
			if errRole == nil && re.MatchString(s) {
				t.Errorf("ARNPattern accepted %q, which matches %q", pattern, s)
			}
		}
	})
}

// FuzzUserIDPattern checks that UserIDPattern never panics and that a
// pattern it accepts without the opt-in cannot match sessions of two
// different roles.
func FuzzUserIDPattern(f *testing.F) {
	for _, s := range []string{
		`^AROA1234567890ABCDEFG:.*$`, `^AROA(.*):fn$`, `(?i)^AROA1234567890ABCDEFG:.*$`,
		`^(AROA1234567890ABCDEFG|AROAZZZZZZZZZZZZZZZZZ):fn$`, `^.*$`, `AROA`, `(`,
	} {
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
			t.Errorf("UserIDPattern accepted %q, which matches sessions of two roles", pattern)
		}
	})
}
