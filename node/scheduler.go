package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
)

// The scheduler runs on the leader only. Its state is the log: every
// decision (release targets, time a target out, finish a job) is an event
// with a request id derived from the decision itself, so a new leader that
// replays the same reasoning over the same state writes nothing twice, and
// resumes a half-done job where the old leader left it.
//
// What is not in the log is which dispatch messages this leader has sent;
// a new leader sends them again. Agents keep a journal, so a job they have
// already run is answered from it and never runs twice.
type scheduler struct {
	n *Node
	// sent records dispatches this leader made: job/target -> the
	// target's connection (node and connection time) it was sent on.
	sent map[string]string
	// dispatchSem bounds concurrent dispatch calls to other nodes.
	dispatchSem chan struct{}
	wg          sync.WaitGroup
	mu          sync.Mutex
}

// schedulePeriod is the fallback wake-up for timeouts; state changes wake
// the scheduler at once.
const schedulePeriod = 500 * time.Millisecond

func (n *Node) nudgeScheduler() {
	select {
	case n.scheduleCh <- struct{}{}:
	default:
	}
}

// runScheduler schedules until ctx ends (leadership lost or shutdown).
func (n *Node) runScheduler(ctx context.Context) {
	s := &scheduler{n: n, sent: map[string]string{}, dispatchSem: make(chan struct{}, 64)}
	defer s.wg.Wait()
	tick := time.NewTicker(schedulePeriod)
	defer tick.Stop()
	for {
		if err := s.pass(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("scheduler pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.scheduleCh:
		case <-tick.C:
		}
	}
}

func (s *scheduler) pass(ctx context.Context) error {
	jobs, err := s.n.fsm.ActiveJobs()
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if !j.GetStatus().Active() {
			// Finished after the list was taken.
			continue
		}
		if err := s.schedule(ctx, j); err != nil {
			return fmt.Errorf("job %s: %w", j.GetId(), err)
		}
	}
	return nil
}

func (s *scheduler) schedule(ctx context.Context, j *fsm.Job) error {
	n := s.n
	targets, err := n.fsm.JobTargets(j.GetId())
	if err != nil {
		return err
	}
	now := time.Now()
	var inFlight, failures, pending int
	for _, t := range targets {
		st := t.GetStatus()
		switch {
		case st.InFlight():
			inFlight++
			done, err := s.tend(ctx, j, t, now)
			if err != nil {
				return err
			}
			if done {
				// tend only ever finishes a target as refused or
				// unreachable.
				inFlight--
				failures++
			}
		case st == events.TargetStatus_TARGET_STATUS_PENDING:
			pending++
		case st.Failure():
			failures++
		}
	}

	if j.GetStatus() == events.JobStatus_JOB_STATUS_CANCELLING {
		if inFlight == 0 {
			return s.propose(ctx, "finish/"+j.GetId(), &events.JobFinished{JobId: j.GetId(), JobStatus: events.JobStatus_JOB_STATUS_CANCELLED.Enum()})
		}
		return nil
	}
	stopped := j.GetMaxFailures() >= 0 && failures > int(j.GetMaxFailures())
	if !stopped && pending > 0 && inFlight < int(j.GetBatchSize()) {
		// Release the next targets in submission order, up to the window.
		fsm.SortBySubmission(targets)
		var release []string
		for _, t := range targets {
			if len(release)+inFlight >= int(j.GetBatchSize()) {
				break
			}
			if t.GetStatus() == events.TargetStatus_TARGET_STATUS_PENDING {
				release = append(release, t.GetTarget())
			}
		}
		batch := j.GetBatches() + 1
		return s.propose(ctx, fmt.Sprintf("release/%s/%d", j.GetId(), batch), &events.JobBatchStarted{JobId: j.GetId(), Batch: batch, Targets: release})
	}
	if inFlight == 0 && (pending == 0 || stopped) {
		outcome := events.JobStatus_JOB_STATUS_DONE
		switch {
		case stopped:
			outcome = events.JobStatus_JOB_STATUS_STOPPED
		case failures > 0:
			outcome = events.JobStatus_JOB_STATUS_FAILED
		}
		return s.propose(ctx, "finish/"+j.GetId(), &events.JobFinished{JobId: j.GetId(), JobStatus: outcome.Enum()})
	}
	return nil
}

