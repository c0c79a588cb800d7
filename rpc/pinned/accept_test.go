package pinned

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/internal/testlog"
)

// startAcceptor serves an Acceptor on 127.0.0.1 that completes handshakes
// and echoes one byte on each accepted connection.
func startAcceptor(t *testing.T, cfg AcceptConfig) *Acceptor {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(ln, cfg)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		a.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := a.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err == nil {
					c.Write(b)
				}
			}()
		}
	}()
	return a
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if err := cond(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

func serverConfig(t *testing.T) (*tls.Config, *tls.Config) {
	serverPub, serverCert := newKey(t)
	cfg := ServerConfig(serverCert, func(pub ed25519.PublicKey, _ string) error {
		if pub != nil {
			return &KeyError{Peer: "client", Fingerprint: Fingerprint(pub)}
		}
		return nil
	}, ProtoGRPC)
	return cfg, ClientConfig(nil, Pin("server", Fingerprint(serverPub)), ProtoGRPC)
}

// Idle connections beyond a source's share, or beyond the pool, are shed
// (oldest idle first) instead of making Accept wait, and a client that
// starts its handshake gets through however many idle ones there are.
func TestAcceptorShedsIdleConnections(t *testing.T) {
	server, client := serverConfig(t)
	a := startAcceptor(t, AcceptConfig{TLS: server, Limits: AcceptLimits{
		// Long enough that nothing times out during the test.
		FirstByte: time.Minute, Handshake: time.Minute, MaxPending: 6, MaxPendingPerSource: 4,
	}})
	addr := a.Addr().String()
	stats := func(pending int, shed uint64) func() error {
		return func() error {
			s := a.Stats()
			if s.Pending != pending || s.Refused[RefusedShed] != shed {
				return fmt.Errorf("pending %d, shed %d; want %d, %d", s.Pending, s.Refused[RefusedShed], pending, shed)
			}
			return nil
		}
	}

	var first []net.Conn
	for range 10 {
		first = append(first, dialFrom(t, "127.0.0.1", addr))
	}
	// The source's share is 4: the six oldest were shed.
	waitFor(t, "idle connections from one source", stats(4, 6))
	for i, c := range first[:6] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Errorf("idle connection %d (shed) read: %v, want EOF", i, err)
		}
	}
	// Another source has its own share, until the pool (6) is full.
	dialFrom(t, "127.0.0.2", addr)
	dialFrom(t, "127.0.0.2", addr)
	waitFor(t, "second source within the pool", stats(6, 6))
	dialFrom(t, "127.0.0.3", addr)
	waitFor(t, "pool full", stats(6, 7))

	// A real client from the flooding source gets through.
	for i := range 3 {
		if err := roundTrip(addr, client); err != nil {
			t.Fatalf("handshake %d among idle connections: %v", i, err)
		}
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// A connection that sends nothing is closed after FirstByte; one that has
// started is given the whole Handshake deadline.
func TestAcceptorFirstByteDeadline(t *testing.T) {
	server, client := serverConfig(t)
	a := startAcceptor(t, AcceptConfig{TLS: server, Limits: AcceptLimits{FirstByte: time.Second, Handshake: time.Minute}})
	addr := a.Addr().String()

	idle := dialFrom(t, "127.0.0.1", addr)
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("silent connection read: %v, want it closed by the server", err)
	}
	waitFor(t, "timeout counted", func() error {
		if n := a.Stats().Refused[RefusedTimeout]; n != 1 {
			return fmt.Errorf("%d timeouts counted", n)
		}
		return nil
	})

	// One byte of a record header, then a pause longer than FirstByte:
	// the handshake still completes.
	raw := dialFrom(t, "127.0.0.1", addr)
	slow := &slowStart{Conn: raw}
	conn := tls.Client(slow, client)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		t.Fatalf("handshake started within FirstByte and finished after it: %v", err)
	}
}

// slowStart writes the first byte alone, then waits longer than the
// test's FirstByte.
type slowStart struct {
	net.Conn
	once sync.Once
}

func (s *slowStart) Write(b []byte) (int, error) {
	var wrote int
	s.once.Do(func() {
		if _, err := s.Conn.Write(b[:1]); err == nil {
			wrote = 1
		}
		time.Sleep(1500 * time.Millisecond)
	})
	n, err := s.Conn.Write(b[wrote:])
	return n + wrote, err
}

