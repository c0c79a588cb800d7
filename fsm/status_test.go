package fsm

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// jobLog is a job's life as a log holds it: with statuses by name, as a
// build before the status enums wrote them (legacy), or as this build
// writes them, in two parts: the state is compared after each.
func jobLog(legacy bool) (first, rest []proto.Message) {
	finished := func(target, name string, st events.TargetStatus) *events.JobTargetFinished {
		if legacy {
			return &events.JobTargetFinished{JobId: "j1", Target: target, Status: name}
		}
		return &events.JobTargetFinished{JobId: "j1", Target: target, TargetStatus: st.Enum()}
	}
	done := &events.JobFinished{JobId: "j1", JobStatus: events.JobStatus_JOB_STATUS_FAILED.Enum()}
	if legacy {
		done = &events.JobFinished{JobId: "j1", Status: "failed"}
	}
	first = []proto.Message{
		&events.JobSubmitted{JobId: "j1", Config: []byte("x"), Targets: []string{"a", "b", "c", "d"}, BatchSize: 2, MaxFailures: -1, TimeoutNanos: int64(time.Minute)},
		&events.JobBatchStarted{JobId: "j1", Batch: 1, Targets: []string{"a", "b"}},
		&events.JobTargetDispatched{JobId: "j1", Target: "a", Node: "n1"},
		finished("a", "changed", events.TargetStatus_TARGET_STATUS_CHANGED),
		finished("b", "unreachable", events.TargetStatus_TARGET_STATUS_UNREACHABLE),
		&events.JobBatchStarted{JobId: "j1", Batch: 2, Targets: []string{"c"}},
	}
	rest = []proto.Message{
		&events.JobTargetDispatched{JobId: "j1", Target: "c", Node: "n2"},
		finished("c", "ok", events.TargetStatus_TARGET_STATUS_OK),
		// Refused: not an outcome, by name or by value.
		finished("d", "pending", events.TargetStatus_TARGET_STATUS_PENDING),
		done,
	}
	return first, rest
}

func jobState(t *testing.T, f *FSM) (*Job, []*JobTarget) {
	t.Helper()
	j, err := f.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	jts, err := f.JobTargets("j1")
	if err != nil {
		t.Fatal(err)
	}
	return j, jts
}

func sameJobState(t *testing.T, when string, a, b *FSM) {
	t.Helper()
	ja, ta := jobState(t, a)
	jb, tb := jobState(t, b)
	if !proto.Equal(ja, jb) {
		t.Fatalf("%s: job\n%v\nwant\n%v", when, ja, jb)
	}
	if len(ta) != len(tb) {
		t.Fatalf("%s: %d targets, want %d", when, len(ta), len(tb))
	}
	for i := range ta {
		if !proto.Equal(ta[i], tb[i]) {
			t.Fatalf("%s: target\n%v\nwant\n%v", when, ta[i], tb[i])
		}
	}
}

// A log written before the status enums replays to the state this build's
// log gives, and a state written before them (statuses by name in the
// records) reads as, and goes on like, one written now.
func TestOldStatusesReplayIdentically(t *testing.T) {
	next := map[*FSM]*applier{}
	run := func(f *FSM, log []proto.Message) []Result {
		a := next[f]
		var out []Result
		for _, p := range log {
			out = append(out, a.apply("", p))
		}
		return out
	}
	open := func(dir string) *FSM {
		f := openTest(t, dir)
		next[f] = &applier{t: t, f: f}
		registerTargets(t, next[f], "a", "b", "c", "d")
		return f
	}
	dir := t.TempDir()
	old, now := open(dir), open(t.TempDir())
	oldFirst, oldRest := jobLog(true)
	nowFirst, nowRest := jobLog(false)
	for i, r := range run(old, oldFirst) {
		if r.Rejected != nil {
			t.Fatalf("old event %d: %v", i, r.Rejected)
		}
	}
	run(now, nowFirst)
	sameJobState(t, "after the first events", old, now)
	if j, _ := jobState(t, old); j.GetStatus() != events.JobStatus_JOB_STATUS_RUNNING || j.Count(events.TargetStatus_TARGET_STATUS_UNREACHABLE) != 1 {
		t.Fatalf("job %s, counts %v", j.GetStatus(), j.GetCounts())
	}

	// Write old's records back as a build before the enums wrote them.
	b := old.db.NewBatch()
	j, jts := jobState(t, old)
	j.LegacyStatus, j.Status = j.GetStatus().Name(), 0
	put := func(k []byte, m proto.Message) {
		v, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Set(k, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	put(key(tagJob, "j1"), j)
	for _, jt := range jts {
		jt.LegacyStatus, jt.Status = jt.GetStatus().Name(), 0
		put(key(tagJobTarget, "j1", jt.GetTarget()), jt)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := openTest(t, dir)
	next[reopened], old = &applier{t: t, f: reopened, next: next[old].next}, reopened
	sameJobState(t, "a state of names, reopened", old, now)
	if got := activeIDs(t, old); len(got) != 1 {
		t.Fatalf("active jobs %v after reopening", got)
	}

	oldResults, nowResults := run(old, oldRest), run(now, nowRest)
	for i := range oldResults {
		if (oldResults[i].Rejected == nil) != (nowResults[i].Rejected == nil) {
			t.Fatalf("event %d: rejected %v by name, %v by value", i, oldResults[i].Rejected, nowResults[i].Rejected)
		}
	}
	if nowResults[2].Rejected == nil {
		t.Fatal("a non-outcome target status was accepted")
	}
	sameJobState(t, "at the end", old, now)
	j, jts = jobState(t, old)
	if j.GetStatus() != events.JobStatus_JOB_STATUS_FAILED || jts[3].GetStatus() != events.TargetStatus_TARGET_STATUS_SKIPPED {
		t.Fatalf("job %s, d %s; want failed, d skipped", j.GetStatus(), jts[3].GetStatus())
	}
}
