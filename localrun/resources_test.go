package localrun

import (
	"regexp"
	"strings"
	"testing"
)

func TestRoleIDAndNames(t *testing.T) {
	re := regexp.MustCompile(`^AROA[A-Z0-9]{17}$`)
	a, b := roleID("S", "Role"), roleID("S", "Role2")
	if !re.MatchString(a) || !re.MatchString(b) {
		t.Fatalf("roleID = %q, %q, want AROA + 17 of [A-Z0-9]", a, b)
	}
	if a == b || a != roleID("S", "Role") || a == roleID("T", "Role") {
		t.Fatalf("roleID must be deterministic and distinct per stack and logical ID")
	}
	tests := []struct {
		stack, logicalID string
		maxLen           int
		want             string // regexp of the whole name
	}{
		{stack: "App", logicalID: "Fn", maxLen: 64, want: `^App-Fn-[A-Z0-9]{12}$`},
		{stack: strings.Repeat("s", 50), logicalID: strings.Repeat("L", 40), maxLen: 64, want: `^s{50}--[A-Z0-9]{12}$`},
		{stack: strings.Repeat("s", 40), logicalID: strings.Repeat("L", 40), maxLen: 64, want: `^s{40}-L{10}-[A-Z0-9]{12}$`},
	}
	for _, tt := range tests {
		got := physicalName(tt.stack, tt.logicalID, tt.maxLen)
		if len(got) > tt.maxLen || !regexp.MustCompile(tt.want).MatchString(got) {
			t.Errorf("physicalName(%q, %q, %d) = %q (%d chars), want %s", tt.stack, tt.logicalID, tt.maxLen, got, len(got), tt.want)
		}
	}
}
