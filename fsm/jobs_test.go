package fsm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

func registerTargets(t *testing.T, a *applier, names ...string) {
	t.Helper()
	for _, name := range names {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		a.mustApply(&events.TargetKeyRegistered{Target: name, PublicKey: pub})
	}
}

func targetNames(jts []*JobTarget) []string {
	var out []string
	for _, jt := range jts {
		out = append(out, jt.GetTarget())
	}
	return out
}

// The submitted order (which batches release in) is kept in the targets'
// own records, and the job record stays the same size however many targets
// the job has: every per-target event rewrites it.
func TestJobKeepsSubmissionOrderOutsideTheJobRecord(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	registerTargets(t, a, "web-c", "web-a", "web-b")
	a.mustApply(&events.JobSubmitted{JobId: "j1", Name: "site.toml", Config: []byte("x"),
		Targets: []string{"web-c", "web-a", "web-b"}, BatchSize: 1, TimeoutNanos: int64(time.Minute)})

	j, err := f.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	if got := j.GetTargets(); len(got) != 0 { //nolint:staticcheck // checking the deprecated field stays empty
		t.Fatalf("job record lists its targets: %v", got)
	}
	if j.Count(targetPending) != 3 {
		t.Fatalf("counts = %v, want 3 pending", j.GetCounts())
	}
	jts, err := f.JobTargets("j1")
	if err != nil {
		t.Fatal(err)
	}
	if got := targetNames(jts); !slices.Equal(got, []string{"web-a", "web-b", "web-c"}) {
		t.Fatalf("JobTargets = %v, want name order", got)
	}
	SortBySubmission(jts)
	if got := targetNames(jts); !slices.Equal(got, []string{"web-c", "web-a", "web-b"}) {
		t.Fatalf("by submission = %v, want web-c web-a web-b", got)
	}

	size := proto.Size(j)
	a.mustApply(&events.JobBatchStarted{JobId: "j1", Batch: 1, Targets: []string{"web-c"}})
	a.mustApply(&events.JobTargetDispatched{JobId: "j1", Target: "web-c", Node: "n1"})
	a.mustApply(&events.JobTargetFinished{JobId: "j1", Target: "web-c", TargetStatus: events.TargetStatus_TARGET_STATUS_OK.Enum()})
	if j, err = f.Job("j1"); err != nil {
		t.Fatal(err)
	}
	if j.Count(events.TargetStatus_TARGET_STATUS_OK) != 1 || j.Count(targetPending) != 2 {
		t.Fatalf("counts = %v, want 1 ok, 2 pending", j.GetCounts())
	}
	if grown := proto.Size(j) - size; grown > 16 {
		t.Fatalf("job record grew by %d bytes over one target's run", grown)
	}
}

// Records written before JobTarget.position existed all hold position 0:
// they keep the order they are stored in, by name, which is how jobs were
// submitted then.
func TestSortBySubmissionKeepsStoredOrderOfOldRecords(t *testing.T) {
	jts := []*JobTarget{{Target: "a"}, {Target: "b"}, {Target: "c"}}
	SortBySubmission(jts)
	if got := targetNames(jts); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("order = %v", got)
	}
}

// submitJobs submits one-minute jobs with the given ids, in order, to one
// registered target.
func submitJobs(t *testing.T, a *applier, ids ...string) {
	t.Helper()
	registerTargets(t, a, "web-1")
	for _, id := range ids {
		a.mustApply(&events.JobSubmitted{JobId: id, Config: []byte("x"), Targets: []string{"web-1"}, TimeoutNanos: int64(time.Minute)})
	}
}

func activeIDs(t *testing.T, f *FSM) []string {
	t.Helper()
	jobs, err := f.ActiveJobs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range jobs {
		out = append(out, j.GetId())
	}
	return out
}

