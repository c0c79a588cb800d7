package provision

import (
	"context"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/provconfig"
)

// parse parses src as provision.toml with the given source files, failing
// the test on error.
func parse(t *testing.T, src string, files map[string][]byte) *provconfig.Config {
	t.Helper()
	cfg, err := provconfig.Parse(&provconfig.Bundle{Name: "provision.toml", Config: []byte(src), Files: files})
	if err != nil {
		t.Fatalf("Parse:\n%v\nconfig:\n%s", err, src)
	}
	return cfg
}

// apply applies cfg and returns the report, failing on a run error.
func apply(t *testing.T, cfg *provconfig.Config, opts Options) *Report {
	t.Helper()
	rep, err := Apply(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return rep
}

// outcomes lists the outcome of each block.
func outcomes(rep *Report) []Outcome {
	out := make([]Outcome, len(rep.Blocks))
	for i, b := range rep.Blocks {
		out[i] = b.Outcome
	}
	return out
}

func wantOutcomes(t *testing.T, rep *Report, want ...Outcome) {
	t.Helper()
	got := outcomes(rep)
	if len(got) != len(want) {
		t.Fatalf("outcomes = %v, want %v\n%s", got, want, reportText(rep))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("outcomes = %v, want %v\n%s", got, want, reportText(rep))
		}
	}
}

func reportText(rep *Report) string {
	var b strings.Builder
	WriteText(&b, rep)
	return b.String()
}

// findChange returns the change to field in block i, or fails.
func findChange(t *testing.T, rep *Report, i int, field string) Change {
	t.Helper()
	for _, c := range rep.Blocks[i].Changes {
		if c.Field == field {
			return c
		}
	}
	t.Fatalf("block %d has no change to %q:\n%s", i, field, reportText(rep))
	return Change{}
}

// needRoot and needTool skip on a developer's machine and fail under
// CI=true (see internal/testenv).
func needRoot(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
}

func needTool(t *testing.T, name, debianPackage string) {
	t.Helper()
	testenv.NeedTool(t, name, debianPackage)
}

// script answers commands by their String() line; unknown commands fail the
// test. It is a RecordingRunner handler.
type script map[string]CommandResult

func (s script) handler(t *testing.T) func(Command) (CommandResult, error) {
	return func(c Command) (CommandResult, error) {
		if res, ok := s[c.String()]; ok {
			return res, nil
		}
		t.Errorf("unexpected command: %s", c.String())
		return CommandResult{ExitCode: 127}, nil
	}
}

func out(s string) CommandResult  { return CommandResult{Stdout: []byte(s)} }
func exit(code int) CommandResult { return CommandResult{ExitCode: code} }

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("commands:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
