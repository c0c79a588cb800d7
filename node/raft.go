package node

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/logs"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func (n *Node) startRaft() error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	var err error
	n.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{
			// Fail instead of hanging when another process holds the log.
			Timeout: 5 * time.Second,
			// Writing the freelist on every commit costs a page per batch;
			// without it bolt rebuilds the list by a scan at open, which is
			// quick because the log is compacted to TrailingLogs (Consul's
			// NoFreelistSync and etcd's default make the same trade).
			NoFreelistSync: true,
			FreelistType:   bbolt.FreelistMapType,
		},
	})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, n.cfg.Raft.SnapshotsRetained, logs.Hclog(n.log, "raft-snapshots", &n.quiet))
	if err != nil {
		return fmt.Errorf("open raft snapshots: %w", err)
	}
	if err := n.catchUpFromSnapshot(); err != nil {
		return err
	}
	floor, err := n.lastStoredIndex()
	if err != nil {
		return err
	}
	n.fresh.setFloor(floor)

	advertise, err := net.ResolveTCPAddr("tcp", n.addr)
	if err != nil {
		return fmt.Errorf("resolve advertise address %s: %w", n.addr, err)
	}
	layer := &raftLayer{
		chanListener: n.mux.listener(pinned.ProtoRaft),
		advertise:    advertise,
		tlsConfig:    n.clientTLS(pinned.ProtoRaft),
		dial:         n.dial,
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logs.Hclog(n.log, "raft-net", &n.quiet),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.Logger = logs.Hclog(n.log, "raft", &n.quiet)
	rc.HeartbeatTimeout = n.cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.Raft.CommitTimeout
	rc.MaxAppendEntries = n.cfg.Raft.MaxAppendEntries
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = n.cfg.Raft.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.Raft.SnapshotInterval
	rc.TrailingLogs = n.cfg.Raft.TrailingLogs
	// The state is durable on its own (Pebble, with the applied index in
	// each batch), so a restart must not rebuild it from a snapshot: that
	// would make restart time grow with the size of the state.
	rc.NoSnapshotRestoreOnStart = true
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	// Replication reads back the entries it just wrote; the cache serves
	// them from memory instead of decoding them out of bolt again.
	logs, err := raft.NewLogCache(logCacheSize, n.logStore)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	n.raft, err = raft.NewRaft(rc, &raftFSM{f: n.fsm}, logs, n.logStore, n.snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.wg.Add(1)
	go n.watchLeader()
	return nil
}

// logCacheSize is how many recent log entries stay in memory for
// replication: two full append batches.
const logCacheSize = 1024

// catchUpFromSnapshot restores the newest local snapshot if the state is
// behind it. With NoSnapshotRestoreOnStart raft trusts the state to be at
// least as new as its newest snapshot; that holds unless the state directory
// was lost or replaced, and this puts it right.
func (n *Node) catchUpFromSnapshot() error {
	metas, err := n.snaps.List()
	if err != nil {
		return fmt.Errorf("list raft snapshots: %w", err)
	}
	if len(metas) == 0 || metas[0].Index <= n.fsm.AppliedIndex() {
		return nil
	}
	meta, rc, err := n.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	n.log.Warn("state is behind the newest snapshot; restoring it", "applied", n.fsm.AppliedIndex(), "snapshot", meta.Index)
	if err := n.fsm.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot %s: %w", meta.ID, err)
	}
	return nil
}

// lastStoredIndex is the newest index in the Raft log or the snapshots:
// no entry above it can have been applied before this start.
func (n *Node) lastStoredIndex() (uint64, error) {
	last, err := n.logStore.LastIndex()
	if err != nil {
		return 0, fmt.Errorf("read raft log: %w", err)
	}
	metas, err := n.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("list raft snapshots: %w", err)
	}
	if len(metas) > 0 {
		last = max(last, metas[0].Index)
	}
	return last, nil
}

// raftFSM adapts fsm.FSM to raft.BatchingFSM.
type raftFSM struct{ f *fsm.FSM }

var _ raft.BatchingFSM = (*raftFSM)(nil)

func (r *raftFSM) Apply(l *raft.Log) any { return r.ApplyBatch([]*raft.Log{l})[0] }

func (r *raftFSM) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]fsm.Entry, len(logs))
	for i, l := range logs {
		entries[i].Index = l.Index
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
		}
	}
	results := r.f.ApplyBatch(entries)
	out := make([]any, len(results))
	for i := range results {
		out[i] = results[i]
	}
	return out
}

func (r *raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := r.f.Snapshot()
	if err != nil {
		return nil, err
	}
	return &raftSnapshot{s: s}, nil
}

func (r *raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return r.f.Restore(rc)
}

type raftSnapshot struct{ s *fsm.Snapshot }

// Persist runs concurrently with Apply; the Pebble snapshot underneath
// keeps the view fixed.
func (r *raftSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := r.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (r *raftSnapshot) Release() { r.s.Release() }
