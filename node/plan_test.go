package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

// describe renders a plan one line per decision, in order: "refused web-1:
// why", "unreachable web-1: why", "release 2: a b", "finish done",
// "dispatch web-1 via n1@5".
func describe(p jobPlan) []string {
	var out []string
	line := func(d decision) string {
		switch e := d.Event.(type) {
		case *events.JobTargetFinished:
			return fmt.Sprintf("%s %s: %s", e.GetTargetStatus().Name(), e.GetTarget(), e.GetError())
		case *events.JobBatchStarted:
			return fmt.Sprintf("release %d: %s", e.GetBatch(), strings.Join(e.GetTargets(), " "))
		case *events.JobFinished:
			return "finish " + e.GetJobStatus().Name()
		}
		return fmt.Sprintf("unknown %T", d.Event)
	}
	for _, d := range p.Finish {
		out = append(out, line(d))
	}
	if p.Next != nil {
		out = append(out, line(*p.Next))
	}
	for _, d := range p.Dispatch {
		out = append(out, fmt.Sprintf("dispatch %s via %s", d.Target, d.Conn))
	}
	return out
}

func TestPlanJob(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) int64 { return t0.Add(d).UnixNano() }
	job := func(status events.JobStatus, batch uint32, maxFailures int32) *fsm.Job {
		return &fsm.Job{
			Id: "j", Status: status, BatchSize: batch, MaxFailures: maxFailures, Batches: 1,
			TimeoutNanos: int64(time.Minute), ConnectTimeoutNanos: int64(5 * time.Second),
		}
	}
	// tg builds a target at position pos, released at t0 if in flight.
	tg := func(name string, status events.TargetStatus, pos uint32) *fsm.JobTarget {
		jt := &fsm.JobTarget{JobId: "j", Target: name, Status: status, Position: pos}
		if status == events.TargetStatus_TARGET_STATUS_DISPATCHED || status == events.TargetStatus_TARGET_STATUS_RUNNING {
			jt.ReleasedUnixNano = at(0)
		}
		return jt
	}
	connected := func(node string) *fsm.TargetKey {
		return &fsm.TargetKey{Connected: true, Node: node, LastTransitionUnixNano: at(-time.Hour)}
	}
	gone := func(since time.Duration) *fsm.TargetKey {
		return &fsm.TargetKey{Node: "n1", LastTransitionUnixNano: at(since)}
	}
	conn := fmt.Sprintf("@%d", at(-time.Hour))

	for _, tc := range []struct {
		name    string
		job     *fsm.Job
		targets []*fsm.JobTarget
		keys    map[string]*fsm.TargetKey
		now     time.Duration // after t0
		want    []string
	}{
		{
			name:    "first batch released in submission order, not name order",
			job:     func() *fsm.Job { j := job(events.JobStatus_JOB_STATUS_RUNNING, 2, -1); j.Batches = 0; return j }(),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_PENDING, 2), tg("b", events.TargetStatus_TARGET_STATUS_PENDING, 0), tg("c", events.TargetStatus_TARGET_STATUS_PENDING, 1)},
			want:    []string{"release 1: b c"},
		},
		{
			name:    "window: one finished makes room for one",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_OK, 0), tg("b", events.TargetStatus_TARGET_STATUS_RUNNING, 1), tg("c", events.TargetStatus_TARGET_STATUS_PENDING, 2), tg("d", events.TargetStatus_TARGET_STATUS_PENDING, 3)},
			keys:    map[string]*fsm.TargetKey{"b": connected("n1")},
			want:    []string{"release 2: c", "dispatch b via n1" + conn},
		},
		{
			name:    "window full: nothing released, in-flight targets dispatched",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0), tg("b", events.TargetStatus_TARGET_STATUS_RUNNING, 1), tg("c", events.TargetStatus_TARGET_STATUS_PENDING, 2)},
			keys:    map[string]*fsm.TargetKey{"a": connected("n2"), "b": connected("n1")},
			want:    []string{"dispatch a via n2" + conn, "dispatch b via n1" + conn},
		},
		{
			name:    "max failures passed: no release, wait for those in flight",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, 0),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_FAILED, 0), tg("b", events.TargetStatus_TARGET_STATUS_RUNNING, 1), tg("c", events.TargetStatus_TARGET_STATUS_PENDING, 2)},
			keys:    map[string]*fsm.TargetKey{"b": connected("n1")},
			want:    []string{"dispatch b via n1" + conn},
		},
		{
			name:    "max failures passed and nothing in flight: stopped",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, 1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_FAILED, 0), tg("b", events.TargetStatus_TARGET_STATUS_UNREACHABLE, 1), tg("c", events.TargetStatus_TARGET_STATUS_PENDING, 2)},
			want:    []string{"finish stopped"},
		},
		{
			name:    "max failures reached, not passed: goes on",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, 1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_REFUSED, 0), tg("b", events.TargetStatus_TARGET_STATUS_PENDING, 1)},
			want:    []string{"release 2: b"},
		},
		{
			name:    "all ok or changed: done",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 3, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_OK, 0), tg("b", events.TargetStatus_TARGET_STATUS_CHANGED, 1), tg("c", events.TargetStatus_TARGET_STATUS_OK, 2)},
			want:    []string{"finish done"},
		},
		{
			name:    "one unreachable among ok and changed: failed",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 3, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_OK, 0), tg("b", events.TargetStatus_TARGET_STATUS_CHANGED, 1), tg("c", events.TargetStatus_TARGET_STATUS_UNREACHABLE, 2)},
			want:    []string{"finish failed"},
		},
		{
			name:    "a failure under the limit: failed, not stopped",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 3, 2),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_FAILED, 0), tg("b", events.TargetStatus_TARGET_STATUS_OK, 1)},
			want:    []string{"finish failed"},
		},
		{
			name:    "cancelling with a target running: wait for it",
			job:     job(events.JobStatus_JOB_STATUS_CANCELLING, 2, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_RUNNING, 0), tg("b", events.TargetStatus_TARGET_STATUS_CANCELLED, 1), tg("c", events.TargetStatus_TARGET_STATUS_CANCELLED, 2)},
			keys:    map[string]*fsm.TargetKey{"a": connected("n1")},
			want:    []string{"dispatch a via n1" + conn},
		},
		{
			name:    "cancelling with nothing in flight: cancelled, whatever failed",
			job:     job(events.JobStatus_JOB_STATUS_CANCELLING, 2, 0),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_FAILED, 0), tg("b", events.TargetStatus_TARGET_STATUS_FAILED, 1), tg("c", events.TargetStatus_TARGET_STATUS_CANCELLED, 2)},
			want:    []string{"finish cancelled"},
		},
		{
			name:    "per-target timeout: dispatched and running alike, then nothing else this plan",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0), tg("b", events.TargetStatus_TARGET_STATUS_RUNNING, 1), tg("c", events.TargetStatus_TARGET_STATUS_PENDING, 2)},
			keys:    map[string]*fsm.TargetKey{"a": connected("n1"), "b": connected("n1")},
			now:     time.Minute + time.Second,
			want:    []string{"unreachable a: no answer within 1m0s", "unreachable b: started but no result within 1m0s"},
		},
		{
			name:    "at the timeout exactly: not yet",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_RUNNING, 0)},
			keys:    map[string]*fsm.TargetKey{"a": connected("n1")},
			now:     time.Minute,
			want:    []string{"dispatch a via n1" + conn},
		},
		{
			name:    "revoked key: refused before any timeout",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_RUNNING, 0)},
			keys:    map[string]*fsm.TargetKey{"a": {Revoked: true}},
			now:     2 * time.Minute,
			want:    []string{"refused a: target key revoked"},
		},
		{
			name:    "disconnected, within the connect timeout: waits, not dispatched",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0), tg("b", events.TargetStatus_TARGET_STATUS_DISPATCHED, 1)},
			keys:    map[string]*fsm.TargetKey{"a": gone(-time.Hour), "b": connected("n1")},
			now:     5 * time.Second,
			want:    []string{"dispatch b via n1" + conn},
		},
		{
			name:    "disconnected before release, past the connect timeout: unreachable",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 2, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0), tg("b", events.TargetStatus_TARGET_STATUS_DISPATCHED, 1)},
			keys:    map[string]*fsm.TargetKey{"a": gone(-time.Hour), "b": connected("n1")},
			now:     6 * time.Second,
			want:    []string{"unreachable a: agent not connected within the connect timeout 5s (disconnected since 2023-11-14T21:13:20Z)", "dispatch b via n1" + conn},
		},
		{
			name:    "never connected, past the connect timeout: unreachable",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0)},
			keys:    map[string]*fsm.TargetKey{"a": {}},
			now:     6 * time.Second,
			want:    []string{"unreachable a: agent not connected within the connect timeout 5s (never connected)"},
		},
		{
			name:    "no key at all counts as never connected",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0)},
			now:     6 * time.Second,
			want:    []string{"unreachable a: agent not connected within the connect timeout 5s (never connected)"},
		},
		{
			name:    "disconnected after release: the connect timeout counts from the disconnect",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0)},
			keys:    map[string]*fsm.TargetKey{"a": gone(10 * time.Second)},
			now:     14 * time.Second,
			want:    nil,
		},
		{
			name:    "disconnected after release, past the connect timeout from the disconnect",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0)},
			keys:    map[string]*fsm.TargetKey{"a": gone(10 * time.Second)},
			now:     16 * time.Second,
			want:    []string{"unreachable a: agent not connected within the connect timeout 5s (disconnected since 2023-11-14T22:13:30Z)"},
		},
		{
			name:    "running and disconnected: the agent may still run it, only the job timeout ends it",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_RUNNING, 0)},
			keys:    map[string]*fsm.TargetKey{"a": gone(-time.Hour)},
			now:     30 * time.Second,
			want:    nil,
		},
		{
			name: "no connect timeout (a job from before it existed): only the job timeout",
			job: func() *fsm.Job {
				j := job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1)
				j.ConnectTimeoutNanos = 0
				return j
			}(),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0)},
			keys:    map[string]*fsm.TargetKey{"a": gone(-time.Hour)},
			now:     30 * time.Second,
			want:    nil,
		},
		{
			name:    "unreachable by connect timeout holds back the next release until it commits",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_DISPATCHED, 0), tg("b", events.TargetStatus_TARGET_STATUS_PENDING, 1)},
			keys:    map[string]*fsm.TargetKey{"a": gone(-time.Hour)},
			now:     6 * time.Second,
			want:    []string{"unreachable a: agent not connected within the connect timeout 5s (disconnected since 2023-11-14T21:13:20Z)"},
		},
		{
			name:    "a mix of outcomes with the unreachable one committed: failed",
			job:     job(events.JobStatus_JOB_STATUS_RUNNING, 1, -1),
			targets: []*fsm.JobTarget{tg("a", events.TargetStatus_TARGET_STATUS_UNREACHABLE, 0), tg("b", events.TargetStatus_TARGET_STATUS_OK, 1), tg("c", events.TargetStatus_TARGET_STATUS_CHANGED, 2), tg("d", events.TargetStatus_TARGET_STATUS_CANCELLED, 3)},
			want:    []string{"finish failed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets := slices.Clone(tc.targets)
			got := describe(planJob(tc.job, targets, tc.keys, t0.Add(tc.now)))
			if !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			for i := range targets {
				if targets[i] != tc.targets[i] {
					t.Fatal("planJob reordered the caller's targets")
				}
			}
		})
	}
}

