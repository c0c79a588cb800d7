package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/node/export"
)

// Default ports (SPEC section 3).
const (
	DefaultPort       = 7400
	DefaultGossipPort = 7401
)

// RaftConfig tunes consensus. Zero fields take the defaults documented on
// DefaultConfig.
type RaftConfig struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// MaxAppendEntries is also the largest batch applied to the state at
	// once (raft's BatchApplyCh is on).
	MaxAppendEntries  int
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotsRetained on disk.
	SnapshotsRetained int
}

// Config configures a Node. Build it from DefaultConfig.
type Config struct {
	// Name is the node's unique name; it is also its Raft server id.
	Name string
	// DataDir holds the Raft log, snapshots and the state.
	DataDir string
	// Listen is the TCP address of the node's one port (API, agents, Raft).
	// Port 0 picks a free port. Default ":7400".
	Listen string
	// Advertise is the address other nodes and clients dial. Default: the
	// listen address, with an unspecified host replaced by the first
	// non-loopback address of this host.
	Advertise string
	// GossipListen is memberlist's UDP+TCP address. Default ":7401".
	GossipListen string
	// GossipAdvertise, like Advertise, for gossip.
	GossipAdvertise string
	// Join lists gossip addresses of nodes to join at start (retried in the
	// background until one answers).
	Join []string
	// BootstrapExpect: bootstrap a new cluster once this many nodes see
	// each other in gossip. 0 never bootstraps (the node joins an existing
	// cluster). A node with Raft state never bootstraps again.
	BootstrapExpect int

	// ClusterKey is the cluster keypair every node holds.
	ClusterKey ed25519.PrivateKey
	// GossipKey is the 32-byte memberlist encryption key.
	GossipKey []byte
	// Bootstrap, if set, is written by the first leader of a new cluster.
	Bootstrap *keystore.BootstrapToken

	Logger *slog.Logger
	Raft   RaftConfig

	// ApplyTimeout bounds a write from proposal to commit. Default 10s.
	ApplyTimeout time.Duration
	// AgentHeartbeat is how often the node sends each connected agent a
	// heartbeat; an agent silent for three of them is cut off. Agents learn
	// it in whole seconds and heartbeat back at the same rate. Default 10s.
	AgentHeartbeat time.Duration
	// MaxMessageSize bounds gRPC messages in both directions. Default 8 MiB.
	MaxMessageSize int
	// MetricsListen, if set, serves Prometheus /metrics and /debug/pprof/
	// over plain HTTP on this address (keep it on loopback or a monitoring
	// network). Default off.
	MetricsListen string
	// Dial opens every connection this node makes to another node (Raft,
	// forwarded writes, status). Default: a net.Dialer. Tests inject
	// network faults through it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// StorageFatal, if set, is called once the state's storage fails in a
	// way the node cannot go on from (fsm.Options.Fatal: a full disk while
	// Pebble writes its manifest, corruption). The node can neither serve
	// nor shut down cleanly after it; the caller should exit the process,
	// and a restart recovers. It may be called during New. Default: panic.
	StorageFatal func(error)
	// Export, if set, makes the node publish every committed event to NATS
	// JetStream while it is the leader (see package export). Its Logger
	// defaults to the node's. Default off.
	Export *export.Config
	// Clock is the time the job scheduler judges time-outs by (see Clock).
	// Default (nil): the real clock.
	Clock Clock
}

// DefaultConfig returns a Config with every default filled in; callers set
// Name, DataDir and the keys.
//
// Raft defaults: heartbeat and election timeouts 1s, leader lease 500ms,
// commit timeout 50ms (hashicorp/raft's); MaxAppendEntries 512; a snapshot
// every 16384 entries or 2 minutes, keeping 10240 trailing log entries and 2
// snapshots on disk.
func DefaultConfig() Config {
	return Config{
		Listen:       fmt.Sprintf(":%d", DefaultPort),
		GossipListen: fmt.Sprintf(":%d", DefaultGossipPort),
		Raft: RaftConfig{
			HeartbeatTimeout:   time.Second,
			ElectionTimeout:    time.Second,
			LeaderLeaseTimeout: 500 * time.Millisecond,
			CommitTimeout:      50 * time.Millisecond,
			MaxAppendEntries:   512,
			SnapshotThreshold:  16384,
			SnapshotInterval:   2 * time.Minute,
			TrailingLogs:       10240,
			SnapshotsRetained:  2,
		},
		ApplyTimeout:   10 * time.Second,
		AgentHeartbeat: 10 * time.Second,
		MaxMessageSize: 8 << 20,
	}
}

// Validate rejects a config that cannot work, naming the field.
func (c *Config) Validate() error {
	var errs []error
	if err := events.CheckName("node", c.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir: required"))
	}
	for field, addr := range map[string]string{"listen": c.Listen, "gossip": c.GossipListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s address %q: %w", field, addr, err))
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			errs = append(errs, fmt.Errorf("join address %q: %w", j, err))
		}
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("bootstrap-expect: must not be negative"))
	}
	if len(c.ClusterKey) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("cluster key: missing or malformed (is this the cluster keystore?)"))
	}
	if len(c.GossipKey) != 32 {
		errs = append(errs, fmt.Errorf("gossip key: %d bytes, want 32", len(c.GossipKey)))
	}
	if c.Raft.MaxAppendEntries <= 0 || c.Raft.MaxAppendEntries > 1024 {
		errs = append(errs, fmt.Errorf("raft max append entries %d: want 1..1024", c.Raft.MaxAppendEntries))
	}
	if c.ApplyTimeout <= 0 {
		errs = append(errs, errors.New("apply timeout: must be positive"))
	}
	if c.AgentHeartbeat < time.Second || c.AgentHeartbeat%time.Second != 0 {
		errs = append(errs, fmt.Errorf("agent heartbeat %s: want whole seconds, at least 1s", c.AgentHeartbeat))
	}
	if c.Export != nil {
		if err := c.Export.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
