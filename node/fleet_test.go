package node_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// countingConfig appends one line per run to DIR/<target>.runs, so tests
// can count how often each target ran the job, and sleeps a little so that
// runs overlap what the test does meanwhile.
func countingConfig(dir string, sleep time.Duration, fail bool) []byte {
	script := fmt.Sprintf("echo run >> %s/{{ .Target.Name }}.runs; sleep %g", dir, sleep.Seconds())
	if fail {
		script += "; exit 3"
	}
	return []byte(fmt.Sprintf("[[exec]]\nname = \"count\"\nscript = %q\n", script))
}

func runs(t *testing.T, dir, target string) int {
	b, err := os.ReadFile(filepath.Join(dir, target+".runs"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

func submit(t *testing.T, cl *rpc.Client, req *rpc.SubmitJobRequest) *rpc.SubmitJobResponse {
	t.Helper()
	if req.Name == "" {
		req.Name = "test.toml"
	}
	resp, err := cl.Jobs.Submit(ctxT(t), req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp
}

// waitJob waits until the job is finished and returns it.
func waitJob(t *testing.T, c *nodetest.Cluster, cl *rpc.Client, id string, timeout time.Duration) *rpc.JobInfo {
	t.Helper()
	var info *rpc.JobInfo
	c.Eventually(timeout, func() error {
		var err error
		info, err = cl.Jobs.Get(ctxT(t), &rpc.GetJobRequest{JobId: id, Blocks: true})
		if err != nil {
			return err
		}
		if info.GetJobStatus().Active() {
			return fmt.Errorf("job %s is %s: %v", id, info.GetStatus(), info.GetCounts())
		}
		return nil
	})
	return info
}

func targetStatuses(info *rpc.JobInfo) map[string]events.TargetStatus {
	out := map[string]events.TargetStatus{}
	for _, t := range info.GetTargets() {
		out[t.GetTarget()] = t.GetTargetStatus()
	}
	return out
}

func TestJobTargetingBatchesAndFailures(t *testing.T) {
	c := nodetest.Start(t, 3)
	dir := t.TempDir()
	for _, a := range []struct{ name, role string }{{"web-1", "web"}, {"web-2", "web"}, {"web-3", "web"}, {"db-1", "db"}} {
		c.StartAgent(a.name, nodetest.AgentOptions{Labels: map[string]string{"role": a.role}})
	}
	c.WaitConnected("web-1", "web-2", "web-3", "db-1")
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	t.Run("targeting", func(t *testing.T) {
		for _, tc := range []struct {
			glob     string
			selector map[string]string
			want     []string
		}{
			{"web-*", nil, []string{"web-1", "web-2", "web-3"}},
			{"", map[string]string{"role": "db"}, []string{"db-1"}},
			{"*-1", map[string]string{"role": "web"}, []string{"web-1"}},
			{"", nil, []string{"db-1", "web-1", "web-2", "web-3"}},
		} {
			resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, false), Targets: tc.glob, Selector: tc.selector, Preview: true})
			if !slices.Equal(resp.GetTargets(), tc.want) {
				t.Errorf("--targets %q --selector %v resolved %v, want %v", tc.glob, tc.selector, resp.GetTargets(), tc.want)
			}
		}
		if _, err := cl.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "x.toml", Config: countingConfig(dir, 0, false), Targets: "nothing-*"}); err == nil {
			t.Error("a job matching no target was accepted")
		}
		if _, err := cl.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "x.toml", Config: []byte("[[file]]\nperms = 0600\n"), Targets: "*"}); err == nil || !strings.Contains(err.Error(), "x.toml:2") {
			t.Errorf("a bad config was accepted or not located: %v", err)
		}
	})

	t.Run("batch size is a window", func(t *testing.T) {
		resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 200*time.Millisecond, false), Targets: "web-*", BatchSize: 1, MaxFailures: -1})
		info := waitJob(t, c, cl, resp.GetJobId(), 30*time.Second)
		if info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE || info.GetCounts()[events.TargetStatus_TARGET_STATUS_OK.Name()]+info.GetCounts()[events.TargetStatus_TARGET_STATUS_CHANGED.Name()] != 3 {
			t.Fatalf("job %s, counts %v", info.GetStatus(), info.GetCounts())
		}
		// Replay the job's events: at no point more than one target in
		// flight.
		inFlight, maxInFlight := 0, 0
		c.Node(0).State().Events(info.GetSubmittedIndex(), func(ev *events.Event) bool {
			p, _ := ev.DecodePayload()
			switch p := p.(type) {
			case *events.JobBatchStarted:
				if p.GetJobId() == resp.GetJobId() {
					inFlight += len(p.GetTargets())
				}
			case *events.JobTargetFinished:
				if p.GetJobId() == resp.GetJobId() {
					inFlight--
				}
			}
			maxInFlight = max(maxInFlight, inFlight)
			return true
		})
		if maxInFlight != 1 {
			t.Fatalf("up to %d targets were in flight with --batch 1", maxInFlight)
		}
	})

	t.Run("max failures stops the run", func(t *testing.T) {
		resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, true), Targets: "web-*", BatchSize: 1, MaxFailures: 0})
		info := waitJob(t, c, cl, resp.GetJobId(), 30*time.Second)
		st := targetStatuses(info)
		if info.GetJobStatus() != events.JobStatus_JOB_STATUS_STOPPED || st["web-1"] != events.TargetStatus_TARGET_STATUS_FAILED || st["web-2"] != events.TargetStatus_TARGET_STATUS_SKIPPED || st["web-3"] != events.TargetStatus_TARGET_STATUS_SKIPPED {
			t.Fatalf("job %s, targets %v; want stopped after web-1 failed", info.GetStatus(), st)
		}
		var failed *rpc.JobTargetInfo
		for _, tg := range info.GetTargets() {
			if tg.GetTarget() == "web-1" {
				failed = tg
			}
		}
		if len(failed.GetBlocks()) != 1 || failed.GetBlocks()[0].GetOutcome() != "failed" || !strings.Contains(failed.GetBlocks()[0].GetError(), "3") {
			t.Fatalf("failed target's blocks = %v", failed.GetBlocks())
		}
	})

	for _, name := range []string{"web-1", "web-2", "web-3"} {
		// batch job once, failing job once (web-1 only ran it).
		want := 2
		if name != "web-1" {
			want = 1
		}
		if got := runs(t, dir, name); got != want {
			t.Errorf("%s ran %d times, want %d", name, got, want)
		}
	}
}

