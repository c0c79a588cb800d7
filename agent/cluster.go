package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/secretvars"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// clusterLink is the agent's side of cluster mode: gossip membership (a
// hint of where nodes are) and one authenticated stream to a live node,
// re-established with jittered backoff when it breaks.
type clusterLink struct {
	a          *Agent
	cert       tls.Certificate
	clusterKey ed25519.PublicKey
	gossip     *memberlist.Memberlist // nil when dialling Servers directly
	servers    *rpc.GossipMembers     // the servers gossip knows, with gossip
	journal    *journal

	// out is the current stream's outbox; nil between streams.
	outMu sync.Mutex
	out   chan *rpc.AgentMessage

	// running maps jobs running in this process to their cancel funcs.
	runMu   sync.Mutex
	running map[string]context.CancelFunc

	// node is the name of the node the current stream is attached to.
	nodeMu sync.Mutex
	node   string
}

// connectLoop keeps one stream to a node open until ctx ends.
func (l *clusterLink) connectLoop(ctx context.Context) {
	// An initial random delay spreads a fleet's reconnections after a node
	// restart (NOTES: no thundering herd).
	backoff := 200 * time.Millisecond
	sleep := time.Duration(rand.Int64N(int64(500 * time.Millisecond)))
	var last string
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(sleep):
		}
		addr := l.pickServer(last)
		if addr == "" {
			l.a.log.Debug("no server known yet")
			sleep = time.Second
			continue
		}
		started := time.Now()
		err := l.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 30*time.Second {
			backoff = 200 * time.Millisecond
		}
		l.a.log.Info("stream to node ended; reconnecting", "addr", addr, "err", err, "in", backoff)
		last = addr
		sleep = backoff/2 + time.Duration(rand.Int64N(int64(backoff)))
		backoff = min(2*backoff, 30*time.Second)
	}
}

// pickServer chooses a node to connect to at random, avoiding the one that
// just failed when there is another.
func (l *clusterLink) pickServer(avoid string) string {
	var addrs []string
	if l.gossip == nil {
		addrs = append(addrs, l.a.cfg.Servers...)
	} else {
		for _, addr := range l.servers.Servers() {
			addrs = append(addrs, addr)
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	if len(addrs) > 1 {
		for i, a := range addrs {
			if a == avoid {
				addrs = append(addrs[:i], addrs[i+1:]...)
				break
			}
		}
	}
	return addrs[rand.IntN(len(addrs))]
}

// session runs one stream to the node at addr until it fails.
func (l *clusterLink) session(ctx context.Context, addr string) error {
	tlsCfg := pinned.ClientConfig(&l.cert, pinned.Pin("cluster", pinned.Fingerprint(l.clusterKey)), pinned.ProtoGRPC)
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(pinned.ClientCredentials(tlsCfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(l.a.cfg.MaxMessageSize)),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := rpc.NewFleetClient(conn).Connect(sctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Hello{Hello: &rpc.AgentHello{Labels: l.a.cfg.Labels, Version: Version}}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return errors.New("node did not welcome the agent")
	}
	l.setNode(welcome.GetNode())
	defer l.setNode("")
	l.a.log.Info("connected to cluster", "node", welcome.GetNode(), "addr", addr)

	out := make(chan *rpc.AgentMessage, 64)
	l.outMu.Lock()
	l.out = out
	l.outMu.Unlock()
	defer func() {
		l.outMu.Lock()
		l.out = nil
		l.outMu.Unlock()
	}()

	// A connector tells the node its sshd host keys, for the host
	// certificate the node signs into SSHAccess.
	if l.a.sshd != nil {
		if hk, err := l.a.sshd.m.HostKeys(); err != nil {
			l.a.log.Warn("sshd host keys not reported: no host certificate can be issued", "err", err)
		} else {
			l.send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_HostKeys{HostKeys: hk}})
		}
	}

	// Results the previous stream could not deliver.
	pending, err := l.journal.unreported()
	if err != nil {
		return err
	}
	for _, r := range pending {
		l.send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Result{Result: r}})
	}

	beat := time.Duration(welcome.GetHeartbeatSeconds()) * time.Second
	if beat <= 0 {
		beat = 10 * time.Second
	}
	errc := make(chan error, 2)
	go func() { errc <- sendLoop(sctx, stream, out, beat) }()
	go func() { errc <- l.recvLoop(sctx, stream, 3*beat, welcome.GetConfirmStarts()) }()
	err = <-errc
	cancel()
	<-errc
	return err
}

func (l *clusterLink) setNode(name string) {
	l.nodeMu.Lock()
	l.node = name
	l.nodeMu.Unlock()
}

// send queues a message on the current stream; without one it is dropped
// (results are in the journal and go out on the next stream).
func (l *clusterLink) send(m *rpc.AgentMessage) {
	l.outMu.Lock()
	out := l.out
	l.outMu.Unlock()
	if out == nil {
		return
	}
	select {
	case out <- m:
	case <-time.After(5 * time.Second):
		l.a.log.Warn("stream not draining; message dropped")
	}
}

