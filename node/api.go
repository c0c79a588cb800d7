package node

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// The public services, one type each (their method names overlap). Every
// method is reached only through the Authorizer's interceptors (see
// methodRules).
type (
	clusterAPI struct {
		rpc.UnimplementedClusterServer
		n *Node
	}
	eventsAPI struct {
		rpc.UnimplementedEventsServer
		n *Node
	}
	identitiesAPI struct {
		rpc.UnimplementedIdentitiesServer
		n *Node
	}
	tokensAPI struct {
		rpc.UnimplementedTokensServer
		n *Node
	}
	grantsAPI struct {
		rpc.UnimplementedGrantsServer
		n *Node
	}
	keysAPI struct {
		rpc.UnimplementedKeysServer
		n *Node
	}
	benchAPI struct {
		rpc.UnimplementedBenchServer
		n *Node
	}
)

// ---- Cluster ----

func (a *clusterAPI) Status(ctx context.Context, _ *rpc.StatusRequest) (*rpc.StatusResponse, error) {
	n := a.n
	leader, leaderAddr := n.Leader()
	resp := &rpc.StatusResponse{Leader: leader, LeaderAddr: leaderAddr, Node: n.cfg.Name}
	if t, err := parseUint(n.raft.Stats()["term"]); err == nil {
		resp.Term = t
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	servers := cf.Configuration().Servers
	resp.Members = make([]*rpc.Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		m := &rpc.Member{Name: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter}
		resp.Members[i] = m
		if string(s.ID) == n.cfg.Name {
			fillMember(m, n.localStatus())
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			conn, err := n.peers.get(m.Addr)
			if err == nil {
				var st *rpc.Member
				st, err = rpc.NewInternalClient(conn).NodeStatus(cctx, &rpc.NodeStatusRequest{})
				if err == nil {
					fillMember(m, st)
					return
				}
			}
			m.RaftState = "unknown"
			m.Error = status.Convert(err).Message()
		}()
	}
	wg.Wait()
	return resp, nil
}

func fillMember(m, st *rpc.Member) {
	m.RaftState = st.GetRaftState()
	m.LastIndex = st.GetLastIndex()
	m.AppliedIndex = st.GetAppliedIndex()
	m.CommitIndex = st.GetCommitIndex()
	m.Export = st.GetExport()
	m.Reachable = true
}

func parseUint(s string) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(s, &v)
	return v, err
}

