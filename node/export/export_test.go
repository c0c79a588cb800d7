package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpt-dev/hpt/events"
)

func jsonUnmarshalStrict(b []byte, v *events.JSON) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(fields))
	if want := []string{"actor", "index", "payload", "request_id", "time", "type"}; !slices.Equal(keys, want) {
		return fmt.Errorf("fields %v, want %v", keys, want)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func TestExportEverythingOnceInOrder(t *testing.T) {
	for _, format := range []string{FormatJSON, FormatProtobuf} {
		t.Run(format, func(t *testing.T) {
			n := startNATS(t)
			h := newHistory(t, 1)
			src := h.replicas[0]
			h.add(200)
			h.reject() // the applied index ends past the last event

			e := newExporter(t, n, src, format)
			if s := e.Status(); s.Exported != 0 || s.Lag != src.AppliedIndex() || s.Connected {
				t.Fatalf("status before Run = %+v, want nothing exported, lag %d", s, src.AppliedIndex())
			}
			r := start(t, e)
			waitCaughtUp(t, e, src)
			checkStream(t, n, src, format)

			// Live: events applied while Run waits are exported too.
			h.add(60)
			h.reject()
			waitCaughtUp(t, e, src)
			checkStream(t, n, src, format)
			if d := e.duplicates.Load(); d != 0 {
				t.Errorf("%d duplicate acks, want 0", d)
			}

			r.stop(t)
			if s := e.Status(); s.Connected {
				t.Errorf("status after Run returned = %+v, want not connected", s)
			}
			waitFor(t, 5*time.Second, func() error {
				if g := exporterGoroutines(); len(g) > 0 {
					return fmt.Errorf("%d goroutines left after Run returned:\n%s", len(g), strings.Join(g, "\n\n"))
				}
				return nil
			})

			// A later Run starts where the stream ends: nothing is sent twice.
			h.add(30)
			r = start(t, e)
			waitCaughtUp(t, e, src)
			checkStream(t, n, src, format)
			if d := e.duplicates.Load(); d != 0 {
				t.Errorf("%d duplicate acks after a restart, want 0: Run did not resume where the stream ends", d)
			}
		})
	}
}

// The leader dies with publishes in flight; the next leader, another
// replica with more events applied meanwhile, continues where the stream
// ends.
func TestLeaderChangeResumesWithoutGapOrDuplicate(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 2)
	h.add(600)

	old := newExporter(t, n, h.replicas[0], FormatJSON)
	stopAt := archived(t, h.replicas[0])[300].GetIndex()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old.afterPublish = func(index uint64) {
		if index == stopAt {
			cancel() // leadership lost mid-stream, acks outstanding
		}
	}
	done := make(chan error, 1)
	go func() { done <- old.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("old leader's Run did not return")
	}
	if s := old.Status(); s.Exported >= stopAt || s.Exported == 0 {
		t.Fatalf("old leader exported through %d; want it stopped part way, before %d", s.Exported, stopAt)
	}

	h.add(200)
	next := newExporter(t, n, h.replicas[1], FormatJSON)
	start(t, next)
	waitCaughtUp(t, next, h.replicas[1])
	checkStream(t, n, h.replicas[1], FormatJSON)
}

// A resume point behind the stream's end (the race between reading the
// end and messages still landing) republishes an overlap; the stream
// deduplicates it by Nats-Msg-Id and holds every event once.
func TestOverlapIsDeduplicated(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 1)
	src := h.replicas[0]
	h.add(300)
	first := newExporter(t, n, src, FormatJSON)
	r := start(t, first)
	waitCaughtUp(t, first, src)
	r.stop(t)

	evs := archived(t, src)
	const overlap = 40
	back := evs[len(evs)-1-overlap].GetIndex()
	h.add(50)
	second := newExporter(t, n, src, FormatJSON)
	second.resumeAfter = func(last uint64) uint64 {
		if last != evs[len(evs)-1].GetIndex() {
			t.Errorf("stream ends at %d, want %d", last, evs[len(evs)-1].GetIndex())
		}
		return back
	}
	start(t, second)
	waitCaughtUp(t, second, src)
	checkStream(t, n, src, FormatJSON)
	if d := second.duplicates.Load(); d != overlap {
		t.Errorf("%d publishes acked as duplicates, want %d", d, overlap)
	}
}

