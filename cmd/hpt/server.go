package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/devcluster"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func (a *app) devCommand() *cobra.Command {
	var nodes, port, agents int
	var dir string
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a whole cluster in this process on loopback, for trying hpt out",
		Long: `Runs a cluster in this process: real TLS, Raft, Pebble and gossip on
loopback ports, fresh keys and an admin token. Ctrl-C stops it and removes
its data (unless --dir was given). With --nats-url the nodes export events
to NATS JetStream, as servers do.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 || nodes > 9 {
				return usagef("--nodes %d: want 1 to 9", nodes)
			}
			exp, err := nf.config(a)
			if err != nil {
				return err
			}
			tuneGC(a.getenv)
			keep := dir != ""
			if !keep {
				if dir, err = os.MkdirTemp("", "hpt-dev-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			ctx := cmd.Context()
			startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := devcluster.Start(startCtx, dir, devcluster.Options{Nodes: nodes, BasePort: port, Agents: agents, Export: exp, Logger: a.logger()})
			if err != nil {
				if port != 0 {
					return fmt.Errorf("%w (is another hpt running? --port 0 picks free ports)", err)
				}
				return err
			}
			defer c.Shutdown()
			a.printDevBanner(c, dir, keep)
			<-ctx.Done()
			fmt.Fprintln(a.stderr, "\nhpt dev: stopping")
			return nil
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")
	cmd.Flags().IntVar(&port, "port", node.DefaultPort, "API port of the first node; node i uses port+10*i, gossip one above (0: free ports)")
	cmd.Flags().StringVar(&dir, "dir", "", "keep data in this directory instead of a temporary one")
	cmd.Flags().IntVar(&agents, "agents", 2, "agents to run on this host (targets dev-1, dev-2, ...)")
	nf.register(cmd.Flags())
	return cmd
}

func (a *app) printDevBanner(c *devcluster.Cluster, dir string, keep bool) {
	w := a.stdout
	leader, _ := c.Nodes[0].Leader()
	fmt.Fprintf(w, "hpt dev: %d nodes and %d agents on loopback, leader %s, data in %s\n\n", len(c.Nodes), len(c.Agents), leader, dir)
	fmt.Fprintf(w, "  export HPT_ADDR=%s\n", strings.Join(c.Addrs(), ","))
	fmt.Fprintf(w, "  export HPT_TOKEN=%s\n", c.Keys.Admin.Secret())
	fmt.Fprintf(w, "  export HPT_CLUSTER_KEY=%s\n\n", c.Keys.Fingerprint())
	fmt.Fprintln(w, "Then, in another shell:")
	if hint := pathHint(a.getenv); hint != "" {
		fmt.Fprintln(w, hint)
	}
	fmt.Fprintln(w, "  hpt cluster status")
	if len(c.Agents) > 0 {
		fmt.Fprintln(w, "  hpt targets list")
		fmt.Fprintln(w, "  hpt job run examples/hello.toml --targets 'dev-*' --batch 1")
	}
	fmt.Fprintln(w, "  hpt users add alice@example.com && hpt users list")
	fmt.Fprintln(w, "  hpt events --follow")
	fmt.Fprintln(w, "  hpt bench write --clients 64 --count 20000 --size 256")
	if keep {
		fmt.Fprintln(w, "\nCtrl-C stops the cluster.")
	} else {
		fmt.Fprintln(w, "\nCtrl-C stops the cluster and removes its data.")
	}
}

// pathHint says how to get an `hpt` command when none is on PATH, as
// after `go run ./cmd/hpt dev`: the banner's commands would fail as shown.
func pathHint(getenv func(string) string) string {
	for _, dir := range filepath.SplitList(getenv("PATH")) {
		if dir == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(dir, "hpt")); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return ""
		}
	}
	return `  # no hpt on your PATH: from the repository, first
  go install ./cmd/hpt && export PATH="$PATH:$(go env GOPATH)/bin"`
}

const (
	clusterKeystoreName = "cluster.keystore.db"
	// adminTokenName is where `hpt init` also writes the first admin token.
	adminTokenName = "admin.token"
)

// writeSecretFile creates path, readable by its owner only, and refuses
// to overwrite an existing file (an earlier init's token).
func writeSecretFile(path, content string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (a *app) initCommand() *cobra.Command {
	var out, addCAs string
	cmd := &cobra.Command{
		Use:   "init --out DIR | --add-cas KEYSTORE",
		Short: "Create a cluster keystore and the first admin token",
		Long: `Creates DIR/cluster.keystore.db holding the cluster keypair, the gossip
