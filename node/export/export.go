package export

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hpt-dev/hpt/events"
)

// Source is what the exporter reads; *fsm.FSM implements it. The exporter
// only reads, so it never holds up the state machine.
type Source interface {
	// Events calls fn for archived events with index >= since, in index
	// order, until fn returns false. Indexes have gaps.
	Events(since uint64, fn func(*events.Event) bool) error
	// Changed returns a channel closed when the applied index next advances.
	Changed() <-chan struct{}
	// AppliedIndex is the index of the last entry applied to the state.
	AppliedIndex() uint64
}

// ErrRunning is returned by Run when another Run of the same Exporter has
// not returned yet.
var ErrRunning = errors.New("exporter already running")

// Status is a snapshot of the exporter's progress.
type Status struct {
	// Exported is the highest event index known to be in the stream: as
	// read from the stream when Run (re)connected, then advanced by acks.
	// 0 until the first connection.
	Exported uint64
	// Lag is how many applied log entries follow the one that holds the
	// newest event known to be in the stream; 0 once every archived event
	// of the applied entries is in the stream (entries after the last
	// event may hold only rejected commands, which are not events).
	Lag uint64
	// Running reports whether Run is running (on the node that leads).
	Running bool
	// Connected reports whether Run holds a NATS connection on which it
	// has located the stream's end.
	Connected bool
	// LastError is the last failure (connecting, reading the stream,
	// publishing); cleared once an export succeeds again.
	LastError string
}

// Exporter publishes committed events to a JetStream stream. See the
// package documentation for the guarantees.
type Exporter struct {
	cfg Config
	src Source
	enc encoder
	log *slog.Logger

	// Tuning; tests shorten some of these.
	window         int           // publishes awaiting their ack, at most
	windowBytes    int           // bytes of messages awaiting their ack, at most (one message always fits)
	fetchMax       int           // events read from the Source at once
	fetchBytes     int           // bytes of payload read from the Source at once
	requestTimeout time.Duration // one JetStream API request
	ackTimeout     time.Duration // a publish without an ack after this has failed
	dialTimeout    time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration

	running atomic.Bool

	mu        sync.Mutex
	exported  uint64 // highest index known to be in the stream
	covered   uint64 // every archived event <= covered is in the stream
	connected bool
	lastErr   string

	// Test hooks, nil in production. afterPublish runs on Run's goroutine
	// after each message is handed to NATS; resumeAfter may move the resume
	// point back to force an overlap.
	afterPublish func(index uint64)
	resumeAfter  func(last uint64) uint64
	duplicates   atomic.Uint64 // acks that reported a duplicate

	acked atomic.Uint64 // acks received, for resetting the backoff
}

