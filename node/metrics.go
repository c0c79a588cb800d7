package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startMetrics serves Prometheus metrics (/metrics) and Go's profiler
// (/debug/pprof/) on cfg.MetricsListen, a plain-HTTP address meant for
// loopback or a monitoring network: it carries no secrets and needs no
// token, so do not expose it further.
func (n *Node) startMetrics() error {
	if n.cfg.MetricsListen == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		n.metricsCollector(),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", n.serveHealth)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", n.cfg.MetricsListen)
	if err != nil {
		return err
	}
	n.metricsAddr = ln.Addr().String()
	n.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}

// serveHealth answers 200 while the node is part of a cluster with a
// leader and a state it may serve from, 503 otherwise (no leader, or still
// catching up after a crash: freshness.go): what a load balancer or a
// container health check should ask. It says nothing about lag beyond
// that; watch hpt_apply_lag for it.
func (n *Node) serveHealth(w http.ResponseWriter, _ *http.Request) {
	if !n.isFresh() {
		http.Error(w, fmt.Sprintf("catching up after a restart: applied %d, needs %d", n.fsm.AppliedIndex(), n.fresh.floor.Load()), http.StatusServiceUnavailable)
		return
	}
	leader, _ := n.Leader()
	state := n.raft.State()
	if leader == "" || (state != raft.Leader && state != raft.Follower) {
		http.Error(w, fmt.Sprintf("%s, no leader", stateName(state)), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %s, leader %s\n", stateName(state), leader)
}

// MetricsAddr is the address of the metrics listener ("" if off).
func (n *Node) MetricsAddr() string { return n.metricsAddr }

// nodeCollector reads the node's figures at scrape time, so nothing on the
// write path pays for metrics.
type nodeCollector struct {
	n                                              *Node
	raftState, applied, commit, last, agents, term *prometheus.Desc
	leader, lag                                    *prometheus.Desc
	exportLag, exported, exportConnected           *prometheus.Desc
	eventsApplied, targetResults, jobsFinished     *prometheus.Desc
	handshakesRefused, handshakesPending           *prometheus.Desc
}

func (n *Node) metricsCollector() prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("hpt_"+name, help, labels, nil)
	}
	return &nodeCollector{
		n:         n,
		raftState: d("raft_state", "1 for the node's current Raft state.", "state"),
		leader:    d("raft_leader", "1 if this node is the leader."),
		term:      d("raft_term", "Current Raft term."),
		applied:   d("applied_index", "Last log index applied to the state."),
		commit:    d("commit_index", "Last log index known committed."),
		last:      d("last_index", "Last log index in the local Raft log."),
		lag:       d("apply_lag", "Committed entries not yet applied to the state."),
		agents:    d("agents_connected", "Agent streams connected to this node."),

		exportLag:       d("export_lag", "Applied log entries not yet known to be in the NATS stream (leader only)."),
		exported:        d("export_index", "Highest event index known to be in the NATS stream."),
		exportConnected: d("export_connected", "1 if the exporter holds a NATS connection (leader only)."),

		eventsApplied: d("events_applied_total", "Events applied to the state by this process, by type.", "type"),
		targetResults: d("job_target_results_total", "Per-target job results applied by this process, by status.", "status"),
		jobsFinished:  d("jobs_finished_total", "Jobs finished, applied by this process, by status.", "status"),

		handshakesRefused: d("handshakes_refused_total", "TLS handshakes refused on the node's port, by reason.", "reason"),
		handshakesPending: d("handshakes_pending", "Connections on the node's port still in their TLS handshake."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.raftState, c.leader, c.term, c.applied, c.commit, c.last, c.lag, c.agents,
		c.exportLag, c.exported, c.exportConnected, c.eventsApplied, c.targetResults, c.jobsFinished,
		c.handshakesRefused, c.handshakesPending} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	state := n.raft.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.raftState, prometheus.GaugeValue, v, stateName(s))
	}
	leader := 0.0
	if state == raft.Leader {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, leader)
	if t, err := parseUint(n.raft.Stats()["term"]); err == nil {
		ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(t))
	}
	applied, commit := n.fsm.AppliedIndex(), n.raft.CommitIndex()
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(applied))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(commit))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(n.raft.LastIndex()))
	lag := 0.0
	if commit > applied {
		lag = float64(commit - applied)
	}
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(n.fleet.count()))
	hs := n.mux.handshakes()
	ch <- prometheus.MustNewConstMetric(c.handshakesPending, prometheus.GaugeValue, float64(hs.Pending))
	for reason, v := range hs.Refused {
		ch <- prometheus.MustNewConstMetric(c.handshakesRefused, prometheus.CounterValue, float64(v), reason)
	}
	counts := n.fsm.Counts()
	for _, m := range []struct {
		desc *prometheus.Desc
		by   map[string]uint64
	}{{c.eventsApplied, counts.Events}, {c.targetResults, counts.TargetResults}, {c.jobsFinished, counts.Jobs}} {
		for label, v := range m.by {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(v), label)
		}
	}
	if n.exporter != nil {
		s := n.exporter.Status()
		ch <- prometheus.MustNewConstMetric(c.exported, prometheus.GaugeValue, float64(s.Exported))
		if s.Running {
			connected := 0.0
			if s.Connected {
				connected = 1
			}
			ch <- prometheus.MustNewConstMetric(c.exportLag, prometheus.GaugeValue, float64(s.Lag))
			ch <- prometheus.MustNewConstMetric(c.exportConnected, prometheus.GaugeValue, connected)
		}
	}
}
