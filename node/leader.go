package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// leaderLoop follows leadership changes. On gaining leadership the node
// first applies everything committed before its term (Barrier), as Consul
// does, so that nothing it does as leader acts on a state behind the log.
//
// Work that only the leader does (job scheduling, removing expired grants,
// event export) runs under a context that ends when leadership does.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	notify := n.raft.LeaderCh()
	var stopLeading context.CancelFunc = func() {}
	var leading sync.WaitGroup
	defer func() {
		stopLeading()
		leading.Wait()
	}()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-notify:
			stopLeading()
			leading.Wait()
			if !isLeader {
				n.setLeaderReady(false)
				continue
			}
			if !n.establishLeadership() {
				continue
			}
			ctx, cancel := context.WithCancel(n.ctx)
			stopLeading = cancel
			leading.Add(1)
			go func() {
				defer leading.Done()
				n.runScheduler(ctx)
			}()
			leading.Add(1)
			go func() {
				defer leading.Done()
				n.runGrantReaper(ctx)
			}()
			if n.exporter != nil {
				leading.Add(1)
				go func() {
					defer leading.Done()
					// Run returns an error only when already running,
					// which leading.Wait above rules out.
					_ = n.exporter.Run(ctx)
				}()
			}
		}
	}
}

func (n *Node) setLeaderReady(v bool) {
	n.mu.Lock()
	n.leaderReady = v
	n.mu.Unlock()
}

func (n *Node) isLeaderReady() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leaderReady
}

// establishLeadership prepares this node to act as leader and reports
// whether it may.
func (n *Node) establishLeadership() bool {
	for attempt := 0; ; attempt++ {
		err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return false
		}
		n.log.Warn("leader barrier failed; retrying", "err", err)
		select {
		case <-n.ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
	// The first event of the term is a real command, so that the commit
	// index a consistent read waits for is one the state has applied (Raft's
	// own no-op and barrier entries never reach the state machine).
	term, _ := parseUint(n.raft.Stats()["term"])
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	_, err := n.proposeAs(ctx, n.nodeActor(), fmt.Sprintf("leader-%s-%d", n.cfg.Name, term), &events.LeaderElected{Name: n.cfg.Name, Term: term})
	cancel()
	if err != nil {
		n.log.Warn("record leadership", "err", err)
		return false
	}
	n.setLeaderReady(true)
	n.log.Info("leadership established", "term", term, "applied", n.fsm.AppliedIndex())
	if err := n.writeBootstrap(); err != nil {
		n.log.Error("write cluster bootstrap event", "err", err)
	}
	n.nudgeReconcile()
	return true
}

// writeBootstrap records the keystore's bootstrap token once per cluster.
// Every node holds the same token, so whichever becomes leader proposes the
// same event, and its fixed request id makes a second proposal a no-op.
func (n *Node) writeBootstrap() error {
	bt := n.cfg.Bootstrap
	if bt == nil {
		return nil
	}
	done, err := n.fsm.Bootstrapped()
	if err != nil || done {
		return err
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
	defer cancel()
	_, err = n.proposeAs(ctx, n.nodeActor(), "cluster-bootstrap-"+bt.ID, &events.ClusterBootstrapped{
		AdminSubject:      bt.Subject,
		TokenId:           bt.ID,
		TokenSecretSha256: bt.SecretSHA256[:],
	})
	return err
}

func (n *Node) nodeActor() string { return events.KindNode + ":" + n.cfg.Name }

// reconcileLoop keeps Raft membership in step with gossip: it bootstraps a
// new cluster once enough servers see each other, and on the leader adds
// servers that joined gossip as voters.
func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.reconcileCh:
		case <-tick.C:
		}
		n.reconcile()
	}
}

func (n *Node) reconcile() {
	servers := n.gossipServers()
	if n.cfg.BootstrapExpect > 0 {
		n.maybeBootstrap(servers)
	}
	if !n.IsLeader() || !n.isLeaderReady() {
		return
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		n.log.Warn("read raft configuration", "err", err)
		return
	}
	known := map[string]string{}
	for _, s := range cf.Configuration().Servers {
		known[string(s.ID)] = string(s.Address)
	}
	for _, name := range sortedNames(servers) {
		addr := servers[name]
		if known[name] == addr {
			continue
		}
		n.log.Info("adding server to raft", "server", name, "addr", addr)
		if err := n.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout).Error(); err != nil {
			n.log.Warn("add voter", "server", name, "err", err)
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ApplyTimeout)
		if _, err := n.proposeAs(ctx, n.nodeActor(), "", &events.NodeJoined{Name: name, Addr: addr}); err != nil {
			n.log.Warn("record node joined", "server", name, "err", err)
		}
		cancel()
	}
}

// maybeBootstrap bootstraps Raft with the servers seen in gossip once there
// are BootstrapExpect of them, unless this node or any of them already has
// Raft state (then this is a node joining an existing cluster, which the
// leader adds).
func (n *Node) maybeBootstrap(servers map[string]string) {
	if len(servers) < n.cfg.BootstrapExpect {
		return
	}
	has, err := raft.HasExistingState(n.logStore, n.logStore, n.snaps)
	if err != nil || has {
		return
	}
	for _, name := range sortedNames(servers) {
		if name == n.cfg.Name {
			continue
		}
		st, err := n.peerStatus(servers[name])
		if err != nil {
			n.log.Info("bootstrap waits: cannot ask a server for its state", "server", name, "err", err)
			return
		}
		if st.GetLastIndex() > 0 {
			n.log.Info("not bootstrapping: a server already has raft state", "server", name)
			return
		}
	}
	var cfg raft.Configuration
	for _, name := range sortedNames(servers) {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(servers[name])})
	}
	n.log.Info("bootstrapping cluster", "servers", sortedNames(servers))
	if err := n.raft.BootstrapCluster(cfg).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Error("bootstrap cluster", "err", err)
	}
}

func (n *Node) peerStatus(addr string) (*rpc.Member, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
	defer cancel()
	conn, err := n.peers.get(addr)
	if err != nil {
		return nil, err
	}
	return rpc.NewInternalClient(conn).NodeStatus(ctx, &rpc.NodeStatusRequest{})
}
