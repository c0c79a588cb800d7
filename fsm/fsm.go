// Package fsm is hpt's state machine: it applies committed events to the
// state held in Pebble, archives every event so history outlives Raft log
// compaction, and writes and restores snapshots.
//
// The state machine is pure in the sense that matters for Raft: the same
// entries in the same order produce the same state and the same results on
// every replica. It reads no clock (event time comes from the proposer), no
// randomness and no network, and only iterates Pebble in key order.
//
// Package node adapts FSM to raft.FSM; this package does not import raft.
//
// Durability: the Raft log (fsynced) is the write-ahead log of the state,
// so Pebble runs without one of its own, as etcd's backend does beside its
// WAL: state batches live in memtables until Pebble flushes them. The
// applied index is written in the same batch as the state it describes and
// a flush never splits a batch, so after a crash the durable state and its
// index agree, and Raft re-delivers what was lost (entries at or below the
// applied index are skipped, so re-delivery is harmless); what can be lost
// is bounded by the memtables. Snapshot and Close flush first, so the
// durable applied index is never behind a snapshot Raft may compact its log
// to, and a clean restart replays nothing.
package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// Errors a rejected command carries (wrapped in a *Rejection); callers
// branch on them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	ErrConflict = errors.New("conflict")
	// ErrClosed is returned by reads after Close.
	ErrClosed = errors.New("state closed")
)

// A Rejection is a command the state machine refused. It is a value, the
// same on every replica, not a failure of the node; no event is archived.
type Rejection struct {
	Kind error // one of ErrNotFound, ErrExists, ErrInvalid, ErrConflict
	Msg  string
}

func (r *Rejection) Error() string { return r.Msg }
func (r *Rejection) Unwrap() error { return r.Kind }

