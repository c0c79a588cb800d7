// Package nodetest starts real hpt clusters inside a test process: several
// node.Node values on loopback ports with real TLS, Raft, Pebble and
// gossip, torn down by t.Cleanup.
package nodetest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/devcluster"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
	"google.golang.org/grpc"
)

// Cluster is a set of in-process nodes sharing one cluster key.
type Cluster struct {
	t          testing.TB
	keys       keystore.ClusterSecrets
	ClusterKey ed25519.PrivateKey
	// Admin is the bootstrap admin token.
	Admin auth.Token
	// SSHCAs are the cluster's SSH CAs, private halves included, for tests
	// that check the nodes use them and never leak them.
	SSHCAs keystore.SSHCAs
	Dir    string

	mu    sync.Mutex
	nodes []*node.Node // nil while a node is stopped
	cfgs  []node.Config
	net   *faultNet
}

// Options tune a test cluster.
type Options struct {
	// Configure, if set, adjusts each node's config before it starts.
	Configure func(i int, c *node.Config)
}

// Start starts n nodes that bootstrap together and waits for a leader.
func Start(t testing.TB, n int, opts ...Options) *Cluster {
	t.Helper()
	keys, err := keystore.NewClusterSecrets()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, keys: keys, ClusterKey: keys.Identity, Admin: keys.Admin, SSHCAs: keys.SSH, Dir: t.TempDir(), net: newFaultNet()}
	t.Cleanup(c.Stop)
	var opt Options
	if len(opts) > 0 {
		opt = opts[0]
	}
	for i := range n {
		cfg := c.config(i, n)
		if i > 0 {
			cfg.Join = []string{c.nodes[0].GossipAddr()}
		}
		if opt.Configure != nil {
			opt.Configure(i, &cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, c.startNode(i, cfg))
	}
	c.WaitLeader()
	c.WaitBootstrapped()
	return c
}

// config is the config of slot i: named n<i+1>, dialling other nodes
// through the cluster's fault net (Partition).
func (c *Cluster) config(i, expect int) node.Config {
	name := fmt.Sprintf("n%d", i+1)
	cfg := devcluster.NodeConfig(c.keys, name, c.Dir, expect, testLogger(c.t, name))
	cfg.Dial = c.net.dialer(i)
	// Faster than production, still safe on a loaded 2-core machine.
	cfg.Raft.HeartbeatTimeout = 500 * time.Millisecond
	cfg.Raft.ElectionTimeout = 500 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 250 * time.Millisecond
	return cfg
}

func testLogger(t testing.TB, name string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("HPT_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})).With("n", name)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	// t.Log after the test ends panics; logs from late goroutines are lost
	// instead, which is what we want.
	defer func() { recover() }()
	w.t.Log(string(p))
	return len(p), nil
}

func (c *Cluster) startNode(i int, cfg node.Config) *node.Node {
	c.t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("start node %s: %v", cfg.Name, err)
	}
	c.net.register(i, n.Addr())
	return n
}

// Partition cuts node i off from the other nodes, as a firewall dropping
// its host would: the connections the nodes opened between it and the
// others (Raft, forwarded writes, reads) are closed and new ones refused,
// until Heal. Clients and agents still reach every node, and gossip is not
// cut. One node at a time is partitioned; a second call moves the cut. A
// Configure that replaces Config.Dial takes that node out of the fault net.
func (c *Cluster) Partition(i int) { c.net.isolate(i) }

// Heal ends the partition: the nodes may dial each other again.
func (c *Cluster) Heal() { c.net.heal() }

// Node returns node i (nil if stopped).
func (c *Cluster) Node(i int) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Len is the number of node slots.
func (c *Cluster) Len() int { return len(c.cfgs) }

// Running returns the running nodes.
func (c *Cluster) Running() []*node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node.Node
	for _, n := range c.nodes {
		if n != nil {
			out = append(out, n)
		}
	}
	return out
}

