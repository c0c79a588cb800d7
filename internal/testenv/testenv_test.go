package testenv

import (
	"testing"
)

// recorder is a testing.TB that records how the test would have ended.
type recorder struct {
	testing.TB
	failed, skipped bool
}

// Only what Missing calls is overridden; Fatalf does not stop the
// goroutine here, so Missing must return after it.
func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Skip(...any)           { r.skipped = true }

func TestMissingFailsUnderCI(t *testing.T) {
	for _, tc := range []struct {
		ci         string
		wantFailed bool
	}{
		{"true", true}, {"1", true}, {"", false}, {"false", false}, {"no", false},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		NeedTool(r, "hpt-testenv-no-such-tool", "nothing")
		if r.failed != tc.wantFailed || r.skipped == tc.wantFailed {
			t.Errorf("CI=%q: failed=%v skipped=%v, want failed=%v", tc.ci, r.failed, r.skipped, tc.wantFailed)
		}
	}
}

func TestNeedToolFindsInstalled(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	if p := NeedTool(r, "sh", "dash"); p == "" || r.failed || r.skipped {
		t.Fatalf("NeedTool(sh) = %q, failed=%v skipped=%v", p, r.failed, r.skipped)
	}
}