func reject(kind error, format string, args ...any) *Rejection {
	return &Rejection{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Entry is one committed log entry: an encoded events.Batch, or in a log
// from before batches a single encoded event (events.DecodeEntry). Data is
// nil for entries that carry no event (Raft configuration changes); they
// only advance the applied index.
type Entry struct {
	Index uint64
	Data  []byte
}

// Result is the outcome of applying one event.
type Result struct {
	// Index of the event (events.IndexOf its entry and position), or for a
	// duplicate request the index of the event that first carried the
	// request id.
	Index     uint64
	Duplicate bool
	// Rejected is non-nil if the state machine refused the command.
	Rejected *Rejection
}

// FSM is the state of one node. Apply, Snapshot and Restore must be called
// from one goroutine at a time (Raft's FSM goroutine); reads may be called
// from any goroutine concurrently with them.
type FSM struct {
	dir  string
	log  *slog.Logger
	plog pebbleLogger

	// mu guards db against Restore swapping it. Readers hold it shared for
	// the duration of one read; lock order: mu before waitMu.
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool

	applied   atomic.Uint64
	accessGen atomic.Uint64

	waitMu sync.Mutex
	waitCh chan struct{} // closed and replaced whenever applied advances

	// snapshots that are still being persisted; Restore and Close wait.
	persisting sync.WaitGroup

	counts counters
	active activeJobs
}

// Key layout (one tag byte, then the rest):
//
//	m applied                          -> uint64 BE, in the same batch as the state
//	m bootstrapped                     -> uint64 BE index of ClusterBootstrapped
//	m activejobs                       -> uint64 BE 1 once active jobs have A keys (jobs.go)
//	e <index BE>                       -> encoded events.Event (the archive)
//	r <request id>                     -> uint64 BE index of the event
//	i <kind>/<name>                    -> Identity
//	g <group> 0x00 <member subject>    -> empty (members of a group)
//	G <member subject> 0x00 <group>    -> empty (groups of a member)
//	t <token id>                       -> Token
//	T <subject> 0x00 <token id>        -> empty (tokens of a subject)
//	k <target>                         -> TargetKey
//	K <public key>                     -> target name
//	a <subject> 0x00 <priv> 0x00 <res> -> Grant
//	d <name>                           -> Destination
//	D <connector> 0x00 <name>          -> empty (destinations of a connector)
//	c, x, X, y, R                      -> credentials and their indexes (credentials.go)
var (
	keyApplied      = []byte("mapplied")
	keyBootstrapped = []byte("mbootstrapped")
	// keyActiveJobsIndexed marks a state whose active jobs have A keys.
	keyActiveJobsIndexed = []byte("mactivejobs")
)

const (
	tagEvent      = 'e'
	tagRequest    = 'r'
	tagIdentity   = 'i'
	tagMember     = 'g'
	tagMemberOf   = 'G'
	tagToken      = 't'
	tagTokenOf    = 'T'
	tagTarget     = 'k'
	tagTargetByPK = 'K'
	tagGrant      = 'a'
	tagDest       = 'd'
	tagDestOf     = 'D'
)

func key(tag byte, parts ...string) []byte {
	n := 1 + len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, tag)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

func eventKey(index uint64) []byte {
	b := make([]byte, 9)
	b[0] = tagEvent
	binary.BigEndian.PutUint64(b[1:], index)
	return b
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// stateDir names the live Pebble directory; CURRENT in dir holds its name
// so that Restore can switch to a fully written copy atomically.
const currentFile = "CURRENT"

// Options tune OpenWith.
type Options struct {
	// Logger receives Pebble's messages; default discards them.
	Logger *slog.Logger
	// Fatal, if set, is called when Pebble meets an error it cannot go on
	// from (a full disk while it writes its manifest, corruption), with an
	// error that unwraps to the cause (errors.Is(err, syscall.ENOSPC)).
	// It runs on the goroutine that failed, which may hold Pebble's locks:
	// it must not touch the state, which is unusable from then on, not even
	// to Close it. When Fatal returns, that goroutine blocks for good, as
	// Pebble requires of a fatal log call; the owner is expected to exit
	// the process, and the next start recovers (Pebble repairs an
	// interrupted manifest write on open). Default: panic.
	Fatal func(error)
}

// Open opens (or creates) the state under dir.
func Open(dir string, log *slog.Logger) (*FSM, error) {
	return OpenWith(dir, Options{Logger: log})
}

// OpenWith opens (or creates) the state under dir.
func OpenWith(dir string, o Options) (*FSM, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	name, err := currentDir(dir)
	if err != nil {
		return nil, err
	}
	if err := removeStale(dir, name); err != nil {
		return nil, err
	}
	plog := pebbleLogger{log: log, fatal: o.Fatal}
	db, err := openPebble(filepath.Join(dir, name), plog)
	if err != nil {
		return nil, err
	}
	f := &FSM{dir: dir, log: log, plog: plog, db: db, waitCh: make(chan struct{})}
	idx, err := readU64(db, keyApplied)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state: applied index: %w", err)
	}
	f.applied.Store(idx)
	active, err := activeJobsIn(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state: %w", err)
	}
	f.active.reset(active)
	return f, nil
}

func currentDir(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, currentFile))
	if errors.Is(err, os.ErrNotExist) {
		if err := writeCurrent(dir, "state-1"); err != nil {
			return "", err
		}
		return "state-1", nil
	}
	if err != nil {
		return "", fmt.Errorf("open state: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if !strings.HasPrefix(name, "state-") || strings.ContainsAny(name, "/\\") {
		return "", fmt.Errorf("open state: %s names %q, not a state directory", filepath.Join(dir, currentFile), name)
	}
	return name, nil
}

func writeCurrent(dir, name string) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", currentFile, err)
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentFile)); err != nil {
		return fmt.Errorf("write %s: %w", currentFile, err)
	}
	return syncFile(dir)
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// removeStale deletes state directories other than the current one: the
// remains of a restore that crashed before or after the switch.
func removeStale(dir, current string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("open state: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "state-") && e.Name() != current {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove stale state %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}

func openPebble(path string, log pebbleLogger) (*pebble.DB, error) {
	opts := &pebble.Options{
		Logger: log,
		// The Raft log is the state's write-ahead log (see the package
		// documentation); a second one cost a write per applied batch.
		DisableWAL: true,
		// Every write looks up its request id, and every call its token;
		// most such keys do not exist (or are not in the memtable), and
		// bloom filters answer that without reading each level's blocks.
		CacheSize: 64 << 20,
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(path, opts)
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return db, nil
}

// getter is what Pebble's DB, Batch and Snapshot have in common for reads.
type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func readU64(r getter, k []byte) (uint64, error) {
	v, c, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("key %q: %d bytes, want 8", k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close waits for snapshots being persisted and closes the state.
func (f *FSM) Close() error {
	// Without a WAL, what is only in memtables would be replayed from the
	// Raft log on the next start; flushing makes a clean restart free.
	return f.close(true)
}

// Abandon closes the state as a killed process leaves it: what is only in
// memtables is lost, and the next Open starts from the last flush. It is
// for fault tests that crash a node inside one process, where the state's
// directory must be released without the flush Close makes.
func (f *FSM) Abandon() error { return f.close(false) }

func (f *FSM) close(flush bool) error {
	f.persisting.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var flushErr error
	if flush {
		flushErr = f.db.Flush()
	}
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("close state: %w", err)
	}
	if flushErr != nil {
		return fmt.Errorf("close state: flush: %w", flushErr)
	}
	return nil
}

// AppliedIndex is the index of the last entry applied to the state.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until the applied index reaches index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.waitMu.Lock()
		ch := f.waitCh
		f.waitMu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// Changed returns a channel closed the next time the applied index advances.
func (f *FSM) Changed() <-chan struct{} {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	return f.waitCh
}

func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	f.waitMu.Lock()
	close(f.waitCh)
	f.waitCh = make(chan struct{})
	f.waitMu.Unlock()
}

// ApplyBatch applies committed entries in order, all in one Pebble batch
// together with the new applied index, and returns for each entry one
// Result per event it carries (nil for entries without events, and for
// entries applied before a restart that Raft delivers again).
//
// An entry that cannot be decoded means the log is corrupt or was written by
// a newer binary: ApplyBatch panics rather than guess, halting the node
// before its state diverges.
func (f *FSM) ApplyBatch(entries []Entry) [][]Result {
	results := make([][]Result, len(entries))
	if len(entries) == 0 {
		return results
	}
	applied := f.applied.Load()
	b := f.db.NewIndexedBatch()
	defer b.Close()
	reqs, err := f.newRequestLookup()
	if err != nil {
		panic(fmt.Sprintf("hpt: apply batch: %v", err))
	}
	defer reqs.close()
	last := applied
	accessChanged := false
	var jobs []jobChange
	for i, e := range entries {
		if e.Index <= applied {
			// Re-delivered after a restart: already in the state.
			continue
		}
		last = e.Index
		if e.Data == nil {
			continue
		}
		evs, legacy, err := events.DecodeEntry(e.Data)
		if err != nil {
			panic(fmt.Sprintf("hpt: cannot apply log entry %d: %v: the log is corrupt or was written by a newer hpt; refusing to continue", e.Index, err))
		}
		results[i] = make([]Result, len(evs))
		for j, d := range evs {
			if legacy {
				d.Event.Index = e.Index
			} else {
				d.Event.Index = events.IndexOf(e.Index, j)
			}
			results[i][j] = f.applyOne(b, reqs, d.Event, d.Payload, &jobs)
			if !leavesAccessAlone(d.Event.GetType()) {
				accessChanged = true
			}
		}
	}
	if last == applied {
		return results
	}
	if err := b.Set(keyApplied, u64(last), nil); err != nil {
		panic(fmt.Sprintf("hpt: apply batch: %v", err))
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		// The state store failing under us is not something a replica can
		// recover from on its own; continuing would diverge.
		panic(fmt.Sprintf("hpt: commit state batch at index %d: %v", last, err))
	}
	if accessChanged {
		f.accessGen.Add(1)
	}
	f.active.apply(jobs)
	f.setApplied(last)
	return results
}

func (f *FSM) applyOne(b *pebble.Batch, reqs *requestLookup, ev *events.Event, payload proto.Message, jobs *[]jobChange) Result {
	res := Result{Index: ev.Index}
	if id := ev.GetRequestId(); id != "" {
		prev, err := reqs.find(id)
		if err != nil {
			panic(fmt.Sprintf("hpt: read request id: %v", err))
		}
		if prev != 0 {
			return Result{Index: prev, Duplicate: true}
		}
	}
	tx := &txn{b: b, ev: ev, jobs: jobs}
	if rej := tx.apply(payload); rej != nil {
		res.Rejected = rej
		return res
	}
	if err := tx.err; err != nil {
		panic(fmt.Sprintf("hpt: apply event %d: %v", ev.Index, err))
	}
	enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("hpt: archive event %d: %v", ev.Index, err))
	}
	tx.set(eventKey(ev.Index), enc)
	f.counts.record(ev, payload)
	if id := ev.GetRequestId(); id != "" {
		tx.set(key(tagRequest, id), u64(ev.Index))
		reqs.add(id, ev.Index)
	}
	if tx.err != nil {
		panic(fmt.Sprintf("hpt: apply event %d: %v", ev.Index, tx.err))
	}
	return res
}

// requestLookup answers whether a request id was applied before, for one
// ApplyBatch. Almost every id is new, so the lookup that matters is the one
// that finds nothing: a single iterator for the batch, reading bloom
// filters on every level (Pebble's Get skips them on the bottom level,
// where a small state keeps everything), answers it without reading data
// blocks. Ids applied earlier in the same batch are not in the iterator's
// view; the map has them.
type requestLookup struct {
	it    *pebble.Iterator
	batch map[string]uint64
}

func (f *FSM) newRequestLookup() (*requestLookup, error) {
	lower := []byte{tagRequest}
	it, err := f.db.NewIter(&pebble.IterOptions{
		LowerBound:   lower,
		UpperBound:   []byte{tagRequest + 1},
		UseL6Filters: true,
	})
	if err != nil {
		return nil, fmt.Errorf("request id iterator: %w", err)
	}
	return &requestLookup{it: it}, nil
}

// find returns the index the request id was applied at, or 0.
func (r *requestLookup) find(id string) (uint64, error) {
	if idx, ok := r.batch[id]; ok {
		return idx, nil
	}
	k := key(tagRequest, id)
	if !r.it.SeekPrefixGE(k) || !bytes.Equal(r.it.Key(), k) {
		return 0, r.it.Error()
	}
	v := r.it.Value()
	if len(v) != 8 {
		return 0, fmt.Errorf("request id %q: %d bytes, want 8", id, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (r *requestLookup) add(id string, index uint64) {
	if r.batch == nil {
		r.batch = make(map[string]uint64)
	}
	r.batch[id] = index
}

func (r *requestLookup) close() { r.it.Close() }

type pebbleLogger struct {
	log   *slog.Logger
	fatal func(error)
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf must not return: Pebble goes on as if the process had ended
// (some callers return right after it, holding state half updated).
func (l pebbleLogger) Fatalf(format string, args ...any) {
	err := &StorageError{Msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if e, ok := a.(error); ok {
			err.causes = append(err.causes, e)
		}
	}
	if l.fatal == nil {
		l.log.Error(err.Msg, "component", "pebble")
		panic(err.Msg)
	}
	l.fatal(err)
	select {}
}

// StorageError is a failure of the state's storage that the state cannot
// go on from (see Options.Fatal).
type StorageError struct {
	Msg    string
	causes []error
}

func (e *StorageError) Error() string   { return e.Msg }
func (e *StorageError) Unwrap() []error { return e.causes }
