package export

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/node/export/exporttest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// natsServer is a real nats-server with JetStream in this process.
type natsServer = exporttest.Server

func startNATS(t *testing.T) *natsServer { return exporttest.Start(t) }

// jsOf returns a JetStream client of the test's own and its closer.
func jsOf(t *testing.T, n *natsServer) (jetstream.JetStream, func()) {
	t.Helper()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	return js, nc.Close
}

// history generates one log of committed entries and applies it to every
// replica, as Raft would: valid events, commands the state machine rejects
// (no event, a gap in the archive), and entries without an event (Raft
// configuration changes).
type history struct {
	t        *testing.T
	replicas []*fsm.FSM
	next     uint64 // last index applied
	seq      int
	lastUser int
}

func newHistory(t *testing.T, replicas int) *history {
	t.Helper()
	h := &history{t: t}
	for range replicas {
		f, err := fsm.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		h.replicas = append(h.replicas, f)
	}
	return h
}

// add commits n more entries in batches.
func (h *history) add(n int) {
	h.t.Helper()
	for n > 0 {
		k := min(n, 25)
		entries := make([]fsm.Entry, 0, k)
		rejected := make([]bool, 0, k)
		for range k {
			e, rej := h.entry()
			entries = append(entries, e)
			rejected = append(rejected, rej)
		}
		h.apply(entries, rejected)
		n -= k
	}
}

// reject commits one command that the state machine rejects.
func (h *history) reject() {
	h.t.Helper()
	h.next++
	h.apply([]fsm.Entry{h.encode(&events.UserRemoved{Name: "nobody"}, "user:admin")}, []bool{true})
}

func (h *history) apply(entries []fsm.Entry, rejected []bool) {
	h.t.Helper()
	for _, f := range h.replicas {
		res := f.ApplyBatch(entries)
		for i, r := range res {
			if got := len(r) == 1 && r[0].Rejected != nil; got != rejected[i] {
				h.t.Fatalf("entry %d: results %+v, want rejected = %v", entries[i].Index, r, rejected[i])
			}
		}
	}
}

func (h *history) entry() (fsm.Entry, bool) {
	h.next++
	h.seq++
	i := h.seq
	actor := "user:admin"
	if i%4 == 0 {
		actor = "node:n1"
	}
	var p proto.Message
	switch {
	case i%11 == 0:
		return fsm.Entry{Index: h.next}, false // a Raft configuration change
	case i%7 == 0:
		return h.encode(&events.UserRemoved{Name: "nobody"}, actor), true
	case i%5 == 0:
		p = &events.TokenCreated{Id: fmt.Sprintf("tok%09d", i), SecretSha256: sha(i), Subject: "user:u" + strconv.Itoa(h.lastUser)}
	case i%3 == 0:
		p = &events.MachineAdded{Name: fmt.Sprintf("m%d", i), Description: "runner"}
	case i%2 == 0:
		p = &events.GroupAdded{Name: fmt.Sprintf("g%d", i)}
	default:
		p = &events.UserAdded{Name: fmt.Sprintf("u%d", i), Email: fmt.Sprintf("u%d@example.com", i)}
		h.lastUser = i
	}
	return h.encode(p, actor), false
}

