package node

import (
	"context"
	"errors"
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

// Agent stream timing. The node heartbeats every heartbeatEvery and cuts a
// stream that has been silent for three of them.
const (
	heartbeatEvery = 10 * time.Second
	helloTimeout   = 10 * time.Second
)

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
}

// send writes one message to the agent.
func (s *session) send(m *rpc.NodeMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

// fleet holds the agent streams connected to this node.
type fleet struct {
	n *Node

	mu       sync.Mutex
	sessions map[string]*session // by target
}

func newFleet(n *Node) *fleet { return &fleet{n: n, sessions: map[string]*session{}} }

func (f *fleet) get(target string) *session {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessions[target]
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
		return status.Errorf(codes.NotFound, "target %s has no stream on node %s", target, f.n.cfg.Name)
	}
	return s.send(m)
}

// heartbeatLoop sends every agent a heartbeat and cuts the connections of
// agents that have been silent for three periods (gRPC keepalive catches
// dead connections; this catches live connections to a stuck agent).
func (f *fleet) heartbeatLoop(ctx context.Context) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f.mu.Lock()
			sessions := make([]*session, 0, len(f.sessions))
			for _, s := range f.sessions {
				sessions = append(sessions, s)
			}
			f.mu.Unlock()
			hb := &rpc.NodeMessage{Msg: &rpc.NodeMessage_Heartbeat{Heartbeat: &rpc.Heartbeat{UnixNano: now.UnixNano()}}}
			for _, s := range sessions {
				if now.Sub(time.Unix(0, s.lastSeen.Load())) > 3*heartbeatEvery {
					f.n.log.Info("agent silent; cutting its connection", "target", s.target)
					f.n.mux.closeKey(s.fp)
					continue
				}
				if s.beating.CompareAndSwap(false, true) {
					go func() {
						defer s.beating.Store(false)
						s.send(hb)
					}()
				}
			}
		}
	}
}

// fleetServer serves rpc.Fleet: the agents' streams.
type fleetServer struct {
	rpc.UnimplementedFleetServer
	n *Node
}

func (s *fleetServer) Connect(stream grpc.BidiStreamingServer[rpc.AgentMessage, rpc.NodeMessage]) error {
	n := s.n
	key := pinned.PeerKeyFromContext(stream.Context())
	if key == nil {
		return status.Error(codes.PermissionDenied, "agents connect with their target key")
	}
	tk, err := n.fsm.TargetByKey(key)
	if err != nil || tk.GetRevoked() {
		return status.Errorf(codes.PermissionDenied, "key %s is not a registered target key", pinned.Fingerprint(key))
	}
	target := tk.GetTarget()
	log := n.log.With("target", target)

	hello, err := recvHello(stream)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	sess := &session{target: target, fp: pinned.Fingerprint(key), stream: stream}
	sess.lastSeen.Store(time.Now().UnixNano())
	// A newer stream of the same target replaces an older one here; the
	// older one's handler still ends on its own (its connection is gone or
	// going) and then finds itself replaced.
	n.fleet.mu.Lock()
	n.fleet.sessions[target] = sess
	n.fleet.mu.Unlock()
	defer func() {
		n.fleet.mu.Lock()
		current := n.fleet.sessions[target] == sess
		if current {
			delete(n.fleet.sessions, target)
		}
		n.fleet.mu.Unlock()
		if current {
			n.recordDisconnect(target)
		}
	}()

	pctx, pcancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	_, err = n.proposeAs(pctx, events.KindTarget+":"+target, "", &events.TargetConnected{Target: target, Node: n.cfg.Name, Labels: hello.GetLabels()})
	pcancel()
	if err != nil {
		return status.Errorf(codes.Unavailable, "record connection: %v", err)
	}
	log.Info("agent connected", "labels", hello.GetLabels())
	if err := sess.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_Welcome{Welcome: &rpc.NodeWelcome{
		Node: n.cfg.Name, Target: target, HeartbeatSeconds: uint32(heartbeatEvery / time.Second),
	}}}); err != nil {
		return err
	}
	// The scheduler may have released work for this target while it was
	// away; let it look again now that the target has a stream.
	n.nudgeScheduler()

	err = n.recvLoop(ctx, sess)
	if err != nil && !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
		log.Info("agent stream ended", "err", err)
	}
	return nil
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

// recvLoop handles what the agent sends: acknowledgements and results are
// written to the log (idempotently: their request ids are derived from job
// and target, so a result sent again after a reconnect is applied once).
func (n *Node) recvLoop(ctx context.Context, s *session) error {
	actor := events.KindTarget + ":" + s.target
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return err
		}
		s.lastSeen.Store(time.Now().UnixNano())
		switch msg := m.GetMsg().(type) {
		case *rpc.AgentMessage_Ack:
			job := msg.Ack.GetJobId()
			_, err := n.proposeTolerant(ctx, actor, "ack/"+job+"/"+s.target,
				&events.JobTargetDispatched{JobId: job, Target: s.target, Node: n.cfg.Name})
			if err != nil {
				n.log.Warn("record job start", "job", job, "target", s.target, "err", err)
			}
		case *rpc.AgentMessage_Result:
			r := msg.Result
			st := r.GetStatus()
			if st != fsm.TargetOK && st != fsm.TargetChanged && st != fsm.TargetFailed {
				st = fsm.TargetFailed
			}
			_, err := n.proposeTolerant(ctx, actor, "result/"+r.GetJobId()+"/"+s.target, &events.JobTargetFinished{
				JobId: r.GetJobId(), Target: s.target, Status: st, Blocks: r.GetBlocks(), Error: r.GetError(),
			})
			if err != nil {
				// Not acknowledged: the agent sends it again later.
				n.log.Warn("record job result", "job", r.GetJobId(), "target", s.target, "err", err)
				continue
			}
			if err := s.send(&rpc.NodeMessage{Msg: &rpc.NodeMessage_ResultAck{ResultAck: &rpc.ResultAck{JobId: r.GetJobId()}}}); err != nil {
				return err
			}
		case *rpc.AgentMessage_Heartbeat, *rpc.AgentMessage_Progress:
		default:
			return status.Errorf(codes.InvalidArgument, "unexpected agent message %T", msg)
		}
	}
}

// proposeTolerant writes an event whose rejection as a conflict (the state
// already moved past it: a job cancelled, a result already recorded) is
// not a failure of the caller.
func (n *Node) proposeTolerant(ctx context.Context, actor, reqID string, p proto.Message) (*rpc.WriteResponse, error) {
	pctx, cancel := context.WithTimeout(ctx, n.cfg.ApplyTimeout)
	defer cancel()
	w, err := n.proposeAs(pctx, actor, reqID, p)
	if c := status.Code(err); c == codes.FailedPrecondition || c == codes.NotFound {
		return w, nil
	}
	return w, err
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
