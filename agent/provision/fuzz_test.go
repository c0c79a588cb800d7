package provision

import (
	"strings"
	"testing"
)

// FuzzUnifiedDiff: applying the diff of a and b to a gives b.
func FuzzUnifiedDiff(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nc\n")
	f.Add("", "x")
	f.Add("x", "")
	f.Add("same\n", "same")
	f.Add("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n", "1\n2\nX\n4\n5\n6\n7\n8\n9\nY\n11\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		d := unifiedDiff("f", []byte(a), []byte(b))
		if a == b {
			if d != "" {
				t.Fatalf("diff of equal inputs: %q", d)
			}
			return
		}
		if isBinary([]byte(a)) || isBinary([]byte(b)) || strings.Contains(d, "diff truncated") {
			return
		}
		got, err := applyUnified(a, d)
		if err != nil {
			t.Fatalf("apply: %v\ndiff:\n%s", err, d)
		}
		if got != b {
			t.Fatalf("apply(a, diff) = %q, want %q\ndiff:\n%s", got, b, d)
		}
	})
}
