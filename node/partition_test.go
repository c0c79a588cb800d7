package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// TestPartitionedLeaderAcceptsNoWrite isolates the leader: the minority
// side acknowledges no write, the majority elects a leader and goes on,
// and after the partition heals every node holds the same log.
func TestPartitionedLeaderAcceptsNoWrite(t *testing.T) {
	c := nodetest.Start(t, 3)
	ctx := ctxT(t)
	old := c.WaitLeader()
	if _, err := c.Client(old).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "before"}); err != nil {
		t.Fatal(err)
	}

	c.Partition(old)
	minority := c.ClientFor(c.Admin.Secret(), c.Node(old).Addr())
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := minority.Identities.Add(wctx, &rpc.AddIdentityRequest{Kind: "user", Name: "minority"})
	cancel()
	if err == nil {
		t.Fatal("the isolated old leader acknowledged a write")
	}
	t.Logf("write on the minority side: %v", err)

	var majority []int
	for i := range c.Len() {
		if i != old {
			majority = append(majority, i)
		}
	}
	var w *rpc.WriteResponse
	c.Eventually(15*time.Second, func() error {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		w, err = c.Client(majority[0]).Identities.Add(wctx, &rpc.AddIdentityRequest{Kind: "user", Name: "majority"})
		return err
	})
	if got := c.Node(old).State().AppliedIndex(); got >= events.EntryOf(w.GetIndex()) {
		t.Fatalf("isolated node applied index %d, at or past the majority's write %d", got, w.GetIndex())
	}
	if c.Node(old).IsLeader() {
		t.Fatal("the isolated node still believes it leads")
	}

	c.Heal()
	c.WaitEvent(w.GetIndex())
	logOf := func(i int) []string {
		var out []string
		if err := c.Node(i).State().Events(0, func(ev *events.Event) bool {
			out = append(out, fmt.Sprintf("%d %s %s", ev.GetIndex(), events.Name(ev.GetType()), ev.GetRequestId()))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The rejoined node may apply entries after w; compare up to w.
	upTo := func(l []string) []string {
		for i, e := range l {
			var idx uint64
			fmt.Sscan(e, &idx)
			if idx > w.GetIndex() {
				return l[:i]
			}
		}
		return l
	}
	want := upTo(logOf(majority[0]))
	for i := range c.Len() {
		got := upTo(logOf(i))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("node %d log after healing:\n%v\nwant\n%v", i, got, want)
		}
	}
}