// New returns an Exporter for cfg (with defaults filled in) reading src.
// It does not connect; Run does.
func New(cfg Config, src Source) (*Exporter, error) {
	if src == nil {
		return nil, fmt.Errorf("%w: source: required", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Exporter{
		cfg:            cfg,
		src:            src,
		enc:            encoder{stream: cfg.Stream, prefix: cfg.SubjectPrefix, format: cfg.Format},
		log:            cfg.Logger.With("component", "export", "stream", cfg.Stream),
		window:         256,
		windowBytes:    8 << 20,
		fetchMax:       256,
		fetchBytes:     8 << 20,
		requestTimeout: 5 * time.Second,
		ackTimeout:     10 * time.Second,
		dialTimeout:    5 * time.Second,
		backoffMin:     250 * time.Millisecond,
		backoffMax:     15 * time.Second,
	}, nil
}

// Status returns the exporter's progress. It is safe to call from any
// goroutine, also while Run is not running (it then reports what the last
// Run knew, not connected).
func (e *Exporter) Status() Status {
	applied := e.src.AppliedIndex()
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Status{Exported: e.exported, Running: e.running.Load(), Connected: e.connected, LastError: e.lastErr}
	if done := events.EntryOf(max(e.exported, e.covered)); applied > done {
		s.Lag = applied - done
	}
	return s
}

// appliedEvents returns the highest index an event of the applied entries
// can have: every archived event up to it can be read.
func (e *Exporter) appliedEvents() uint64 {
	return events.IndexOf(e.src.AppliedIndex()+1, 0) - 1
}

// Run exports events until ctx ends, then returns nil. The node runs it
// only while it is the Raft leader and cancels ctx when leadership is lost;
// a later Run, of this Exporter or of another node's, continues where the
// stream ends.
//
// Run only reads the Source, and never holds a read open across a NATS
// call, so it never blocks writes. It survives NATS outages: it retries
// with jittered exponential backoff and, after every (re)connection, asks
// JetStream where the stream ends. It works on the calling goroutine; the
// only others are its NATS connection's, which it closes before returning
// (nats.go's goroutines exit moments later). It returns an error only if
// the Exporter is already running.
func (e *Exporter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer e.running.Store(false)
	defer e.setConnected(false)

	b := backoff{min: e.backoffMin, max: e.backoffMax}
	for ctx.Err() == nil {
		start := time.Now()
		err := e.session(ctx, &b)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > e.backoffMax {
			b.reset()
		}
		e.failed(err)
		b.wait(ctx)
	}
	return nil
}

// session connects to NATS and exports until ctx ends or the connection
// is closed for good. Between failures on a live connection it backs off
// with b and locates the stream's end again.
func (e *Exporter) session(ctx context.Context, b *backoff) error {
	opts := []nats.Option{
		nats.Name("hpt-export"),
		nats.MaxReconnects(-1),
		nats.SetCustomDialer(&ctxDialer{ctx: ctx, timeout: e.dialTimeout}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			e.log.Warn("nats asynchronous error", "err", err)
		}),
	}
	nc, err := nats.Connect(e.cfg.URL, append(opts, e.cfg.Options...)...)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	// Registered before anything is published, so a disconnect cannot
	// slip by unnoticed: the status events are the signal to stop
	// publishing and locate the stream's end again.
	statusCh := nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	defer func() {
		nc.RemoveStatusListener(statusCh)
		nc.Close()
	}()
	js, err := jetstream.New(nc,
		// Room for a window of publishes abandoned after a failure whose
		// acks have not arrived or timed out yet, besides the current one.
		jetstream.WithPublishAsyncMaxPending(2*e.window),
		jetstream.WithPublishAsyncTimeout(e.ackTimeout),
		jetstream.WithDefaultTimeout(e.requestTimeout),
	)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	for {
		if err := waitConnected(ctx, nc, statusCh); err != nil {
			return err
		}
		drain(statusCh)
		acked := e.acked.Load()
		rp, err := e.resume(ctx, js)
		if err == nil {
			e.resumed(rp)
			err = e.publish(ctx, nc, js, statusCh, rp)
		}
		if e.acked.Load() != acked {
			b.reset()
		}
		e.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		e.failed(err)
		if errors.Is(err, errConnection) {
			// nats.go reconnects on its own; locate the end again once it
			// has, without further delay.
			continue
		}
		b.wait(ctx)
	}
}

// errConnection marks a change of the connection's state seen while
// publishing; the stream's end must be located again.
var errConnection = errors.New("nats connection interrupted")

func waitConnected(ctx context.Context, nc *nats.Conn, statusCh <-chan nats.Status) error {
	// Status events are dropped when the channel is full, so poll too.
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return fmt.Errorf("nats connection closed: %v", nc.LastError())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-statusCh:
		case <-t.C:
		}
	}
	return nil
}

func drain(ch <-chan nats.Status) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// resumePoint is where the stream ends.
type resumePoint struct {
	// last is the event index (Nats-Msg-Id) of the stream's last message.
	last uint64
	// empty: the stream holds no message; export starts with the first
	// archived event, and the first publish expects the stream's last
	// sequence to still be lastSeq.
	empty   bool
	lastSeq uint64
}

