package node

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// helloTimeout bounds the wait for an agent's first message.
const helloTimeout = 10 * time.Second

// session is one agent's stream on this node. Its handler goroutine only
// receives; anyone may send, one at a time (sendMu). Keeping an idle agent
// down to the goroutines gRPC itself needs is what keeps a connected agent
// cheap for the node.
type session struct {
	target string
	// fp is the fingerprint of the agent's key, by which the mux can cut
	// its connections.
	fp     string
	stream grpc.BidiStreamingServer[rpc.AgentMessage, rpc.NodeMessage]

	sendMu sync.Mutex
	// lastSeen is the unix nano time of the last message from the agent.
	lastSeen atomic.Int64
	// beating is set while a heartbeat is being sent, so a stuck stream
	// does not pile up heartbeat senders.
	beating atomic.Bool

	// The SSH connector state of this stream (connector.go): the host
	// keys the agent reported, the host certificate signed for them, the
	// last SSHAccess sent (or queued) and the one waiting to be sent.
	sshMu      sync.Mutex
	hostKeys   [][]byte
	hostCert   *hostCert
	sshSent    *rpc.SSHAccess
	sshNext    *rpc.SSHAccess
	sshSending bool
}

// send writes one message to the agent.
func (s *session) send(m *rpc.NodeMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

// fleet holds the agent streams connected to this node.
type fleet struct {
	node      string        // this node's name
	heartbeat time.Duration // Config.AgentHeartbeat
	log       *slog.Logger
	conns     agentConns

	mu       sync.Mutex
	sessions map[string]*session // by target
}

// agentConns is what the fleet needs of its node: a way to cut an agent's
// connections.
type agentConns interface {
	// cutAgent closes every connection that presented the key with
	// fingerprint fp.
	cutAgent(fp string)
}

func newFleet(node string, heartbeat time.Duration, log *slog.Logger, conns agentConns) *fleet {
	return &fleet{node: node, heartbeat: heartbeat, log: log, conns: conns, sessions: map[string]*session{}}
}

// add registers a session, replacing an older one of the same target.
func (f *fleet) add(s *session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[s.target] = s
}

// remove unregisters a session and reports whether it was the target's
// current one.
func (f *fleet) remove(s *session) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions[s.target] != s {
		return false
	}
	delete(f.sessions, s.target)
	return true
}

func (f *fleet) get(target string) *session {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[target]
}

// all returns the current sessions.
func (f *fleet) all() []*session {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*session, 0, len(f.sessions))
	for _, s := range f.sessions {
		out = append(out, s)
	}
	return out
}

// count is the number of connected agents.
func (f *fleet) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// push sends a message to a target's agent.
func (f *fleet) push(target string, m *rpc.NodeMessage) error {
	s := f.get(target)
	if s == nil {
		return status.Errorf(codes.NotFound, "target %s has no stream on node %s", target, f.node)
	}
	return s.send(m)
}

// heartbeatLoop sends every agent a heartbeat each period and cuts the
// connections of agents that have been silent for three periods (gRPC
// keepalive catches dead connections; this catches live connections to a
// stuck agent).
//
// A period's heartbeats are spread over its first half rather than sent at
// once: each send wakes the stream's connection writer, which takes a
// 32 KiB buffer from gRPC's shared pool and yields before it flushes, so a
// thousand streams woken together hold a thousand buffers at the same
// moment, and the node keeps those pages long after.
func (f *fleet) heartbeatLoop(ctx context.Context) {
	every := f.heartbeat
	tick := time.NewTicker(every)
	defer tick.Stop()
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		f.mu.Lock()
		sessions := make([]*session, 0, len(f.sessions))
		for _, s := range f.sessions {
			sessions = append(sessions, s)
		}
		f.mu.Unlock()
		if len(sessions) == 0 {
			continue
		}
		gap := every / 2 / time.Duration(len(sessions))
		for _, s := range sessions {
			f.beat(s)
			pace.Reset(gap)
			select {
			case <-ctx.Done():
				return
			case <-pace.C:
			}
		}
	}
}