func TestJobSurvivesLeaderLossAndRunsOnce(t *testing.T) {
	c := nodetest.Start(t, 3)
	dir := t.TempDir()
	names := []string{"a1", "a2", "a3", "a4"}
	for _, name := range names {
		c.StartAgent(name, nodetest.AgentOptions{})
	}
	c.WaitConnected(names...)
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 700*time.Millisecond, false), Targets: "a*", BatchSize: 2, MaxFailures: -1, TimeoutSeconds: 60})
	// Kill the leader while the first batch runs.
	c.Eventually(10*time.Second, func() error {
		if runs(t, dir, "a1")+runs(t, dir, "a2") == 0 {
			return fmt.Errorf("first batch not started")
		}
		return nil
	})
	old := c.WaitLeader()
	c.Crash(old)
	info := waitJob(t, c, cl, resp.GetJobId(), 60*time.Second)
	if info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("job %s after leader loss: %v", info.GetStatus(), targetStatuses(info))
	}
	for _, name := range names {
		if got := runs(t, dir, name); got != 1 {
			t.Errorf("%s ran %d times, want exactly once", name, got)
		}
	}
}

// gatedConfig counts runs like countingConfig, then holds each run until
// the file dir/release exists (at most a minute), so a test decides by an
// event when runs may finish.
func gatedConfig(dir string) []byte {
	script := fmt.Sprintf("echo run >> %[1]s/{{ .Target.Name }}.runs; i=0; while [ ! -e %[1]s/release ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done", dir)
	return []byte(fmt.Sprintf("[[exec]]\nname = \"count\"\nscript = %q\n", script))
}