key, the SSH user and host CAs and the first admin token (stored hashed). Copy the keystore to every
server node. Standard output carries exactly two lines, so that
  eval "$(hpt init --out DIR)"
sets HPT_TOKEN and HPT_CLUSTER_KEY. The token is also written to
DIR/admin.token (mode 0600), since under eval nobody sees it: store it
safely, then delete the file; the cluster cannot show it again.

The keystore also holds the cluster's SSH user and host CAs. A keystore
made before hpt had them gets them with --add-cas KEYSTORE (the file, or
its directory), in place; then copy that same file to every node and
restart them one at a time.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if addCAs != "" {
				if out != "" {
					return usagef("--add-cas and --out: give one (--out makes a new cluster, --add-cas upgrades an existing keystore)")
				}
				return a.addCAs(addCAs)
			}
			if out == "" {
				return usagef("--out DIR is required")
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", out, err)
			}
			path := filepath.Join(out, clusterKeystoreName)
			keys, err := keystore.NewClusterSecrets()
			if err != nil {
				return err
			}
			// The token goes to a file too: under eval, stdout is read by
			// the shell and nobody sees it.
			tokenPath := filepath.Join(out, adminTokenName)
			if err := writeSecretFile(tokenPath, keys.Admin.Secret()+"\n"); err != nil {
				return err
			}
			if err := keystore.WriteCluster(path, keys); err != nil {
				os.Remove(tokenPath)
				return err
			}
			fmt.Fprintf(a.stdout, "export HPT_TOKEN=%s\n", keys.Admin.Secret())
			fmt.Fprintf(a.stdout, "export HPT_CLUSTER_KEY=%s\n", keys.Fingerprint())
			fmt.Fprintf(a.stderr, `hpt init: wrote %s (mode 0600)
  cluster key %s
  SSH user CA %s, host CA %s (hpt ca show prints them)
  The admin token (user:admin; the HPT_TOKEN line on stdout) is also in
  %s (mode 0600): keep it somewhere safe, then delete that file.
  The cluster stores it hashed only: it cannot be shown again.
  Copy the keystore to each server and start them, for example:
    hpt server --name n1 --keystore %s --data-dir /var/lib/hpt --bootstrap-expect 3 --join n2:7401,n3:7401
`, path, keys.Fingerprint(), keystore.CAFingerprint(keys.SSH.User), keystore.CAFingerprint(keys.SSH.Host), tokenPath, clusterKeystoreName)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for cluster.keystore.db")
	cmd.Flags().StringVar(&addCAs, "add-cas", "", "add the SSH CAs to this existing cluster keystore (or its directory) if it lacks them")
	return cmd
}

