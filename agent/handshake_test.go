package agent

import (
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/internal/testlog"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// An untrusted client that keeps trying is logged once, then summarised,
// instead of one WARN line per attempt.
func TestDirectRefusalsAreThrottled(t *testing.T) {
	clientPub, _ := genKey(t)
	targetPub, targetPriv := genKey(t)
	_, strangerPriv := genKey(t)
	var logs testlog.Buffer
	a, err := New(Config{Keystore: targetKeystore(t, "web-1", targetPriv, clientPub), Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	const attempts = 30
	for i := range attempts {
		_, err := ProvisionDirect(ctx(t), DirectRequest{
			Addr: a.Addr(), Target: "web-1", TargetKey: targetPub, ClientKey: strangerPriv, Bundle: bundle("/nonexistent"),
		})
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("attempt %d: %v, want refused", i, err)
		}
	}
	a.Close()
	text := logs.String()
	fp := pinned.Fingerprint(strangerPriv.Public().(ed25519.PublicKey))
	first := strings.Count(text, `msg="tls handshake refused"`)
	// Every refusal is accounted for: the first logged, the rest counted in
	// the summaries.
	counted := first
	for _, m := range regexp.MustCompile(`msg="tls handshakes refused" .*reason=key fingerprint=(\S+) count=(\d+)`).FindAllStringSubmatch(text, -1) {
		if m[1] != fp {
			t.Errorf("summary names %s, want %s", m[1], fp)
		}
		n, _ := strconv.Atoi(m[2])
		counted += n
	}
	lines := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "refused") {
			lines++
		}
	}
	if first != 1 || lines > 3 || counted != attempts {
		t.Fatalf("%d refusals: %d lines mention them (first %d, %d counted), want 1 first line, at most 3, all counted:\n%s",
			attempts, lines, first, counted, text)
	}
}

// A connection that never starts its handshake is closed after a short
// deadline (it held a goroutine for gRPC's 120 s before).
func TestDirectPortClosesSilentConnections(t *testing.T) {
	clientPub, _ := genKey(t)
	_, targetPriv := genKey(t)
	a := startAgent(t, targetKeystore(t, "web-1", targetPriv, clientPub))
	c, err := net.DialTimeout("tcp", a.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Generous against the 2 s first-byte deadline, below the 10 s
	// handshake deadline (and gRPC's 120 s before).
	c.SetReadDeadline(time.Now().Add(8 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the agent kept a silent connection open for 8 s")
	}
	if err != io.EOF && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read on a silent connection: %v, want it closed by the agent", err)
	}
}