// A revoked target's stream is cut on every node by the revocation itself:
// heartbeats are too slow here to cut anything during the test, and its run
// is held open until after the cut, so the run cannot finish first.
func TestRevokedTargetCutOffAndRefused(t *testing.T) {
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.AgentHeartbeat = 10 * time.Minute
	}})
	dir := t.TempDir()
	web1 := c.StartAgent("web-1", nodetest.AgentOptions{})
	c.StartAgent("web-2", nodetest.AgentOptions{})
	c.WaitConnected("web-1", "web-2")
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: gatedConfig(dir), Targets: "web-*", MaxFailures: -1, TimeoutSeconds: 120})
	c.Eventually(30*time.Second, func() error {
		if runs(t, dir, "web-1") == 0 || runs(t, dir, "web-2") == 0 {
			return fmt.Errorf("runs not started")
		}
		return nil
	})
	w, err := cl.Keys.Revoke(ctxT(t), &rpc.RevokeKeyRequest{Target: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	// Every node applies the revocation (which records web-1 as
	// disconnected) and drops the stream: the agent itself sees it end and
	// cannot attach again. The deadline only catches a hang.
	c.Eventually(30*time.Second, func() error {
		for _, n := range c.Running() {
			if n.State().AppliedIndex() < events.EntryOf(w.GetIndex()) {
				return fmt.Errorf("%s has not applied the revocation", n.Name())
			}
		}
		tk, _ := c.Node(0).State().TargetKey("web-1")
		if tk.GetConnected() {
			return fmt.Errorf("web-1 still recorded as connected")
		}
		if node := web1.Node(); node != "" {
			return fmt.Errorf("web-1's stream to %s is still open", node)
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(dir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	info := waitJob(t, c, cl, resp.GetJobId(), 30*time.Second)
	st := targetStatuses(info)
	if st["web-1"] != events.TargetStatus_TARGET_STATUS_REFUSED || (st["web-2"] != events.TargetStatus_TARGET_STATUS_CHANGED && st["web-2"] != events.TargetStatus_TARGET_STATUS_OK) {
		t.Fatalf("targets %v: want web-1 refused, web-2 finished", st)
	}
	if _, err := cl.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "x.toml", Config: countingConfig(dir, 0, false), Targets: "web-1"}); err == nil {
		t.Fatal("a job on a revoked target was accepted")
	}
}

func TestUnreachableTargetTimesOut(t *testing.T) {
	c := nodetest.Start(t, 1)
	dir := t.TempDir()
	c.RegisterTarget("ghost", t.TempDir())
	cl := c.Client(0)
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(dir, 0, false), Targets: "ghost", TimeoutSeconds: 1, MaxFailures: -1})
	info := waitJob(t, c, cl, resp.GetJobId(), 15*time.Second)
	if st := targetStatuses(info); st["ghost"] != events.TargetStatus_TARGET_STATUS_UNREACHABLE || info.GetJobStatus() != events.JobStatus_JOB_STATUS_FAILED {
		t.Fatalf("job %s, targets %v; want ghost unreachable", info.GetStatus(), st)
	}
}

// An agent stream that stays open but silent is cut after three heartbeat
// periods and recorded as disconnected, while a live agent beside it, which
// heartbeats at the rate the node announces, stays connected.
func TestSilentAgentIsCutOff(t *testing.T) {
	c := nodetest.Start(t, 1, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.AgentHeartbeat = time.Second
	}})
	c.StartAgent("live", nodetest.AgentOptions{})
	c.WaitConnected("live")

	ks, err := keystore.Open(c.RegisterTarget("mute", t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ks.Identity()
	ks.Close()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pinned.Certificate(priv)
	if err != nil {
		t.Fatal(err)
	}
	clusterFP := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	conn, err := grpc.NewClient("passthrough:///"+c.Node(0).Addr(), grpc.WithTransportCredentials(
		pinned.ClientCredentials(pinned.ClientConfig(&cert, pinned.Pin("cluster", clusterFP), pinned.ProtoGRPC))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The deadline only catches a stream that is never cut.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	stream, err := rpc.NewFleetClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Taken before the hello: the node's silence clock starts after it,
	// so the cut can only come later than three periods from here.
	quiet := time.Now()
	if err := stream.Send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Hello{Hello: &rpc.AgentHello{}}}); err != nil {
		t.Fatal(err)
	}
	welcome, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := welcome.GetWelcome().GetHeartbeatSeconds(); got != 1 {
		t.Fatalf("welcome announces a heartbeat of %ds, want 1", got)
	}
	beats := 0
	var recvErr error
	for recvErr == nil {
		var m *rpc.NodeMessage
		if m, recvErr = stream.Recv(); m.GetHeartbeat() != nil {
			beats++
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("silent stream never cut: %v", recvErr)
	}
	// Not before three silent periods: a lower bound no load can break,
	// unlike an upper one.
	if cut := time.Since(quiet); cut < 3*time.Second {
		t.Errorf("silent stream cut after %s, before three heartbeat periods (3s)", cut)
	}
	if beats < 2 {
		t.Errorf("%d heartbeats before the cut, want at least 2", beats)
	}
	c.Eventually(5*time.Second, func() error {
		tk, err := c.Node(0).State().TargetKey("mute")
		if err != nil {
			return err
		}
		if tk.GetConnected() {
			return fmt.Errorf("mute still recorded as connected")
		}
		return nil
	})
	tk, err := c.Node(0).State().TargetKey("live")
	if err != nil || !tk.GetConnected() {
		t.Fatalf("live agent: connected=%v (%v), want still connected", tk.GetConnected(), err)
	}
}
