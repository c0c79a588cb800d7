package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/bench"
	"github.com/hpt-dev/hpt/rpc"
)

func (a *app) benchCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Load generators"}
	var opts bench.WriteOptions
	var conns int
	write := &cobra.Command{
		Use:   "write",
		Short: "Commit --count events of --size bytes from --clients concurrent writers",
		Long: `Like nats bench: every write is a committed event (bench_write) answered
with its index. Prints committed writes per second and latency percentiles.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return usageError{err}
			}
			if conns < 1 {
				return usagef("--conns must be at least 1")
			}
			conns = min(conns, opts.Clients)
			clients := make([]*rpc.Client, conns)
			for i := range clients {
				c, err := a.client()
				if err != nil {
					return err
				}
				defer c.Close()
				clients[i] = c
			}
			res, err := bench.Write(cmd.Context(), opts, func(ctx context.Context, w int, payload []byte) error {
				_, err := clients[w%conns].Bench.Write(ctx, &rpc.BenchWriteRequest{Data: payload})
				return err
			})
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			fmt.Fprintf(a.stdout, "%d writes of %d bytes from %d clients in %.2fs: %.0f writes/s, p50 %.2f ms, p99 %.2f ms, %d errors\n",
				res.Count, res.Size, res.Clients, res.Duration, res.Rate, res.P50ms, res.P99ms, res.Errors)
			return nil
		},
	}
	f := write.Flags()
	f.IntVar(&opts.Clients, "clients", 16, "concurrent writers")
	f.IntVar(&opts.Count, "count", 10000, "total writes")
	f.IntVar(&opts.Size, "size", 256, "payload bytes")
	f.IntVar(&conns, "conns", 8, "connections shared by the writers")
	cmd.AddCommand(write)
	return cmd
}
