package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
)

// The scheduler runs on the leader only. Its state is the log: every
// decision (release targets, time a target out, finish a job) is an event
// with a request id derived from the decision itself, so a new leader that
// replays the same reasoning over the same state writes nothing twice, and
// resumes a half-done job where the old leader left it. What to decide is
// planJob's (plan.go), from the state and the clock alone; the scheduler
// reads the state, writes the plan's decisions and sends its dispatches.
//
// What is not in the log is which dispatch messages this leader has sent;
// a new leader sends them again. Agents keep a journal, so a job they have
// already run is answered from it and never runs twice.
type scheduler struct {
	state schedState
	out   schedOutput
	clock Clock
	log   *slog.Logger
	// sent records dispatches this leader made: job/target -> the
	// target's connection (node and connection time) it was sent on.
	sent map[string]string
	// dispatchSem bounds concurrent dispatch calls to other nodes.
	dispatchSem chan struct{}
	wg          sync.WaitGroup
	mu          sync.Mutex
}

// schedState is what the scheduler reads: the state as this node has
// applied it (*fsm.FSM).
type schedState interface {
	ActiveJobs() ([]*fsm.Job, error)
	JobTargets(id string) ([]*fsm.JobTarget, error)
	TargetKey(target string) (*fsm.TargetKey, error)
}

// schedOutput is what the scheduler does with its decisions.
type schedOutput interface {
	// decide writes a decision under its request id. A decision the state
	// has already moved past (another leader made it, a result arrived
	// first) is refused by the state machine and is not an error.
	decide(ctx context.Context, reqID string, p proto.Message) error
	// dispatch asks node holder (perhaps this one) to send the job to the
	// target over its stream.
	dispatch(ctx context.Context, holder, jobID, target string) error
}

// nodeOutput is the scheduler's output on a node: proposals as the node,
// dispatches through the node holding the target's stream.
type nodeOutput struct{ n *Node }

func (o nodeOutput) decide(ctx context.Context, reqID string, p proto.Message) error {
	_, err := o.n.proposeTolerant(ctx, o.n.nodeActor(), reqID, p)
	return err
}

func (o nodeOutput) dispatch(ctx context.Context, holder, jobID, target string) error {
	return o.n.dispatchVia(ctx, holder, jobID, target)
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
	clock := n.cfg.Clock
	if clock == nil {
		clock = realClock{}
	}
	s := &scheduler{
		state: n.fsm, out: nodeOutput{n}, clock: clock, log: n.log,
		sent: map[string]string{}, dispatchSem: make(chan struct{}, 64),
	}
	s.run(ctx, n.scheduleCh)
}

// run schedules until ctx ends, planning on every wake and every
// schedulePeriod, and waits for the dispatches it started.
func (s *scheduler) run(ctx context.Context, wake <-chan struct{}) {
	defer s.wg.Wait()
	for {
		if err := s.pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-s.clock.After(schedulePeriod):
		}
	}
}

func (s *scheduler) pass(ctx context.Context) error {
	jobs, err := s.state.ActiveJobs()
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

// schedule plans job j over the state as it is now and carries the plan
// out: the decisions in order, and the dispatches not yet sent.
func (s *scheduler) schedule(ctx context.Context, j *fsm.Job) error {
	targets, err := s.state.JobTargets(j.GetId())
	if err != nil {
		return err
	}
	keys, err := flightKeys(s.state, targets)
	if err != nil {
		return err
	}
	p := planJob(j, targets, keys, s.clock.Now())
	for _, d := range p.Finish {
		if err := s.out.decide(ctx, d.ReqID, d.Event); err != nil {
			return err
		}
	}
	if p.Next != nil {
		if err := s.out.decide(ctx, p.Next.ReqID, p.Next.Event); err != nil {
			return err
		}
	}
	for _, d := range p.Dispatch {
		s.send(ctx, j.GetId(), d)
	}
	return nil
}

// flightKeys reads the keys of the targets in flight, by name; a target
// whose key is missing has none in the map.
func flightKeys(state schedState, targets []*fsm.JobTarget) (map[string]*fsm.TargetKey, error) {
	keys := map[string]*fsm.TargetKey{}
	for _, t := range targets {
		if !inFlight(t) {
			continue
		}
		tk, err := state.TargetKey(t.GetTarget())
		if errors.Is(err, fsm.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.GetTarget(), err)
		}
		keys[t.GetTarget()] = tk
	}
	return keys, nil
}

// send dispatches job jobID to a target once per connection of the
// target: a target that reconnected (perhaps after its agent restarted
// mid-run) is asked again, and answers from its journal if it already ran
// or started it. A failed dispatch is sent again on the next pass.
func (s *scheduler) send(ctx context.Context, jobID string, d dispatchTo) {
	key := jobID + "/" + d.Target
	s.mu.Lock()
	already := s.sent[key] == d.Conn
	if !already {
		s.sent[key] = d.Conn
	}
	s.mu.Unlock()
	if already {
		return
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
		if err := s.out.dispatch(ctx, d.Node, jobID, d.Target); err != nil {
			s.log.Info("dispatch failed; will retry", "job", jobID, "target", d.Target, "node", d.Node, "err", err)
			s.mu.Lock()
			delete(s.sent, key)
			s.mu.Unlock()
		}
	}()
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
	sv, held := n.dispatchSecrets(j)
	if !held {
		// Only the node holding the target's stream decides: another
		// node's stash says nothing about this one's.
		if n.fleet.get(target) == nil {
			return status.Errorf(codes.NotFound, "target %s has no stream on node %s", target, n.cfg.Name)
		}
		started, err := n.targetStarted(jobID, target)
		if err != nil {
			return err
		}
		if !started {
			// Never run it without them: end it, with the reason.
			return n.failNoSecrets(ctx, jobID, target)
		}
		// Started before (on a stream elsewhere): the agent answers from
		// its journal, or fails a dispatch that lacks the values itself.
	}
	return n.fleet.push(target, &rpc.NodeMessage{Msg: &rpc.NodeMessage_Dispatch{Dispatch: &rpc.JobDispatch{
		JobId: j.GetId(), Name: j.GetName(), Config: j.GetConfig(), Files: j.GetFiles(),
		Vars: j.GetVars(), DryRun: j.GetDryRun(), TimeoutNanos: j.GetTimeoutNanos(), SecretVars: sv,
	}}})
}

// targetStarted reports whether the state has target running job (or
// finished with it).
func (n *Node) targetStarted(jobID, target string) (bool, error) {
	jts, err := n.fsm.JobTargets(jobID)
	if err != nil {
		return false, err
	}
	for _, jt := range jts {
		if jt.GetTarget() == target {
			return jt.GetStatus() != events.TargetStatus_TARGET_STATUS_PENDING && jt.GetStatus() != events.TargetStatus_TARGET_STATUS_DISPATCHED, nil
		}
	}
	return false, fmt.Errorf("job %s has no target %s", jobID, target)
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
