package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func runCount(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

// TestDispatchedAgainNeverRunsTwice dispatches a finished job to its agent
// again, as a new leader would, before and after the agent restarts: the
// agent answers from its journal and the job does not run again.
func TestDispatchedAgainNeverRunsTwice(t *testing.T) {
	c := nodetest.Start(t, 1)
	dir := t.TempDir()
	agentDir := t.TempDir()
	marker := filepath.Join(dir, "runs")
	a := c.StartAgent("web-1", nodetest.AgentOptions{Dir: agentDir})
	c.WaitConnected("web-1")
	cl := c.Client(0)

	// runJob runs a job to completion on web-1. The agent handles its
	// stream in order and runs one job at a time, so once a job submitted
	// after a re-dispatch has finished, a wrong re-run caused by that
	// re-dispatch would have finished too: this is the barrier that lets
	// the run counts below be checked without timing assumptions.
	runJob := func(marker string) string {
		t.Helper()
		resp, err := cl.Jobs.Submit(ctx(t), &rpc.SubmitJobRequest{Name: "j.toml", Targets: "web-1", MaxFailures: -1,
			Config: []byte(fmt.Sprintf("[[exec]]\nscript = \"echo run >> %s\"\n", marker))})
		if err != nil {
			t.Fatal(err)
		}
		c.Eventually(20*time.Second, func() error {
			info, err := cl.Jobs.Get(ctx(t), &rpc.GetJobRequest{JobId: resp.GetJobId()})
			if err != nil || info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
				return fmt.Errorf("job %s: %v %v", resp.GetJobId(), info.GetStatus(), err)
			}
			return nil
		})
		return resp.GetJobId()
	}
	job := runJob(marker)
	internal := rpc.NewInternalClient(c.NodeClient(0))
	redispatch := func() {
		t.Helper()
		c.Eventually(20*time.Second, func() error {
			_, err := internal.Dispatch(ctx(t), &rpc.DispatchRequest{JobId: job, Target: "web-1"})
			return err
		})
	}

	redispatch()
	runJob(filepath.Join(dir, "barrier-1"))
	if n := runCount(t, marker); n != 1 {
		t.Fatalf("a re-dispatched finished job ran %d times", n)
	}

	a.Close()
	c.StartAgent("web-1", nodetest.AgentOptions{Dir: agentDir})
	c.WaitConnected("web-1")
	redispatch()
	runJob(filepath.Join(dir, "barrier-2"))
	if n := runCount(t, marker); n != 1 {
		t.Fatalf("after a restart and a re-dispatch the job ran %d times", n)
	}
}
