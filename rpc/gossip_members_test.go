package rpc

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hpt-dev/hpt/internal/testenv"
)

type metaDelegate struct {
	mu   sync.Mutex
	meta []byte
}

func (d *metaDelegate) NodeMeta(int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}
func (d *metaDelegate) set(b []byte)                    { d.mu.Lock(); d.meta = b; d.mu.Unlock() }
func (d *metaDelegate) NotifyMsg([]byte)                {}
func (d *metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *metaDelegate) LocalState(bool) []byte          { return nil }
func (d *metaDelegate) MergeRemoteState([]byte, bool)   {}

func startMember(t *testing.T, name string, d *metaDelegate, members *GossipMembers) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort = name, "127.0.0.1", 0
	mc.Delegate, mc.Events = d, members
	mc.LogOutput = testWriter{t}
	m, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { return len(p), nil }

// Reading members while gossip updates them must not race (run with
// -race): memberlist's own Members hands out pointers it keeps writing.
// The copy follows the member's metadata, and an agent's copy keeps only
// the servers.
func TestGossipMembersFollowUpdatesWithoutRaces(t *testing.T) {
	serverMeta, _ := GossipMeta{Role: RoleServer, Addr: "127.0.0.1:1"}.Encode()
	agentMeta, _ := GossipMeta{Role: RoleAgent}.Encode()
	sd := &metaDelegate{meta: serverMeta}
	seen := &GossipMembers{}
	serversOnly := &GossipMembers{Keep: func(m GossipMember) bool { return m.Meta.Role == RoleServer }}
	srv := startMember(t, "n1", sd, seen)
	ag := startMember(t, "agent:a1", &metaDelegate{meta: agentMeta}, serversOnly)
	if _, err := ag.Join([]string{srv.LocalNode().Address()}); err != nil {
		t.Fatal(err)
	}
	var last string
	for i := range 30 {
		last = fmt.Sprintf("127.0.0.1:%d", i+2)
		meta, _ := GossipMeta{Role: RoleServer, Addr: last}.Encode()
		sd.set(meta)
		if err := srv.UpdateNode(time.Second); err != nil {
			t.Fatal(err)
		}
		_ = seen.Members()
		_ = serversOnly.Servers()
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if got := serversOnly.Servers()["n1"]; got != last {
			return fmt.Errorf("agent's copy of n1: %v, want its address %s", serversOnly.Servers(), last)
		}
		return nil
	})
	for _, m := range serversOnly.Members() {
		if m.Meta.Role != RoleServer {
			t.Fatalf("agent keeps %s, a %q", m.Name, m.Meta.Role)
		}
	}
	names := map[string]bool{}
	for _, m := range seen.Members() {
		names[m.Name] = true
	}
	if !names["n1"] || !names["agent:a1"] {
		t.Fatalf("server's copy holds %v, want n1 and agent:a1", names)
	}
}
