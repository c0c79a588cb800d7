// Package node runs one hpt server: Raft over the shared TLS port,
// memberlist gossip for discovery and bootstrap, the gRPC API, forwarding of
// writes to the leader, and reads at a chosen consistency.
//
// A Node owns every goroutine it starts; Shutdown stops them and waits.
//
// Lock order: Node.mu before fsm's locks. The FSM is applied only on Raft's
// FSM goroutine; the node reads it from any goroutine.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/logs"
	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// Node is one running hpt server.
type Node struct {
	cfg        Config
	log        *slog.Logger
	clusterPub ed25519.PublicKey
	cert       tls.Certificate

	fsm      *fsm.FSM
	logStore *raftboltdb.BoltStore
	snaps    *raft.FileSnapshotStore
	trans    *raft.NetworkTransport
	raft     *raft.Raft

	mux    *mux
	addr   string // advertised address of the shared port
	grpc   *grpc.Server
	authz  *auth.Authorizer
	access *accessCache
	peers  *peerPool
	gossip *memberlist.Memberlist
	// members is this node's copy of the gossip members (rpc.GossipMembers).
	members *rpc.GossipMembers

	httpServer  *http.Server
	metricsAddr string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// quiet is raised when this node, or its whole cluster, stops on
	// purpose: raft's and gossip's complaints are then debug (Quiet).
	quiet logs.Quiet

	// reconcileCh nudges the membership loop after a gossip event.
	reconcileCh chan struct{}
	// scheduleCh nudges the job scheduler (leader only).
	scheduleCh chan struct{}
	// sshAccessCh nudges the connectors' sshd state (connector.go).
	sshAccessCh chan struct{}
	fleet       *fleet
	// secrets holds jobs' secret vars in memory (secrets.go).
	secrets *secretStash
	// batches gathers writes into Raft entries, forwarded to the leader
	// while this node follows.
	batches *batcher
	// exporter, if configured, runs while this node leads.
	exporter *export.Exporter
	// leaderGone is since when this node has had no leader (watchLeader).
	leaderGone leaderWatch

	// fresh says whether the state is known to be no older than before
	// the last stop; until it is, the node authenticates nothing.
	fresh freshness

	// authSyncMu serializes catching up for unknown tokens; authSyncStart
	// is when the last successful catch-up started.
	authSyncMu    sync.Mutex
	authSyncStart time.Time

	mu sync.Mutex
	// leaderReady is true once this node, as leader, has applied everything
	// committed before its term (Barrier); consistent reads wait for it.
	leaderReady bool
	shutdown    bool
}

// New starts a node: it opens the state, starts Raft, the API and gossip.
// The node serves until Shutdown.
func New(cfg Config) (_ *Node, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	cfg.Raft = cfg.Raft.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:         cfg,
		log:         cfg.Logger.With("node", cfg.Name),
		clusterPub:  cfg.ClusterKey.Public().(ed25519.PublicKey),
		ctx:         ctx,
		cancel:      cancel,
		reconcileCh: make(chan struct{}, 1),
		scheduleCh:  make(chan struct{}, 1),
		sshAccessCh: make(chan struct{}, 1),
	}
	n.fleet = newFleet(cfg.Name, cfg.AgentHeartbeat, n.log, n)
	n.secrets = newSecretStash(maxStashBytes)
	n.batches = newBatcher(ctx, cfg, n)
	// Undo whatever was started if a later step fails.
	defer func() {
		if err != nil {
			n.Shutdown()
		}
	}()
	if n.cert, err = pinned.Certificate(cfg.ClusterKey); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if n.fsm, err = fsm.OpenWith(filepath.Join(cfg.DataDir, "state"), fsm.Options{Logger: n.log.With("component", "state"), Fatal: cfg.StorageFatal}); err != nil {
		return nil, err
	}
	if cfg.Export != nil {
		ecfg := *cfg.Export
		if ecfg.Logger == nil {
			ecfg.Logger = n.log
		}
		if n.exporter, err = export.New(ecfg, n.fsm); err != nil {
			return nil, err
		}
	}
	n.peers = newPeerPool(n.clientTLS(pinned.ProtoGRPC), cfg.MaxMessageSize, n.dial)
	if err := n.listen(); err != nil {
		return nil, err
	}
	if err := n.startRaft(); err != nil {
		return nil, err
	}
	n.startGRPC()
	if err := n.startGossip(); err != nil {
		return nil, err
	}
	if err := n.startMetrics(); err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	n.wg.Add(7)
	go n.sshAccessLoop()
	go n.secretsLoop()
	go n.awaitFreshState()
	go n.leaderLoop()
	go n.reconcileLoop()
	go n.tailLoop()
	go func() {
		defer n.wg.Done()
		n.fleet.heartbeatLoop(n.ctx)
	}()
	n.warnNoCAs()
	n.log.Info("node started", "addr", n.addr, "gossip", n.GossipAddr())
	return n, nil
}

