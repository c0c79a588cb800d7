package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func (a *app) loginCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "login ADDR",
		Short: "Connect to a cluster: show and pin its key, remember the address and token",
		Long: `Connects to ADDR (or the first that answers of ADDR,ADDR,...), shows the
cluster key fingerprint and, once you confirm it (or it matches
--cluster-key / HPT_CLUSTER_KEY), stores addresses, key and token (from
--token / HPT_TOKEN) in ~/.config/hpt/cli.json, as ssh does with
known_hosts. Later commands use them when no flag or variable is set.
With a token, it stores every member's address, from cluster status, so
that later commands fail over between them; each ` + "`hpt cluster status`" + `
refreshes them.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs := rpc.SplitAddrs(args[0], node.DefaultPort)
			if len(addrs) == 0 {
				return usagef("login: no address given")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			from, pub, err := fetchClusterKey(ctx, addrs)
			if err != nil {
				return err
			}
			seen := pinned.Fingerprint(pub)
			want := a.setting(a.clusterKey, "HPT_CLUSTER_KEY", "")
			switch {
			case want != "":
				fp, err := pinned.ParseFingerprint(want)
				if err != nil {
					return usageError{err}
				}
				if fp != seen {
					return fmt.Errorf("%s presents cluster key %s, not the pinned %s: refusing to log in", from, seen, fp)
				}
			default:
				fmt.Fprintf(a.stderr, "The cluster at %s presents key\n  %s\nCompare it with the output of `hpt init` on a trusted machine.\n", from, seen)
				if !a.confirm("Trust this cluster key?") {
					return fmt.Errorf("cluster key not trusted; nothing saved")
				}
			}
			cfg := cliConfig{Addr: strings.Join(addrs, ","), ClusterKey: seen, Token: a.setting(a.token, "HPT_TOKEN", "")}
			if cfg.Token != "" {
				c, err := rpc.Dial(rpc.ClientConfig{Addrs: addrs, Token: cfg.Token, ClusterKey: seen, Waiting: a.waiting})
				if err != nil {
					return err
				}
				defer c.Close()
				who, err := c.Cluster.Whoami(ctx, &rpc.WhoamiRequest{})
				if err != nil {
					return fmt.Errorf("token check: %w", err)
				}
				fmt.Fprintf(a.stderr, "Authenticated as %s (answered by node %s).\n", who.GetSubject(), who.GetNode())
				// Every member's address, so that later commands fail
				// over as the cluster does.
				st, err := c.Cluster.Status(ctx, &rpc.StatusRequest{})
				switch {
				case err != nil:
					fmt.Fprintf(a.stderr, "Could not list the members (%s); saving only %s.\n", describe(err), cfg.Addr)
				case len(memberAddrs(st)) > 0:
					cfg.Addr = strings.Join(memberAddrs(st), ",")
				}
			}
			path, err := a.saveConfig(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Saved to %s (addresses %s).\n", path, cfg.Addr)
			return nil
		},
	}
	return cmd
}

// fetchClusterKey asks each address in turn for the key it presents, and
// returns the first answer; failing that, every address's error.
func fetchClusterKey(ctx context.Context, addrs []string) (string, ed25519.PublicKey, error) {
	var errs []string
	for _, addr := range addrs {
		pub, err := rpc.FetchClusterKey(ctx, addr)
		if err == nil {
			return addr, pub, nil
		}
		errs = append(errs, "\n  "+err.Error())
	}
	return "", nil, fmt.Errorf("no node answered:%s", strings.Join(errs, ""))
}

// memberAddrs are the addresses of a cluster's members, as cluster status
// gives them.
func memberAddrs(st *rpc.StatusResponse) []string {
	var out []string
	for _, m := range st.GetMembers() {
		if m.GetAddr() != "" {
			out = append(out, m.GetAddr())
		}
	}
	return out
}

// refreshAddrs replaces the addresses `hpt login` saved with the members
// cluster status lists, when the saved ones are what this command used
// (no --addr, no HPT_ADDR): members come and go, and a CLI that knows only
// the ones of its first login loses failover. A failure to save is only
// reported: the status itself was shown.
func (a *app) refreshAddrs(st *rpc.StatusResponse) {
	if a.addr != "" || a.getenv("HPT_ADDR") != "" {
		return
	}
	file := a.loadConfig()
	addrs := memberAddrs(st)
	if file.Addr == "" || len(addrs) == 0 {
		return
	}
	joined := strings.Join(addrs, ",")
	if joined == file.Addr {
		return
	}
	file.Addr = joined
	if _, err := a.saveConfig(file); err != nil {
		fmt.Fprintf(a.stderr, "hpt: could not save the members' addresses: %v\n", err)
	}
}

// confirm asks a yes/no question on the terminal; anything but y/yes,
// including no terminal at all, is no.
func (a *app) confirm(q string) bool {
	f, ok := a.stdin.(*os.File)
	if !ok {
		return false
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		fmt.Fprintln(a.stderr, "(not a terminal: pin the key with --cluster-key instead)")
		return false
	}
	fmt.Fprintf(a.stderr, "%s [y/N] ", q)
	line, _ := bufio.NewReader(f).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

func (a *app) clusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster membership, status and backups"}
	cmd.AddCommand(a.clusterStatusCommand(), a.removeNodeCommand(), a.snapshotCommand())
	return cmd
}

// memberJSON and statusJSON are the stable JSON of `hpt cluster status`.
type memberJSON struct {
	Name         string `json:"name"`
	Addr         string `json:"addr"`
	RaftState    string `json:"raft_state"`
	Voter        bool   `json:"voter"`
	LastIndex    uint64 `json:"last_index"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	Error        string `json:"error,omitempty"`
}

