package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
)

// The job keeps the connect timeout its submission carries, for whichever
// leader schedules it; a negative one is refused and records nothing.
func TestJobConnectTimeout(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	registerTargets(t, a, "web-1")
	sub := func(id string, connect time.Duration) Result {
		return a.apply("", &events.JobSubmitted{JobId: id, Config: []byte("x"), Targets: []string{"web-1"},
			TimeoutNanos: int64(time.Minute), MaxFailures: -1, ConnectTimeoutNanos: int64(connect)})
	}
	if r := sub("j1", 30*time.Second); r.Rejected != nil {
		t.Fatal(r.Rejected)
	}
	j, err := f.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(j.GetConnectTimeoutNanos()); got != 30*time.Second {
		t.Fatalf("job's connect timeout %s, want 30s", got)
	}
	r := sub("j2", -time.Second)
	if r.Rejected == nil || !errors.Is(r.Rejected, ErrInvalid) {
		t.Fatalf("a negative connect timeout: %v, want invalid", r.Rejected)
	}
	if _, err := f.Job("j2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused job recorded: %v", err)
	}
}
