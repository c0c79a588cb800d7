package provision

import (
	"fmt"
	"io"
	"strings"
)

// maxTextOutputLines bounds the command output WriteText shows per block;
// the JSON report keeps all of it.
const maxTextOutputLines = 20

// WriteText renders a report for people, in the manner of Ansible and Salt:
// one line per block with its outcome, the changes (and diffs) indented
// under it, the output of commands that ran or failed, and a totals line.
func WriteText(w io.Writer, r *Report) error {
	ew := &errWriter{w: w}
	if r.DryRun {
		ew.printf("DRY RUN: nothing is changed; \"changed\" means \"would change\".\n\n")
	}
	for _, b := range r.Blocks {
		writeBlockText(ew, b)
	}
	t := r.Totals
	ew.printf("\nok=%d changed=%d failed=%d skipped=%d", t.OK, t.Changed, t.Failed, t.Skipped)
	if r.DryRun {
		ew.printf(" (dry run)")
	}
	ew.printf("\n")
	return ew.err
}

// WriteBlockText renders one block result as WriteText does, for callers
// that print results as they stream in.
func WriteBlockText(w io.Writer, b BlockResult) error {
	ew := &errWriter{w: w}
	writeBlockText(ew, b)
	return ew.err
}

func writeBlockText(w *errWriter, b BlockResult) {
	w.printf("%-8s %s %s", b.Outcome, b.Kind, b.Name)
	if b.DurationMS >= 1000 {
		w.printf(" (%.1fs)", float64(b.DurationMS)/1000)
	}
	w.printf("\n")
	for _, c := range b.Changes {
		switch {
		case c.Old == "" && c.New == "":
			w.printf("    %s\n", c.Field)
		case c.Old == "":
			w.printf("    %s: %s\n", c.Field, c.New)
		default:
			w.printf("    %s: %s → %s\n", c.Field, c.Old, c.New)
		}
		if c.Diff != "" {
			writeIndented(w, c.Diff, "        ", 0)
		}
	}
	if b.Error != "" {
		writeIndented(w, b.Error, "    error: ", 0)
	}
	showOutput := b.Outcome == OutcomeFailed || b.Kind == "exec"
	if out := strings.TrimRight(b.Output, "\n"); out != "" && showOutput {
		w.printf("    output:\n")
		writeIndented(w, out, "      | ", maxTextOutputLines)
	}
}

// writeIndented writes s line by line after prefix; with limit > 0 only the
// last limit lines.
func writeIndented(w *errWriter, s, prefix string, limit int) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if limit > 0 && len(lines) > limit {
		w.printf("%s… %d earlier lines not shown\n", prefix, len(lines)-limit)
		lines = lines[len(lines)-limit:]
	}
	cont := strings.Repeat(" ", len([]rune(prefix)))
	if strings.HasSuffix(prefix, "| ") {
		cont = prefix
	}
	for i, l := range lines {
		p := prefix
		if i > 0 {
			p = cont
		}
		w.printf("%s%s\n", p, l)
	}
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
