package node_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// An agent that announces labels it was not registered with (here web-1,
// registered role=web, claiming role=db) is shown with its claim but never
// selected by it: a job for role=db reaches the real db target only, and
// the impostor never sees the job.
func TestClaimedLabelsNeverSelect(t *testing.T) {
	c := nodetest.Start(t, 3)
	dir := t.TempDir()
	c.StartAgent("db-1", nodetest.AgentOptions{Labels: map[string]string{"role": "db"}})
	c.StartAgent("web-1", nodetest.AgentOptions{Labels: map[string]string{"role": "web"}, Claim: map[string]string{"role": "db"}})
	c.WaitConnected("db-1", "web-1")
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	// The node answering may not have applied the connection yet.
	var web *rpc.TargetInfo
	c.Eventually(20*time.Second, func() error {
		list, err := cl.Targets.List(ctxT(t), &rpc.ListTargetsRequest{})
		if err != nil {
			return err
		}
		for _, ti := range list.GetTargets() {
			if ti.GetName() == "web-1" && ti.GetStatus() == "connected" {
				web = ti
				return nil
			}
		}
		return fmt.Errorf("web-1 not listed as connected: %v", list.GetTargets())
	})
	if !maps.Equal(web.GetLabels(), map[string]string{"role": "web"}) || !maps.Equal(web.GetClaimedLabels(), map[string]string{"role": "db"}) {
		t.Errorf("web-1 listed with labels %v, claimed %v; want labels role=web (registered), claimed role=db", web.GetLabels(), web.GetClaimedLabels())
	}

	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, false), Selector: map[string]string{"role": "db"}})
	if !slices.Equal(resp.GetTargets(), []string{"db-1"}) {
		t.Errorf("--selector role=db resolved %v, want [db-1]", resp.GetTargets())
	}
	info := waitJob(t, c, cl, resp.GetJobId(), 30*time.Second)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("job %s: %v", info.GetStatus(), info.GetCounts())
	}
	if n := runs(t, dir, "web-1"); n != 0 {
		t.Errorf("web-1 ran the role=db job %d times on the strength of its claim", n)
	}
	if n := runs(t, dir, "db-1"); n != 1 {
		t.Errorf("db-1 ran the job %d times, want 1", n)
	}
}
