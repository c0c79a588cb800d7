package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/node/export/exporttest"
)

// TestExportProcesses runs servers with --nats-url against a real NATS
// server: the stream receives every event and cluster status reports the
// export caught up.
func TestExportProcesses(t *testing.T) {
	js := exporttest.Start(t)
	e, _ := startServers(t, 3, "--nats-url", js.URL())
	var last struct {
		Index uint64 `json:"index"`
	}
	for i := range 5 {
		out := mustHPT(t, e, "users", "add", fmt.Sprintf("u%d@example.com", i), "-o", "json")
		if err := json.Unmarshal([]byte(out), &last); err != nil {
			t.Fatalf("users add -o json: %q: %v", out, err)
		}
	}
	waitFor(t, 30*time.Second, func() error {
		var st statusJSON
		out := mustHPT(t, e, "cluster", "status", "-o", "json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if x := st.Export; x == nil || x.Node != st.Leader || !x.Running || !x.Connected || x.Lag != 0 || x.ExportedIndex < last.Index {
			return fmt.Errorf("export %+v, want the leader's, connected, lag 0, through %d", x, last.Index)
		}
		return nil
	})
	if out := mustHPT(t, e, "cluster", "status"); !strings.Contains(out, "export: NATS, through index") {
		t.Errorf("cluster status does not show the export:\n%s", out)
	}

	var events []struct {
		Index uint64 `json:"index"`
	}
	if out := mustHPT(t, e, "events", "-o", "json"); json.Unmarshal([]byte(out), &events) != nil {
		t.Fatalf("events -o json: %q", out)
	}
	var want []uint64
	for _, ev := range events {
		want = append(want, ev.Index)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := js.StreamIDs(ctx, export.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stream holds events %v, the log %v", got, want)
	}
}

// TestDevExports: `hpt dev --nats-url` exports like servers do.
func TestDevExports(t *testing.T) {
	js := exporttest.Start(t)
	startDev(t, "--agents", "0", "--log-level", "warn", "--nats-url", js.URL())
	// The bootstrap and leader events reach the stream.
	waitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ids, err := js.StreamIDs(ctx, export.DefaultStream)
		if err != nil {
			return err
		}
		if len(ids) < 2 {
			return fmt.Errorf("stream holds events %v", ids)
		}
		return nil
	})
}
