package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// targetIdentity registers target name and returns its private key, as its
// agent would present it.
func targetIdentity(t *testing.T, c *nodetest.Cluster, name string) ed25519.PrivateKey {
	t.Helper()
	dir := t.TempDir()
	c.RegisterTarget(name, dir)
	ks, err := keystore.Open(filepath.Join(dir, name+".keystore.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	priv, err := ks.Identity()
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// dialWithKey returns a gRPC connection to addr that pins the cluster key
// and presents key.
func dialWithKey(t *testing.T, c *nodetest.Cluster, addr string, key ed25519.PrivateKey) *grpc.ClientConn {
	t.Helper()
	cert, err := pinned.Certificate(key)
	if err != nil {
		t.Fatal(err)
	}
	fp := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	cfg := pinned.ClientConfig(&cert, pinned.Pin("node", fp), pinned.ProtoGRPC)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(pinned.ClientCredentials(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// eventsAfter returns node n's archived events with index > after.
func eventsAfter(t *testing.T, n *node.Node, after uint64) []*events.Event {
	t.Helper()
	var out []*events.Event
	if err := n.State().Events(after+1, func(ev *events.Event) bool {
		out = append(out, ev)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// lastEvent is the index of node n's newest archived event.
func lastEvent(t *testing.T, n *node.Node) uint64 {
	t.Helper()
	var last uint64
	if err := n.State().Events(0, func(ev *events.Event) bool {
		last = ev.GetIndex()
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return last
}

func encodeEvent(t *testing.T, actor string, p proto.Message) []byte {
	t.Helper()
	ev, err := events.New(actor, "", time.Now(), p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInternalIsForNodesOnly: the Internal service admits only peers that
// proved the cluster key at the handshake. An admin token does not open it,
// over a connection without a key or one presenting a registered target's
// key, and nothing a refused call carried reaches the log.
func TestInternalIsForNodesOnly(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	n := c.Node(0)
	targetKey := targetIdentity(t, c, "web-1")
	before := lastEvent(t, n)
	bearer := metadata.Pairs("authorization", "Bearer "+c.Admin.Secret())

	conns := []struct {
		name string
		conn *grpc.ClientConn
	}{
		// rpc.Client presents no key and sends its token with every call.
		{"no client key", c.ClientFor(c.Admin.Secret(), n.Addr()).Conn()},
		{"target key", dialWithKey(t, c, n.Addr(), targetKey)},
	}
	apply := encodeEvent(t, "user:admin", &events.UserAdded{Name: "intruder"})
	calls := []struct {
		method string
		call   func(context.Context, rpc.InternalClient) error
	}{
		{"Apply", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.Apply(ctx, &rpc.ApplyRequest{Event: apply})
			return err
		}},
		{"ApplyBatch", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.ApplyBatch(ctx, &rpc.ApplyBatchRequest{Events: [][]byte{apply}})
			return err
		}},
		{"ReadIndex", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.ReadIndex(ctx, &rpc.ReadIndexRequest{})
			return err
		}},
		{"NodeStatus", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.NodeStatus(ctx, &rpc.NodeStatusRequest{})
			return err
		}},
		{"RemoveServer", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.RemoveServer(ctx, &rpc.RemoveNodeRequest{Name: n.Name()})
			return err
		}},
		{"Restore", func(ctx context.Context, ic rpc.InternalClient) error {
			up, err := ic.Restore(ctx)
			if err != nil {
				return err
			}
			// The refusal may surface on Send or on CloseAndRecv.
			_ = up.Send(&rpc.SnapshotChunk{Data: []byte("not a snapshot")})
			_, err = up.CloseAndRecv()
			return err
		}},
		{"Dispatch", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.Dispatch(ctx, &rpc.DispatchRequest{JobId: "j-x", Target: "web-1"})
			return err
		}},
		{"CancelRun", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.CancelRun(ctx, &rpc.DispatchRequest{JobId: "j-x", Target: "web-1"})
			return err
		}},
		{"StashSecrets", func(ctx context.Context, ic rpc.InternalClient) error {
			_, err := ic.StashSecrets(ctx, &rpc.StashSecretsRequest{JobId: "j-x", Values: map[string]string{"pw": "x"}})
			return err
		}},
	}
	// Every method of the Internal service is called here.
	var tested, served []string
	for _, cl := range calls {
		tested = append(tested, cl.method)
	}
	for _, m := range rpc.Internal_ServiceDesc.Methods {
		served = append(served, m.MethodName)
	}
	for _, s := range rpc.Internal_ServiceDesc.Streams {
		served = append(served, s.StreamName)
	}
	for _, m := range served {
		if !slices.Contains(tested, m) {
			t.Errorf("Internal.%s is not exercised by this test", m)
		}
	}
	for _, cn := range conns {
		ic := rpc.NewInternalClient(cn.conn)
		for _, cl := range calls {
			t.Run(cn.name+"/"+cl.method, func(t *testing.T) {
				err := cl.call(metadata.NewOutgoingContext(ctx, bearer), ic)
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("Internal.%s with an admin token over a connection with %s: %v, want PermissionDenied", cl.method, cn.name, err)
				}
			})
		}
	}

	// A write after the refusals is the next event: nothing refused was
	// applied, and the node is still a member.
	w, err := c.Client(0).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(w.GetIndex())
	for _, ev := range eventsAfter(t, n, before) {
		if ev.GetIndex() != w.GetIndex() {
			t.Errorf("event %d (%s by %s) appeared after refused Internal calls", ev.GetIndex(), events.Name(ev.GetType()), ev.GetActor())
		}
	}
	if _, err := n.State().Identity(events.Subject{Kind: events.KindUser, Name: "intruder"}); !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("refused Apply added its user: %v", err)
	}
}

// raftHandshake opens a TLS connection asking for the Raft protocol,
// presenting key (nil: none), and returns the error of its first read:
// under TLS 1.3 a client learns that the server refused its certificate
// only then.
func raftHandshake(t *testing.T, c *nodetest.Cluster, addr string, key ed25519.PrivateKey) error {
	t.Helper()
	var cert *tls.Certificate
	if key != nil {
		cr, err := pinned.Certificate(key)
		if err != nil {
			t.Fatal(err)
		}
		cert = &cr
	}
	fp := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: pinned.ClientConfig(cert, pinned.Pin("node", fp), pinned.ProtoRaft)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// A generous deadline that only catches a hang: an accepted Raft
	// connection stays silent until we speak, so a timeout means the
	// server did not refuse us.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// TestRaftPortIsForNodesOnly: the Raft ALPN protocol is refused at the
// handshake to a registered target's key and to a peer with no key.
func TestRaftPortIsForNodesOnly(t *testing.T) {
	c := nodetest.Start(t, 1)
	targetKey := targetIdentity(t, c, "web-1")
	for _, tc := range []struct {
		name string
		key  ed25519.PrivateKey
	}{{"target key", targetKey}, {"no key", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			err := raftHandshake(t, c, c.Node(0).Addr(), tc.key)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("raft connection with %s was not refused (read timed out)", tc.name)
			}
			if !pinned.IsRefusedByPeer(err) {
				t.Fatalf("raft connection with %s: %v, want the handshake refused", tc.name, err)
			}
		})
	}
}

// TestProvisionNeededOnEveryTarget: a token allowed to provision web-*
// cannot submit or cancel a job that also reaches db-1, and its refused
// submission leaves no job behind.
func TestProvisionNeededOnEveryTarget(t *testing.T) {
	c := nodetest.Start(t, 1)
	ctx := ctxT(t)
	admin := c.Client(0)
	for _, name := range []string{"web-1", "web-2", "db-1"} {
		c.RegisterTarget(name, t.TempDir())
	}
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "deployer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:deployer", Privilege: events.PrivProvision, Resource: "targets/web-*"}); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:deployer"})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	deployer := c.ClientFor(tok.GetToken(), c.Addrs()...)
	// Long enough that jobs on these unconnected targets stay running
	// while the test looks at them.
	job := func(targets string) *rpc.SubmitJobRequest {
		return &rpc.SubmitJobRequest{Name: "t.toml", Config: countingConfig(t.TempDir(), 0, false), Targets: targets, TimeoutSeconds: 600, MaxFailures: -1}
	}
	n := c.Node(0)

	t.Run("submit", func(t *testing.T) {
		before := lastEvent(t, n)
		for _, req := range []*rpc.SubmitJobRequest{job("*"), job("")} {
			_, err := deployer.Jobs.Submit(ctx, req)
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("submit to %q with provision on targets/web-* only: %v, want PermissionDenied", req.GetTargets(), err)
			}
			t.Logf("denial: %v", err)
		}
		// The same token may submit where its grant reaches.
		ok, err := deployer.Jobs.Submit(ctx, job("web-*"))
		if err != nil {
			t.Fatalf("submit to web-* with provision on targets/web-*: %v", err)
		}
		if !slices.Equal(ok.GetTargets(), []string{"web-1", "web-2"}) {
			t.Fatalf("web-* resolved to %v", ok.GetTargets())
		}
		c.WaitEvent(ok.GetIndex())
		for _, ev := range eventsAfter(t, n, before) {
			if ev.GetType() == events.Type_TYPE_JOB_SUBMITTED && ev.GetIndex() != ok.GetIndex() {
				t.Errorf("a refused submission left job_submitted event %d", ev.GetIndex())
			}
		}
		jobs, err := n.State().Jobs()
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 1 || jobs[0].GetId() != ok.GetJobId() {
			t.Fatalf("state holds %d jobs, want only %s", len(jobs), ok.GetJobId())
		}
	})

	t.Run("cancel", func(t *testing.T) {
		wide, err := admin.Jobs.Submit(ctx, job("*"))
		if err != nil {
			t.Fatal(err)
		}
		narrow, err := deployer.Jobs.Submit(ctx, job("web-1"))
		if err != nil {
			t.Fatal(err)
		}
		c.WaitEvent(narrow.GetIndex())
		before := lastEvent(t, n)
		_, err = deployer.Jobs.Cancel(ctx, &rpc.CancelJobRequest{JobId: wide.GetJobId()})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("cancel of a job on %v with provision on targets/web-* only: %v, want PermissionDenied", wide.GetTargets(), err)
		}
		// The same token may cancel a job on targets it may provision.
		w, err := deployer.Jobs.Cancel(ctx, &rpc.CancelJobRequest{JobId: narrow.GetJobId()})
		if err != nil {
			t.Fatalf("cancel of a web-1 job: %v", err)
		}
		c.WaitEvent(w.GetIndex())
		for _, ev := range eventsAfter(t, n, before) {
			p, _ := ev.DecodePayload()
			if jc, ok := p.(*events.JobCancelled); ok && jc.GetJobId() == wide.GetJobId() {
				t.Errorf("a refused cancel left job_cancelled event %d", ev.GetIndex())
			}
		}
		j, err := n.State().Job(wide.GetJobId())
		if err != nil {
			t.Fatal(err)
		}
		if j.GetStatus() != events.JobStatus_JOB_STATUS_RUNNING {
			t.Fatalf("job after a refused cancel is %s, want running", j.GetStatus())
		}
	})
}