// beat sends one agent its heartbeat, or cuts its connection if it has been
// silent too long. The send runs on its own goroutine so that a stuck
// stream holds up only itself, and at most one per session at a time.
func (f *fleet) beat(s *session) {
	if f.get(s.target) != s {
		// Ended or replaced since the round began: cutting by key now
		// would cut the agent's new connection.
		return
	}
	now := time.Now()
	if now.Sub(time.Unix(0, s.lastSeen.Load())) > 3*f.heartbeat {
		f.log.Info("agent silent; cutting its connection", "target", s.target)
		f.conns.cutAgent(s.fp)
		return
	}
	if !s.beating.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.beating.Store(false)
		s.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_Heartbeat{Heartbeat: &rpc.Heartbeat{UnixNano: now.UnixNano()}}})
	}()
}

// cutAgent closes the connections of the agent whose key has fingerprint
// fp (agentConns).
func (n *Node) cutAgent(fp string) { n.mux.closeKey(fp) }

// fleetServer serves rpc.Fleet: the agents' streams.
type fleetServer struct {
	rpc.UnimplementedFleetServer
	n *Node
}

// Connect serves one agent's stream for as long as the agent stays
// connected. The handler goroutine does nothing but wait in Recv; every
// step with a deep call chain (state reads, proposals, log lines, sends)
// runs through offStack, which keeps this long-lived goroutine's stack at
// the size its idle wait needs.
func (s *fleetServer) Connect(stream grpc.BidiStreamingServer[rpc.AgentMessage, rpc.NodeMessage]) error {
	n := s.n
	var sess *session
	var err error
	offStack(func() { sess, err = n.openSession(stream) })
	if err != nil {
		return err
	}
	defer n.closeSession(sess)
	err = n.recvLoop(stream.Context(), sess)
	if err != nil && !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
		n.log.Info("agent stream ended", "target", sess.target, "err", err)
	}
	return nil
}

// offStack runs f on a goroutine of its own and waits for it.
//
// An agent's stream handler lives as long as the agent is connected, so its
// stack is paid for once per connected agent. Go keeps a goroutine's stack
// at its high-water mark unless the goroutine comes to use less than a
// quarter of it, and the idle handler, parked in gRPC's frames, uses more
// than a quarter of 16 KiB: one deep call made on it (a Pebble read, a
// proposal forwarded through gRPC, a log line) would cost every connected
// agent 16 KiB of stack instead of 8 for as long as it stays connected.
// The goroutine started here takes the depth and returns its stack.
func offStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// openSession authenticates an agent's stream by its key, waits for its
// hello, registers the session (replacing an older one of the same target)
// and records the connection in the log.
func (n *Node) openSession(stream grpc.BidiStreamingServer[rpc.AgentMessage, rpc.NodeMessage]) (*session, error) {
	key := pinned.PeerKeyFromContext(stream.Context())
	if key == nil {
		return nil, status.Error(codes.PermissionDenied, "agents connect with their target key")
	}
	tk, err := n.fsm.TargetByKey(key)
	if err != nil || tk.GetRevoked() {
		return nil, status.Errorf(codes.PermissionDenied, "key %s is not a registered target key", pinned.Fingerprint(key))
	}
	target := tk.GetTarget()

	hello, err := recvHello(stream)
	if err != nil {
		return nil, err
	}
	sess := &session{target: target, fp: pinned.Fingerprint(key), stream: stream}
	sess.lastSeen.Store(time.Now().UnixNano())
	// A newer stream of the same target replaces an older one here; the
	// older one's handler still ends on its own (its connection is gone or
	// going) and then finds itself replaced.
	n.fleet.add(sess)

	pctx, pcancel := context.WithTimeout(stream.Context(), n.cfg.ApplyTimeout)
	_, err = n.proposeAs(pctx, events.KindTarget+":"+target, "", &events.TargetConnected{Target: target, Node: n.cfg.Name, ClaimedLabels: hello.GetLabels()})
	pcancel()
	if err != nil {
		n.closeSession(sess)
		return nil, status.Errorf(codes.Unavailable, "record connection: %v", err)
	}
	n.log.Info("agent connected", "target", target, "claimed_labels", hello.GetLabels())
	if err := sess.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_Welcome{Welcome: &rpc.NodeWelcome{
		Node: n.cfg.Name, Target: target, HeartbeatSeconds: uint32(n.cfg.AgentHeartbeat / time.Second),
		ConfirmStarts: true,
	}}}); err != nil {
		n.closeSession(sess)
		return nil, err
	}
	// The scheduler may have released work for this target while it was
	// away; let it look again now that the target has a stream.
	n.nudgeScheduler()
	// A connector gets its sshd state now (and again once its host keys
	// arrive, with the host certificate).
	n.nudgeSSHAccess()
	return sess, nil
}

