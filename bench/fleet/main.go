// Command fleet measures hpt's fleet on this machine with real `hpt server`
// processes and many agents in this process:
//
//   - fan-out: a no-op job to N agents that dial nodes directly; time from
//     submission to all targets started and to all finished, and the
//     servers' resident memory per connected agent;
//
//   - gossip: N agents that find the nodes through gossip; time until every
//     server sees every agent alive, and until every agent sees everyone.
//
//     go build -o /tmp/hpt ./cmd/hpt && go run ./bench/fleet -hpt /tmp/hpt -agents 1000
//     go run ./bench/fleet -hpt /tmp/hpt -mode gossip -agents 200
//
// It prints one JSON object; docs/benchmarks.md records the figures.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hpt-dev/hpt/agent"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/devcluster"
	"github.com/hpt-dev/hpt/rpc"
)

func main() {
	hpt := flag.String("hpt", "hpt", "the hpt binary to run servers with")
	mode := flag.String("mode", "fanout", "fanout or gossip")
	n := flag.Int("agents", 1000, "number of agents")
	flag.StringVar(&heapProfile, "heap-profile", "", "with the agents connected, save server n1's heap profile here (and its goroutines next to it)")
	flag.StringVar(&journalDir, "journal-dir", "", "keep the agents' journals here instead of next to the servers' data (e.g. /dev/shm: a thousand hosts' fsyncs queued on the servers' one disk is not what a fleet looks like)")
	flag.StringVar(&cpuProfile, "cpu-profile", "", "save each server's CPU profile of the job's first 3 s to this path + \".\" + server name")
	flag.Parse()
	if err := run(*hpt, *mode, *n); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

var heapProfile, cpuProfile, journalDir string

var gcRounds = 5

type server struct {
	name, addr, gossip, metrics string
	cmd                         *exec.Cmd
	// client talks to this server alone.
	client *rpc.Client
}

// rssKiB reads a process's resident set size.
func (s *server) rssKiB() (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return 0, errors.New("no VmRSS")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startServers(hpt, dir string) ([]*server, *rpc.Client, error) {
	out, err := exec.Command(hpt, "init", "--out", filepath.Join(dir, "keys")).Output()
	if err != nil {
		return nil, nil, fmt.Errorf("hpt init: %w", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		env[k] = v
	}
	var servers []*server
	for i := range 3 {
		s := &server{name: fmt.Sprintf("n%d", i+1)}
		if s.addr, err = freeAddr(); err != nil {
			return nil, nil, err
		}
		if s.gossip, err = freeAddr(); err != nil {
			return nil, nil, err
		}
		if s.metrics, err = freeAddr(); err != nil {
			return nil, nil, err
		}
		servers = append(servers, s)
	}
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.addr)
		s.cmd = exec.Command(hpt, "server", "--name", s.name, "--keystore", filepath.Join(dir, "keys", "cluster.keystore.db"),
			"--data-dir", filepath.Join(dir, s.name), "--listen", s.addr, "--gossip", s.gossip,
			"--join", servers[0].gossip, "--bootstrap-expect", "3", "--log-level", "error", "--metrics", s.metrics)
		s.cmd.Stderr = os.Stderr
		if err := s.cmd.Start(); err != nil {
			return nil, nil, err
		}
	}
	c, err := rpc.Dial(rpc.ClientConfig{Addrs: addrs, Token: env["HPT_TOKEN"], ClusterKey: env["HPT_CLUSTER_KEY"]})
	if err != nil {
		return servers, nil, err
	}
	for _, s := range servers {
		if s.client, err = rpc.Dial(rpc.ClientConfig{Addrs: []string{s.addr}, Token: env["HPT_TOKEN"], ClusterKey: env["HPT_CLUSTER_KEY"]}); err != nil {
			return servers, c, err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := c.Cluster.Status(ctx, &rpc.StatusRequest{})
		cancel()
		if err == nil && st.GetLeader() != "" && len(st.GetMembers()) == 3 {
			return servers, c, nil
		}
		if time.Now().After(deadline) {
			return servers, c, fmt.Errorf("cluster not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Result is what one run measured.
type Result struct {
	Mode   string `json:"mode"`
	Agents int    `json:"agents"`
	// fanout
	ConnectSeconds      float64 `json:"connect_s,omitempty"`
	AllStartedSeconds   float64 `json:"all_started_s,omitempty"`
	AllFinishedSeconds  float64 `json:"all_finished_s,omitempty"`
	FirstStartedSeconds float64 `json:"first_started_s,omitempty"`
	NodeRSSPerAgentKiB  float64 `json:"node_rss_per_agent_kib,omitempty"`
	// NodeGoPerAgentKiB is the servers' Go heap and stacks in use (after a
	// GC) per agent: what the agents cost without allocator slack.
	NodeGoPerAgentKiB float64 `json:"node_go_inuse_per_agent_kib,omitempty"`
	// NodeStackPerAgentKiB is the stack part of NodeGoPerAgentKiB.
	NodeStackPerAgentKiB float64 `json:"node_stack_per_agent_kib,omitempty"`
	NodeRSSBeforeKiB     []int   `json:"node_rss_before_kib,omitempty"`
	NodeRSSAfterKiB      []int   `json:"node_rss_after_kib,omitempty"`
	AgentsPerNode        []int   `json:"agents_per_node,omitempty"`
	// gossip
	ServersSeeAllSeconds float64 `json:"servers_see_all_s,omitempty"`
	AgentsSeeAllSeconds  float64 `json:"agents_see_all_s,omitempty"`
}

func run(hpt, mode string, n int) error {
	dir, err := os.MkdirTemp("", "hpt-fleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	servers, c, err := startServers(hpt, dir)
	defer func() {
		for _, s := range servers {
			if s.client != nil {
				s.client.Close()
			}
			if s.cmd != nil && s.cmd.Process != nil {
				s.cmd.Process.Kill()
				s.cmd.Wait()
			}
		}
	}()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()

	// Register the targets (n events), concurrently.
	paths := make([]string, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p, err := devcluster.RegisterTarget(ctx, c, fmt.Sprintf("t%04d", i), filepath.Join(dir, "agents"), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			paths[i] = p
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}

	res := Result{Mode: mode, Agents: n}
	var goBefore goInuse
	for _, s := range servers {
		rss, err := s.rssKiB()
		if err != nil {
			return err
		}
		res.NodeRSSBeforeKiB = append(res.NodeRSSBeforeKiB, rss)
		inuse, err := goInuseKiB(s.metrics)
		if err != nil {
			return err
		}
		goBefore.add(inuse)
	}
	var nodeAddrs, gossipAddrs []string
	for _, s := range servers {
		nodeAddrs = append(nodeAddrs, s.addr)
		gossipAddrs = append(gossipAddrs, s.gossip)
	}
	quiet := slog.New(slog.DiscardHandler)
	agents := make([]*agent.Agent, n)
	start := time.Now()
	journals := filepath.Join(dir, "agents")
	if journalDir != "" {
		if journals, err = os.MkdirTemp(journalDir, "hpt-fleet-journals-"); err != nil {
			return err
		}
		defer os.RemoveAll(journals)
	}
	for i, p := range paths {
		cfg := agent.Config{Keystore: p, NoDirect: true, Logger: quiet, Journal: filepath.Join(journals, filepath.Base(p)+".journal")}
		if mode == "gossip" {
			cfg.Join = gossipAddrs
			cfg.GossipListen = "127.0.0.1:0"
		} else {
			cfg.Servers = nodeAddrs
		}
		a, err := agent.New(cfg)
		if err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
		agents[i] = a
	}
	defer func() {
		for _, a := range agents {
			if a != nil {
				a.Close()
			}
		}
	}()

	if mode == "gossip" {
		return measureGossip(ctx, &res, servers, agents, start)
	}

	// Wait until every target is connected.
	for {
		resp, err := c.Targets.List(ctx, &rpc.ListTargetsRequest{})
		if err != nil {
			return err
		}
		connected := 0
		perNode := map[string]int{}
		for _, t := range resp.GetTargets() {
			if t.GetStatus() == "connected" {
				connected++
				perNode[t.GetNode()]++
			}
		}
		if connected == n {
			res.ConnectSeconds = time.Since(start).Seconds()
			for _, s := range servers {
				res.AgentsPerNode = append(res.AgentsPerNode, perNode[s.name])
			}
			break
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("only %d of %d agents connected", connected, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Let the servers' memory settle after the connection storm, then
	// measure resident memory per connected agent.
	time.Sleep(3 * time.Second)
	total := 0
	for i, s := range servers {
		rss, err := s.rssKiB()
		if err != nil {
			return err
		}
		res.NodeRSSAfterKiB = append(res.NodeRSSAfterKiB, rss)
		total += rss - res.NodeRSSBeforeKiB[i]
	}
	res.NodeRSSPerAgentKiB = float64(total) / float64(n)
	var goAfter goInuse
	for _, s := range servers {
		inuse, err := goInuseKiB(s.metrics)
		if err != nil {
			return err
		}
		goAfter.add(inuse)
	}
	res.NodeGoPerAgentKiB = float64(goAfter.heap+goAfter.stack-goBefore.heap-goBefore.stack) / float64(n)
	res.NodeStackPerAgentKiB = float64(goAfter.stack-goBefore.stack) / float64(n)
	if heapProfile != "" {
		if err := saveProfile(servers[0].metrics, "heap?gc=1", heapProfile); err != nil {
			return err
		}
		if err := saveProfile(servers[0].metrics, "goroutine?debug=1", heapProfile+".goroutines"); err != nil {
			return err
		}
	}

	// Follow the archive from now on to time the job's starts and ends.
	st, err := c.Cluster.Status(ctx, &rpc.StatusRequest{})
	if err != nil {
		return err
	}
	var since uint64
	for _, m := range st.GetMembers() {
		since = max(since, events.IndexOf(m.GetCommitIndex(), 0))
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	stream, err := c.Events.List(fctx, &rpc.ListEventsRequest{Since: since, Follow: true,
		Types: []events.Type{events.Type_TYPE_JOB_TARGET_DISPATCHED, events.Type_TYPE_JOB_TARGET_FINISHED, events.Type_TYPE_JOB_FINISHED}})
	if err != nil {
		return err
	}
	var profiles sync.WaitGroup
	defer profiles.Wait()
	if cpuProfile != "" {
		for _, s := range servers {
			profiles.Go(func() {
				if err := saveProfile(s.metrics, "profile?seconds=3", cpuProfile+"."+s.name); err != nil {
					fmt.Fprintln(os.Stderr, "fleet: cpu profile:", err)
				}
			})
		}
	}
	submitted := time.Now()
	job, err := c.Jobs.Submit(ctx, &rpc.SubmitJobRequest{Name: "noop.toml", Config: []byte("# no blocks\n"), MaxFailures: -1})
	if err != nil {
		return err
	}
	var startedN, finishedN int
	for {
		ev, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("follow events (%d started, %d finished): %w", startedN, finishedN, err)
		}
		p, _ := ev.DecodePayload()
		switch p := p.(type) {
		case *events.JobTargetDispatched:
			if p.GetJobId() == job.GetJobId() {
				if startedN++; startedN == 1 {
					res.FirstStartedSeconds = time.Since(submitted).Seconds()
				}
				if startedN == n {
					res.AllStartedSeconds = time.Since(submitted).Seconds()
				}
			}
		case *events.JobTargetFinished:
			if p.GetJobId() == job.GetJobId() {
				finishedN++
			}
		case *events.JobFinished:
			if p.GetJobId() == job.GetJobId() {
				res.AllFinishedSeconds = time.Since(submitted).Seconds()
				if finishedN != n {
					return fmt.Errorf("job finished %s with %d of %d targets", p.GetStatus(), finishedN, n)
				}
				return json.NewEncoder(os.Stdout).Encode(res)
			}
		}
	}
}

func measureGossip(ctx context.Context, res *Result, servers []*server, agents []*agent.Agent, start time.Time) error {
	n := len(agents)
	want := n + len(servers)
	deadline := start.Add(3 * time.Minute)
	for res.ServersSeeAllSeconds == 0 || res.AgentsSeeAllSeconds == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("gossip did not converge: %+v", res)
		}
		if res.AgentsSeeAllSeconds == 0 {
			all := true
			for _, a := range agents {
				if a.GossipMembers() < want {
					all = false
					break
				}
			}
			if all {
				res.AgentsSeeAllSeconds = time.Since(start).Seconds()
			}
		}
		if res.ServersSeeAllSeconds == 0 {
			// Each server answers with its own gossip view.
			all := true
			for _, s := range servers {
				resp, err := s.client.Targets.List(ctx, &rpc.ListTargetsRequest{})
				if err != nil {
					return err
				}
				alive := 0
				for _, t := range resp.GetTargets() {
					if t.GetGossip() == "alive" {
						alive++
					}
				}
				all = all && alive == n
			}
			if all {
				res.ServersSeeAllSeconds = time.Since(start).Seconds()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// saveProfile saves one of a server's pprof profiles.
func saveProfile(addr, profile, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + profile)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// goInuse is Go memory in use, in KiB.
type goInuse struct{ heap, stack int }

func (g *goInuse) add(o goInuse) { g.heap += o.heap; g.stack += o.stack }

// goInuseKiB collects garbage on a server (through its profiler) and reads
// its Go heap and stack in use from /metrics.
func goInuseKiB(addr string) (goInuse, error) {
	for range gcRounds {
		resp, err := http.Get("http://" + addr + "/debug/pprof/heap?gc=1")
		if err != nil {
			return goInuse{}, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return goInuse{}, err
	}
	defer resp.Body.Close()
	var heap, stack float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		var into *float64
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			into = &heap
		case "go_memstats_stack_inuse_bytes":
			into = &stack
		default:
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			return goInuse{}, err
		}
		*into = v
	}
	return goInuse{heap: int(heap / 1024), stack: int(stack / 1024)}, sc.Err()
}
