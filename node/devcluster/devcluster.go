// Package devcluster runs a whole hpt cluster inside one process on
// loopback: real nodes with real TLS, Raft, Pebble and gossip, fresh keys,
// and a bootstrap admin token. `hpt dev` is built on it, and so are the
// in-process test harnesses.
package devcluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/internal/enroll"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/rpc"
)

// NodeConfig returns the config of a loopback node named name under dir
// that bootstraps once expect nodes see each other (0: join only).
func NodeConfig(k keystore.ClusterSecrets, name, dir string, expect int, log *slog.Logger) node.Config {
	cfg := node.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = filepath.Join(dir, name)
	cfg.Listen = "127.0.0.1:0"
	cfg.GossipListen = "127.0.0.1:0"
	cfg.BootstrapExpect = expect
	cfg.ClusterKey = k.Identity
	cfg.GossipKey = k.Gossip
	bt := k.BootstrapToken()
	cfg.Bootstrap = &bt
	cas, err := node.SSHCAsFromKeys(k.SSH)
	if err != nil {
		// Only a malformed key fails, and k is made by NewClusterSecrets.
		panic(fmt.Sprintf("devcluster: %v", err))
	}
	cfg.SSHCAs = cas
	cfg.Logger = log
	return cfg
}

// Cluster is a running in-process cluster.
type Cluster struct {
	Keys   keystore.ClusterSecrets
	Nodes  []*node.Node
	Agents []*agent.Agent
}

// Options shape a dev cluster.
type Options struct {
	// Nodes to start; default 3.
	Nodes int
	// BasePort, if not 0, gives node i the API port BasePort+10*i and the
	// gossip port one above it (7400, 7401; 7410, 7411; ...). 0 picks free
	// ports.
	BasePort int
	// Agents to start on this host, named dev-1, dev-2, ... with label
	// role=dev; they join through gossip like real ones.
	Agents int
	// Export, if set, is every node's NATS export configuration.
	Export *export.Config
	Logger *slog.Logger
}

// Start starts the nodes under dir, the first one seeding the others'
// gossip, and waits until they have elected a leader and written the
// bootstrap token, or ctx ends.
func Start(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	n, log := opts.Nodes, opts.Logger
	if n == 0 {
		n = 3
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if n < 1 {
		return nil, errors.New("a cluster needs at least one node")
	}
	keys, err := keystore.NewClusterSecrets()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Keys: keys}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		cfg := NodeConfig(keys, name, dir, n, log)
		if opts.BasePort != 0 {
			cfg.Listen = fmt.Sprintf("127.0.0.1:%d", opts.BasePort+10*i)
			cfg.GossipListen = fmt.Sprintf("127.0.0.1:%d", opts.BasePort+10*i+1)
		}
		if i > 0 {
			cfg.Join = []string{c.Nodes[0].GossipAddr()}
		}
		cfg.Export = opts.Export
		nd, err := node.New(cfg)
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Shutdown()
		return nil, err
	}
	if err := c.startAgents(ctx, dir, opts.Agents, log); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startAgents(ctx context.Context, dir string, n int, log *slog.Logger) error {
	if n == 0 {
		return nil
	}
	client, err := rpc.Dial(rpc.ClientConfig{Addrs: c.Addrs(), Token: c.Keys.Admin.Secret(), ClusterKey: c.Keys.Fingerprint()})
	if err != nil {
		return err
	}
	defer client.Close()
	for i := range n {
		name := fmt.Sprintf("dev-%d", i+1)
		labels := map[string]string{"role": "dev"}
		path, err := RegisterTarget(ctx, client, name, filepath.Join(dir, "agents"), labels)
		if err != nil {
			return err
		}
		a, err := agent.New(agent.Config{
			Keystore: path, Listen: "127.0.0.1:0", GossipListen: "127.0.0.1:0",
			Labels: labels, Logger: log.With("agent", name),
		})
		if err != nil {
			return fmt.Errorf("start agent %s: %w", name, err)
		}
		c.Agents = append(c.Agents, a)
	}
	return nil
}

// RegisterTarget does what `hpt gen-target-keys` does against a cluster:
// it makes a keypair for target name, registers the public key with
// labels (the ones job selectors match), and writes a target keystore
// under dir that trusts the cluster key and holds the gossip key and
// seeds. It returns the keystore's path.
func RegisterTarget(ctx context.Context, c *rpc.Client, name, dir string, labels map[string]string) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name+".keystore.db")
	if _, err := enroll.Register(ctx, c.Keys, enroll.Target{Name: name, Key: priv, Path: path, Labels: labels}); err != nil {
		return "", fmt.Errorf("enroll target %s: %w", name, err)
	}
	return path, nil
}

// WaitReady waits until every node knows the leader and has applied the
// bootstrap event.
func (c *Cluster) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := true
		for _, n := range c.Nodes {
			leader, _ := n.Leader()
			ok, err := n.State().Bootstrapped()
			ready = ready && leader != "" && ok && err == nil
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster did not become ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Addrs lists the nodes' API addresses.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// Shutdown stops every agent and node. The nodes are told first that the
// whole cluster is stopping, so that the last ones up do not report the
// first ones gone as failures.
func (c *Cluster) Shutdown() error {
	var errs []error
	for _, n := range c.Nodes {
		n.Quiet()
	}
	for _, a := range c.Agents {
		if err := a.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range c.Nodes {
		if err := n.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