func (h *history) encode(p proto.Message, actor string) fsm.Entry {
	h.t.Helper()
	ev, err := events.New(actor, fmt.Sprintf("req-%d", h.next), t0.Add(time.Duration(h.next)*time.Millisecond), p)
	if err != nil {
		h.t.Fatal(err)
	}
	b, err := events.Encode(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	if b, err = events.EncodeBatch([][]byte{b}); err != nil {
		h.t.Fatal(err)
	}
	return fsm.Entry{Index: h.next, Data: b}
}

func sha(i int) []byte {
	s := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return s[:]
}

// watchedSource records whether the exporter publishes while it holds a
// read of the state open: FSM.Events holds the lock that Restore (on the
// FSM goroutine) waits for, so a read held across a NATS call would stall
// the state machine.
type watchedSource struct {
	*fsm.FSM
	reading atomic.Int32
}

func (w *watchedSource) Events(since uint64, fn func(*events.Event) bool) error {
	w.reading.Add(1)
	defer w.reading.Add(-1)
	return w.FSM.Events(since, fn)
}

// inRead reports whether a read of the state is open right now.
func (w *watchedSource) inRead() bool { return w.reading.Load() > 0 }

// archived returns every archived event of f in order.
func archived(t *testing.T, f *fsm.FSM) []*events.Event {
	t.Helper()
	var out []*events.Event
	if err := f.Events(0, func(ev *events.Event) bool { out = append(out, ev); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// newExporter returns an exporter for tests: fast retries and reconnects.
func newExporter(t *testing.T, n *natsServer, src Source, format string) *Exporter {
	t.Helper()
	e, err := New(Config{
		URL:    n.URL(),
		Format: format,
		Options: []nats.Option{
			nats.ReconnectWait(20 * time.Millisecond),
			nats.ReconnectJitter(10*time.Millisecond, 10*time.Millisecond),
		},
	}, src)
	if err != nil {
		t.Fatal(err)
	}
	e.backoffMin = 10 * time.Millisecond
	e.backoffMax = 200 * time.Millisecond
	e.requestTimeout = 2 * time.Second
	e.ackTimeout = 2 * time.Second
	return e
}

// running is an Exporter's Run in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, e *Exporter) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return, bounded.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wait(t)
}

func (r *running) wait(t *testing.T) {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context ending")
	}
}

// waitFor polls cond until it returns nil or the time is up.
var waitFor = testenv.Eventually

// waitCaughtUp waits until e reports every archived event of src exported.
func waitCaughtUp(t *testing.T, e *Exporter, src *fsm.FSM) {
	t.Helper()
	evs := archived(t, src)
	last := evs[len(evs)-1].GetIndex()
	waitFor(t, 15*time.Second, func() error {
		if s := e.Status(); s.Exported != last || s.Lag != 0 || !s.Connected || s.LastError != "" {
			return fmt.Errorf("status %+v, want exported %d, lag 0 (applied %d), connected", s, last, src.AppliedIndex())
		}
		return nil
	})
}

// readStream returns every message in the stream, in stream order.
func readStream(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs > 0 && (info.State.FirstSeq != 1 || info.State.LastSeq != info.State.Msgs) {
		t.Errorf("stream holds sequences %d..%d with %d messages: want 1..n without holes", info.State.FirstSeq, info.State.LastSeq, info.State.Msgs)
	}
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < info.State.Msgs {
		batch, err := c.Fetch(min(int(info.State.Msgs)-len(out), 500), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := len(out)
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if len(out) == n {
			t.Fatalf("read %d of %d messages, then nothing", n, info.State.Msgs)
		}
	}
	return out
}

// checkStream asserts that the stream holds every archived event of src
// exactly once, in index order, with the right subject, headers and body.
func checkStream(t *testing.T, n *natsServer, src *fsm.FSM, format string) {
	t.Helper()
	want := archived(t, src)
	js, closeJS := jsOf(t, n)
	got := readStream(t, js, DefaultStream)
	closeJS()
	if len(got) != len(want) {
		ids := make([]string, 0, len(got))
		for _, m := range got {
			ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
		}
		t.Fatalf("stream holds %d messages, want %d (one per archived event); ids %v", len(got), len(want), ids)
	}
	for i, ev := range want {
		checkMessage(t, got[i], ev, format)
		if t.Failed() {
			t.FailNow()
		}
	}
}

func checkMessage(t *testing.T, m jetstream.Msg, ev *events.Event, format string) {
	t.Helper()
	idx := ev.GetIndex()
	h := m.Headers()
	if id := h.Get(jetstream.MsgIDHeader); id != strconv.FormatUint(idx, 10) {
		t.Errorf("message %s: want event %d", id, idx)
		return
	}
	name := events.Name(ev.GetType())
	if want := "hpt.events." + name; m.Subject() != want {
		t.Errorf("event %d: subject %q, want %q", idx, m.Subject(), want)
	}
	if h.Get(HeaderType) != name || h.Get(HeaderActor) != ev.GetActor() || h.Get(HeaderTime) != ev.Time().Format(time.RFC3339Nano) {
		t.Errorf("event %d: headers %v, want type %s, actor %s, time %s", idx, h, name, ev.GetActor(), ev.Time().Format(time.RFC3339Nano))
	}
	switch format {
	case FormatJSON:
		j, err := events.ToJSON(ev)
		if err != nil {
			t.Fatal(err)
		}
		var got events.JSON
		if err := jsonUnmarshalStrict(m.Data(), &got); err != nil {
			t.Errorf("event %d: body %s: %v", idx, m.Data(), err)
			return
		}
		if got.Index != j.Index || !got.Time.Equal(j.Time) || got.Actor != j.Actor || got.Type != j.Type ||
			got.RequestID != j.RequestID || string(got.Payload) != string(j.Payload) {
			t.Errorf("event %d: body %s, want %+v", idx, m.Data(), j)
		}
		if h.Get(HeaderContentType) != "application/json" {
			t.Errorf("event %d: content type %q", idx, h.Get(HeaderContentType))
		}
	case FormatProtobuf:
		got, err := events.Decode(m.Data())
		if err != nil {
			t.Errorf("event %d: body does not decode: %v", idx, err)
			return
		}
		want := proto.CloneOf(ev)
		if tc, ok := mustPayload(t, ev).(*events.TokenCreated); ok {
			// The secret's hash is not exported.
			gp := mustPayload(t, got).(*events.TokenCreated)
			if len(gp.GetSecretSha256()) != 0 {
				t.Errorf("event %d: token secret hash exported", idx)
			}
			tc.SecretSha256 = nil
			if !proto.Equal(gp, tc) {
				t.Errorf("event %d: payload %v, want %v", idx, gp, tc)
			}
			want.Payload, got.Payload = nil, nil
		}
		if !proto.Equal(got, want) {
			t.Errorf("event %d: body %v, want %v", idx, got, want)
		}
	}
}

func mustPayload(t *testing.T, ev *events.Event) proto.Message {
	t.Helper()
	p, err := ev.DecodePayload()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// exporterGoroutines lists goroutines running exporter or nats.go code.
func exporterGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "nats-io/nats.go") || strings.Contains(g, "export.(*Exporter)") {
			out = append(out, g)
		}
	}
	return out
}