// closeSession unregisters a session and records the disconnection, unless
// a newer stream of the same target has replaced it.
func (n *Node) closeSession(sess *session) {
	if n.fleet.remove(sess) {
		n.recordDisconnect(sess.target)
	}
}

func recvHello(stream grpc.BidiStreamingServer[rpc.AgentMessage, rpc.NodeMessage]) (*rpc.AgentHello, error) {
	type result struct {
		m   *rpc.AgentMessage
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		h := r.m.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message of an agent stream must be hello")
		}
		return h, nil
	case <-time.After(helloTimeout):
		return nil, status.Error(codes.DeadlineExceeded, "no hello from agent")
	}
}

// recvLoop receives what the agent sends until the stream ends.
func (n *Node) recvLoop(ctx context.Context, s *session) error {
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return err
		}
		s.lastSeen.Store(time.Now().UnixNano())
		offStack(func() { err = n.handleAgentMessage(ctx, s, m) })
		if err != nil {
			return err
		}
	}
}

// handleAgentMessage writes acknowledgements and results to the log
// (idempotently: their request ids are derived from job and target, so a
// result sent again after a reconnect is applied once).
func (n *Node) handleAgentMessage(ctx context.Context, s *session, m *rpc.AgentMessage) error {
	if hk := m.GetHostKeys(); hk != nil {
		// A bad report is logged and ignored, not fatal to the stream:
		// the agent still runs jobs; it only gets no host certificate.
		if err := n.setHostKeys(s, hk); err != nil {
			n.log.Warn("connector host keys refused", "target", s.target, "err", err)
		}
		return nil
	}
	ev, reqID, err := agentEvent(n.cfg.Name, s.target, m)
	if err != nil || ev == nil {
		return err
	}
	switch ev := ev.(type) {
	case *events.JobTargetDispatched:
		return n.confirmStart(ctx, s, ev, reqID)
	case *events.JobTargetFinished:
		n.redactResult(ev)
		if _, err := n.proposeTolerant(ctx, events.KindTarget+":"+s.target, reqID, ev); err != nil {
			// Not acknowledged: the agent sends it again later.
			n.log.Warn("record job result", "job", ev.GetJobId(), "target", s.target, "err", err)
			return nil
		}
		return s.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_ResultAck{ResultAck: &rpc.ResultAck{JobId: ev.GetJobId()}}})
	}
	return nil
}

