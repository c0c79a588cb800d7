package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/export"
	"github.com/hpt-dev/hpt/node/export/exporttest"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// documentedMetrics reads the metric table of docs/operations.md and
// returns each hpt_ family it documents with its type.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| (`hpt_[^|]*)\\| (gauge|counter) \\|")
	name := regexp.MustCompile("`(hpt_[a-z_]+)")
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := row.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			out[n[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metrics in docs/operations.md's table: %v", len(out), out)
	}
	return out
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// exposedFamilies returns the families of a /metrics page with their
// types, and the number of samples of each.
func exposedFamilies(text string) (types map[string]string, samples map[string]int) {
	types, samples = map[string]string{}, map[string]int{}
	for _, line := range strings.Split(text, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			types[name] = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		samples[name]++
	}
	return types, samples
}

// TestEveryDocumentedMetricIsExposed: a leader with an exporter that has
// run a job shows every metric family docs/operations.md lists, with the
// documented type and at least one sample.
func TestEveryDocumentedMetricIsExposed(t *testing.T) {
	js := exporttest.Start(t)
	c := nodetest.Start(t, 1, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.MetricsListen = "127.0.0.1:0"
		cfg.Export = &export.Config{URL: js.URL()}
	}})
	c.StartAgent("a1", nodetest.AgentOptions{})
	c.WaitConnected("a1")
	cl := c.Client(0)
	resp := submit(t, cl, &rpc.SubmitJobRequest{Config: countingConfig(t.TempDir(), 0, false), Targets: "a1", MaxFailures: -1})
	if info := waitJob(t, c, cl, resp.GetJobId(), 30*time.Second); info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
		t.Fatalf("job %s: %v", info.GetStatus(), targetStatuses(info))
	}
	want := documentedMetrics(t)
	url := "http://" + c.Node(0).MetricsAddr() + "/metrics"
	var text string
	// The exporter connects to NATS on its own time; wait for it rather
	// than for a fixed moment.
	c.Eventually(20*time.Second, func() error {
		code, body := get(t, url)
		if code != http.StatusOK {
			return fmt.Errorf("/metrics: %d", code)
		}
		text = body
		types, samples := exposedFamilies(body)
		var missing []string
		for name, typ := range want {
			if types[name] != typ || samples[name] == 0 {
				missing = append(missing, fmt.Sprintf("%s (%s, want %s with samples; %d samples)", name, types[name], typ, samples[name]))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("/metrics lacks %v", missing)
		}
		return nil
	})
	for _, s := range []string{`hpt_jobs_finished_total{status="done"} 1`, `hpt_export_connected 1`, `hpt_agents_connected 1`} {
		if !strings.Contains(text, s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

// TestHealthzWithoutQuorum: /healthz answers 200 on a follower of a
// healthy cluster and 503 once the node has lost its quorum.
func TestHealthzWithoutQuorum(t *testing.T) {
	c := nodetest.Start(t, 3, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.MetricsListen = "127.0.0.1:0"
	}})
	f := follower(c)
	url := "http://" + c.Node(f).MetricsAddr() + "/healthz"
	if code, body := get(t, url); code != http.StatusOK || !strings.HasPrefix(body, "ok: follower, leader ") {
		t.Fatalf("/healthz of a follower: %d %q", code, body)
	}
	for i := range c.Len() {
		if i != f {
			c.Kill(i)
		}
	}
	// The node notices the lost leader after its election timeout.
	c.Eventually(30*time.Second, func() error {
		code, body := get(t, url)
		if code != http.StatusServiceUnavailable {
			return fmt.Errorf("/healthz without quorum: %d %q", code, body)
		}
		if !strings.Contains(body, "no leader") {
			return fmt.Errorf("/healthz 503 body %q does not say why", body)
		}
		return nil
	})
}
