package node_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

func TestMetricsEndpoint(t *testing.T) {
	c := nodetest.Start(t, 1, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.MetricsListen = "127.0.0.1:0"
	}})
	ctx := ctxT(t)
	w, err := c.Client(0).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "carol@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node(0)
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{
		"hpt_raft_leader 1",
		`hpt_raft_state{state="leader"} 1`,
		`hpt_events_applied_total{type="user_added"} 1`,
		"hpt_agents_connected 0",
		"hpt_apply_lag ",
		fmt.Sprintf("hpt_applied_index %d", events.EntryOf(w.GetIndex())),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}

	resp, err = hc.Get("http://" + n.MetricsAddr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz of a leader: %s", resp.Status)
	}
}
