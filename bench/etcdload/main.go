// Command etcdload drives etcd with the same shape and the same measuring
// code as `hpt bench write` (package bench), so that the two can be
// compared in one script on one machine. It lives in its own module to keep
// the etcd client out of hpt's dependencies.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	var tlsFiles tlsFiles
	flag.StringVar(&tlsFiles.ca, "cacert", "", "CA certificate: use TLS, verify the members with it")
	flag.StringVar(&tlsFiles.cert, "cert", "", "client certificate (with -key)")
	flag.StringVar(&tlsFiles.key, "key", "", "client key")
	flag.IntVar(&opts.Clients, "clients", 64, "concurrent writers")
	flag.IntVar(&opts.Count, "count", 20000, "total writes")
	flag.IntVar(&opts.Size, "size", 256, "payload bytes")
	flag.Parse()
	tlsCfg, err := tlsFiles.config()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdload:", err)
		os.Exit(2)
	}
	if err := run(opts, strings.Split(*endpoints, ","), *conns, tlsCfg); err != nil {
		fmt.Fprintln(os.Stderr, "etcdload:", err)
		os.Exit(1)
	}
}

type tlsFiles struct{ ca, cert, key string }

// config returns the client TLS configuration, or nil for plain TCP.
func (f tlsFiles) config() (*tls.Config, error) {
	if f.ca == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", f.ca)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if f.cert != "" {
		c, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

func run(opts bench.WriteOptions, endpoints []string, conns int, tlsCfg *tls.Config) error {
	conns = max(1, min(conns, opts.Clients))
	clients := make([]*clientv3.Client, conns)
	for i := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, TLS: tlsCfg})
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
