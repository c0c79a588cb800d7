package provision

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// applyUnified applies a diff produced by unifiedDiff to a.
func applyUnified(a, d string) (string, error) {
	lines := splitLines([]byte(d))
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "--- ") || !strings.HasPrefix(lines[1], "+++ ") {
		return "", fmt.Errorf("no header")
	}
	old := splitLines([]byte(a))
	var out strings.Builder
	pos := 0
	for i := 2; i < len(lines); {
		h := lines[i]
		var os, on, ns, nn int
		if !strings.HasPrefix(h, "@@ ") {
			return "", fmt.Errorf("line %d: not a hunk header: %q", i, h)
		}
		f := strings.Fields(h)
		parse := func(s string) (int, int) {
			st, n, ok := strings.Cut(s[1:], ",")
			a, _ := strconv.Atoi(st)
			b := 1
			if ok {
				b, _ = strconv.Atoi(n)
			}
			return a, b
		}
		os, on = parse(f[1])
		ns, nn = parse(f[2])
		_ = ns
		start := os - 1
		if on == 0 {
			start = os
		}
		if start < pos || start > len(old) {
			return "", fmt.Errorf("hunk %q out of order", h)
		}
		for ; pos < start; pos++ {
			out.WriteString(old[pos])
		}
		i++
		seenOld, seenNew := 0, 0
		for i < len(lines) && !strings.HasPrefix(lines[i], "@@ ") {
			l := lines[i]
			text := l[1:]
			if i+1 < len(lines) && lines[i+1] == "\\ No newline at end of file\n" {
				text = strings.TrimSuffix(text, "\n")
				i++
			}
			i++
			switch l[0] {
			case ' ', '-':
				if pos >= len(old) || old[pos] != text {
					return "", fmt.Errorf("context mismatch at old line %d: %q vs %q", pos+1, text, old[min(pos, len(old)-1)])
				}
				if l[0] == ' ' {
					out.WriteString(text)
					seenNew++
				}
				pos++
				seenOld++
			case '+':
				out.WriteString(text)
				seenNew++
			default:
				return "", fmt.Errorf("bad line %q", l)
			}
		}
		if seenOld != on || seenNew != nn {
			return "", fmt.Errorf("hunk %q has %d old and %d new lines", h, seenOld, seenNew)
		}
	}
	for ; pos < len(old); pos++ {
		out.WriteString(old[pos])
	}
	return out.String(), nil
}

func TestUnifiedDiff(t *testing.T) {
	cases := []struct {
		name, a, b, want string
	}{
		{"new file", "", "a\nb\n", "--- f\n+++ f\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"change one", "a\nb\nc\n", "a\nB\nc\n", "--- f\n+++ f\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"},
		{"no newline", "a\n", "a", "--- f\n+++ f\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n"},
		{"two hunks",
			"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n",
			"1\nX\n3\n4\n5\n6\n7\n8\n9\n10\nY\n12\n",
			"--- f\n+++ f\n@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n 4\n 5\n@@ -8,5 +8,5 @@\n 8\n 9\n 10\n-11\n+Y\n 12\n"},
		{"binary", "a", "\x00b", "binary content differs (1 → 2 bytes)"},
		{"equal", "x\n", "x\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := unifiedDiff("f", []byte(tc.a), []byte(tc.b))
			if got != tc.want {
				t.Fatalf("diff:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestUnifiedDiffMatchesGNU compares hunks with diff -u where both are
// unambiguous.
func TestUnifiedDiffMatchesGNU(t *testing.T) {
	needTool(t, "diff", "diffutils")
	dir := t.TempDir()
	pairs := [][2]string{
		{"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", "a\nb\nC\nd\ne\nf\ng\nh\nI\nj\nk\n"},
		{"one\ntwo\n", "zero\none\ntwo\nthree\n"},
		{"x\ny\nz", "x\ny\nz\n"},
		{"keep\n", ""},
	}
	for i, p := range pairs {
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		os.WriteFile(a, []byte(p[0]), 0o644)
		os.WriteFile(b, []byte(p[1]), 0o644)
		gnu, _ := exec.Command("diff", "-u", a, b).Output()
		_, gnuHunks, _ := strings.Cut(string(gnu), "\n@@")
		_, ours, _ := strings.Cut(unifiedDiff("f", []byte(p[0]), []byte(p[1])), "\n@@")
		if gnuHunks != ours {
			t.Errorf("pair %d:\nours:\n@@%s\ngnu:\n@@%s", i, ours, gnuHunks)
		}
	}
}

func TestUnifiedDiffLarge(t *testing.T) {
	var a, b strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&a, "line %d\n", i)
		fmt.Fprintf(&b, "line %d\n", i*7)
	}
	d := unifiedDiff("big", []byte(a.String()), []byte(b.String()))
	if len(d) > MaxDiffBytes+200 || !strings.Contains(d, "diff truncated") {
		t.Fatalf("large diff not capped: %d bytes, tail %q", len(d), d[max(0, len(d)-100):])
	}
}