type statusJSON struct {
	Leader     string       `json:"leader"`
	LeaderAddr string       `json:"leader_addr"`
	Term       uint64       `json:"term"`
	Node       string       `json:"node"`
	Members    []memberJSON `json:"members"`
	// Export is the leader's NATS export; absent when export is off.
	Export *exportJSON `json:"export,omitempty"`
}

type exportJSON struct {
	// Node is the member that exports (the leader).
	Node          string `json:"node"`
	Running       bool   `json:"running"`
	Connected     bool   `json:"connected"`
	ExportedIndex uint64 `json:"exported_index"`
	Lag           uint64 `json:"lag"`
	Error         string `json:"error,omitempty"`
}

// leaderExport picks the export figures of the leader: only it exports.
func leaderExport(st *rpc.StatusResponse) *exportJSON {
	for _, m := range st.GetMembers() {
		e := m.GetExport()
		if e == nil || m.GetName() != st.GetLeader() {
			continue
		}
		return &exportJSON{Node: m.GetName(), Running: e.GetRunning(), Connected: e.GetConnected(),
			ExportedIndex: e.GetExportedIndex(), Lag: e.GetLag(), Error: e.GetError()}
	}
	return nil
}

func (a *app) clusterStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Leader, members, Raft state and indexes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				st, err := c.Cluster.Status(cmd.Context(), &rpc.StatusRequest{})
				if err != nil {
					return err
				}
				out := statusJSON{Leader: st.GetLeader(), LeaderAddr: st.GetLeaderAddr(), Term: st.GetTerm(), Node: st.GetNode(), Members: []memberJSON{},
					Export: leaderExport(st)}
				for _, m := range st.GetMembers() {
					out.Members = append(out.Members, memberJSON{
						Name: m.GetName(), Addr: m.GetAddr(), RaftState: m.GetRaftState(), Voter: m.GetVoter(),
						LastIndex: m.GetLastIndex(), AppliedIndex: m.GetAppliedIndex(), CommitIndex: m.GetCommitIndex(), Error: m.GetError(),
					})
				}
				a.refreshAddrs(st)
				if a.json() {
					return a.printJSON(out)
				}
				fmt.Fprintf(a.stdout, "leader: %s (%s), term %d, answered by %s\n", orDash(out.Leader), orDash(out.LeaderAddr), out.Term, out.Node)
				if e := out.Export; e != nil {
					state := "connected"
					if !e.Connected {
						state = "not connected"
					}
					if e.Error != "" {
						state += ": " + e.Error
					}
					fmt.Fprintf(a.stdout, "export: NATS, through index %d, lag %d, %s\n", e.ExportedIndex, e.Lag, state)
				}
				fmt.Fprintln(a.stdout)
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tADDR\tSTATE\tVOTER\tLAST\tCOMMIT\tAPPLIED")
				var notes []string
				for _, m := range out.Members {
					state := m.RaftState
					if m.Error != "" {
						// The reason goes under the table: a whole
						// gRPC error would stretch its column.
						state = orDash(state) + " (unreachable)"
						notes = append(notes, fmt.Sprintf("%s: %s", m.Name, shortError(m.Error)))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%d\t%d\t%d\n", m.Name, m.Addr, state, m.Voter, m.LastIndex, m.CommitIndex, m.AppliedIndex)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, n := range notes {
					fmt.Fprintln(a.stdout, n)
				}
				return nil
			})
		},
	}
}

