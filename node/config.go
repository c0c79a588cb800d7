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

// RaftConfig tunes consensus. A zero field takes its default, given on the
// field (DefaultRaftConfig holds them all); Validate rejects the rest of
// what hashicorp/raft would refuse, naming the field.
type RaftConfig struct {
	// HeartbeatTimeout is how long a follower waits for the leader before
	// it starts an election. Default 1s; at least 5ms.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits for votes. Default the
	// heartbeat timeout; not below it.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without hearing
	// from a quorum. Default half the heartbeat timeout; at least 5ms and
	// not above the heartbeat timeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how long a leader waits before it sends a heartbeat
	// that carries the commit index. Default 50ms; at least 1ms.
	CommitTimeout time.Duration
	// MaxAppendEntries is the most entries sent in one append; it is also
	// the largest batch applied to the state at once (raft's BatchApplyCh
	// is on). Default 512; at most 1024.
	MaxAppendEntries int
	// SnapshotThreshold is how many entries since the last snapshot make
	// the next one. Default 16384.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks whether to snapshot.
	// Default 2m; at least 5ms.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log, so
	// that a follower slightly behind catches up without a snapshot.
	// Default 10240 (a zero cannot be asked for: it takes the default).
	TrailingLogs uint64
	// SnapshotsRetained is how many snapshots are kept on disk. Default 2.
	SnapshotsRetained int
}

// DefaultRaftConfig returns the consensus defaults: hashicorp/raft's
// timeouts (heartbeat and election 1s, leader lease 500ms, commit 50ms),
// MaxAppendEntries 512, a snapshot every 16384 entries (checked every 2
// minutes) keeping 10240 trailing entries, and 2 snapshots on disk.
func DefaultRaftConfig() RaftConfig {
	return RaftConfig{
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		MaxAppendEntries:   512,
		SnapshotThreshold:  16384,
		SnapshotInterval:   2 * time.Minute,
		TrailingLogs:       10240,
		SnapshotsRetained:  2,
	}
}

// withDefaults returns c with its zero fields set to the defaults. The
// election and lease timeouts follow the heartbeat timeout, so that setting
// only the heartbeat gives a config raft accepts.
func (c RaftConfig) withDefaults() RaftConfig {
	d := DefaultRaftConfig()
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = c.HeartbeatTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = d.CommitTimeout
	}
	if c.MaxAppendEntries == 0 {
		c.MaxAppendEntries = d.MaxAppendEntries
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotsRetained == 0 {
		c.SnapshotsRetained = d.SnapshotsRetained
	}
	return c
}

// Validate rejects a consensus config raft would refuse or that cannot
// work, naming each field at fault. Zero fields take their defaults and
// are accepted; the relations between timeouts are checked with the
// defaults filled in.
func (c *RaftConfig) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("raft %s: %s", field, fmt.Sprintf(format, args...)))
	}
	for _, f := range []struct {
		name     string
		v, floor time.Duration
	}{
		{"heartbeat timeout", c.HeartbeatTimeout, 5 * time.Millisecond},
		{"election timeout", c.ElectionTimeout, 5 * time.Millisecond},
		{"leader lease timeout", c.LeaderLeaseTimeout, 5 * time.Millisecond},
		{"commit timeout", c.CommitTimeout, time.Millisecond},
		{"snapshot interval", c.SnapshotInterval, 5 * time.Millisecond},
	} {
		if f.v < 0 {
			add(f.name, "%v: must not be negative", f.v)
		} else if f.v > 0 && f.v < f.floor {
			add(f.name, "%v: want at least %v", f.v, f.floor)
		}
	}
	if c.MaxAppendEntries < 0 || c.MaxAppendEntries > 1024 {
		add("max append entries", "%d: want 1..1024", c.MaxAppendEntries)
	}
	if c.SnapshotsRetained < 0 {
		add("snapshots retained", "%d: must not be negative", c.SnapshotsRetained)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	d := c.withDefaults()
	if d.ElectionTimeout < d.HeartbeatTimeout {
		add("election timeout", "%v: below the heartbeat timeout %v", d.ElectionTimeout, d.HeartbeatTimeout)
	}
	if d.LeaderLeaseTimeout > d.HeartbeatTimeout {
		add("leader lease timeout", "%v: above the heartbeat timeout %v", d.LeaderLeaseTimeout, d.HeartbeatTimeout)
	}
	return errors.Join(errs...)
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
	// SSHCAs are the cluster's SSH CAs, from the cluster keystore like the
	// cluster key; the same on every node. Zero: the keystore predates
	// them, the node starts with SSH access off and warns once.
	SSHCAs SSHCAs

	Logger *slog.Logger
	// Raft tunes consensus; its zero fields take DefaultRaftConfig's values.
	Raft RaftConfig

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
// Name, DataDir and the keys. Raft takes DefaultRaftConfig.
func DefaultConfig() Config {
	return Config{
		Listen:         fmt.Sprintf(":%d", DefaultPort),
		GossipListen:   fmt.Sprintf(":%d", DefaultGossipPort),
		Raft:           DefaultRaftConfig(),
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
	if err := c.SSHCAs.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Raft.Validate(); err != nil {
		errs = append(errs, err)
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
