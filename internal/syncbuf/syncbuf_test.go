package syncbuf

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

var _ io.Writer = (*Buffer)(nil)

// TestBufferConcurrent writes and reads from many goroutines; run with -race
// to see that the buffer guards its content.
func TestBufferConcurrent(t *testing.T) {
	tests := []struct {
		name    string
		writers int
		lines   int
	}{
		{name: "empty", writers: 0, lines: 0},
		{name: "one writer", writers: 1, lines: 100},
		{name: "many writers", writers: 8, lines: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Buffer
			var wg sync.WaitGroup
			for w := range tt.writers {
				wg.Go(func() {
					for i := range tt.lines {
						if n, err := fmt.Fprintf(&b, "w%d l%d\n", w, i); err != nil || n == 0 {
							t.Errorf("Write() = %d, %v", n, err)
						}
						_ = b.String() // a reader while writers run
					}
				})
			}
			wg.Wait()
			got := b.String()
			if n := strings.Count(got, "\n"); n != tt.writers*tt.lines {
				t.Fatalf("buffer holds %d lines, want %d", n, tt.writers*tt.lines)
			}
			for w := range tt.writers {
				if !strings.Contains(got, fmt.Sprintf("w%d l%d\n", w, tt.lines-1)) {
					t.Errorf("buffer lacks the last line of writer %d", w)
				}
			}
		})
	}
}
