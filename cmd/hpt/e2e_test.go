package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/internal/testenv"
)

// hptBin is the binary under test, built once by TestMain.
var hptBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hpt-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hptBin = filepath.Join(dir, "hpt")
	build := exec.Command("go", "build", "-o", hptBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hpt:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a process environment for the CLI, isolated from the user's.
type env map[string]string

func (e env) list() []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e["HOME"]}
	for k, v := range e {
		if k != "HOME" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

type result struct {
	stdout, stderr string
	code           int
}

func hpt(t *testing.T, e env, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hptBin, args...)
	cmd.Env = e.list()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("hpt %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func mustHPT(t *testing.T, e env, args ...string) string {
	t.Helper()
	r := hpt(t, e, args...)
	if r.code != 0 {
		t.Fatalf("hpt %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is one `hpt server` process.
type server struct {
	name, dataDir, addr, gossip string
	args                        []string
	cmd                         *exec.Cmd
	log                         *os.File
}

func (s *server) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(hptBin, s.args...)
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (s *server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.cmd.Wait()
	}
}

// startServers inits a cluster keystore and starts n server processes,
// each with the extra flags.
func startServers(t *testing.T, n int, extra ...string) (env, []*server) {
	t.Helper()
	dir := t.TempDir()
	e := env{"HOME": dir}
	r := hpt(t, e, "init", "--out", filepath.Join(dir, "keys"))
	if r.code != 0 {
		t.Fatalf("init: %s", r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		kv := strings.TrimPrefix(line, "export ")
		k, v, _ := strings.Cut(kv, "=")
		e[k] = v
	}
	var servers []*server
	var addrs []string
	for i := range n {
		s := &server{name: fmt.Sprintf("n%d", i+1), dataDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		s.gossip = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		addrs = append(addrs, s.addr)
		servers = append(servers, s)
	}
	for _, s := range servers {
		s.args = []string{"server", "--name", s.name, "--keystore", filepath.Join(dir, "keys", clusterKeystoreName),
			"--data-dir", s.dataDir, "--listen", s.addr, "--gossip", s.gossip, "--join", servers[0].gossip,
			"--bootstrap-expect", fmt.Sprint(n), "--log-level", "warn"}
		s.args = append(s.args, extra...)
		var err error
		if s.log, err = os.Create(filepath.Join(dir, s.name+".log")); err != nil {
			t.Fatal(err)
		}
		s.start(t)
		t.Cleanup(func() {
			s.kill()
			s.log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(s.log.Name())
				t.Logf("%s log:\n%s", s.name, b)
			}
		})
	}
	e["HPT_ADDR"] = strings.Join(addrs, ",")
	waitFor(t, 30*time.Second, func() error {
		r := hpt(t, e, "cluster", "status", "-o", "json")
		if r.code != 0 {
			return fmt.Errorf("status: %s", r.stderr)
		}
		var st statusJSON
		json.Unmarshal([]byte(r.stdout), &st)
		if st.Leader == "" || len(st.Members) != n {
			return fmt.Errorf("status: %s", r.stdout)
		}
		return nil
	})
	return e, servers
}

// waitFor polls cond until it holds or the timeout passes.
var waitFor = testenv.Eventually

func TestInitPrintsExactlyTheExports(t *testing.T) {
	dir := t.TempDir()
	r := hpt(t, env{"HOME": dir}, "init", "--out", dir)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 ||
		!regexp.MustCompile(`^export HPT_TOKEN=sk_[0-9A-Za-z]{44}$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^export HPT_CLUSTER_KEY=SHA256:[A-Za-z0-9+/]{43}$`).MatchString(lines[1]) {
		t.Fatalf("init stdout = %q (exit %d, stderr %s)", r.stdout, r.code, r.stderr)
	}
	st, err := os.Stat(filepath.Join(dir, clusterKeystoreName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keystore: %v, mode %v", err, st.Mode())
	}
	token := strings.TrimPrefix(lines[0], "export HPT_TOKEN=")
	if strings.Contains(r.stderr, token) {
		t.Fatal("the token is repeated on stderr")
	}
	// Under eval nobody sees stdout: the token is in a file too, readable
	// by its owner only, and stderr says where (and no longer "above").
	tokenPath := filepath.Join(dir, adminTokenName)
	st, err = os.Stat(tokenPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v", err, st.Mode())
	}
	if b, err := os.ReadFile(tokenPath); err != nil || string(b) != token+"\n" {
		t.Fatalf("admin token file holds %q (%v), want the token printed", b, err)
	}
	if !strings.Contains(r.stderr, tokenPath) || strings.Contains(r.stderr, "above") {
		t.Fatalf("init stderr does not say where the token is: %s", r.stderr)
	}
	// A second init in the same directory changes neither file.
	if r := hpt(t, env{"HOME": dir}, "init", "--out", dir); r.code != exitFailure {
		t.Fatalf("second init: exit %d, %s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(tokenPath); string(b) != token+"\n" {
		t.Fatalf("a second init overwrote the token file: %q", b)
	}
}

func TestClusterOfProcesses(t *testing.T) {
	e, servers := startServers(t, 3)

	// A write through one node is readable through another.
	one := env{"HOME": e["HOME"], "HPT_TOKEN": e["HPT_TOKEN"], "HPT_CLUSTER_KEY": e["HPT_CLUSTER_KEY"], "HPT_ADDR": servers[1].addr}
	mustHPT(t, one, "users", "add", "alice@example.com")
	two := env{"HOME": e["HOME"], "HPT_TOKEN": e["HPT_TOKEN"], "HPT_CLUSTER_KEY": e["HPT_CLUSTER_KEY"], "HPT_ADDR": servers[2].addr}
	waitFor(t, 10*time.Second, func() error {
		if out := mustHPT(t, two, "users", "list", "-o", "json"); !strings.Contains(out, `"alice@example.com"`) {
			return fmt.Errorf("users on n3: %s", out)
		}
		return nil
	})
	evs := mustHPT(t, e, "events", "--type", "user_added", "-o", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(evs), &list); err != nil || len(list) != 1 || list[0]["actor"] != "user:admin" {
		t.Fatalf("events: %v %s", err, evs)
	}

	// SIGKILL the leader: writes go on, nothing acknowledged is lost.
	var st statusJSON
	json.Unmarshal([]byte(mustHPT(t, e, "cluster", "status", "-o", "json")), &st)
	var leader *server
	for _, s := range servers {
		if s.name == st.Leader {
			leader = s
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is none of the servers", st.Leader)
	}
	leader.kill()
	for i := range 5 {
		mustHPT(t, e, "machines", "add", fmt.Sprintf("m%d", i))
	}
	leader.start(t)
	restarted := env{"HOME": e["HOME"], "HPT_TOKEN": e["HPT_TOKEN"], "HPT_CLUSTER_KEY": e["HPT_CLUSTER_KEY"], "HPT_ADDR": leader.addr}
	waitFor(t, 30*time.Second, func() error {
		r := hpt(t, restarted, "machines", "list", "-o", "json")
		if r.code != 0 || strings.Count(r.stdout, `"kind": "machine"`) != 5 {
			return fmt.Errorf("machines on restarted %s: %s %s", leader.name, r.stdout, r.stderr)
		}
		return nil
	})

	// A client pinning another cluster key is refused, naming the key.
	other := env{"HOME": e["HOME"], "HPT_TOKEN": e["HPT_TOKEN"], "HPT_ADDR": e["HPT_ADDR"],
		"HPT_CLUSTER_KEY": "SHA256:" + strings.Repeat("A", 43)}
	r := hpt(t, other, "users", "list")
	if r.code != 1 || !strings.Contains(r.stderr, e["HPT_CLUSTER_KEY"]) {
		t.Fatalf("wrong pin: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestExitCodes(t *testing.T) {
	e := env{"HOME": t.TempDir()}
	if r := hpt(t, e, "users", "list", "--bogus"); r.code != exitUsage {
		t.Errorf("unknown flag: exit %d", r.code)
	}
	if r := hpt(t, e, "users", "list"); r.code != exitUsage || !strings.Contains(r.stderr, "HPT_ADDR") {
		t.Errorf("no address: exit %d, %q", r.code, r.stderr)
	}
	if r := hpt(t, e, "--target", "x", "c.toml"); r.code != exitUsage || !strings.Contains(r.stderr, "--ip") {
		t.Errorf("--target without --ip: exit %d, %q", r.code, r.stderr)
	}
}

// TestDirectProvisioning runs the seed's workflow with real processes:
// gen-target-keys, hpt serve --port 0, hpt --target --ip FILE.toml, and the
// refusal of a client whose key the target does not trust.
func TestDirectProvisioning(t *testing.T) {
	dir := t.TempDir()
	e := env{"HOME": dir, "HPT_KEYSTORE": filepath.Join(dir, "client.db")}
	mustHPT(t, e, "gen-target-keys", "--target", "web-1", "--out", filepath.Join(dir, "web-1.db"))
	if out := mustHPT(t, e, "list-target-keys", "-o", "json"); !strings.Contains(out, `"name": "web-1"`) {
		t.Fatalf("list-target-keys: %s", out)
	}
	line := startServe(t, exec.Command(hptBin, "serve", "--keystore", filepath.Join(dir, "web-1.db"), "--port", "0", "--bind", "127.0.0.1", "--labels", "role=web"))
	m := regexp.MustCompile(`listening on 127\.0\.0\.1:(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("serve printed %q", line)
	}
	port := m[1]

	target := filepath.Join(dir, "out.txt")
	cfg := filepath.Join(dir, "c.toml")
	os.WriteFile(cfg, []byte("[[file]]\npath = \""+target+"\"\ntemplate = true\ncontent = \"{{ .Target.Name }} {{ .Target.Labels.role }}\"\n"), 0o644)
	out := mustHPT(t, e, "--target", "web-1", "--ip", "127.0.0.1", "--port", port, cfg)
	if !strings.Contains(out, "changed  file "+target) || !strings.Contains(out, "changed=1") {
		t.Fatalf("first apply:\n%s", out)
	}
	if b, _ := os.ReadFile(target); string(b) != "web-1 web" {
		t.Fatalf("applied content %q", b)
	}
	if out := mustHPT(t, e, "--target", "web-1", "--ip", "127.0.0.1", "--port", port, cfg); !strings.Contains(out, "ok=1 changed=0") {
		t.Fatalf("second apply is not idempotent:\n%s", out)
	}

	// Another client keystore, which holds web-1's key but whose own key the
	// target does not trust.
	other := env{"HOME": dir, "HPT_KEYSTORE": filepath.Join(dir, "other.db")}
	mustHPT(t, other, "gen-target-keys", "--target", "decoy", "--out", filepath.Join(dir, "decoy.db"))
	os.Remove(target)
	r := hpt(t, other, "--target", "decoy", "--ip", "127.0.0.1", "--port", port, cfg)
	if r.code != exitFailure || !strings.Contains(r.stderr, "key decoy") && !strings.Contains(r.stderr, "target decoy key") {
		t.Fatalf("target with another key: exit %d, %s", r.code, r.stderr)
	}
	if _, err := os.Stat(target); err == nil {
		t.Fatal("a refused client provisioned the target")
	}
}

// startServe starts an `hpt serve` command, stopped when the test ends, and
// returns the first line it prints (its address and key).
func startServe(t *testing.T, serve *exec.Cmd) string {
	t.Helper()
	serve.Env = []string{"PATH=" + os.Getenv("PATH")}
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	return line
}

// agentProc is one `hpt serve` process.
type agentProc struct {
	args []string
	cmd  *exec.Cmd
	log  *os.File
}

func (p *agentProc) start(t *testing.T) {
	t.Helper()
	p.cmd = exec.Command(hptBin, p.args...)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (p *agentProc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// startAgentProc enrolls target name with the cluster (gen-target-keys
// against it) and starts its agent process.
func startAgentProc(t *testing.T, e env, name, labels string) *agentProc {
	t.Helper()
	dir := t.TempDir()
	ks := filepath.Join(dir, name+".db")
	mustHPT(t, e, "gen-target-keys", "--target", name, "--out", ks, "--labels", labels)
	log, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	p := &agentProc{log: log, args: []string{"serve", "--keystore", ks, "--port", "0", "--bind", "127.0.0.1",
		"--gossip", "127.0.0.1:0", "--labels", labels, "--log-level", "info"}}
	p.start(t)
	t.Cleanup(func() {
		p.kill()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("agent %s log:\n%s", name, b)
		}
	})
	return p
}

func waitTargets(t *testing.T, e env, want int) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		var ts []targetJSON
		json.Unmarshal([]byte(mustHPT(t, e, "targets", "list", "-o", "json")), &ts)
		n := 0
		for _, tg := range ts {
			if tg.Status == "connected" && tg.Gossip == "alive" {
				n++
			}
		}
		if n != want {
			return fmt.Errorf("%d of %d targets connected and alive in gossip: %v", n, want, ts)
		}
		return nil
	})
}

// TestFleetProcesses runs jobs on agent processes joined by gossip to
// server processes, and kills an agent in the middle of a run.
func TestFleetProcesses(t *testing.T) {
	e, _ := startServers(t, 3)
	web1 := startAgentProc(t, e, "web-1", "role=web")
	startAgentProc(t, e, "web-2", "role=web")
	startAgentProc(t, e, "db-1", "role=db")
	waitTargets(t, e, 3)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "count.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[[exec]]\nscript = \"echo run >> %s/{{ .Target.Name }}.runs\"\n", dir)), 0o644)
	r := hpt(t, e, "job", "run", cfg, "--selector", "role=web", "--batch", "1", "-o", "json")
	var job jobJSON
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || r.code != 0 {
		t.Fatalf("job run: exit %d, %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if job.Status != "done" || len(job.Targets) != 2 || job.Totals["changed"] != 2 {
		t.Fatalf("job %+v", job)
	}
	for _, name := range []string{"web-1", "web-2"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name+".runs")); string(b) != "run\n" {
			t.Errorf("%s runs file %q", name, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "db-1.runs")); err == nil {
		t.Error("db-1 ran a job for role=web")
	}

	// SIGKILL an agent in the middle of a run; restarted, it reports the run
	// as interrupted instead of running it again.
	slow := filepath.Join(dir, "slow.toml")
	os.WriteFile(slow, []byte(fmt.Sprintf("[[exec]]\nscript = \"echo run >> %s/slow.runs; sleep 5\"\n", dir)), 0o644)
	id := strings.TrimSpace(mustHPT(t, e, "job", "run", slow, "--targets", "web-1", "--detach"))
	waitFor(t, 20*time.Second, func() error {
		if b, _ := os.ReadFile(filepath.Join(dir, "slow.runs")); len(b) == 0 {
			return fmt.Errorf("slow job not started")
		}
		return nil
	})
	web1.kill()
	web1.start(t)
	var st jobJSON
	waitFor(t, 60*time.Second, func() error {
		// Exit 1 once the target has failed; the JSON is printed either way.
		json.Unmarshal([]byte(hpt(t, e, "job", "status", id, "-o", "json").stdout), &st)
		if st.Status == "running" {
			return fmt.Errorf("job still running: %+v", st.Totals)
		}
		return nil
	})
	if len(st.Targets) != 1 || st.Targets[0].Status != "failed" || !strings.Contains(st.Targets[0].Error, "not run again") {
		t.Fatalf("interrupted job: %+v", st)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "slow.runs")); string(b) != "run\n" {
		t.Fatalf("the interrupted job ran %q", b)
	}
	// Exit code 1 for a failed target, with the recap on stdout.
	r = hpt(t, e, "job", "status", id)
	if r.code != exitFailure || !strings.Contains(r.stdout, "RECAP") {
		t.Fatalf("job status: exit %d\n%s", r.code, r.stdout)
	}
}
