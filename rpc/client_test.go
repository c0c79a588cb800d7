package rpc

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Request ids sort by the time they were made, so the state's index of
// them grows at its end; within a millisecond they still differ.
func TestRequestIDsGrowWithTime(t *testing.T) {
	seen := map[string]bool{}
	prev := NewRequestID()
	for i := range 3 {
		time.Sleep(2 * time.Millisecond)
		id := NewRequestID()
		if id <= prev {
			t.Fatalf("id %d: %s does not sort after %s, made earlier", i, id, prev)
		}
		prev = id
	}
	for range 1000 {
		id := NewRequestID()
		if len(id) != 32 {
			t.Fatalf("id %q: %d characters, want 32", id, len(id))
		}
		if _, err := hex.DecodeString(id); err != nil {
			t.Fatalf("id %q is not hex: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("id %s made twice", id)
		}
		seen[id] = true
	}
}

// closedPort returns a loopback address where nothing listens: a
// listener's, opened then closed.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentPort returns a loopback address that accepts TCP connections and
// never says a word, as a wrong service would.
func silentPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestUnreachableNamesEveryAddress: with no node to be had, a call (unary
// or stream) says it is still trying once it has waited WaitingAfter, then
// fails with an error naming every address, one line each, with what is
// wrong there; its code stays Unavailable.
func TestUnreachableNamesEveryAddress(t *testing.T) {
	addrs := []string{closedPort(t), silentPort(t), closedPort(t)}
	var mu sync.Mutex
	var told [][]string
	c, err := Dial(ClientConfig{
		Addrs:       addrs,
		ClusterKey:  "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		DialTimeout: WaitingAfter + time.Second,
		Waiting: func(a []string, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			told = append(told, a)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No deadline of the call's own: DialTimeout bounds the wait.
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		var ue *UnreachableError
		if !errors.As(err, &ue) || status.Code(err) != codes.Unavailable {
			t.Fatalf("%s: %v (code %s), want an *UnreachableError with code Unavailable", what, err, status.Code(err))
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != 1+len(addrs) {
			t.Fatalf("%s: %d lines, want a heading and one per address:\n%s", what, len(lines), err)
		}
		for i, addr := range addrs {
			want := "connection refused"
			if i == 1 {
				want = "accepts TCP but no TLS handshake"
			}
			if l := lines[1+i]; !strings.Contains(l, addr+": ") || !strings.Contains(l, want) {
				t.Errorf("%s: line %q, want %s and %q", what, l, addr, want)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(told) != 1 || strings.Join(told[0], ",") != strings.Join(addrs, ",") {
			t.Errorf("%s: Waiting told %v, want once with %v", what, told, addrs)
		}
		told = nil
	}
	_, err = c.Cluster.Status(ctx, &StatusRequest{})
	check("unary call", err)
	stream, err := c.Events.List(ctx, &ListEventsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	check("stream", err)
}