// The same state at the same time gives the same plan: a new leader that
// plans again writes the same decisions under the same request ids.
func TestPlanJobDeterministic(t *testing.T) {
	j := &fsm.Job{Id: "j", Status: events.JobStatus_JOB_STATUS_RUNNING, BatchSize: 2, MaxFailures: -1, Batches: 1, TimeoutNanos: int64(time.Minute), ConnectTimeoutNanos: int64(time.Second)}
	targets := []*fsm.JobTarget{
		{JobId: "j", Target: "a", Status: events.TargetStatus_TARGET_STATUS_DISPATCHED, ReleasedUnixNano: 1},
		{JobId: "j", Target: "b", Status: events.TargetStatus_TARGET_STATUS_PENDING, Position: 1},
	}
	now := time.Unix(0, 1).Add(2 * time.Second)
	first := planJob(j, targets, nil, now)
	again := planJob(j, targets, nil, now)
	if len(first.Finish) != 1 || first.Finish[0].ReqID != "timeout/j/a" {
		t.Fatalf("plan %v: want a timed out under timeout/j/a", describe(first))
	}
	if !slices.Equal(describe(first), describe(again)) || first.Finish[0].ReqID != again.Finish[0].ReqID {
		t.Fatalf("two plans over the same state differ: %v, %v", describe(first), describe(again))
	}
}