func (n *Node) localStatus() *rpc.Member {
	m := &rpc.Member{
		Name:         n.cfg.Name,
		Addr:         n.addr,
		RaftState:    stateName(n.raft.State()),
		LastIndex:    n.raft.LastIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		Reachable:    true,
	}
	if n.exporter != nil {
		s := n.exporter.Status()
		m.Export = &rpc.ExportStatus{Running: s.Running, Connected: s.Connected, ExportedIndex: s.Exported, Lag: s.Lag, Error: s.LastError}
	}
	return m
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

func (a *clusterAPI) RemoveNode(ctx context.Context, req *rpc.RemoveNodeRequest) (*rpc.WriteResponse, error) {
	if err := events.CheckName("node", req.GetName()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return a.n.removeServer(ctx, req.GetName())
}

// removeServer removes a server from Raft on the leader (relaying there if
// needed) and records it in the log.
func (n *Node) removeServer(ctx context.Context, name string) (*rpc.WriteResponse, error) {
	if !n.IsLeader() {
		leader, _, err := n.leaderClient()
		if err != nil {
			return nil, err
		}
		return leader.RemoveServer(withCaller(ctx), &rpc.RemoveNodeRequest{Name: name})
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	found := slices.ContainsFunc(cf.Configuration().Servers, func(s raft.Server) bool { return string(s.ID) == name })
	if !found {
		return nil, status.Errorf(codes.NotFound, "node %q is not a member of the cluster", name)
	}
	if err := n.raft.RemoveServer(raft.ServerID(name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "remove %s from raft: %v", name, err)
	}
	return n.proposeAs(ctx, actorOf(ctx, n), "", &events.NodeRemoved{Name: name})
}

func (a *clusterAPI) SnapshotSave(_ *rpc.SnapshotSaveRequest, stream grpc.ServerStreamingServer[rpc.SnapshotChunk]) error {
	snap, err := a.n.fsm.View()
	if err != nil {
		return stateErr(err)
	}
	defer snap.Release()
	w := &chunkWriter{send: func(b []byte, first bool) error {
		c := &rpc.SnapshotChunk{Data: b}
		if first {
			c.Index = snap.Index()
		}
		return stream.Send(c)
	}}
	if _, err := snap.WriteTo(w); err != nil {
		return status.Errorf(codes.Internal, "stream snapshot: %v", err)
	}
	return w.flush()
}

// chunkWriter cuts a byte stream into messages of at most 1 MiB.
type chunkWriter struct {
	buf  []byte
	sent bool
	send func(b []byte, first bool) error
}

const chunkSize = 1 << 20

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= chunkSize {
		if err := w.send(w.buf[:chunkSize], !w.sent); err != nil {
			return 0, err
		}
		w.sent = true
		w.buf = append([]byte(nil), w.buf[chunkSize:]...)
	}
	return len(p), nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 && w.sent {
		return nil
	}
	err := w.send(w.buf, !w.sent)
	w.sent = true
	w.buf = nil
	return err
}

func (a *clusterAPI) SnapshotRestore(stream grpc.ClientStreamingServer[rpc.SnapshotChunk, rpc.SnapshotRestoreResponse]) error {
	idx, err := a.n.restore(stream.Context(), stream.Recv)
	if err != nil {
		return err
	}
	return stream.SendAndClose(&rpc.SnapshotRestoreResponse{Index: idx})
}

// maxRestoreSize bounds an uploaded snapshot.
const maxRestoreSize = 64 << 30

// restore installs a snapshot stream cluster-wide through Raft on the
// leader (relaying the stream if this node is not the leader).
func (n *Node) restore(ctx context.Context, recv func() (*rpc.SnapshotChunk, error)) (uint64, error) {
	tmp, err := os.CreateTemp(n.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return 0, status.Errorf(codes.Internal, "buffer snapshot: %v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var size int64
	for {
		c, err := recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		size += int64(len(c.GetData()))
		if size > maxRestoreSize {
			return 0, status.Errorf(codes.InvalidArgument, "snapshot exceeds %d bytes", int64(maxRestoreSize))
		}
		if _, err := tmp.Write(c.GetData()); err != nil {
			return 0, status.Errorf(codes.Internal, "buffer snapshot: %v", err)
		}
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, status.Errorf(codes.Internal, "buffer snapshot: %v", err)
	}
	if _, err := fsm.VerifySnapshot(tmp); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "snapshot refused, nothing changed: %v", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, status.Errorf(codes.Internal, "buffer snapshot: %v", err)
	}
	if !n.IsLeader() {
		leader, _, err := n.leaderClient()
		if err != nil {
			return 0, err
		}
		up, err := leader.Restore(withCaller(ctx))
		if err != nil {
			return 0, err
		}
		buf := make([]byte, chunkSize)
		for {
			k, rerr := tmp.Read(buf)
			if k > 0 {
				if err := up.Send(&rpc.SnapshotChunk{Data: buf[:k]}); err != nil {
					return 0, err
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil {
				return 0, status.Errorf(codes.Internal, "read buffered snapshot: %v", rerr)
			}
		}
		resp, err := up.CloseAndRecv()
		if err != nil {
			return 0, err
		}
		return resp.GetIndex(), nil
	}
	// raft.Restore feeds the stream to the FSM, which checks magic and
	// checksum before replacing anything, then forces every follower to
	// install it as a snapshot.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	if err := n.raft.Restore(meta, tmp, 5*time.Minute); err != nil {
		return 0, status.Errorf(codes.FailedPrecondition, "restore: %v", err)
	}
	restored := n.fsm.AppliedIndex()
	n.log.Warn("cluster state restored from an uploaded snapshot", "actor", actorOf(ctx, n), "snapshot_index", restored)
	// Record the restore; its index is one every node's state reaches only
	// after installing the restored snapshot.
	w, err := n.proposeAs(ctx, actorOf(ctx, n), "", &events.SnapshotRestored{SnapshotIndex: restored})
	if err != nil {
		return 0, err
	}
	return w.GetIndex(), nil
}

// Whoami needs no grant: it tells the caller who its token is, when the
// token expires and what the caller may do, as `kubectl auth whoami` does.
func (a *clusterAPI) Whoami(ctx context.Context, _ *rpc.WhoamiRequest) (*rpc.WhoamiResponse, error) {
	c, _ := auth.CallerFrom(ctx)
	resp := &rpc.WhoamiResponse{Subject: c.Subject, Node: a.n.cfg.Name, ClusterKey: pinned.Fingerprint(a.n.clusterPub), TokenId: c.TokenID}
	tok, err := a.n.access.token(c.TokenID)
	if err != nil {
		return nil, stateErr(err)
	}
	resp.ExpiresUnixNano = tok.GetExpiresUnixNano()
	groups, grants, err := a.n.authz.GrantsHeld(c.Subject)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp.Groups = groups
	for _, g := range grants {
		resp.Grants = append(resp.Grants, a.n.grantInfo(g))
	}
	return resp, nil
}

// ---- helpers ----

func actorOf(ctx context.Context, n *Node) string {
	if c, ok := auth.CallerFrom(ctx); ok && c.Subject != "" {
		return c.Subject
	}
	return n.nodeActor()
}
