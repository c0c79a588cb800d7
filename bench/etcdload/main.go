// Command etcdload drives etcd with the same shape and the same measuring
// code as `hpt bench write` (package bench), so that the two can be
// compared in one script on one machine. It lives in its own module to keep
// the etcd client out of hpt's dependencies.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hpt-dev/hpt/bench"
)

func main() {
	var opts bench.WriteOptions
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "etcd client endpoints, comma-separated")
	conns := flag.Int("conns", 8, "connections shared by the writers")
	flag.IntVar(&opts.Clients, "clients", 64, "concurrent writers")
	flag.IntVar(&opts.Count, "count", 20000, "total writes")
	flag.IntVar(&opts.Size, "size", 256, "payload bytes")
	flag.Parse()
	if err := run(opts, strings.Split(*endpoints, ","), *conns); err != nil {
		fmt.Fprintln(os.Stderr, "etcdload:", err)
		os.Exit(1)
	}
}

func run(opts bench.WriteOptions, endpoints []string, conns int) error {
	conns = max(1, min(conns, opts.Clients))
	clients := make([]*clientv3.Client, conns)
	for i := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	var seq atomic.Int64
	res, err := bench.Write(context.Background(), opts, func(ctx context.Context, w int, payload []byte) error {
		key := fmt.Sprintf("bench/%d", seq.Add(1))
		_, err := clients[w%conns].Put(ctx, key, string(payload))
		return err
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
