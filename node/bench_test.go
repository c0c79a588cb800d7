package node_test

import (
	"context"
	"testing"

	"github.com/hpt-dev/hpt/bench"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// BenchmarkWrite64 measures committed writes through the whole path (gRPC,
// TLS, auth, Raft on three in-process nodes, Pebble) with 64 concurrent
// clients writing 256-byte events to the leader.
func BenchmarkWrite64(b *testing.B) { benchmarkWrite(b, 64) }

func BenchmarkWrite256(b *testing.B) { benchmarkWrite(b, 256) }

func benchmarkWrite(b *testing.B, clients int) {
	c := nodetest.Start(b, 3)
	leader := c.Node(c.WaitLeader())
	const conns = 8
	cls := make([]*rpc.Client, conns)
	for i := range cls {
		cls[i] = c.ClientFor(c.Admin.Secret(), leader.Addr())
	}
	count := max(b.N, clients)
	b.ResetTimer()
	res, err := bench.Write(context.Background(), bench.WriteOptions{Clients: clients, Count: count, Size: 256},
		func(ctx context.Context, w int, p []byte) error {
			_, err := cls[w%conns].Bench.Write(ctx, &rpc.BenchWriteRequest{Data: p})
			return err
		})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Rate, "writes/s")
	b.ReportMetric(res.P99ms, "p99-ms")
	b.ReportMetric(res.P50ms, "p50-ms")
}