// Many refusals of one key log one line, then one summary counting the
// rest; each refused key and each reason is tracked on its own.
func TestAcceptorRefusalsAreSummarised(t *testing.T) {
	server, _ := serverConfig(t)
	serverPub := server.Certificates[0].Leaf.PublicKey.(ed25519.PublicKey)
	var logs testlog.Buffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(ln, AcceptConfig{TLS: server, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		// No periodic summary during the test: Close writes it.
		Limits: AcceptLimits{LogInterval: time.Hour}})
	t.Cleanup(func() { a.Close() })
	addr := a.Addr().String()

	_, k1 := newKey(t)
	_, k2 := newKey(t)
	pin := Pin("server", Fingerprint(serverPub))
	const n1, n2, garbage = 40, 3, 5
	for i := range n1 + n2 {
		key := &k1
		if i >= n1 {
			key = &k2
		}
		if err := roundTrip(addr, ClientConfig(key, pin, ProtoGRPC)); !IsRefusedByPeer(err) {
			t.Fatalf("handshake %d: %v, want refused", i, err)
		}
	}
	for range garbage {
		c := dialFrom(t, "127.0.0.1", addr)
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
	}
	// A refusal is counted before its line is logged: wait for both.
	waitFor(t, "refusals counted and logged", func() error {
		s := a.Stats()
		if s.Refused[RefusedKey] != n1+n2 || s.Refused[RefusedTLS] != garbage {
			return fmt.Errorf("counted %v", s.Refused)
		}
		if got := logs.Lines(); len(got) < 3 {
			return fmt.Errorf("%d lines logged", len(got))
		}
		return nil
	})
	if got := logs.Lines(); len(got) != 3 {
		t.Fatalf("log before the summary has %d lines, want 3 (one per key, one for the garbage):\n%s", len(got), strings.Join(got, "\n"))
	}
	a.Close()
	got := logs.Lines()
	fp1 := Fingerprint(k1.Leaf.PublicKey.(ed25519.PublicKey))
	fp2 := Fingerprint(k2.Leaf.PublicKey.(ed25519.PublicKey))
	want := []string{
		"fingerprint=" + fp1 + " count=" + fmt.Sprint(n1-1),
		"fingerprint=" + fp2 + " count=" + fmt.Sprint(n2-1),
		"source=127.0.0.1 count=" + fmt.Sprint(garbage-1),
	}
	if len(got) != 6 {
		t.Fatalf("log has %d lines, want 6:\n%s", len(got), strings.Join(got, "\n"))
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(got[3:], "\n"), w) {
			t.Errorf("summaries lack %q:\n%s", w, strings.Join(got[3:], "\n"))
		}
	}
}

// The summary comes every LogInterval while refusals continue, without
// waiting for Close.
func TestAcceptorRefusalSummaryIsPeriodic(t *testing.T) {
	server, _ := serverConfig(t)
	serverPub := server.Certificates[0].Leaf.PublicKey.(ed25519.PublicKey)
	var logs testlog.Buffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(ln, AcceptConfig{TLS: server, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Limits: AcceptLimits{LogInterval: 50 * time.Millisecond}})
	t.Cleanup(func() { a.Close() })
	_, k := newKey(t)
	cfg := ClientConfig(&k, Pin("server", Fingerprint(serverPub)), ProtoGRPC)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if err := roundTrip(a.Addr().String(), cfg); !IsRefusedByPeer(err) {
			t.Fatalf("handshake: %v, want refused", err)
		}
		if strings.Contains(strings.Join(logs.Lines(), "\n"), `msg="tls handshakes refused"`) {
			return
		}
	}
	t.Fatalf("no summary line while refusals continued:\n%s", strings.Join(logs.Lines(), "\n"))
}

// Close cuts handshakes in progress instead of waiting out their deadline,
// and Accept then reports net.ErrClosed.
func TestAcceptorCloseCutsPendingHandshakes(t *testing.T) {
	server, _ := serverConfig(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(ln, AcceptConfig{TLS: server, Limits: AcceptLimits{FirstByte: time.Hour, Handshake: time.Hour}})
	dialFrom(t, "127.0.0.1", a.Addr().String())
	waitFor(t, "pending", func() error {
		if p := a.Stats().Pending; p != 1 {
			return fmt.Errorf("%d pending", p)
		}
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a silent handshake")
	}
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if n := a.Stats().Refused[RefusedShed] + a.Stats().Refused[RefusedTimeout] + a.Stats().Refused[RefusedTLS]; n != 0 {
		t.Fatalf("Close counted %d refusals", n)
	}
}