// grpcNoise are the wrappers gRPC puts around a connection's error, which
// say nothing an operator acts on.
var grpcNoise = regexp.MustCompile(`connection error: desc = |transport: (Error while dialing: )?|dial tcp [^ ]+: |"`)

// shortError is a member's error as cluster status shows it: gRPC's
// wrappers taken off ("connect: connection refused").
func shortError(s string) string {
	return strings.TrimSpace(grpcNoise.ReplaceAllString(s, ""))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) removeNodeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove-node NAME",
		Short: "Remove a server from the Raft configuration (for a node that is gone for good)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Cluster.RemoveNode(cmd.Context(), &rpc.RemoveNodeRequest{Name: args[0]})
				if err != nil {
					return err
				}
				return a.written(w, "removed node "+args[0])
			})
		},
	}
}

// written reports a write's result: its index, which scripts can pass on.
func (a *app) written(w *rpc.WriteResponse, what string) error {
	if a.json() {
		return a.printJSON(map[string]any{"index": w.GetIndex(), "duplicate": w.GetDuplicate()})
	}
	fmt.Fprintf(a.stdout, "%s (index %d)\n", what, w.GetIndex())
	return nil
}

func (a *app) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Back up and restore the whole state"}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Write a consistent snapshot of the state (history included) to FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				stream, err := c.Cluster.SnapshotSave(cmd.Context(), &rpc.SnapshotSaveRequest{})
				if err != nil {
					return err
				}
				tmp := args[0] + ".tmp"
				f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
				if err != nil {
					return err
				}
				defer os.Remove(tmp)
				defer f.Close()
				var index uint64
				var size int64
				for {
					chunk, err := stream.Recv()
					if err == io.EOF {
						break
					}
					if err != nil {
						return err
					}
					if chunk.GetIndex() != 0 {
						index = chunk.GetIndex()
					}
					n, err := f.Write(chunk.GetData())
					size += int64(n)
					if err != nil {
						return err
					}
				}
				if err := f.Sync(); err != nil {
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				if err := os.Rename(tmp, args[0]); err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(map[string]any{"file": args[0], "index": index, "bytes": size})
				}
				fmt.Fprintf(a.stdout, "saved snapshot at index %d to %s (%d bytes)\n", index, args[0], size)
				return nil
			})
		},
	}
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the whole cluster state with a snapshot from `snapshot save`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			return a.withClient(func(c *rpc.Client) error {
				up, err := c.Cluster.SnapshotRestore(cmd.Context())
				if err != nil {
					return err
				}
				buf := make([]byte, 1<<20)
				for {
					n, rerr := f.Read(buf)
					if n > 0 {
						if err := up.Send(&rpc.SnapshotChunk{Data: buf[:n]}); err != nil {
							break // the server's reason comes with CloseAndRecv
						}
					}
					if rerr == io.EOF {
						break
					}
					if rerr != nil {
						return rerr
					}
				}
				res, err := up.CloseAndRecv()
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(map[string]any{"index": res.GetIndex()})
				}
				fmt.Fprintf(a.stdout, "restored %s; the cluster recorded it at index %d\n", args[0], res.GetIndex())
				return nil
			})
		},
	}
	cmd.AddCommand(save, restore)
	return cmd
}
