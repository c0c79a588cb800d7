// Package exporttest runs a real nats-server with JetStream inside a test
// process, for tests of the event export.
package exporttest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a real nats-server with JetStream in this process, on a
// loopback port it keeps across restarts, storing into one directory.
type Server struct {
	t    testing.TB
	dir  string
	port int
	s    *server.Server
}

// Start starts a server; the test's cleanup stops it.
func Start(t testing.TB) *Server {
	j := &Server{t: t, dir: t.TempDir(), port: -1}
	j.Start()
	t.Cleanup(j.Stop)
	return j
}

// Start starts the server again after Stop, on the same port and store.
func (j *Server) Start() {
	j.t.Helper()
	s, err := server.NewServer(&server.Options{
		ServerName: "hpt-node-test", Host: "127.0.0.1", Port: j.port,
		NoLog: true, NoSigs: true, JetStream: true, StoreDir: j.dir,
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
	})
	if err != nil {
		j.t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		j.t.Fatal("nats server not ready after 10s")
	}
	j.port = s.Addr().(*net.TCPAddr).Port
	j.s = s
}

// Stop shuts the server down.
func (j *Server) Stop() {
	if j.s != nil {
		j.s.Shutdown()
		j.s.WaitForShutdown()
		j.s = nil
	}
}

// Dir is the directory the server stores its streams in, to inspect
// what reached the disk.
func (j *Server) Dir() string { return j.dir }

// URL is the server's client URL.
func (j *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", j.port) }

// StreamIDs returns the Nats-Msg-Id of every message in stream, in stream
// order.
func (j *Server) StreamIDs(ctx context.Context, stream string) ([]uint64, error) {
	nc, err := nats.Connect(j.URL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for uint64(len(ids)) < info.State.Msgs {
		batch, err := c.Fetch(min(int(info.State.Msgs)-len(ids), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		before := len(ids)
		for m := range batch.Messages() {
			id, err := strconv.ParseUint(m.Headers().Get(jetstream.MsgIDHeader), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("message %d: Nats-Msg-Id: %w", len(ids)+1, err)
			}
			ids = append(ids, id)
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if len(ids) == before {
			return nil, fmt.Errorf("read %d of %d messages, then nothing", before, info.State.Msgs)
		}
	}
	return ids, nil
}
