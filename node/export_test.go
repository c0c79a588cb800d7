package node_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/node/export/exporttest"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// TestExportAcrossLeaderAndNATSFailures writes through a leader kill and a
// NATS restart, and then the stream must hold every committed event exactly
// once, in index order, and cluster status must show the export caught up.
func TestExportAcrossLeaderAndNATSFailures(t *testing.T) {
	js := exporttest.Start(t)
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Export = &export.Config{URL: js.URL()}
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
	c.Crash(c.WaitLeader())
	waitAcked(acked.Load() + 60)
	js.Stop()
	// Writes go on while NATS is down: export must never hold them up.
	waitAcked(acked.Load() + 60)
	js.Start()
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
	got, err := js.StreamIDs(ctx, export.DefaultStream)
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
