package provision

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxDiffBytes bounds a diff in a Change; a longer one is cut at a line
	// and says how much was left out.
	MaxDiffBytes = 64 << 10
	// diffContext is the number of unchanged lines around each change.
	diffContext = 3
	// maxDiffCells bounds the LCS table; past it the differing middle is
	// shown as removed then added, which is correct but not minimal.
	maxDiffCells = 4 << 20
)

// unifiedDiff returns a unified diff (as diff -u prints it) turning old into
// new, labelled with name; "" when they are equal. Binary content (a NUL
// byte or invalid UTF-8) is not diffed: a one-line note says so.
func unifiedDiff(name string, old, new []byte) string {
	if bytes.Equal(old, new) {
		return ""
	}
	if isBinary(old) || isBinary(new) {
		return fmt.Sprintf("binary content differs (%d → %d bytes)", len(old), len(new))
	}
	a, b := splitLines(old), splitLines(new)
	ops := diffLines(a, b)
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", name, name)
	for _, h := range hunks(ops) {
		writeHunk(&out, ops[h[0]:h[1]])
		if out.Len() > MaxDiffBytes {
			break
		}
	}
	return capDiff(out.String())
}

func isBinary(b []byte) bool {
	return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b)
}

// splitLines splits b into lines that keep their "\n"; only the last may
// lack it.
func splitLines(b []byte) []string {
	var out []string
	s := string(b)
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// diffOp is one line of an edit script: ' ' kept, '-' removed, '+' added.
// oldLine and newLine are the 1-based positions before the op.
type diffOp struct {
	kind             byte
	text             string
	oldLine, newLine int
}

// diffLines computes an edit script from a to b: common prefix and suffix,
// then a longest common subsequence of the middle.
func diffLines(a, b []string) []diffOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	var kinds []byte // edit script of the middle
	if n, m := len(ma), len(mb); n*m <= maxDiffCells && n > 0 && m > 0 {
		// lcs[i][j] = LCS length of ma[i:], mb[j:]
		lcs := make([]int32, (n+1)*(m+1))
		at := func(i, j int) int32 { return lcs[i*(m+1)+j] }
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i*(m+1)+j] = at(i+1, j+1) + 1
				} else {
					lcs[i*(m+1)+j] = max(at(i+1, j), at(i, j+1))
				}
			}
		}
		i, j := 0, 0
		for i < n || j < m {
			switch {
			case i < n && j < m && ma[i] == mb[j]:
				kinds = append(kinds, ' ')
				i++
				j++
			case j < m && (i == n || at(i, j+1) >= at(i+1, j)):
				kinds = append(kinds, '+')
				j++
			default:
				kinds = append(kinds, '-')
				i++
			}
		}
	} else {
		for range ma {
			kinds = append(kinds, '-')
		}
		for range mb {
			kinds = append(kinds, '+')
		}
	}
	ops := make([]diffOp, 0, pre+len(kinds)+suf)
	ai, bi := 0, 0
	emit := func(k byte) {
		op := diffOp{kind: k, oldLine: ai + 1, newLine: bi + 1}
		switch k {
		case ' ':
			op.text = a[ai]
			ai++
			bi++
		case '-':
			op.text = a[ai]
			ai++
		case '+':
			op.text = b[bi]
			bi++
		}
		ops = append(ops, op)
	}
	for range pre {
		emit(' ')
	}
	// Within a run of changes, removals first, then additions (as diff -u).
	for k := 0; k < len(kinds); {
		if kinds[k] == ' ' {
			emit(' ')
			k++
			continue
		}
		end := k
		for end < len(kinds) && kinds[end] != ' ' {
			end++
		}
		for _, c := range kinds[k:end] {
			if c == '-' {
				emit('-')
			}
		}
		for _, c := range kinds[k:end] {
			if c == '+' {
				emit('+')
			}
		}
		k = end
	}
	for range suf {
		emit(' ')
	}
	return ops
}

// hunks groups the changed ops with their context into [start, end) ranges.
func hunks(ops []diffOp) [][2]int {
	var out [][2]int
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(i-diffContext, 0)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			// A run of unchanged lines: the hunk ends unless another
			// change follows within 2*context lines.
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*diffContext {
				end = min(end+diffContext, len(ops))
				break
			}
			end = run
		}
		out = append(out, [2]int{start, end})
		i = end
	}
	return out
}

func writeHunk(w *strings.Builder, ops []diffOp) {
	oldStart, newStart := ops[0].oldLine, ops[0].newLine
	oldN, newN := 0, 0
	for _, op := range ops {
		if op.kind != '+' {
			oldN++
		}
		if op.kind != '-' {
			newN++
		}
	}
	fmt.Fprintf(w, "@@ -%s +%s @@\n", hunkRange(oldStart, oldN), hunkRange(newStart, newN))
	for _, op := range ops {
		w.WriteByte(op.kind)
		w.WriteString(op.text)
		if !strings.HasSuffix(op.text, "\n") {
			w.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// hunkRange formats a hunk's start,count as diff -u does: an empty range
// starts at the line before it, and a count of 1 is left out.
func hunkRange(start, n int) string {
	switch n {
	case 0:
		return fmt.Sprintf("%d,0", start-1)
	case 1:
		return fmt.Sprintf("%d", start)
	}
	return fmt.Sprintf("%d,%d", start, n)
}

func capDiff(s string) string {
	if len(s) <= MaxDiffBytes {
		return s
	}
	cut := strings.LastIndexByte(s[:MaxDiffBytes], '\n') + 1
	return s[:cut] + fmt.Sprintf("… diff truncated (%d more bytes)\n", len(s)-cut)
}