func sendLoop(ctx context.Context, stream grpc.BidiStreamingClient[rpc.AgentMessage, rpc.NodeMessage], out <-chan *rpc.AgentMessage, beat time.Duration) error {
	tick := time.NewTicker(beat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-out:
			if err := stream.Send(m); err != nil {
				return err
			}
		case now := <-tick.C:
			if err := stream.Send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Heartbeat{Heartbeat: &rpc.Heartbeat{UnixNano: now.UnixNano()}}}); err != nil {
				return err
			}
		}
	}
}

// recvLoop handles what the node sends. The stream is dropped when the node
// has been silent for longer than silence (its heartbeats stopped).
//
// With confirm (the node's welcome promised it), a new job runs only when
// the node answers its acknowledgement with JobStart: the log then holds
// the target's start, which it refuses once the job is cancelled. Until
// then the dispatch waits in awaiting, which ends with the stream; the node
// dispatches again on the next one.
func (l *clusterLink) recvLoop(ctx context.Context, stream grpc.BidiStreamingClient[rpc.AgentMessage, rpc.NodeMessage], silence time.Duration, confirm bool) error {
	awaiting := map[string]*rpc.JobDispatch{}
	msgs := make(chan *rpc.NodeMessage)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
		}
	}()
	timer := time.NewTimer(silence)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-timer.C:
			return fmt.Errorf("node silent for %s", silence)
		case m := <-msgs:
			timer.Reset(silence)
			switch msg := m.GetMsg().(type) {
			case *rpc.NodeMessage_Dispatch:
				d := msg.Dispatch
				if !l.dispatch(d) {
					break
				}
				if confirm {
					awaiting[d.GetJobId()] = d
				} else if !l.start(d) {
					break
				}
				l.send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Ack{Ack: &rpc.JobAck{JobId: d.GetJobId()}}})
			case *rpc.NodeMessage_Start:
				if d := awaiting[msg.Start.GetJobId()]; d != nil {
					delete(awaiting, msg.Start.GetJobId())
					l.start(d)
				}
			case *rpc.NodeMessage_Cancel:
				delete(awaiting, msg.Cancel.GetJobId())
				l.runMu.Lock()
				if cancel := l.running[msg.Cancel.GetJobId()]; cancel != nil {
					cancel()
				}
				l.runMu.Unlock()
			case *rpc.NodeMessage_SshAccess:
				l.a.sshAccess(msg.SshAccess)
			case *rpc.NodeMessage_ResultAck:
				if err := l.journal.reported(msg.ResultAck.GetJobId()); err != nil {
					l.a.log.Warn("journal", "err", err)
				}
			}
		}
	}
}

// dispatch answers a dispatch of a job this host has run or is running
// (from the process or the journal: each job runs at most once on this
// host) and reports whether the job is new, to be acknowledged and started.
func (l *clusterLink) dispatch(d *rpc.JobDispatch) bool {
	job := d.GetJobId()
	ack := &rpc.AgentMessage{Msg: &rpc.AgentMessage_Ack{Ack: &rpc.JobAck{JobId: job}}}
	l.runMu.Lock()
	_, inProcess := l.running[job]
	l.runMu.Unlock()
	if inProcess {
		l.send(ack)
		return false
	}
	e, err := l.journal.get(job)
	if err != nil {
		l.a.log.Error("journal", "job", job, "err", err)
		return false
	}
	switch {
	case e != nil && e.Status == journalDone:
		if r, err := e.result(); err == nil {
			l.send(ack)
			l.send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Result{Result: r}})
		}
		return false
	case e != nil:
		// Started by an earlier run of this agent that died before it
		// finished. Running it again could do half the work twice.
		r := &rpc.JobResult{JobId: job, Error: "the agent stopped during this run; not run again (at most once per job)"}
		setResultStatus(r, events.TargetStatus_TARGET_STATUS_FAILED)
		if err := l.journal.finish(r); err != nil {
			l.a.log.Error("journal", "job", job, "err", err)
			return false
		}
		l.send(ack)
		l.send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Result{Result: r}})
		return false
	}
	return true
}

// start records a new job in the journal and runs it; false if it could
// not be recorded (then it does not run).
func (l *clusterLink) start(d *rpc.JobDispatch) bool {
	job := d.GetJobId()
	l.runMu.Lock()
	_, inProcess := l.running[job]
	l.runMu.Unlock()
	if inProcess {
		return true
	}
	if err := l.journal.start(job); err != nil {
		l.a.log.Error("journal", "job", job, "err", err)
		return false
	}
	runCtx, cancel := context.WithTimeout(l.a.ctx, time.Duration(d.GetTimeoutNanos()))
	l.runMu.Lock()
	l.running[job] = cancel
	l.runMu.Unlock()
	l.a.wg.Add(1)
	go func() {
		defer l.a.wg.Done()
		defer func() {
			cancel()
			l.runMu.Lock()
			delete(l.running, job)
			l.runMu.Unlock()
		}()
		r := l.run(runCtx, d)
		if err := l.journal.finish(r); err != nil {
			l.a.log.Error("journal", "job", job, "err", err)
			return
		}
		l.send(&rpc.AgentMessage{Msg: &rpc.AgentMessage_Result{Result: r}})
	}()
	return true
}