// Should an exporter believe the stream ends later than it does (the
// message it thinks is last was lost), the stream refuses what it
// publishes, because each message names its predecessor: the exporter
// asks again and fills the gap.
func TestStreamRefusesAGap(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 1)
	src := h.replicas[0]
	h.add(100)
	e := newExporter(t, n, src, FormatJSON)
	r := start(t, e)
	waitCaughtUp(t, e, src)
	r.stop(t)

	h.add(100)
	evs := archived(t, src)
	skipTo := evs[len(evs)-50].GetIndex()
	var calls int
	e.resumeAfter = func(last uint64) uint64 {
		calls++
		if calls == 1 {
			return skipTo
		}
		return last
	}
	start(t, e)
	waitCaughtUp(t, e, src)
	checkStream(t, n, src, FormatJSON)
	if calls < 2 {
		t.Errorf("the end of the stream was read %d times, want a second read after the refusal", calls)
	}
}

// Two exporters at once (a deposed leader that has not noticed yet, and
// the new one) still put every event into the stream once, in order.
func TestConcurrentExportersDoNotDuplicate(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 2)
	a := newExporter(t, n, h.replicas[0], FormatJSON)
	b := newExporter(t, n, h.replicas[1], FormatJSON)
	start(t, a)
	start(t, b)
	for range 10 {
		h.add(40)
	}
	waitCaughtUp(t, a, h.replicas[0])
	waitCaughtUp(t, b, h.replicas[1])
	checkStream(t, n, h.replicas[0], FormatJSON)
}

// NATS goes away mid-stream and comes back on the same port with the same
// store: writes go on meanwhile, unslowed, and the stream ends up exact.
func TestNATSRestartMidStream(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 1)
	src := h.replicas[0]
	h.add(400)

	watched := &watchedSource{FSM: src}
	e := newExporter(t, n, watched, FormatProtobuf)
	stopAt := archived(t, src)[200].GetIndex()
	reached, stopped := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var publishedInRead, heldTooLong atomic.Bool
	e.afterPublish = func(index uint64) {
		if watched.inRead() {
			publishedInRead.Store(true)
		}
		if index == stopAt {
			// The first time, hold the exporter here, in the middle of
			// its NATS work with acks outstanding, until NATS is gone and
			// the writes below are done.
			once.Do(func() {
				close(reached)
				select {
				case <-stopped:
				case <-time.After(60 * time.Second):
					heldTooLong.Store(true)
				}
			})
		}
	}
	start(t, e)
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatalf("export did not reach event %d", stopAt)
	}
	n.Stop()
	// Writes while the exporter is stuck mid-publish with NATS gone: they
	// must not wait for it. Were the exporter holding the state's lock,
	// these would block until the hold above gave up.
	for range 10 {
		h.add(10)
	}
	close(stopped)
	if heldTooLong.Load() {
		t.Fatal("writes waited for the exporter stuck on NATS")
	}
	waitFor(t, 30*time.Second, func() error {
		if s := e.Status(); s.Connected || s.LastError == "" {
			return fmt.Errorf("status %+v while NATS is down, want not connected, an error", s)
		}
		return nil
	})
	before := e.Status()
	if before.Exported >= stopAt {
		t.Fatalf("exported through %d before NATS stopped; want acks of events up to %d outstanding", before.Exported, stopAt)
	}

	// More writes while NATS is down, the exporter retrying.
	for range 20 {
		h.add(10)
	}
	if s := e.Status(); s.Lag != before.Lag+200 || s.Exported != before.Exported {
		t.Errorf("status %+v after 200 more entries with NATS down (before: %+v): want lag up by 200, nothing exported", s, before)
	}

	n.Start()
	waitCaughtUp(t, e, src)
	checkStream(t, n, src, FormatProtobuf)
	if publishedInRead.Load() {
		t.Error("the exporter published while holding a read of the state open")
	}
}

// NATS is not there when Run starts: Run keeps trying and exports once it
// appears.
func TestNATSDownAtStart(t *testing.T) {
	n := startNATS(t)
	n.Stop()
	h := newHistory(t, 1)
	src := h.replicas[0]
	h.add(100)
	e := newExporter(t, n, src, FormatJSON)
	start(t, e)
	waitFor(t, 5*time.Second, func() error {
		if s := e.Status(); s.LastError == "" || s.Connected || s.Lag != src.AppliedIndex() {
			return fmt.Errorf("status %+v, want an error, not connected, lag %d", s, src.AppliedIndex())
		}
		return nil
	})
	n.Start()
	waitCaughtUp(t, e, src)
	checkStream(t, n, src, FormatJSON)
}

// A stream of that name that does not capture the exporter's subjects is
// reported, not silently used.
func TestExistingStreamWithOtherSubjects(t *testing.T) {
	n := startNATS(t)
	js, closeJS := jsOf(t, n)
	defer closeJS()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	h := newHistory(t, 1)
	h.add(10)
	e := newExporter(t, n, h.replicas[0], FormatJSON)
	start(t, e)
	waitFor(t, 5*time.Second, func() error {
		if s := e.Status(); !strings.Contains(s.LastError, `not "hpt.events.>"`) || s.Exported != 0 {
			return fmt.Errorf("status %+v, want an error naming the subjects", s)
		}
		return nil
	})
}