// WaitLeader waits until the running nodes agree on a leader and returns
// its slot.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	var idx int
	c.Eventually(15*time.Second, func() error {
		leader := ""
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			name, _ := n.Leader()
			if name == "" {
				return fmt.Errorf("%s sees no leader", n.Name())
			}
			if leader != "" && name != leader {
				return fmt.Errorf("nodes disagree on leader: %s vs %s", leader, name)
			}
			leader = name
			if n.IsLeader() {
				idx = i
			}
		}
		if c.nodes[idx] == nil || !c.nodes[idx].IsLeader() {
			return fmt.Errorf("leader %s is not a running node", leader)
		}
		return nil
	})
	return idx
}

// WaitBootstrapped waits until the bootstrap admin token is usable.
func (c *Cluster) WaitBootstrapped() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dc := devcluster.Cluster{Nodes: c.Running()}
	if err := dc.WaitReady(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// WaitEvent waits until every running node has applied the log entry that
// carries the event with index index.
func (c *Cluster) WaitEvent(index uint64) {
	c.t.Helper()
	entry := events.EntryOf(index)
	c.Eventually(15*time.Second, func() error {
		for _, n := range c.Running() {
			if got := n.State().AppliedIndex(); got < entry {
				return fmt.Errorf("%s applied entry %d, want %d (event %d)", n.Name(), got, entry, index)
			}
		}
		return nil
	})
}

// Client returns an admin client of node i alone.
func (c *Cluster) Client(i int) *rpc.Client {
	c.t.Helper()
	return c.ClientFor(c.Admin.Secret(), c.Node(i).Addr())
}

// ClientFor returns a client with token tok for the given addresses.
func (c *Cluster) ClientFor(tok string, addrs ...string) *rpc.Client {
	c.t.Helper()
	cl, err := rpc.Dial(rpc.ClientConfig{Addrs: addrs, Token: tok, ClusterKey: c.keys.Fingerprint()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Addrs returns the addresses of the running nodes.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Running() {
		out = append(out, n.Addr())
	}
	return out
}

// Kill stops node i cleanly: it leaves gossip, drains its calls and
// flushes its state (Node.Shutdown); it does not leave Raft. Use it where a
// graceful stop is the point, and Crash for a failure.
func (c *Cluster) Kill(i int) { c.stop(i, (*node.Node).Shutdown) }

// Crash stops node i as SIGKILL would (Node.Crash): no gossip leave, calls
// cut, and its state loses what was not flushed. Restart brings it back
// from what is on disk.
func (c *Cluster) Crash(i int) { c.stop(i, (*node.Node).Crash) }

func (c *Cluster) stop(i int, how func(*node.Node) error) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n == nil {
		return
	}
	// Keep the ports so a restart comes back at the same address.
	c.cfgs[i].Listen = n.Addr()
	c.cfgs[i].GossipListen = n.GossipAddr()
	if err := how(n); err != nil {
		c.t.Logf("stop %s: %v", n.Name(), err)
	}
}

// Restart starts node i again from its data directory.
func (c *Cluster) Restart(i int) *node.Node {
	c.t.Helper()
	cfg := c.cfgs[i]
	cfg.Join = nil
	for _, n := range c.Running() {
		cfg.Join = append(cfg.Join, n.GossipAddr())
	}
	n := c.startNode(i, cfg)
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return n
}

// AddNode starts a new, empty node that joins the running cluster.
func (c *Cluster) AddNode() int {
	c.t.Helper()
	i := len(c.cfgs)
	cfg := c.config(i, 0)
	for _, n := range c.Running() {
		cfg.Join = append(cfg.Join, n.GossipAddr())
	}
	c.cfgs = append(c.cfgs, cfg)
	n := c.startNode(i, cfg)
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return len(c.cfgs) - 1
}

// Stop shuts every node down, telling them first that the whole cluster
// stops (node.Node.Quiet).
func (c *Cluster) Stop() {
	for _, n := range c.Running() {
		n.Quiet()
	}
	for i := range c.cfgs {
		c.Kill(i)
	}
}

// Eventually polls cond until it returns nil or the timeout passes
// (testenv.Eventually).
func (c *Cluster) Eventually(timeout time.Duration, cond func() error) {
	c.t.Helper()
	testenv.Eventually(c.t, timeout, cond)
}

// AgentOptions tune StartAgent.
type AgentOptions struct {
	// Labels are registered with the target's key (gen-target-keys
	// --labels) and, unless Claim is set, announced by the agent too.
	Labels map[string]string
	// Claim, if not nil, is what the agent announces instead of Labels
	// (hpt serve --labels): a claim that must never select.
	Claim map[string]string
	// Gossip makes the agent find nodes through gossip instead of dialling
	// them directly.
	Gossip bool
	// Dir holds the agent's keystore and journal; default a new temp dir.
	// Reusing it restarts the same agent.
	Dir string
	// Provision is the template for the agent's provisioning options.
	Provision provision.Options
	// SSHD makes the agent a connector managing sshd (agent.Config.SSHD).
	SSHD *sshaccess.Config
}

// RegisterTarget registers a new target key with the cluster and writes its
// keystore into dir, as `hpt gen-target-keys` does against a cluster.
func (c *Cluster) RegisterTarget(name, dir string) string {
	c.t.Helper()
	return c.registerTarget(name, dir, nil)
}

func (c *Cluster) registerTarget(name, dir string, labels map[string]string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	path, err := devcluster.RegisterTarget(ctx, admin, name, dir, labels)
	if err != nil {
		c.t.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	return path
}

// StartAgent registers target name (unless opts.Dir already holds its
// keystore) and starts its agent connected to the cluster.
func (c *Cluster) StartAgent(name string, opts AgentOptions) *agent.Agent {
	c.t.Helper()
	if opts.Dir == "" {
		opts.Dir = c.t.TempDir()
	}
	path := filepath.Join(opts.Dir, name+".keystore.db")
	if _, err := os.Stat(path); err != nil {
		path = c.registerTarget(name, opts.Dir, opts.Labels)
	}
	claim := opts.Labels
	if opts.Claim != nil {
		claim = opts.Claim
	}
	cfg := agent.Config{
		Keystore: path, Listen: "127.0.0.1:0", Labels: claim, Provision: opts.Provision,
		Logger: testLogger(c.t, "agent-"+name), GossipListen: "127.0.0.1:0", SSHD: opts.SSHD,
	}
	if !opts.Gossip {
		cfg.Servers = c.Addrs()
	}
	a, err := agent.New(cfg)
	if err != nil {
		c.t.Fatalf("start agent %s: %v", name, err)
	}
	c.t.Cleanup(func() { a.Close() })
	return a
}

// WaitConnected waits until the state shows every named target connected.
func (c *Cluster) WaitConnected(names ...string) {
	c.t.Helper()
	c.Eventually(20*time.Second, func() error {
		n := c.Running()[0]
		for _, name := range names {
			tk, err := n.State().TargetKey(name)
			if err != nil || !tk.GetConnected() {
				return fmt.Errorf("target %s not connected (%v)", name, err)
			}
		}
		return nil
	})
}

// NodeClient returns a connection to node i that presents the cluster key,
// as another node would: it can call the Internal service.
func (c *Cluster) NodeClient(i int) *grpc.ClientConn {
	c.t.Helper()
	cert, err := pinned.Certificate(c.ClusterKey)
	if err != nil {
		c.t.Fatal(err)
	}
	tlsCfg := pinned.ClientConfig(&cert, pinned.Pin("node", c.keys.Fingerprint()), pinned.ProtoGRPC)
	conn, err := grpc.NewClient("passthrough:///"+c.Node(i).Addr(), grpc.WithTransportCredentials(pinned.ClientCredentials(tlsCfg)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}
