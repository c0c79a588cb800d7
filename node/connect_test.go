package node_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// A target whose agent is stopped is not waited for until the job's
// timeout: while it waits, the job's status says its agent is disconnected
// and since when; after the connect timeout it ends unreachable, and the
// others run.
func TestDisconnectedTargetUnreachableAfterConnectTimeout(t *testing.T) {
	c := nodetest.Start(t, 3)
	dir := t.TempDir()
	away := c.StartAgent("web-1", nodetest.AgentOptions{})
	c.StartAgent("web-2", nodetest.AgentOptions{})
	c.StartAgent("web-3", nodetest.AgentOptions{})
	c.WaitConnected("web-1", "web-2", "web-3")
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	away.Close()
	var lost int64
	c.Eventually(20*time.Second, func() error {
		tk, err := c.Node(0).State().TargetKey("web-1")
		if err != nil || tk.GetConnected() {
			return fmt.Errorf("web-1 still connected (%v)", err)
		}
		lost = tk.GetLastTransitionUnixNano()
		return nil
	})

	// While it waits, the job says for what. A connect timeout beyond the
	// test's deadlines keeps it waiting as long as the test looks.
	wait := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, false), Targets: "web-1", MaxFailures: -1, TimeoutSeconds: 600, ConnectTimeoutSeconds: 600})
	c.Eventually(20*time.Second, func() error {
		info, err := cl.Jobs.Get(ctxT(t), &rpc.GetJobRequest{JobId: wait.GetJobId()})
		if err != nil {
			return err
		}
		if info.GetConnectTimeoutSeconds() != 600 {
			return fmt.Errorf("job's connect timeout %ds, want 600", info.GetConnectTimeoutSeconds())
		}
		tg := info.GetTargets()[0]
		if tg.GetTargetStatus() != events.TargetStatus_TARGET_STATUS_DISPATCHED || !tg.GetAgentDisconnected() || tg.GetDisconnectedSinceUnixNano() != lost {
			return fmt.Errorf("web-1 %s, agent disconnected %v since %d; want dispatched, disconnected since %d", tg.GetTargetStatus(), tg.GetAgentDisconnected(), tg.GetDisconnectedSinceUnixNano(), lost)
		}
		return nil
	})
	if _, err := cl.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: wait.GetJobId(), Reason: "seen waiting"}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, cl, wait.GetJobId(), 30*time.Second)

	// The job's timeout is far beyond the test's deadlines: only the
	// connect timeout can end web-1.
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, false), Targets: "web-*", MaxFailures: -1, TimeoutSeconds: 600, ConnectTimeoutSeconds: 1})
	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	st := targetStatuses(info)
	for _, name := range []string{"web-2", "web-3"} {
		if st[name] != events.TargetStatus_TARGET_STATUS_OK && st[name] != events.TargetStatus_TARGET_STATUS_CHANGED {
			t.Errorf("%s ended %s, want ok or changed", name, st[name])
		}
	}
	if st["web-1"] != events.TargetStatus_TARGET_STATUS_UNREACHABLE || info.GetJobStatus() != events.JobStatus_JOB_STATUS_FAILED {
		t.Fatalf("job %s, targets %v; want failed with web-1 unreachable", info.GetJobStatus(), st)
	}
	for _, tg := range info.GetTargets() {
		if tg.GetTarget() == "web-1" && (!strings.Contains(tg.GetError(), "connect timeout 1s") || tg.GetAgentDisconnected()) {
			t.Errorf("web-1: error %q, agent disconnected %v; want the connect timeout named, and no longer waiting", tg.GetError(), tg.GetAgentDisconnected())
		}
	}
	if n := runs(t, dir, "web-1"); n != 0 {
		t.Errorf("web-1 ran %d times", n)
	}
}

func TestSubmitRefusesNegativeConnectTimeout(t *testing.T) {
	c := nodetest.Start(t, 1)
	c.RegisterTarget("web-1", t.TempDir())
	cl := c.Client(0)
	_, err := cl.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "x.toml", Config: countingConfig(t.TempDir(), 0, false), Targets: "web-1", ConnectTimeoutSeconds: -1})
	if err == nil || !strings.Contains(err.Error(), "connect_timeout") {
		t.Fatalf("a negative connect timeout: %v, want an error naming connect_timeout", err)
	}
	if jobs, err := cl.Jobs.List(ctxT(t), &rpc.ListJobsRequest{}); err != nil || len(jobs.GetJobs()) != 0 {
		t.Errorf("jobs after the refusal: %v (%v), want none", jobs.GetJobs(), err)
	}
}