// tend looks after one target in flight: refuse it if its key was revoked,
// time it out, or make sure the node holding its stream has been asked to
// dispatch it. It reports whether the target is now finished.
func (s *scheduler) tend(ctx context.Context, j *fsm.Job, t *fsm.JobTarget, now time.Time) (bool, error) {
	n := s.n
	key := j.GetId() + "/" + t.GetTarget()
	tk, err := n.fsm.TargetKey(t.GetTarget())
	if err == nil && tk.GetRevoked() {
		return true, s.propose(ctx, "refused/"+key, &events.JobTargetFinished{
			JobId: j.GetId(), Target: t.GetTarget(), TargetStatus: events.TargetStatus_TARGET_STATUS_REFUSED.Enum(), Error: "target key revoked"})
	}
	if now.Sub(time.Unix(0, t.GetReleasedUnixNano())) > time.Duration(j.GetTimeoutNanos()) {
		what := "no answer"
		if t.GetStatus() == events.TargetStatus_TARGET_STATUS_RUNNING {
			what = "started but no result"
		}
		return true, s.propose(ctx, "timeout/"+key, &events.JobTargetFinished{
			JobId: j.GetId(), Target: t.GetTarget(), TargetStatus: events.TargetStatus_TARGET_STATUS_UNREACHABLE.Enum(),
			Error: fmt.Sprintf("%s within %s", what, time.Duration(j.GetTimeoutNanos()))})
	}
	if err != nil || !tk.GetConnected() {
		// Wait for a connection, a result or the timeout.
		return false, nil
	}
	// Send the job once per connection of the target: a target that
	// reconnected (perhaps after its agent restarted mid-run) is asked
	// again, and answers from its journal if it already ran or started it.
	holder := tk.GetNode()
	conn := fmt.Sprintf("%s@%d", holder, tk.GetLastTransitionUnixNano())
	s.mu.Lock()
	already := s.sent[key] == conn
	if !already {
		s.sent[key] = conn
	}
	s.mu.Unlock()
	if already {
		return false, nil
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case s.dispatchSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.dispatchSem }()
		if err := n.dispatchVia(ctx, holder, j.GetId(), t.GetTarget()); err != nil {
			n.log.Info("dispatch failed; will retry", "job", j.GetId(), "target", t.GetTarget(), "node", holder, "err", err)
			s.mu.Lock()
			delete(s.sent, key)
			s.mu.Unlock()
		}
	}()
	return false, nil
}

// propose writes a scheduling decision. A decision the state has already
// moved past (another leader made it, a result arrived first) is refused as
// a conflict by the state machine and is not an error here.
func (s *scheduler) propose(ctx context.Context, reqID string, p proto.Message) error {
	_, err := s.n.proposeTolerant(ctx, s.n.nodeActor(), reqID, p)
	return err
}

// dispatchVia asks node holder (perhaps this one) to send the job to the
// target over its stream.
func (n *Node) dispatchVia(ctx context.Context, holder, jobID, target string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if holder == n.cfg.Name {
		return n.dispatchLocal(ctx, jobID, target)
	}
	addr := n.serverAddr(holder)
	if addr == "" {
		return fmt.Errorf("node %s is not in the raft configuration", holder)
	}
	conn, err := n.peers.get(addr)
	if err != nil {
		return err
	}
	_, err = rpc.NewInternalClient(conn).Dispatch(ctx, &rpc.DispatchRequest{JobId: jobID, Target: target})
	return err
}

// dispatchLocal sends a job to a target whose stream is on this node.
func (n *Node) dispatchLocal(ctx context.Context, jobID, target string) error {
	j, err := n.fsm.Job(jobID)
	if err != nil {
		return err
	}
	return n.fleet.push(target, &rpc.NodeMessage{Msg: &rpc.NodeMessage_Dispatch{Dispatch: &rpc.JobDispatch{
		JobId: j.GetId(), Name: j.GetName(), Config: j.GetConfig(), Files: j.GetFiles(),
		Vars: j.GetVars(), DryRun: j.GetDryRun(), TimeoutNanos: j.GetTimeoutNanos(),
	}}})
}

// serverAddr returns the address of a server in the Raft configuration.
func (n *Node) serverAddr(name string) string {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return ""
	}
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == name {
			return string(s.Address)
		}
	}
	return ""
}
