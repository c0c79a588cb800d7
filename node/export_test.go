package node_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// jetStream is a real nats-server with JetStream in this process, on a
// loopback port it keeps across restarts, storing into one directory.
type jetStream struct {
	t    *testing.T
	dir  string
	port int
	s    *server.Server
}

func startJetStream(t *testing.T) *jetStream {
	j := &jetStream{t: t, dir: t.TempDir(), port: -1}
	j.start()
	t.Cleanup(j.stop)
	return j
}

func (j *jetStream) start() {
	j.t.Helper()
	s, err := server.NewServer(&server.Options{
		ServerName: "hpt-node-test", Host: "127.0.0.1", Port: j.port,
		NoLog: true, NoSigs: true, JetStream: true, StoreDir: j.dir,
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
	})
	if err != nil {
		j.t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		j.t.Fatal("nats server not ready after 10s")
	}
	j.port = s.Addr().(*net.TCPAddr).Port
	j.s = s
}

func (j *jetStream) stop() {
	if j.s != nil {
		j.s.Shutdown()
		j.s.WaitForShutdown()
		j.s = nil
	}
}

func (j *jetStream) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", j.port) }

// streamIDs returns the Nats-Msg-Id of every message in the stream, in
// stream order.
func (j *jetStream) streamIDs(ctx context.Context) ([]uint64, error) {
	nc, err := nats.Connect(j.url())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, export.DefaultStream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	c, err := js.OrderedConsumer(ctx, export.DefaultStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for uint64(len(ids)) < info.State.Msgs {
		batch, err := c.Fetch(min(int(info.State.Msgs)-len(ids), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		before := len(ids)
		for m := range batch.Messages() {
			id, err := strconv.ParseUint(m.Headers().Get(jetstream.MsgIDHeader), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("message %d: Nats-Msg-Id: %w", len(ids)+1, err)
			}
			ids = append(ids, id)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if len(ids) == before {
			return nil, fmt.Errorf("read %d of %d messages, then nothing", before, info.State.Msgs)
		}
	}
	return ids, nil
}

// TestExportAcrossLeaderAndNATSFailures writes through a leader kill and a
// NATS restart, and then the stream must hold every committed event exactly
// once, in index order, and cluster status must show the export caught up.
func TestExportAcrossLeaderAndNATSFailures(t *testing.T) {
	js := startJetStream(t)
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Export = &export.Config{URL: js.url()}
	}})
	ctx := ctxT(t)
	cl := c.ClientFor(c.Admin.Secret(), c.Addrs()...)

	var acked atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				select {
				case <-stop:
					return
				default:
				}
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Identities.Add(wctx, &rpc.AddIdentityRequest{Kind: "user", Name: fmt.Sprintf("w%d-%d", w, i)})
				cancel()
				if err == nil {
					acked.Add(1)
				}
			}
		}()
	}
	var stopOnce sync.Once
	stopWriters := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopWriters()
	waitAcked := func(n int64) {
		c.Eventually(30*time.Second, func() error {
			if got := acked.Load(); got < n {
				return fmt.Errorf("%d writes acknowledged, want %d", got, n)
			}
			return nil
		})
	}

	waitAcked(60)
	c.Kill(c.WaitLeader())
	waitAcked(acked.Load() + 60)
	js.stop()
	// Writes go on while NATS is down: export must never hold them up.
	waitAcked(acked.Load() + 60)
	js.start()
	waitAcked(acked.Load() + 60)
	stopWriters()

	// The last write's index is what the export must reach.
	last, err := cl.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "last"})
	if err != nil {
		t.Fatal(err)
	}
	c.Eventually(30*time.Second, func() error {
		st, err := cl.Cluster.Status(ctx, &rpc.StatusRequest{})
		if err != nil {
			return err
		}
		for _, m := range st.GetMembers() {
			if m.GetName() != st.GetLeader() {
				continue
			}
			e := m.GetExport()
			if !e.GetRunning() || !e.GetConnected() || e.GetLag() != 0 || e.GetExportedIndex() < last.GetIndex() {
				return fmt.Errorf("leader %s export %v, want running, connected, lag 0, through %d", m.GetName(), e, last.GetIndex())
			}
			return nil
		}
		return fmt.Errorf("no leader in %v", st)
	})

	var want []uint64
	leader := c.Node(c.WaitLeader())
	if err := leader.State().Events(0, func(ev *events.Event) bool {
		want = append(want, ev.GetIndex())
		return true
	}); err != nil {
		t.Fatal(err)
	}
	got, err := js.streamIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages, the log %d events (acknowledged writes %d)", len(got), len(want), acked.Load())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d is event %d, want %d", i+1, got[i], want[i])
		}
	}
	t.Logf("%d events exported once each, in order, across a leader kill and a NATS restart", len(got))
}