func (a *app) serverCommand() *cobra.Command {
	cfg := node.DefaultConfig()
	var join string
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server node",
		Long: `Runs one node of the control plane. All nodes of a cluster hold the same
cluster keystore (from hpt init). Start each with --bootstrap-expect set to
the number of initial servers; they bootstrap once they see each other in
gossip. A node that has data never bootstraps again; a new node joins an
existing cluster with --join and no --bootstrap-expect.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := a.setting(a.keystore, "HPT_KEYSTORE", "")
			if path == "" {
				return usagef("--keystore: the cluster keystore from `hpt init` is required")
			}
			if err := loadClusterKeystore(path, &cfg); err != nil {
				return err
			}
			if cfg.Name == "" {
				h, err := os.Hostname()
				if err != nil {
					return usagef("--name is required (hostname unknown: %v)", err)
				}
				cfg.Name = strings.Split(h, ".")[0]
			}
			cfg.Join = splitList(join)
			cfg.Logger = a.logger()
			tuneGC(a.getenv)
			var err error
			if cfg.Export, err = nf.config(a); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			// A storage failure (a full disk while Pebble writes its
			// manifest) leaves the state unusable, possibly with Pebble's
			// locks held, even inside New: exit with one line instead of
			// shutting down, which could not finish. The Raft log is
			// durable on its own and a restart recovers.
			fatal := make(chan error, 1)
			cfg.StorageFatal = func(err error) {
				select {
				case fatal <- err:
				default:
				}
			}
			type started struct {
				n   *node.Node
				err error
			}
			start := make(chan started, 1)
			go func() {
				n, err := node.New(cfg)
				start <- started{n, err}
			}()
			var n *node.Node
			select {
			case s := <-start:
				if s.err != nil {
					return s.err
				}
				n = s.n
			case err := <-fatal:
				return storageFailed(cfg.Name, err)
			}
			fmt.Fprintf(a.stderr, "hpt server %s: serving on %s (gossip %s), cluster key %s\n",
				cfg.Name, n.Addr(), n.GossipAddr(), pinned.Fingerprint(n.ClusterKey()))
			select {
			case <-cmd.Context().Done():
				return n.Shutdown()
			case err := <-fatal:
				return storageFailed(cfg.Name, err)
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "", "unique node name (default: the short hostname)")
	f.StringVar(&cfg.DataDir, "data-dir", "/var/lib/hpt", "directory for the Raft log, snapshots and state")
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "TCP address for the API, agents and Raft")
	f.StringVar(&cfg.Advertise, "advertise", "", "address other nodes and clients dial (default: the listen address)")
	f.StringVar(&cfg.GossipListen, "gossip", cfg.GossipListen, "gossip address (UDP and TCP)")
	f.StringVar(&cfg.GossipAdvertise, "gossip-advertise", "", "gossip address others use (default: the gossip address)")
	f.StringVar(&join, "join", "", "gossip addresses of other nodes, comma-separated")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 0, "bootstrap a new cluster once this many servers see each other")
	f.StringVar(&cfg.MetricsListen, "metrics", "", "serve Prometheus /metrics and /debug/pprof/ over plain HTTP here, e.g. 127.0.0.1:7480 (default off)")
	f.Uint64Var(&cfg.Raft.SnapshotThreshold, "raft-snapshot-threshold", cfg.Raft.SnapshotThreshold, "Raft log entries between snapshots; each snapshot also flushes the state to disk")
	f.DurationVar(&cfg.Raft.SnapshotInterval, "raft-snapshot-interval", cfg.Raft.SnapshotInterval, "how often to check whether a snapshot is due")
	nf.register(f)
	return cmd
}

// storageFailed is the error `hpt server` exits with when its state's
// storage fails.
func storageFailed(name string, err error) error {
	hint := "see the error"
	if errors.Is(err, syscall.ENOSPC) {
		hint = "free disk space"
	}
	return fmt.Errorf("server %s: state storage failed, stopping (%s, then restart): %w", name, hint, err)
}

// serverGCPercent replaces Go's default GOGC of 100 for servers. A node's
// live heap is small (tens of MB) and its garbage comes from every request,
// so at 100 it collects constantly: measured on the write benchmark, 400
// gives about 12% more committed writes per CPU second. GOGC in the
// environment still wins.
const serverGCPercent = 400

func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
}

func loadClusterKeystore(path string, cfg *node.Config) error {
	ks, err := keystore.Open(path)
	if err != nil {
		return err
	}
	defer ks.Close()
	if ks.Kind() != keystore.KindCluster {
		return fmt.Errorf("%s is a %s keystore; servers need the cluster keystore from `hpt init`", path, ks.Kind())
	}
	if cfg.ClusterKey, err = ks.Identity(); err != nil {
		return err
	}
	if cfg.GossipKey, err = ks.GossipKey(); err != nil {
		return err
	}
	bt, err := ks.BootstrapToken()
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return err
	}
	if err == nil {
		cfg.Bootstrap = &bt
	}
	// A keystore made before the SSH CAs has none: the node starts with SSH
	// access off and says so (node.UpgradeCACommand), so that upgrading a
	// cluster can be rolling.
	keys, err := ks.SSHCAs()
	if err != nil {
		return err
	}
	if cfg.SSHCAs, err = node.SSHCAsFromKeys(keys); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
