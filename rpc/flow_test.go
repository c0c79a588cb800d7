package rpc

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// pingCounter counts the HTTP/2 PINGs (not their acks) each side of the
// connections through it sends.
type pingCounter struct {
	fromClient, fromServer atomic.Int64
	wg                     sync.WaitGroup
}

// watch returns a writer whose bytes are parsed as HTTP/2 frames, counting
// PINGs in n, until the copy ends.
func (p *pingCounter) watch(n *atomic.Int64, preface bool) io.Writer {
	r, w := io.Pipe()
	p.wg.Go(func() {
		defer r.Close()
		if preface {
			if _, err := io.ReadFull(r, make([]byte, len(http2.ClientPreface))); err != nil {
				return
			}
		}
		fr := http2.NewFramer(nil, r)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				io.Copy(io.Discard, r)
				return
			}
			if ping, ok := f.(*http2.PingFrame); ok && !ping.IsAck() {
				n.Add(1)
			}
		}
	})
	return w
}

// countPings runs calls unary calls from 8 goroutines between a server and
// a client with the given options, and returns the PINGs each side sent.
func countPings(t *testing.T, calls int, sopts []grpc.ServerOption, dopts []grpc.DialOption) (fromClient, fromServer int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var pc pingCounter
	s := grpc.NewServer(sopts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	// The server sees the client's connection through a proxy that copies
	// each direction into a frame parser as well.
	proxy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	pc.wg.Go(func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				c.Close()
				return
			}
			toServer := pc.watch(&pc.fromClient, true)
			toClient := pc.watch(&pc.fromServer, false)
			pc.wg.Go(func() {
				io.Copy(io.MultiWriter(up, toServer), c)
				up.Close()
				toServer.(io.Closer).Close()
			})
			pc.wg.Go(func() {
				io.Copy(io.MultiWriter(c, toClient), up)
				c.Close()
				toClient.(io.Closer).Close()
			})
		}
	})
	conn, err := grpc.NewClient("passthrough:///"+proxy.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range calls / 8 {
				if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	conn.Close()
	s.Stop()
	proxy.Close()
	pc.wg.Wait()
	return pc.fromClient.Load(), pc.fromServer.Load()
}

// With fixed windows neither side sends flow-control PINGs; grpc-go's
// default BDP estimation sends them as calls flow, which is what the fixed
// windows are there to avoid.
func TestFixedWindowsSendNoPings(t *testing.T) {
	const calls = 400
	c, s := countPings(t, calls, FlowServerOptions(), FlowDialOptions())
	if c != 0 || s != 0 {
		t.Errorf("with fixed windows: client sent %d PINGs, server %d; want none", c, s)
	}
	c, s = countPings(t, calls, nil, nil)
	if c == 0 || s == 0 {
		t.Errorf("with grpc's defaults: client sent %d PINGs, server %d; the control expects some from both", c, s)
	}
	t.Logf("grpc defaults, %d calls: client sent %d PINGs, server %d", calls, c, s)
}