// agentEvent is the event (and its request id) that a message from target's
// agent, received on node, writes to the log; nil for messages that write
// nothing. The target is always the stream's, whatever the message says:
// an agent speaks only for itself. Its bytes come from the agent, so this is
// where they are checked (FuzzAgentEvent).
func agentEvent(node, target string, m *rpc.AgentMessage) (proto.Message, string, error) {
	switch msg := m.GetMsg().(type) {
	case *rpc.AgentMessage_Ack:
		job := msg.Ack.GetJobId()
		return &events.JobTargetDispatched{JobId: job, Target: target, Node: node}, "ack/" + job + "/" + target, nil
	case *rpc.AgentMessage_Result:
		r := msg.Result
		// An agent reports only these; anything else (or a status an agent
		// of a build before the enums named wrongly) is a failure.
		st := events.TargetStatusOf(r.GetTargetStatus(), r.GetStatus())
		switch st {
		case events.TargetStatus_TARGET_STATUS_OK, events.TargetStatus_TARGET_STATUS_CHANGED, events.TargetStatus_TARGET_STATUS_FAILED:
		default:
			st = events.TargetStatus_TARGET_STATUS_FAILED
		}
		return &events.JobTargetFinished{JobId: r.GetJobId(), Target: target, TargetStatus: st.Enum(), Blocks: r.GetBlocks(), Error: r.GetError()},
			"result/" + r.GetJobId() + "/" + target, nil
	case *rpc.AgentMessage_Heartbeat, *rpc.AgentMessage_Progress:
		return nil, "", nil
	case *rpc.AgentMessage_HostKeys:
		// A connector's sshd host keys (agent/sshaccess), sent after its
		// hello; the node signs a host certificate for them in SSHAccess.
		// Nothing in the log.
		return nil, "", nil
	default:
		return nil, "", status.Errorf(codes.InvalidArgument, "unexpected agent message %T", msg)
	}
}

// confirmStart records that a target starts a job and tells its agent
// whether to run it: JobStart once the log holds the start, JobCancel when
// the log refuses it (the job was cancelled, or is over). The agent runs a
// new job only on JobStart, so a dispatch sent by a node that had not yet
// seen the cancel runs nothing.
func (n *Node) confirmStart(ctx context.Context, s *session, ev *events.JobTargetDispatched, reqID string) error {
	job := ev.GetJobId()
	_, err := n.proposeAs(ctx, events.KindTarget+":"+s.target, reqID, ev)
	run := err == nil
	if tolerable(err) {
		// Refused: perhaps the target had started already (this is the
		// agent asking again after a JobStart was lost with its stream);
		// the log, read as of now, says.
		run, err = n.startRecorded(ctx, job, s.target)
	}
	if err != nil {
		// Neither told: the agent holds the job unrun until its stream
		// ends, and the target times out unless a dispatch comes again.
		n.log.Warn("record job start", "job", job, "target", s.target, "err", err)
		return nil
	}
	if run {
		return s.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_Start{Start: &rpc.JobStart{JobId: job}}})
	}
	n.log.Info("job start refused; agent told not to run it", "job", job, "target", s.target)
	return s.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_Cancel{Cancel: &rpc.JobCancel{JobId: job}}})
}

// startRecorded reports whether the log, read at the leader's commit point,
// has target started on job and the job still running.
func (n *Node) startRecorded(ctx context.Context, job, target string) (bool, error) {
	if err := n.syncRead(ctx); err != nil {
		return false, err
	}
	j, err := n.fsm.Job(job)
	if errors.Is(err, fsm.ErrNotFound) {
		return false, nil
	}
	if err != nil || j.GetStatus() != events.JobStatus_JOB_STATUS_RUNNING {
		return false, err
	}
	jts, err := n.fsm.JobTargets(job)
	if err != nil {
		return false, err
	}
	for _, jt := range jts {
		if jt.GetTarget() == target {
			return jt.GetStatus() == events.TargetStatus_TARGET_STATUS_RUNNING, nil
		}
	}
	return false, nil
}

// recordDisconnect writes the end of a target's stream on this node, unless
// the node is shutting down (the agent reconnects elsewhere and that
// connection supersedes this one).
func (n *Node) recordDisconnect(target string) {
	if n.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	if _, err := n.proposeTolerant(ctx, n.nodeActor(), "", &events.TargetDisconnected{Target: target, Node: n.cfg.Name}); err != nil {
		n.log.Warn("record disconnection", "target", target, "err", err)
	}
	n.log.Info("agent disconnected", "target", target)
}
