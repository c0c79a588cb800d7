package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// A target whose agent is away when its job is cancelled has not started:
// it ends cancelled, and when its agent comes back nothing of the job is
// dispatched to it or run. Even a dispatch that reaches the agent after the
// cancel (as from a node that had not applied it yet) runs nothing: the
// log refuses the start and the agent runs only what the log started.
func TestCancelledJobDoesNotRunOnReconnect(t *testing.T) {
	c := nodetest.Start(t, 3)
	dir := t.TempDir()
	awayDir := t.TempDir()
	away := c.StartAgent("web-1", nodetest.AgentOptions{Dir: awayDir})
	c.StartAgent("web-2", nodetest.AgentOptions{})
	c.StartAgent("web-3", nodetest.AgentOptions{})
	c.WaitConnected("web-1", "web-2", "web-3")
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	away.Close()
	c.Eventually(20*time.Second, func() error {
		if tk, err := c.Node(0).State().TargetKey("web-1"); err != nil || tk.GetConnected() {
			return fmt.Errorf("web-1 still connected (%v)", err)
		}
		return nil
	})

	// web-1 and web-2 are released; web-2 runs, web-1 waits for its agent,
	// web-3 waits for room in the batch.
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 3*time.Second, false), Targets: "web-*", BatchSize: 2, MaxFailures: -1, TimeoutSeconds: 60})
	c.Eventually(20*time.Second, func() error {
		if runs(t, dir, "web-2") == 0 {
			return fmt.Errorf("web-2 has not started")
		}
		return nil
	})
	if _, err := cl.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: resp.GetJobId(), Reason: "test"}); err != nil {
		t.Fatalf("cancel: %v", err)
	}

	c.StartAgent("web-1", nodetest.AgentOptions{Dir: awayDir})
	c.WaitConnected("web-1")
	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	st := targetStatuses(info)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_CANCELLED || st["web-1"] != events.TargetStatus_TARGET_STATUS_CANCELLED || st["web-3"] != events.TargetStatus_TARGET_STATUS_CANCELLED {
		t.Fatalf("job %s, targets %v; want cancelled with web-1 and web-3 cancelled", info.GetStatus(), st)
	}

	// A dispatch of the cancelled job reaching web-1's agent now: the node
	// holding its stream pushes whatever it is asked to.
	tk, err := c.Node(0).State().TargetKey("web-1")
	if err != nil {
		t.Fatal(err)
	}
	holder := -1
	for i := 0; i < c.Len(); i++ {
		if c.Node(i).Name() == tk.GetNode() {
			holder = i
		}
	}
	if holder < 0 {
		t.Fatalf("web-1's stream is on %q, not a node of the cluster", tk.GetNode())
	}
	if _, err := rpc.NewInternalClient(c.NodeClient(holder)).Dispatch(ctxT(t), &rpc.DispatchRequest{JobId: resp.GetJobId(), Target: "web-1"}); err != nil {
		t.Fatalf("stale dispatch: %v", err)
	}
	// A job after it on the same stream: once it has run, the node has
	// answered the stale dispatch's acknowledgement (one stream, in order).
	after := t.TempDir()
	next := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(after, 0, false), Targets: "web-1", TimeoutSeconds: 60})
	if info := waitJob(t, c, cl, next.GetJobId(), 60*time.Second); info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE || runs(t, after, "web-1") != 1 {
		t.Fatalf("the next job on web-1: %s, %v", info.GetStatus(), targetStatuses(info))
	}

	if n := runs(t, dir, "web-1"); n != 0 {
		t.Errorf("web-1 ran the cancelled job %d times", n)
	}
	cancelled := false
	c.Node(0).State().Events(info.GetSubmittedIndex(), func(ev *events.Event) bool {
		p, _ := ev.DecodePayload()
		switch p := p.(type) {
		case *events.JobCancelled:
			cancelled = cancelled || p.GetJobId() == resp.GetJobId()
		case *events.JobTargetDispatched:
			if cancelled && p.GetJobId() == resp.GetJobId() {
				t.Errorf("event %d: job_target_dispatched for %s after job_cancelled", ev.GetIndex(), p.GetTarget())
			}
		case *events.JobTargetFinished:
			if p.GetJobId() == resp.GetJobId() && p.GetTarget() == "web-1" && p.GetTargetStatus() != events.TargetStatus_TARGET_STATUS_CANCELLED {
				t.Errorf("event %d: web-1 finished %s", ev.GetIndex(), p.GetTargetStatus().Name())
			}
		}
		return true
	})
	if !cancelled {
		t.Fatal("no job_cancelled in the log")
	}
}
