package fsm

import (
	"sync"

	"github.com/hpt-dev/hpt/events"
)

// Counts are what this process has applied since it opened the state, for
// metrics. They are not state: they start at zero in every process, as
// Prometheus counters may, and a restored snapshot does not add to them.
type Counts struct {
	// Events by type name, rejected commands and duplicates left out.
	Events map[string]uint64
	// TargetResults counts job_target_finished by status (ok, changed,
	// failed, unreachable, refused, cancelled).
	TargetResults map[string]uint64
	// Jobs counts job_finished by status (done, failed, stopped, cancelled).
	Jobs map[string]uint64
}

type counters struct {
	mu sync.Mutex
	c  Counts
}

func (c *counters) record(ev *events.Event, payload any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c.Events == nil {
		c.c = Counts{Events: map[string]uint64{}, TargetResults: map[string]uint64{}, Jobs: map[string]uint64{}}
	}
	c.c.Events[events.Name(ev.GetType())]++
	switch p := payload.(type) {
	case *events.JobTargetFinished:
		c.c.TargetResults[p.GetTargetStatus().Name()]++
	case *events.JobFinished:
		c.c.Jobs[p.GetJobStatus().Name()]++
	}
}

// Counts returns a copy of the counts.
func (f *FSM) Counts() Counts {
	f.counts.mu.Lock()
	defer f.counts.mu.Unlock()
	out := Counts{Events: map[string]uint64{}, TargetResults: map[string]uint64{}, Jobs: map[string]uint64{}}
	for k, v := range f.counts.c.Events {
		out.Events[k] = v
	}
	for k, v := range f.counts.c.TargetResults {
		out.TargetResults[k] = v
	}
	for k, v := range f.counts.c.Jobs {
		out.Jobs[k] = v
	}
	return out
}
