package pinned

import (
	"errors"
	"net"
	"testing"
	"time"
)

// hasUnreadData sees bytes the peer sent before anyone read them, leaves
// them to be read, and does not wait for a Read blocked on the connection.
func TestHasUnreadData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dialFrom(t, "127.0.0.1", ln.Addr().String())
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	read := make(chan []byte, 1)
	go func() {
		b := make([]byte, 16)
		server.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := server.Read(b)
		read <- b[:n]
	}()
	// The Read above is (soon) blocked; asking must not wait for it.
	if hasUnreadData(server) {
		t.Fatal("data reported before the peer sent any")
	}
	// The blocked Read still gets what comes next.
	client.Write([]byte("x"))
	if got := <-read; string(got) != "x" {
		t.Fatalf("read %q, want x", got)
	}

	// On a connection nobody reads, sent bytes are seen and left in place.
	c2 := dialFrom(t, "127.0.0.1", ln.Addr().String())
	s2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c2.Write([]byte("hello"))
	waitFor(t, "sent bytes seen", func() error {
		if !hasUnreadData(s2) {
			return errors.New("no unread data yet")
		}
		return nil
	})
	s2.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	if n, err := s2.Read(b); err != nil || string(b[:n]) != "hello" {
		t.Fatalf("after peeking, read %q, %v; want hello", b[:n], err)
	}
}