// resume asks JetStream where the stream ends: the Nats-Msg-Id of its last
// message. Creates the stream if it is missing.
func (e *Exporter) resume(ctx context.Context, js jetstream.JetStream) (resumePoint, error) {
	st, err := e.ensureStream(ctx, js)
	if err != nil {
		return resumePoint{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout)
	defer cancel()
	info, err := st.Info(rctx)
	if err != nil {
		return resumePoint{}, fmt.Errorf("stream %s info: %w", e.cfg.Stream, err)
	}
	if info.State.Msgs == 0 {
		return resumePoint{empty: true, lastSeq: info.State.LastSeq}, nil
	}
	msg, err := st.GetMsg(rctx, info.State.LastSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// The last message was deleted on its own; take the last one left.
		msg, err = st.GetLastMsgForSubject(rctx, e.cfg.SubjectPrefix+".>")
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return resumePoint{empty: true, lastSeq: info.State.LastSeq}, nil
	}
	if err != nil {
		return resumePoint{}, fmt.Errorf("stream %s: read last message (seq %d): %w", e.cfg.Stream, info.State.LastSeq, err)
	}
	id := msg.Header.Get(jetstream.MsgIDHeader)
	last, err := strconv.ParseUint(id, 10, 64)
	if err != nil || last == 0 {
		return resumePoint{}, fmt.Errorf("stream %s: last message (seq %d, subject %s) has %s %q, not an event index: the stream must hold only hpt's events",
			e.cfg.Stream, msg.Sequence, msg.Subject, jetstream.MsgIDHeader, id)
	}
	if e.resumeAfter != nil {
		last = e.resumeAfter(last)
	}
	return resumePoint{last: last, lastSeq: msg.Sequence}, nil
}

// ensureStream returns the stream, creating it if missing, and checks that
// it captures the exporter's subjects.
func (e *Exporter) ensureStream(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	rctx, cancel := context.WithTimeout(ctx, e.requestTimeout)
	defer cancel()
	all := e.cfg.SubjectPrefix + ".>"
	st, err := js.Stream(rctx, e.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(rctx, jetstream.StreamConfig{
			Name:        e.cfg.Stream,
			Description: "hpt committed events, one message per event, Nats-Msg-Id = event index",
			Subjects:    []string{all},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  e.cfg.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// Another exporter created it meanwhile.
			st, err = js.Stream(rctx, e.cfg.Stream)
		} else if err == nil {
			e.log.Info("created stream", "subjects", all, "duplicate_window", e.cfg.DuplicateWindow)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", e.cfg.Stream, err)
	}
	cfg := st.CachedInfo().Config
	covered := false
	for _, s := range cfg.Subjects {
		if subjectCovers(s, all) {
			covered = true
			break
		}
	}
	if !covered {
		return nil, fmt.Errorf("stream %s captures %q, not %q: change the stream or the subject prefix", e.cfg.Stream, cfg.Subjects, all)
	}
	if cfg.Duplicates < e.cfg.DuplicateWindow {
		e.log.Warn("existing stream has a shorter duplicate window than configured; it is left as it is",
			"stream_window", cfg.Duplicates, "configured", e.cfg.DuplicateWindow)
	}
	return st, nil
}

// subjectCovers reports whether every subject matching sub also matches
// pattern (both may hold wildcards).
func subjectCovers(pattern, sub string) bool {
	p, s := splitSubject(pattern), splitSubject(sub)
	for i, pt := range p {
		if pt == ">" {
			return true
		}
		if i >= len(s) {
			return false
		}
		if pt != s[i] && (pt != "*" || s[i] == ">") {
			return false
		}
	}
	return len(p) == len(s)
}

func splitSubject(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '.' {
			i++
		}
		out = append(out, s[:i])
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// inflight is a published message awaiting its ack.
type inflight struct {
	index uint64
	size  int
	ack   jetstream.PubAckFuture
}

// publish exports the events after rp in index order until ctx ends or
// something fails. Every message names its predecessor in the stream
// (Nats-Expected-Last-Msg-Id), so the stream only ever accepts the next
// event of the archive: a lost message makes all that follow it fail
// rather than leave a gap. Any failure returns; the caller locates the
// stream's end again and calls publish anew.
func (e *Exporter) publish(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, statusCh <-chan nats.Status, rp resumePoint) error {
	next := rp.last + 1 // next archive index to read
	prevID := ""        // Nats-Msg-Id the stream's last message must have
	if !rp.empty {
		prevID = strconv.FormatUint(rp.last, 10)
	} else {
		next = 0
	}
	var (
		pending      = newQueue(e.window)
		pendingBytes int
		buf          []*events.Event // read, not yet published
		scanned      uint64          // appliedEvents before the last read that found nothing
		caughtUp     bool            // that read came after every event now in pending or acked
	)
	for {
		// Publish what was read, as far as the window allows.
		for len(buf) > 0 && pending.len() < e.window && (pending.len() == 0 || pendingBytes < e.windowBytes) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !nc.IsConnected() {
				return errConnection
			}
			ev := buf[0]
			m, err := e.enc.message(ev)
			if err != nil {
				return err
			}
			if prevID != "" {
				m.Header.Set(jetstream.ExpectedLastMsgIDHeader, prevID)
			} else {
				m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(rp.lastSeq, 10))
			}
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				return fmt.Errorf("publish event %d: %w", ev.GetIndex(), err)
			}
			size := len(m.Data) + 256
			pending.push(inflight{index: ev.GetIndex(), size: size, ack: f})
			pendingBytes += size
			prevID = m.Header.Get(jetstream.MsgIDHeader)
			buf[0] = nil
			buf = buf[1:]
			if e.afterPublish != nil {
				e.afterPublish(ev.GetIndex())
			}
		}

		// Read more once everything read is published.
		var changed <-chan struct{}
		if len(buf) == 0 && pending.len() < e.window {
			// Take the channel before reading so an apply in between is
			// not missed.
			changed = e.src.Changed()
			applied := e.appliedEvents()
			var err error
			if buf, err = e.fetch(next); err != nil {
				return fmt.Errorf("read event archive: %w", err)
			}
			if len(buf) > 0 {
				next = buf[len(buf)-1].GetIndex() + 1
				caughtUp = false
				continue
			}
			scanned, caughtUp = applied, true
			if pending.len() == 0 {
				e.setCovered(scanned)
			}
		}

		var (
			okCh  <-chan *jetstream.PubAck
			errCh <-chan error
		)
		if pending.len() > 0 {
			okCh, errCh = pending.head().ack.Ok(), pending.head().ack.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case st := <-statusCh:
			return fmt.Errorf("%w: %v", errConnection, st)
		case err := <-errCh:
			return fmt.Errorf("publish event %d: %w", pending.head().index, err)
		case ack := <-okCh:
			h := pending.pop()
			pendingBytes -= h.size
			if ack.Stream != e.cfg.Stream {
				return fmt.Errorf("event %d was stored in stream %q, not %q", h.index, ack.Stream, e.cfg.Stream)
			}
			e.acked.Add(1)
			if ack.Duplicate {
				e.duplicates.Add(1)
			}
			e.setExported(h.index)
			if pending.len() == 0 && len(buf) == 0 && caughtUp {
				e.setCovered(scanned)
			}
		}
	}
}

// fetch reads the next events from the archive, bounded in count and bytes.
func (e *Exporter) fetch(since uint64) ([]*events.Event, error) {
	var (
		out   []*events.Event
		bytes int
	)
	err := e.src.Events(since, func(ev *events.Event) bool {
		out = append(out, ev)
		bytes += len(ev.GetPayload()) + 64
		return len(out) < e.fetchMax && bytes < e.fetchBytes
	})
	return out, err
}

// queue is a fixed-capacity FIFO of in-flight publishes.
type queue struct {
	buf      []inflight
	first, n int
}

func newQueue(capacity int) *queue { return &queue{buf: make([]inflight, capacity)} }
func (q *queue) len() int          { return q.n }
func (q *queue) head() *inflight   { return &q.buf[q.first] }

func (q *queue) push(f inflight) {
	q.buf[(q.first+q.n)%len(q.buf)] = f
	q.n++
}

func (q *queue) pop() inflight {
	f := q.buf[q.first]
	q.buf[q.first] = inflight{}
	q.first = (q.first + 1) % len(q.buf)
	q.n--
	return f
}

func (e *Exporter) resumed(rp resumePoint) {
	applied := e.src.AppliedIndex()
	e.mu.Lock()
	e.exported, e.covered, e.connected = rp.last, rp.last, true
	e.mu.Unlock()
	e.log.Info("exporting events to nats", "resume_after", rp.last, "empty_stream", rp.empty, "applied_entry", applied)
	if events.EntryOf(rp.last) > applied {
		e.log.Warn("the stream holds events this node has not applied yet; export waits for them",
			"stream_last", rp.last, "applied_entry", applied)
	}
}

func (e *Exporter) setExported(index uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if index > e.exported {
		e.exported = index
	}
	e.recoveredLocked()
}

func (e *Exporter) setCovered(index uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if index > e.covered {
		e.covered = index
	}
	e.recoveredLocked()
}

func (e *Exporter) recoveredLocked() {
	if e.lastErr != "" {
		e.lastErr = ""
		e.log.Info("export recovered", "exported", e.exported)
	}
}

func (e *Exporter) setConnected(c bool) {
	e.mu.Lock()
	e.connected = c
	e.mu.Unlock()
}

// failed records err; the first failure after a success is logged as a
// warning, repeats of a failure at debug level.
func (e *Exporter) failed(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	first := e.lastErr == ""
	e.lastErr = err.Error()
	exported := e.exported
	e.mu.Unlock()
	if first {
		e.log.Warn("event export failing; retrying", "err", err, "exported", exported)
	} else {
		e.log.Debug("event export still failing", "err", err)
	}
}

// backoff is jittered exponential backoff.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next backoff interval or until ctx ends.
func (b *backoff) wait(ctx context.Context) {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ctxDialer makes dialing give up as soon as Run's context ends.
type ctxDialer struct {
	ctx     context.Context
	timeout time.Duration
}

func (d *ctxDialer) Dial(network, address string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	return nd.DialContext(d.ctx, network, address)
}
