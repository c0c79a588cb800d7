package node

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

// A zero RaftConfig is the documented defaults; the election and lease
// timeouts follow a heartbeat timeout that alone is set.
func TestRaftConfigZeroTakesDefaults(t *testing.T) {
	if got, want := (RaftConfig{}).withDefaults(), DefaultRaftConfig(); got != want {
		t.Fatalf("zero config with defaults = %+v, want %+v", got, want)
	}
	want := DefaultRaftConfig()
	if want.HeartbeatTimeout != time.Second || want.ElectionTimeout != time.Second || want.LeaderLeaseTimeout != 500*time.Millisecond ||
		want.CommitTimeout != 50*time.Millisecond || want.MaxAppendEntries != 512 || want.SnapshotThreshold != 16384 ||
		want.SnapshotInterval != 2*time.Minute || want.TrailingLogs != 10240 || want.SnapshotsRetained != 2 {
		t.Fatalf("DefaultRaftConfig() = %+v, not the values its comment documents", want)
	}
	if got := DefaultConfig().Raft; got != want {
		t.Fatalf("DefaultConfig().Raft = %+v, want DefaultRaftConfig()", got)
	}
	c := RaftConfig{HeartbeatTimeout: 100 * time.Millisecond, TrailingLogs: 7}
	if err := c.Validate(); err != nil {
		t.Fatalf("heartbeat alone: %v", err)
	}
	d := c.withDefaults()
	if d.ElectionTimeout != 100*time.Millisecond || d.LeaderLeaseTimeout != 50*time.Millisecond || d.TrailingLogs != 7 || d.CommitTimeout != 50*time.Millisecond {
		t.Fatalf("heartbeat 100ms with defaults = %+v, want election 100ms, lease 50ms, set fields kept", d)
	}
}

// Every bad field is refused by name, and only that field is named.
func TestRaftConfigValidateNamesTheField(t *testing.T) {
	fields := []string{"heartbeat timeout", "election timeout", "leader lease timeout", "commit timeout", "snapshot interval", "max append entries", "snapshots retained"}
	for _, tc := range []struct {
		field string
		cfg   RaftConfig
	}{
		{"heartbeat timeout", RaftConfig{HeartbeatTimeout: -time.Second}},
		{"heartbeat timeout", RaftConfig{HeartbeatTimeout: time.Millisecond, ElectionTimeout: time.Second}},
		{"election timeout", RaftConfig{ElectionTimeout: -1}},
		{"election timeout", RaftConfig{ElectionTimeout: 500 * time.Millisecond}},
		{"leader lease timeout", RaftConfig{LeaderLeaseTimeout: time.Millisecond}},
		{"leader lease timeout", RaftConfig{LeaderLeaseTimeout: 2 * time.Second}},
		{"commit timeout", RaftConfig{CommitTimeout: time.Microsecond}},
		{"commit timeout", RaftConfig{CommitTimeout: -time.Second}},
		{"snapshot interval", RaftConfig{SnapshotInterval: time.Millisecond}},
		{"max append entries", RaftConfig{MaxAppendEntries: 1025}},
		{"max append entries", RaftConfig{MaxAppendEntries: -1}},
		{"snapshots retained", RaftConfig{SnapshotsRetained: -1}},
	} {
		err := tc.cfg.Validate()
		if err == nil {
			t.Errorf("%+v: accepted, want an error naming %s", tc.cfg, tc.field)
			continue
		}
		if !strings.Contains(err.Error(), "raft "+tc.field+": ") {
			t.Errorf("%+v: %q does not name %s", tc.cfg, err, tc.field)
		}
		for _, f := range fields {
			if f != tc.field && strings.Contains(err.Error(), "raft "+f+": ") {
				t.Errorf("%+v: %q also names %s", tc.cfg, err, f)
			}
		}
		// The node's config reports it too.
		cfg := validNodeConfig()
		cfg.Raft = tc.cfg
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "raft "+tc.field) {
			t.Errorf("node config with raft %+v: %v, want it to name raft %s", tc.cfg, err, tc.field)
		}
	}
	for _, ok := range []RaftConfig{{}, DefaultRaftConfig(), {MaxAppendEntries: 1024, SnapshotsRetained: 1}} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

func validNodeConfig() Config {
	cfg := DefaultConfig()
	cfg.Name = "n1"
	cfg.DataDir = "/nonexistent"
	cfg.ClusterKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	cfg.GossipKey = make([]byte, 32)
	return cfg
}

// Every bad field of a node's config is refused by name.
func TestConfigValidateNamesTheField(t *testing.T) {
	if cfg := validNodeConfig(); cfg.Validate() != nil {
		t.Fatalf("valid config: %v", cfg.Validate())
	}
	for _, tc := range []struct {
		field string
		set   func(*Config)
	}{
		{"name: ", func(c *Config) { c.Name = "-n1" }},
		{"data dir: ", func(c *Config) { c.DataDir = "" }},
		{"listen address", func(c *Config) { c.Listen = "7400" }},
		{"gossip address", func(c *Config) { c.GossipListen = "nohost" }},
		{"join address", func(c *Config) { c.Join = []string{"10.0.0.1"} }},
		{"bootstrap-expect: ", func(c *Config) { c.BootstrapExpect = -1 }},
		{"cluster key: ", func(c *Config) { c.ClusterKey = c.ClusterKey[:10] }},
		{"gossip key: ", func(c *Config) { c.GossipKey = make([]byte, 16) }},
		{"apply timeout: ", func(c *Config) { c.ApplyTimeout = 0 }},
		{"agent heartbeat ", func(c *Config) { c.AgentHeartbeat = 1500 * time.Millisecond }},
		{"raft max append entries", func(c *Config) { c.Raft.MaxAppendEntries = 2000 }},
	} {
		cfg := validNodeConfig()
		tc.set(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Validate() = %v, want an error naming it", tc.field, err)
		}
	}
}