// listen opens the shared port and its protocol multiplexer.
func (n *Node) listen() error {
	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.Listen, err)
	}
	addr, err := advertiseAddr(n.cfg.Advertise, ln.Addr().(*net.TCPAddr))
	if err != nil {
		ln.Close()
		return err
	}
	n.addr = addr
	tlsCfg := pinned.ServerConfig(n.cert, n.verifyPeer, pinned.ProtoGRPC, pinned.ProtoRaft)
	n.mux = newMux(ln, tlsCfg, n.log.With("component", "mux"), pinned.ProtoGRPC, pinned.ProtoRaft)
	n.mux.start()
	return nil
}

// advertiseAddr picks the address others should dial.
func advertiseAddr(configured string, bound *net.TCPAddr) (string, error) {
	if configured != "" {
		host, port, err := net.SplitHostPort(configured)
		if err != nil {
			return "", fmt.Errorf("advertise address %q: %w", configured, err)
		}
		if port == "0" {
			port = fmt.Sprint(bound.Port)
		}
		return net.JoinHostPort(host, port), nil
	}
	ip := bound.IP
	if ip.IsUnspecified() {
		ip = firstHostIP()
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(bound.Port)), nil
}

func firstHostIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
				return ipn.IP
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}

// verifyPeer decides at the TLS handshake who may talk to this node: Raft
// only with the cluster key; gRPC with no key (API clients, who then need a
// token), the cluster key (nodes) or a registered, unrevoked target key
// (agents). Anything else is refused before a byte of RPC is read.
func (n *Node) verifyPeer(pub ed25519.PublicKey, proto string) error {
	if proto == pinned.ProtoRaft {
		if pub == nil || !pub.Equal(n.clusterPub) {
			return &pinned.KeyError{Peer: "raft peer", Fingerprint: fingerprintOrEmpty(pub), Want: pinned.Fingerprint(n.clusterPub)}
		}
		return nil
	}
	if pub == nil || pub.Equal(n.clusterPub) {
		return nil
	}
	if !n.isFresh() {
		// The key may have been revoked in the part of the log the state
		// has not re-applied yet (freshness.go).
		return fmt.Errorf("node %s is catching up after a restart; target keys are checked once it has", n.cfg.Name)
	}
	tk, err := n.fsm.TargetByKey(pub)
	if err != nil || tk.GetRevoked() {
		return &pinned.KeyError{Peer: "client", Fingerprint: pinned.Fingerprint(pub)}
	}
	return nil
}

func fingerprintOrEmpty(pub ed25519.PublicKey) string {
	if pub == nil {
		return ""
	}
	return pinned.Fingerprint(pub)
}

// clientTLS is the configuration for dialling another node: present the
// cluster key, accept only the cluster key.
func (n *Node) clientTLS(proto string) *tls.Config {
	return pinned.ClientConfig(&n.cert, pinned.Pin("node", pinned.Fingerprint(n.clusterPub)), proto)
}

func (n *Node) startGRPC() {
	n.access = newAccessCache(n.fsm)
	n.authz = auth.NewAuthorizer(authState{n}, n.clusterPub, methodRules(n))
	n.grpc = grpc.NewServer(append(rpc.FlowServerOptions(),
		grpc.Creds(pinned.ServerCredentials(n.mux.tlsConfig)),
		grpc.MaxRecvMsgSize(n.cfg.MaxMessageSize),
		grpc.MaxSendMsgSize(n.cfg.MaxMessageSize),
		// Most connections are agents' idle streams: borrow write buffers
		// from a pool only while writing, and read without a buffer of
		// grpc's own (the TLS connection underneath already holds each
		// decrypted record), so a connected agent costs the node little
		// memory.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(0),
		grpc.ChainUnaryInterceptor(statusUnary, n.freshUnary, n.authz.UnaryInterceptor, n.consistencyUnary),
		grpc.ChainStreamInterceptor(statusStream, n.freshStream, n.authz.StreamInterceptor, n.consistencyStream),
		// Agents hold streams for days: allow their pings, and ping idle
		// clients ourselves (NOTES: client Time >= server MinTime).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)...)
	n.registerServices(n.grpc)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.grpc.Serve(n.mux.listener(pinned.ProtoGRPC)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("grpc server stopped", "err", err)
		}
	}()
}

// authState is the state as authorization sees it. A token this node does
// not know may simply not have reached it yet (created a moment ago through
// another node): before refusing it, the node catches up to the leader's
// commit index and looks again. Catching up costs the leader a round of
// heartbeats, so there is at most one catch-up at a time, and a request
// whose token arrived before the last catch-up started relies on that one:
// a flood of made-up tokens costs the leader one round trip at a time.
type authState struct{ n *Node }

func (s authState) Token(id string) (*fsm.Token, error) {
	t, err := s.n.access.token(id)
	if !errors.Is(err, fsm.ErrNotFound) {
		return t, err
	}
	arrived := time.Now()
	s.n.authSyncMu.Lock()
	if !s.n.authSyncStart.After(arrived) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(s.n.ctx, 2*time.Second)
		if s.n.syncRead(ctx) == nil {
			s.n.authSyncStart = start
		}
		cancel()
	}
	s.n.authSyncMu.Unlock()
	return s.n.fsm.Token(id)
}

