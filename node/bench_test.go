package node_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"

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

// BenchmarkIssueSSH64 measures SSH certificates issued (SPEC section 11) by
// 64 concurrent clients spread over the three nodes of an in-process
// cluster: each one a grant check, an Ed25519 signature and a committed
// credential_issued event. Compare it with BenchmarkWrite64, run in the
// same process: the ratio is what the grant check and the signature cost
// on top of a plain committed write.
func BenchmarkIssueSSH64(b *testing.B) {
	const clients = 64
	c := nodetest.Start(b, 3)
	ctx := context.Background()
	admin := c.Client(c.WaitLeader())
	for _, err := range []error{
		second(admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: "alice"})),
		second(admin.Destinations.Add(ctx, &rpc.AddDestinationRequest{Name: "web-1", Kind: "ssh", Addr: "127.0.0.1:2222"})),
		second(admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"})),
	} {
		if err != nil {
			b.Fatal(err)
		}
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:alice"})
	if err != nil {
		b.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	const conns = 9 // three per node
	cls := make([]*rpc.Client, conns)
	for i := range cls {
		cls[i] = c.ClientFor(tok.GetToken(), c.Node(i%3).Addr())
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	key := ssh.MarshalAuthorizedKey(sp)
	count := max(b.N, clients)
	b.ResetTimer()
	res, err := bench.Write(ctx, bench.WriteOptions{Clients: clients, Count: count, Size: 1},
		func(ctx context.Context, w int, _ []byte) error {
			_, err := cls[w%conns].Credentials.IssueSSH(ctx, &rpc.IssueSSHRequest{Destination: "web-1", PublicKey: key})
			return err
		})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors > 0 {
		b.Fatalf("%d of %d issues failed", res.Errors, res.Count)
	}
	b.ReportMetric(res.Rate, "certs/s")
	b.ReportMetric(res.P99ms, "p99-ms")
	b.ReportMetric(res.P50ms, "p50-ms")
}

func second[T any](_ T, err error) error { return err }
