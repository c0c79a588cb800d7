package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"

	"github.com/hpt-dev/hpt/internal/testlog"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// idleFlood keeps n TCP connections to addr open from 127.0.0.2 without
// sending a byte, reconnecting each one the server drops, until the test
// ends. It returns once all n have connected at least once.
//
// The flood comes from another address than the clients the test checks
// (127.0.0.1), as an attacker's would: shedding among one source's own
// connections is rpc/pinned's to test (TestAcceptorShedsIdleConnections);
// here, under -race on a loaded machine, a legitimate handshake from the
// flood's own address could lose its slot before its first byte is sent.
func idleFlood(t *testing.T, addr string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	connected := make(chan struct{}, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			// Bounded: at most 500 reconnects per slot, and the test's end.
			for i := range 500 {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					continue
				}
				if i == 0 {
					connected <- struct{}{}
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				io.Copy(io.Discard, c) // until the server (or the test) closes it
				stop()
				c.Close()
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	timeout := time.After(20 * time.Second)
	for range n {
		select {
		case <-connected:
		case <-timeout:
			t.Fatal("idle connections did not connect in 20s")
		}
	}
}

// Idle connections that reconnect when dropped must not delay a
// legitimate client's handshake: before, they held
// the 256 handshake slots for 10 s each and a new connection waited ~10 s.
func TestIdleConnectionsDoNotStarveHandshakes(t *testing.T) {
	c := nodetest.Start(t, 1)
	addr := c.Node(0).Addr()
	idleFlood(t, addr, 300)

	// Generous enough for a loaded machine; the old behaviour took ~10 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Client(0).Cluster.Whoami(ctx, &rpc.WhoamiRequest{}); err != nil {
		t.Fatalf("authenticated call during an idle flood: %v", err)
	}
	// A node-to-node connection (cluster key) completes its handshake too.
	conn := c.NodeClient(0)
	conn.Connect()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("node-to-node connection during an idle flood: still %s", st)
		}
	}
}

// Refused handshakes are logged once per key and interval, and every one
// is counted in hpt_handshakes_refused_total.
func TestRefusedHandshakesAreThrottledAndCounted(t *testing.T) {
	var logs testlog.Buffer
	c := nodetest.Start(t, 1, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.MetricsListen = "127.0.0.1:0"
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}})
	n := c.Node(0)
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pinned.Certificate(stranger)
	if err != nil {
		t.Fatal(err)
	}
	clusterFP := pinned.Fingerprint(c.ClusterKey.Public().(ed25519.PublicKey))
	cfg := pinned.ClientConfig(&cert, pinned.Pin("node", clusterFP), pinned.ProtoGRPC)
	const attempts = 100
	for i := range attempts {
		if err := refusedHandshake(n.Addr(), cfg); !pinned.IsRefusedByPeer(err) {
			t.Fatalf("handshake %d with an unknown key: %v, want a refusal", i, err)
		}
	}
	want := fmt.Sprintf(`hpt_handshakes_refused_total{reason="key"} %d`, attempts)
	var text string
	c.Eventually(10*time.Second, func() error {
		text = scrape(t, n.MetricsAddr())
		if !strings.Contains(text, want) {
			return fmt.Errorf("/metrics lacks %q", want)
		}
		return nil
	})
	if !regexp.MustCompile(`(?m)^hpt_handshakes_pending \d+$`).MatchString(text) {
		t.Errorf("/metrics lacks hpt_handshakes_pending")
	}
	// One line for the first refusal; a summary at most once a minute.
	lines := strings.Count(logs.String(), "handshake refused") + strings.Count(logs.String(), "handshakes refused")
	if lines == 0 || lines > 3 {
		t.Errorf("%d refused handshakes logged %d lines, want 1 to 3:\n%s", attempts, lines, logs.String())
	}
}

// refusedHandshake runs one handshake and the first read, where a TLS 1.3
// client learns that the server refused its certificate.
func refusedHandshake(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}
