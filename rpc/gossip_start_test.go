package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hpt-dev/hpt/internal/testenv"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A member given an advertise host advertises the port it is bound to
// (memberlist's LAN default would say 7946), and two members started
// alike find each other through JoinGossip and see each other's meta.
func TestStartGossipAdvertisesTheBoundPort(t *testing.T) {
	key := make([]byte, 32)
	port := freePort(t)
	a, err := StartGossip(GossipConfig{
		Name: "n1", Listen: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Advertise: "127.0.0.1:0",
		Key: key, Meta: GossipMeta{Role: RoleServer, Addr: "127.0.0.1:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown() })
	if got := int(a.LocalNode().Port); got != port {
		t.Fatalf("advertised port %d, bound %d", got, port)
	}

	servers := &GossipMembers{Keep: func(m GossipMember) bool { return m.Meta.Role == RoleServer }}
	b, err := StartGossip(GossipConfig{Name: "agent:a1", Listen: "127.0.0.1:0", Key: key, Meta: GossipMeta{Role: RoleAgent}, Events: servers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	JoinGossip(ctx, b, []string{a.LocalNode().Address()}, slog.New(slog.DiscardHandler))
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := servers.Servers()["n1"]; got != "127.0.0.1:1" {
			return fmt.Errorf("servers seen %v, want n1 at 127.0.0.1:1", servers.Servers())
		}
		return nil
	})
}

// Bad addresses are refused, naming the field.
func TestStartGossipRefusesBadAddresses(t *testing.T) {
	for _, cfg := range []GossipConfig{
		{Name: "x", Listen: "7401"},
		{Name: "x", Listen: "127.0.0.1:http"},
		{Name: "x", Listen: "127.0.0.1:0", Advertise: "nohost"},
	} {
		if ml, err := StartGossip(cfg); err == nil {
			ml.Shutdown()
			t.Errorf("%+v: started", cfg)
		}
	}
}

var _ memberlist.Delegate = staticMeta(nil)