// run applies a dispatched job and turns the report into a result.
func (l *clusterLink) run(ctx context.Context, d *rpc.JobDispatch) *rpc.JobResult {
	r := &rpc.JobResult{JobId: d.GetJobId()}
	vars, secrets, err := dispatchVars(d)
	if err != nil {
		r.Error = err.Error()
		setResultStatus(r, events.TargetStatus_TARGET_STATUS_FAILED)
		return r
	}
	// What the run reports goes to the node, the log and the journal:
	// none of them may hold a secret var's value.
	redact := secretvars.NewRedactor(secrets)
	defer func() {
		redact.Blocks(r.Blocks)
		r.Error = redact.String(r.Error)
	}()
	b := &provision.Bundle{Name: d.GetName(), Config: d.GetConfig(), Files: d.GetFiles()}
	rep, err := l.a.run(ctx, b, d.GetDryRun(), vars, nil)
	if err != nil {
		r.Error = err.Error()
		setResultStatus(r, events.TargetStatus_TARGET_STATUS_FAILED)
		return r
	}
	for _, blk := range rep.Blocks {
		r.Blocks = append(r.Blocks, BlockToEvent(blk))
	}
	switch {
	case rep.Failed():
		setResultStatus(r, events.TargetStatus_TARGET_STATUS_FAILED)
		r.Error = provision.FailureSummary(rep.Blocks)
	case rep.Totals.Changed > 0:
		setResultStatus(r, events.TargetStatus_TARGET_STATUS_CHANGED)
	default:
		setResultStatus(r, events.TargetStatus_TARGET_STATUS_OK)
	}
	return r
}

// dispatchVars returns the vars a dispatched job's templates see (its vars
// and its secret vars) and the secret vars alone, or why it must not run:
// a job with secret vars runs only with every one of them, as the digest
// the log recorded at submission says. The values live in memory only.
func dispatchVars(d *rpc.JobDispatch) (vars, secrets map[string]string, err error) {
	sv := d.GetSecretVars()
	if len(sv.GetNames()) == 0 {
		return d.GetVars(), nil, nil
	}
	if len(sv.GetValues()) == 0 {
		return nil, nil, fmt.Errorf("job %s has secret vars (%s) but its dispatch carried none; not run", d.GetJobId(), strings.Join(sv.GetNames(), ", "))
	}
	if !slices.Equal(secretvars.Names(sv.GetValues()), sv.GetNames()) || !secretvars.Verify(sv.GetKey(), d.GetJobId(), sv.GetValues(), sv.GetDigest()) {
		return nil, nil, fmt.Errorf("job %s: the secret vars dispatched do not match the digest recorded at submission; not run", d.GetJobId())
	}
	vars = make(map[string]string, len(d.GetVars())+len(sv.GetValues()))
	for k, v := range d.GetVars() {
		vars[k] = v
	}
	for k, v := range sv.GetValues() {
		vars[k] = v
	}
	return vars, sv.GetValues(), nil
}

// setResultStatus sets a result's status, and its name for nodes of builds
// before the enum, which read the name alone.
func setResultStatus(r *rpc.JobResult, st events.TargetStatus) {
	r.TargetStatus, r.Status = st, st.Name()
}

// startGossip joins the cluster's memberlist as an agent.
func (l *clusterLink) startGossip(listen string, gossipKey []byte, join []string) error {
	// An agent needs to know the servers, not the rest of the fleet.
	l.servers = &rpc.GossipMembers{Keep: func(m rpc.GossipMember) bool { return m.Meta.Role == rpc.RoleServer }}
	var err error
	l.gossip, err = rpc.StartGossip(rpc.GossipConfig{
		Name:   rpc.AgentGossipName(l.a.name),
		Listen: listen,
		Key:    gossipKey,
		Meta:   rpc.GossipMeta{Role: rpc.RoleAgent, Addr: l.a.Addr(), Labels: l.a.cfg.Labels},
		Events: l.servers,
		Logger: l.a.log,
		Quiet:  &l.a.quiet,
	})
	if err != nil {
		return err
	}
	l.a.wg.Add(1)
	go func() {
		defer l.a.wg.Done()
		rpc.JoinGossip(l.a.ctx, l.gossip, join, l.a.log)
	}()
	return nil
}

// sshAccess hands SSH access state to the applier, or notes once that this
// agent was not started to manage sshd.
func (a *Agent) sshAccess(msg *rpc.SSHAccess) {
	if a.sshd == nil {
		a.sshdIgnored.Do(func() {
			a.log.Info("a node sent SSH access state, but this agent does not manage sshd (hpt serve --manage-sshd); ignored")
		})
		return
	}
	a.sshd.offer(msg)
}