// The scheduler reads only the active jobs; the set must follow applied
// events, survive a reopen and come with a restored snapshot.
func TestActiveJobsFollowTheState(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{t: t, f: f}
	submitJobs(t, a, "j2", "j1", "j3")
	if got := activeIDs(t, f); !slices.Equal(got, []string{"j2", "j1", "j3"}) {
		t.Fatalf("active = %v, want submission order j2 j1 j3", got)
	}
	a.mustApply(&events.JobFinished{JobId: "j1", JobStatus: events.JobStatus_JOB_STATUS_STOPPED.Enum()})
	a.mustApply(&events.JobCancelled{JobId: "j3"})
	if r := a.apply("", &events.JobFinished{JobId: "j1", JobStatus: events.JobStatus_JOB_STATUS_DONE.Enum()}); r.Rejected == nil {
		t.Fatal("finishing a finished job was not rejected")
	}
	// Cancelling is still active: the scheduler finishes it.
	if got := activeIDs(t, f); !slices.Equal(got, []string{"j2", "j3"}) {
		t.Fatalf("active = %v, want j2 j3", got)
	}

	snap := snapshotBytes(t, f)
	a.mustApply(&events.JobFinished{JobId: "j2", JobStatus: events.JobStatus_JOB_STATUS_STOPPED.Enum()})
	if got := activeIDs(t, f); !slices.Equal(got, []string{"j3"}) {
		t.Fatalf("active = %v, want j3", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openTest(t, dir)
	if got := activeIDs(t, f); !slices.Equal(got, []string{"j3"}) {
		t.Fatalf("after reopening: active = %v, want j3", got)
	}
	if err := f.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if got := activeIDs(t, f); !slices.Equal(got, []string{"j2", "j3"}) {
		t.Fatalf("after restoring the snapshot: active = %v, want j2 j3", got)
	}
}

// Opening a state reads the running jobs from their own keys, not from every
// job ever submitted; a state from before those keys gets them once.
func TestActiveJobsAreIndexed(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{t: t, f: f}
	submitJobs(t, a, "j1", "j2")
	a.mustApply(&events.JobFinished{JobId: "j2", JobStatus: events.JobStatus_JOB_STATUS_STOPPED.Enum()})
	// A running job record without its key: a scan of the jobs would list
	// it, the index does not.
	ghost, err := proto.Marshal(&Job{Id: "ghost", Status: jobRunning})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.Set(key(tagJob, "ghost"), ghost, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openTest(t, dir)
	if got := activeIDs(t, f); !slices.Equal(got, []string{"j1"}) {
		t.Fatalf("after reopening: active = %v, want j1 (from the index)", got)
	}

	// Remove the index, as in a state written before it: the next open
	// builds it from the jobs, ghost included, and marks the state indexed.
	for _, k := range [][]byte{key(tagActiveJob, "j1"), keyActiveJobsIndexed} {
		if err := f.db.Delete(k, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openTest(t, dir)
	if got := activeIDs(t, f); !slices.Equal(got, []string{"ghost", "j1"}) && !slices.Equal(got, []string{"j1", "ghost"}) {
		t.Fatalf("after migrating: active = %v, want ghost and j1", got)
	}
	if v, _ := readU64(f.db, keyActiveJobsIndexed); v != 1 {
		t.Fatalf("state not marked indexed after the migration (%d)", v)
	}
}

// A cancel ends every target that has not started, released or not, and
// from then on the log refuses any start of the job: a node or agent that
// had not seen the cancel cannot start a target after it. A target that
// had started finishes with its result.
func TestCancelledJobStartsNothing(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	registerTargets(t, a, "a", "b", "c")
	a.mustApply(&events.JobSubmitted{JobId: "j1", Config: []byte("x"), Targets: []string{"a", "b", "c"}, BatchSize: 2, TimeoutNanos: int64(time.Minute)})
	a.mustApply(&events.JobBatchStarted{JobId: "j1", Batch: 1, Targets: []string{"a", "b"}})
	a.mustApply(&events.JobTargetDispatched{JobId: "j1", Target: "a", Node: "n1"})
	a.mustApply(&events.JobCancelled{JobId: "j1"})

	jts, err := f.JobTargets("j1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, jt := range jts {
		got[jt.GetTarget()] = jt.GetStatus().Name()
	}
	if want := map[string]string{"a": "running", "b": "cancelled", "c": "cancelled"}; !maps.Equal(got, want) {
		t.Fatalf("after the cancel: targets %v, want %v", got, want)
	}
	if r := a.apply("", &events.JobTargetDispatched{JobId: "j1", Target: "b", Node: "n1"}); r.Rejected == nil {
		t.Fatal("a start of a cancelled job's target was accepted")
	}
	j, err := f.Job("j1")
	if err != nil {
		t.Fatal(err)
	}
	if j.GetStatus() != jobCancelling || j.Count(targetRunning) != 1 || j.Count(targetCancelled) != 2 {
		t.Fatalf("job %s, counts %v; want cancelling, 1 running, 2 cancelled", j.GetStatus().Name(), j.GetCounts())
	}
	if r := a.apply("", &events.JobFinished{JobId: "j1", JobStatus: events.JobStatus_JOB_STATUS_CANCELLED.Enum()}); r.Rejected == nil {
		t.Fatal("the job finished with a target still running")
	}
	a.mustApply(&events.JobTargetFinished{JobId: "j1", Target: "a", TargetStatus: events.TargetStatus_TARGET_STATUS_CHANGED.Enum()})
	a.mustApply(&events.JobFinished{JobId: "j1", JobStatus: events.JobStatus_JOB_STATUS_CANCELLED.Enum()})
}