func TestRunTwiceAtOnce(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 1)
	h.add(5)
	e := newExporter(t, n, h.replicas[0], FormatJSON)
	start(t, e)
	waitCaughtUp(t, e, h.replicas[0])
	if err := e.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*Config)
		field string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"several servers", func(c *Config) { c.URL = "nats://a:4222, tls://b:4222,c:4222" }, ""},
		{"all fields", func(c *Config) {
			c.Stream, c.SubjectPrefix, c.Format, c.DuplicateWindow = "AUDIT", "corp.hpt", FormatProtobuf, time.Hour
		}, ""},
		{"no url", func(c *Config) { c.URL = " " }, "nats url: required"},
		{"bad scheme", func(c *Config) { c.URL = "http://a:4222" }, "nats url"},
		{"empty server in list", func(c *Config) { c.URL = "nats://a:4222,," }, "nats url"},
		{"stream with dot", func(c *Config) { c.Stream = "HPT.EVENTS" }, "stream"},
		{"stream with space", func(c *Config) { c.Stream = "HPT EVENTS" }, "stream"},
		{"prefix wildcard", func(c *Config) { c.SubjectPrefix = "hpt.*" }, "subject prefix"},
		{"prefix trailing dot", func(c *Config) { c.SubjectPrefix = "hpt." }, "subject prefix"},
		{"format", func(c *Config) { c.Format = "xml" }, "format"},
		{"negative window", func(c *Config) { c.DuplicateWindow = -time.Second }, "duplicate window"},
		{"tiny window", func(c *Config) { c.DuplicateWindow = time.Millisecond }, "duplicate window"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{URL: "nats://127.0.0.1:4222"}
			tc.mod(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Validate = %v, want ErrConfig naming %q", err, tc.field)
			}
			if _, err := New(c, newHistory(t, 1).replicas[0]); err == nil {
				t.Fatal("New accepted the config")
			}
		})
	}
	if _, err := New(Config{URL: "nats://127.0.0.1:4222"}, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("New without a source = %v, want ErrConfig", err)
	}
}

func TestSubjectCovers(t *testing.T) {
	tests := []struct {
		pattern, sub string
		want         bool
	}{
		{"hpt.events.>", "hpt.events.>", true},
		{">", "hpt.events.>", true},
		{"hpt.>", "hpt.events.>", true},
		{"hpt.*.>", "hpt.events.>", true},
		{"hpt.events.*", "hpt.events.>", false},
		{"hpt.events", "hpt.events.>", false},
		{"other.>", "hpt.events.>", false},
		{"hpt.events.user_added", "hpt.events.>", false},
		{"*.*", "a.b", true},
		{"a.b", "a.b.c", false},
	}
	for _, tc := range tests {
		if got := subjectCovers(tc.pattern, tc.sub); got != tc.want {
			t.Errorf("subjectCovers(%q, %q) = %v, want %v", tc.pattern, tc.sub, got, tc.want)
		}
	}
}

// The consumer of CONSUMING.md: a durable pull consumer filtered on
// hpt.events.user_added gets exactly the user_added events, in order.
func TestConsumingAsDocumented(t *testing.T) {
	n := startNATS(t)
	h := newHistory(t, 1)
	src := h.replicas[0]
	h.add(120)
	e := newExporter(t, n, src, FormatJSON)
	start(t, e)
	waitCaughtUp(t, e, src)

	var want []uint64
	for _, ev := range archived(t, src) {
		if ev.GetType() == events.Type_TYPE_USER_ADDED {
			want = append(want, ev.GetIndex())
		}
	}

	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, "HPT_EVENTS", jetstream.ConsumerConfig{
		Durable:       "user-audit",
		FilterSubject: "hpt.events.user_added",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		MaxAckPending: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		got  []uint64
		bad  []string
		done = make(chan struct{})
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev struct {
			Index   uint64 `json:"index"`
			Actor   string `json:"actor"`
			Payload struct {
				Name  string `json:"name"`
				Email string `json:"email"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(m.Data(), &ev); err != nil || ev.Payload.Name == "" || ev.Actor == "" {
			mu.Lock()
			bad = append(bad, string(m.Data()))
			mu.Unlock()
			m.Term()
			return
		}
		m.Ack()
		mu.Lock()
		got = append(got, ev.Index)
		if len(got) == len(want) {
			close(done)
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) || len(bad) > 0 {
		t.Fatalf("consumed %v (undecodable %q), want user_added events %v", got, bad, want)
	}
}
