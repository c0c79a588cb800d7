package fsm

import (
	"bytes"
	"maps"
	"testing"

	"github.com/hpt-dev/hpt/events"
)

// What an agent announces at its connection is recorded apart and never
// replaces the labels set at registration, which are the ones selectors
// match; an entry an older node wrote (labels field) keeps its old effect.
func TestTargetConnectedKeepsRegisteredLabels(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.mustApply(&events.TargetKeyRegistered{Target: "web-1", PublicKey: bytes.Repeat([]byte{7}, 32), Labels: map[string]string{"role": "web"}})

	a.mustApply(&events.TargetConnected{Target: "web-1", Node: "n1", ClaimedLabels: map[string]string{"role": "db"}})
	tk, err := f.TargetKey("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(tk.GetLabels(), map[string]string{"role": "web"}) {
		t.Errorf("labels after a claim of role=db: %v, want the registered role=web", tk.GetLabels())
	}
	if !maps.Equal(tk.GetClaimedLabels(), map[string]string{"role": "db"}) {
		t.Errorf("claimed labels: %v, want role=db", tk.GetClaimedLabels())
	}

	a.mustApply(&events.TargetDisconnected{Target: "web-1", Node: "n1"})
	a.mustApply(&events.TargetConnected{Target: "web-1", Node: "n1", Labels: map[string]string{"role": "old"}})
	tk, _ = f.TargetKey("web-1")
	if !maps.Equal(tk.GetLabels(), map[string]string{"role": "old"}) || len(tk.GetClaimedLabels()) != 0 {
		t.Errorf("a legacy entry gave labels %v, claimed %v; want labels role=old as before, no claim", tk.GetLabels(), tk.GetClaimedLabels())
	}
}