func (s authState) GroupsOf(subject string) ([]string, error) { return s.n.access.groupsOf(subject) }

func (s authState) Grants(subject string) ([]*fsm.Grant, error) { return s.n.access.grantsOf(subject) }

// dial opens a TCP connection to another node.
func (n *Node) dial(ctx context.Context, addr string) (net.Conn, error) {
	if n.cfg.Dial != nil {
		return n.cfg.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Addr returns the advertised address of the node's port.
func (n *Node) Addr() string { return n.addr }

// ClusterKey returns the cluster's public key.
func (n *Node) ClusterKey() ed25519.PublicKey { return n.clusterPub }

// State exposes the node's state for in-process tests and tools.
func (n *Node) State() *fsm.FSM { return n.fsm }

// Raft exposes the consensus module for in-process tests and tools.
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft != nil && n.raft.State() == raft.Leader }

// Leader returns the current leader's name and address, empty if unknown.
func (n *Node) Leader() (name, addr string) {
	a, id := n.raft.LeaderWithID()
	return string(id), string(a)
}

// Shutdown stops the node and waits for everything it started. It does not
// remove the node from the Raft configuration: a node that restarts with its
// data directory rejoins as itself. Safe to call more than once.
func (n *Node) Shutdown() error { return n.stop(true) }

// Quiet tells the node that its peers are about to stop on purpose, as
// when `hpt dev` stops its whole cluster: what raft and gossip then say
// about peers that vanish and connections that close is logged at debug,
// not as warnings and errors. Shutdown quiets the node itself.
func (n *Node) Quiet() { n.quiet.Raise() }

// Crash stops the node as SIGKILL would, for fault tests that run nodes in
// one process: it does not leave gossip (peers find it dead), cuts calls
// and streams instead of draining them, and abandons the state without a
// flush, so the next start finds on disk what a killed process leaves
// there. It waits for the node's goroutines like Shutdown.
func (n *Node) Crash() error { return n.stop(false) }

func (n *Node) stop(graceful bool) error {
	n.mu.Lock()
	if n.shutdown {
		n.mu.Unlock()
		return nil
	}
	n.shutdown = true
	n.mu.Unlock()

	// What raft and gossip say while they are closed under them is
	// expected (and a killed process would say nothing).
	n.quiet.Raise()
	n.cancel()
	var errs []error
	if !graceful && n.grpc != nil {
		// Nothing more is answered, as when the process dies.
		n.grpc.Stop()
	}
	if n.gossip != nil {
		if graceful {
			// Tell peers we are going, so they stop routing to us quickly.
			if err := n.gossip.Leave(time.Second); err != nil {
				n.log.Debug("gossip leave", "err", err)
			}
		}
		if err := n.gossip.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop gossip: %w", err))
		}
	}
	if graceful && n.grpc != nil {
		stopGRPC(n.grpc, 2*time.Second)
	}
	if n.httpServer != nil {
		n.httpServer.Close()
	}
	// The node context is cancelled, so batches in flight end at once.
	n.batches.close()
	if n.peers != nil {
		n.peers.close()
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("stop raft: %w", err))
		}
	}
	if n.trans != nil {
		n.trans.Close()
	}
	if n.mux != nil {
		n.mux.close()
	}
	n.wg.Wait()
	if n.logStore != nil {
		if err := n.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
	}
	if n.fsm != nil {
		closeState := n.fsm.Close
		if !graceful {
			closeState = n.fsm.Abandon
		}
		if err := closeState(); err != nil {
			errs = append(errs, err)
		}
	}
	if graceful {
		n.log.Info("node stopped")
	} else {
		n.log.Info("node crashed (fault test)")
	}
	return errors.Join(errs...)
}

// stopGRPC drains in-flight calls, then cuts long-lived streams.
func stopGRPC(s *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		s.Stop()
		<-done
	}
}
