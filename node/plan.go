package node

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

// DefaultConnectTimeout is how long a released target waits for its agent
// to be connected when the submission sets no connect timeout.
const DefaultConnectTimeout = 30 * time.Second

// A jobPlan is what the scheduler decides for one job at one moment. It is
// a function of the job, its targets, their keys and the time alone, so a
// new leader that plans over the same state decides the same, and the
// rules can be tested without a cluster.
type jobPlan struct {
	// Finish ends targets in flight: refused, or unreachable.
	Finish []decision
	// Next releases the next targets or finishes the job. It is decided
	// only when nothing is in Finish: the counts it rests on change once
	// those finishes commit (or lose to a result that came first), and the
	// commit wakes the scheduler for the next plan.
	Next *decision
	// Dispatch lists the targets in flight whose agents are connected:
	// each must have been sent the job on its current connection.
	Dispatch []dispatchTo
}

// A decision is an event to write under a request id derived from the
// decision itself, so that it is written once however often it is made.
type decision struct {
	ReqID string
	Event proto.Message
}

// dispatchTo names the node holding a target's stream, and the stream:
// Conn changes when the target reconnects, and the job is sent again.
type dispatchTo struct {
	Target string
	Node   string
	Conn   string
}

// inFlight reports whether a target is released and not finished.
func inFlight(t *fsm.JobTarget) bool {
	return t.GetStatus() == events.TargetStatus_TARGET_STATUS_DISPATCHED || t.GetStatus() == events.TargetStatus_TARGET_STATUS_RUNNING
}

// agentAway reports whether a target's agent is not connected, as the log
// records it, and since when (zero if it never connected). A missing key
// (tk nil) never connected.
func agentAway(tk *fsm.TargetKey) (away bool, since time.Time) {
	switch {
	case tk == nil:
		return true, time.Time{}
	case tk.GetConnected():
		return false, time.Time{}
	case tk.GetLastTransitionUnixNano() == 0:
		return true, time.Time{}
	}
	return true, time.Unix(0, tk.GetLastTransitionUnixNano())
}

// planJob decides what the scheduler does next for job j, whose targets
// are targets (any order) and whose targets' keys are keys (by name; a
// target without a key has none there), at time now.
//
// Rules, for each target in flight (dispatched or running): a revoked key
// is refused; past the job's timeout since its release it is unreachable;
// if its agent is not connected and it has not started, past the job's
// connect timeout since its dispatch was due (its release, or the loss of
// its agent's connection if later) it is unreachable (a running target
// keeps the job's timeout: its agent may still be running it and report
// from its journal when it reconnects); otherwise it is dispatched if its
// agent is connected, and waits if not. Then for the job: a cancelled job
// finishes once nothing is in flight; a running one releases pending
// targets in submission order up to the window of batch_size in flight,
// unless more than max_failures (-1: no limit) have failed; once nothing
// is in flight and nothing can be released it finishes: stopped if
// max_failures was passed, failed if any target failed, done otherwise.
func planJob(j *fsm.Job, targets []*fsm.JobTarget, keys map[string]*fsm.TargetKey, now time.Time) jobPlan {
	var p jobPlan
	var flying, failures, pending int
	for _, t := range targets {
		st := t.GetStatus()
		switch {
		case inFlight(t):
			flying++
			if d := tendTarget(j, t, keys[t.GetTarget()], now); d != nil {
				p.Finish = append(p.Finish, *d)
			} else if tk := keys[t.GetTarget()]; tk.GetConnected() {
				p.Dispatch = append(p.Dispatch, dispatchTo{
					Target: t.GetTarget(), Node: tk.GetNode(),
					Conn: fmt.Sprintf("%s@%d", tk.GetNode(), tk.GetLastTransitionUnixNano()),
				})
			}
		case st == events.TargetStatus_TARGET_STATUS_PENDING:
			pending++
		case st.Failure():
			failures++
		}
	}
	if len(p.Finish) > 0 {
		return p
	}
	id := j.GetId()
	if j.GetStatus() == events.JobStatus_JOB_STATUS_CANCELLING {
		if flying == 0 {
			p.Next = &decision{"finish/" + id, &events.JobFinished{JobId: id, JobStatus: events.JobStatus_JOB_STATUS_CANCELLED.Enum()}}
		}
		return p
	}
	stopped := j.GetMaxFailures() >= 0 && failures > int(j.GetMaxFailures())
	if !stopped && pending > 0 && flying < int(j.GetBatchSize()) {
		ordered := append([]*fsm.JobTarget(nil), targets...)
		fsm.SortBySubmission(ordered)
		var release []string
		for _, t := range ordered {
			if len(release)+flying >= int(j.GetBatchSize()) {
				break
			}
			if t.GetStatus() == events.TargetStatus_TARGET_STATUS_PENDING {
				release = append(release, t.GetTarget())
			}
		}
		batch := j.GetBatches() + 1
		p.Next = &decision{fmt.Sprintf("release/%s/%d", id, batch), &events.JobBatchStarted{JobId: id, Batch: batch, Targets: release}}
		return p
	}
	if flying == 0 && (pending == 0 || stopped) {
		outcome := events.JobStatus_JOB_STATUS_DONE
		switch {
		case stopped:
			outcome = events.JobStatus_JOB_STATUS_STOPPED
		case failures > 0:
			outcome = events.JobStatus_JOB_STATUS_FAILED
		}
		p.Next = &decision{"finish/" + id, &events.JobFinished{JobId: id, JobStatus: outcome.Enum()}}
	}
	return p
}

// tendTarget decides whether target t, in flight, ends now, and how.
func tendTarget(j *fsm.Job, t *fsm.JobTarget, tk *fsm.TargetKey, now time.Time) *decision {
	key := j.GetId() + "/" + t.GetTarget()
	finish := func(reqID string, status events.TargetStatus, msg string) *decision {
		return &decision{reqID + key, &events.JobTargetFinished{JobId: j.GetId(), Target: t.GetTarget(), TargetStatus: status.Enum(), Error: msg}}
	}
	if tk.GetRevoked() {
		return finish("refused/", events.TargetStatus_TARGET_STATUS_REFUSED, "target key revoked")
	}
	released := time.Unix(0, t.GetReleasedUnixNano())
	timeout := time.Duration(j.GetTimeoutNanos())
	if now.Sub(released) > timeout {
		what := "no answer"
		if t.GetStatus() == events.TargetStatus_TARGET_STATUS_RUNNING {
			what = "started but no result"
		}
		return finish("timeout/", events.TargetStatus_TARGET_STATUS_UNREACHABLE, fmt.Sprintf("%s within %s", what, timeout))
	}
	away, since := agentAway(tk)
	connect := time.Duration(j.GetConnectTimeoutNanos())
	if !away || t.GetStatus() != events.TargetStatus_TARGET_STATUS_DISPATCHED || connect <= 0 {
		return nil
	}
	due := released
	if since.After(due) {
		due = since
	}
	if now.Sub(due) <= connect {
		return nil
	}
	why := "never connected"
	if !since.IsZero() {
		why = "disconnected since " + since.UTC().Format(time.RFC3339)
	}
	// The same request id as the job's timeout: whichever is decided
	// first, the target is unreachable once.
	return finish("timeout/", events.TargetStatus_TARGET_STATUS_UNREACHABLE, fmt.Sprintf("agent not connected within the connect timeout %s (%s)", connect, why))
}
