package fsm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func openTest(t *testing.T, dir string) *FSM {
	t.Helper()
	f, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// applier feeds events to an FSM with consecutive indexes.
type applier struct {
	t    *testing.T
	f    *FSM
	next uint64
}

// encode returns the encoded event of p with request id reqID.
func (a *applier) encode(reqID string, p proto.Message) []byte {
	a.t.Helper()
	ev, err := events.New("user:admin", reqID, t0, p)
	if err != nil {
		a.t.Fatal(err)
	}
	b, err := events.Encode(ev)
	if err != nil {
		a.t.Fatal(err)
	}
	return b
}

// batch returns the next entry, carrying the given encoded events.
func (a *applier) batch(encoded ...[]byte) Entry {
	a.t.Helper()
	b, err := events.EncodeBatch(encoded)
	if err != nil {
		a.t.Fatal(err)
	}
	a.next++
	return Entry{Index: a.next, Data: b}
}

// entry returns the next entry, carrying one event.
func (a *applier) entry(reqID string, p proto.Message) Entry {
	a.t.Helper()
	return a.batch(a.encode(reqID, p))
}

func (a *applier) apply(reqID string, p proto.Message) Result {
	a.t.Helper()
	return a.f.ApplyBatch([]Entry{a.entry(reqID, p)})[0][0]
}

func (a *applier) mustApply(p proto.Message) Result {
	a.t.Helper()
	r := a.apply("", p)
	if r.Rejected != nil {
		a.t.Fatalf("apply %T: rejected: %v", p, r.Rejected)
	}
	return r
}

func sha(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func TestApplyIdentitiesAndCascade(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.mustApply(&events.UserAdded{Name: "alice@example.com"})
	a.mustApply(&events.GroupAdded{Name: "ops"})
	a.mustApply(&events.GroupAdded{Name: "sre"})
	a.mustApply(&events.GroupMemberAdded{Group: "ops", Member: "user:alice@example.com"})
	a.mustApply(&events.GroupMemberAdded{Group: "sre", Member: "group:ops"})
	a.mustApply(&events.GrantAdded{Subject: "user:alice@example.com", Privilege: "view", Resource: "*"})
	a.mustApply(&events.TokenCreated{Id: "abcdefABCDEF", SecretSha256: sha("s"), Subject: "user:alice@example.com"})

	groups, err := f.GroupsOf("user:alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0] != "ops" || groups[1] != "sre" {
		t.Fatalf("GroupsOf = %v, want [ops sre]", groups)
	}

	tests := []struct {
		name string
		p    proto.Message
		want error
	}{
		{"duplicate user", &events.UserAdded{Name: "alice@example.com"}, ErrExists},
		{"bad name", &events.UserAdded{Name: "-x"}, ErrInvalid},
		{"member of missing group", &events.GroupMemberAdded{Group: "nope", Member: "user:alice@example.com"}, ErrNotFound},
		{"missing member", &events.GroupMemberAdded{Group: "ops", Member: "user:bob"}, ErrNotFound},
		{"cycle", &events.GroupMemberAdded{Group: "ops", Member: "group:sre"}, ErrConflict},
		{"self", &events.GroupMemberAdded{Group: "ops", Member: "group:ops"}, ErrConflict},
		{"grant bad privilege", &events.GrantAdded{Subject: "user:alice@example.com", Privilege: "root", Resource: "*"}, ErrInvalid},
		{"grant bad resource", &events.GrantAdded{Subject: "user:alice@example.com", Privilege: "view", Resource: "hosts"}, ErrInvalid},
		{"token for group", &events.TokenCreated{Id: "abcdefABCDEG", SecretSha256: sha("s"), Subject: "group:ops"}, ErrInvalid},
		{"token short hash", &events.TokenCreated{Id: "abcdefABCDEG", SecretSha256: []byte{1}, Subject: "user:alice@example.com"}, ErrInvalid},
		{"token id reused", &events.TokenCreated{Id: "abcdefABCDEF", SecretSha256: sha("t"), Subject: "user:alice@example.com"}, ErrExists},
		{"remove missing", &events.UserRemoved{Name: "bob"}, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.AppliedIndex()
			r := a.apply("", tc.p)
			if r.Rejected == nil || !errors.Is(r.Rejected, tc.want) {
				t.Fatalf("got %v, want rejection %v", r.Rejected, tc.want)
			}
			if f.AppliedIndex() != before+1 {
				t.Fatalf("applied index %d, want %d: a rejected entry still consumes its index", f.AppliedIndex(), before+1)
			}
			if _, err := f.Event(r.Index); !errors.Is(err, ErrNotFound) {
				t.Fatalf("rejected command left an event in the archive (err %v)", err)
			}
		})
	}

	a.mustApply(&events.UserRemoved{Name: "alice@example.com"})
	if _, err := f.Token("abcdefABCDEF"); !errors.Is(err, ErrNotFound) {
		t.Errorf("token of removed user: err %v, want ErrNotFound", err)
	}
	if g, _ := f.Grants("user:alice@example.com"); len(g) != 0 {
		t.Errorf("grants of removed user remain: %v", g)
	}
	if m, _ := f.Members("ops"); len(m) != 0 {
		t.Errorf("removed user still a member of ops: %v", m)
	}
	if m, _ := f.Members("sre"); len(m) != 1 || m[0] != "group:ops" {
		t.Errorf("sre members = %v, want [group:ops]", m)
	}
}

func TestDuplicateRequestAppliedOnce(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	first := a.apply("req-1", &events.UserAdded{Name: "bob"})
	// The retry may even land in the same Raft batch.
	e1 := a.entry("req-2", &events.MachineAdded{Name: "ci"})
	e2 := a.entry("req-2", &events.MachineAdded{Name: "ci"})
	rs := f.ApplyBatch([]Entry{e1, e2})
	retry := a.apply("req-1", &events.UserAdded{Name: "bob"})
	if first.Rejected != nil || retry.Rejected != nil || !retry.Duplicate || retry.Index != first.Index {
		t.Fatalf("retry = %+v, first = %+v; want duplicate of index %d", retry, first, first.Index)
	}
	if rs[0][0].Rejected != nil || rs[0][0].Duplicate || !rs[1][0].Duplicate || rs[1][0].Index != rs[0][0].Index {
		t.Fatalf("same-batch retry results = %+v", rs)
	}
	// And in the same entry.
	same := f.ApplyBatch([]Entry{a.batch(a.encode("req-3", &events.MachineAdded{Name: "cd"}), a.encode("req-3", &events.MachineAdded{Name: "cd"}))})[0]
	if same[0].Rejected != nil || same[0].Duplicate || !same[1].Duplicate || same[1].Index != same[0].Index {
		t.Fatalf("same-entry retry results = %+v", same)
	}
	// Request ids compacted to the bottom level (where Pebble's Get would
	// skip the bloom filters) are still found.
	if err := f.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	if again := a.apply("req-2", &events.MachineAdded{Name: "ci"}); !again.Duplicate || again.Index != rs[0][0].Index {
		t.Fatalf("retry after compaction = %+v, want duplicate of index %d", again, rs[0][0].Index)
	}
	var n int
	f.Events(0, func(*events.Event) bool { n++; return true })
	if n != 3 {
		t.Fatalf("archive holds %d events, want 3", n)
	}
}

// The state has no write-ahead log of its own: a crash loses what was only
// in memtables, never more than what a snapshot left in the Raft log, and
// Raft's re-delivery of those entries rebuilds it.
func TestCrashLosesOnlyWhatRaftReplays(t *testing.T) {
	dir := t.TempDir()
	f := openTest(t, dir)
	a := &applier{t: t, f: f}
	var entries []Entry
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		entries = append(entries, a.entry("", &events.UserAdded{Name: name}))
	}
	f.ApplyBatch(entries[:3])
	snapshotBytes(t, f) // flushes: Raft may now compact its log up to 3
	f.ApplyBatch(entries[3:])
	// What is on disk now is what a crash would leave: a checkpoint is a
	// consistent copy of it (a plain copy could race Pebble's background
	// work), and without a WAL it holds nothing of the memtables.
	crashed := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(crashed, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeCurrent(crashed, "state-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Checkpoint(filepath.Join(crashed, "state-1")); err != nil {
		t.Fatal(err)
	}
	g := openTest(t, crashed)
	if got := g.AppliedIndex(); got != 3 {
		t.Fatalf("applied index after a crash = %d, want 3 (the snapshot's)", got)
	}
	res := g.ApplyBatch(entries)
	for i, r := range res {
		if (r != nil) != (i >= 3) {
			t.Fatalf("re-delivered entry %d: results %+v", i+1, r)
		}
	}
	ids, _ := g.Identities(events.KindUser)
	if len(ids) != 5 {
		t.Fatalf("%d users after replay, want 5", len(ids))
	}
	// A clean close flushes: reopened, nothing is replayed.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := openTest(t, crashed).AppliedIndex(); got != 5 {
		t.Fatalf("applied index after a clean close = %d, want 5", got)
	}
}

// A log written before batches holds single encoded events; they keep the
// index they were first applied at (their entry's), and batches after them
// number theirs from their own entries.
func TestLogFromBeforeBatches(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.next++
	legacy := Entry{Index: a.next, Data: a.encode("old-1", &events.UserAdded{Name: "old"})}
	batch := a.batch(a.encode("new-1", &events.UserAdded{Name: "new1"}), a.encode("new-2", &events.UserAdded{Name: "new2"}))
	rs := f.ApplyBatch([]Entry{legacy, batch})
	if len(rs[0]) != 1 || rs[0][0].Index != 1 || rs[0][0].Rejected != nil {
		t.Fatalf("legacy entry 1: %+v, want event 1", rs[0])
	}
	if len(rs[1]) != 2 || rs[1][0].Index != 2000 || rs[1][1].Index != 2001 {
		t.Fatalf("batch entry 2: %+v, want events 2000 and 2001", rs[1])
	}
	var got []uint64
	f.Events(0, func(ev *events.Event) bool { got = append(got, ev.GetIndex()); return true })
	if len(got) != 3 || got[0] != 1 || got[1] != 2000 || got[2] != 2001 {
		t.Fatalf("archive holds %v, want [1 2000 2001]", got)
	}
	// The legacy event's request id is known like any other.
	if r := a.apply("old-1", &events.UserAdded{Name: "old"}); !r.Duplicate || r.Index != 1 {
		t.Fatalf("retry of the legacy write: %+v, want a duplicate of 1", r)
	}
}

func TestRestartKeepsStateAndSkipsReplay(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{t: t, f: f}
	var entries []Entry
	for _, name := range []string{"a", "b", "c"} {
		e := a.entry("", &events.UserAdded{Name: name})
		entries = append(entries, e)
		f.ApplyBatch([]Entry{e})
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openTest(t, dir)
	if got := f.AppliedIndex(); got != 3 {
		t.Fatalf("applied index after reopen = %d, want 3", got)
	}
	// Raft re-delivers entries after the last snapshot: they must not be
	// applied again (they would be rejected as duplicates if they were).
	for i, r := range f.ApplyBatch(entries) {
		if r != nil {
			t.Fatalf("re-delivered entry %d was applied again: %+v", i+1, r)
		}
	}
	ids, _ := f.Identities(events.KindUser)
	if len(ids) != 3 {
		t.Fatalf("%d users, want 3", len(ids))
	}
}

// snapshotBytes takes a snapshot of f and streams it into memory.
func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotRestore(t *testing.T) {
	src := openTest(t, t.TempDir())
	a := &applier{t: t, f: src}
	a.mustApply(&events.UserAdded{Name: "alice"})
	a.mustApply(&events.TargetKeyRegistered{Target: "web-1", PublicKey: bytes.Repeat([]byte{7}, 32), Labels: map[string]string{"role": "web"}})
	a.mustApply(&events.BenchWrite{Data: bytes.Repeat([]byte{1}, 256)})
	snap := snapshotBytes(t, src)
	// Changes after the snapshot must not be in it.
	a.mustApply(&events.UserAdded{Name: "late"})

	dst := openTest(t, t.TempDir())
	b := &applier{t: t, f: dst}
	b.mustApply(&events.UserAdded{Name: "replaced"})
	if err := dst.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if dst.AppliedIndex() != 3 {
		t.Fatalf("restored applied index = %d, want 3", dst.AppliedIndex())
	}
	users, _ := dst.Identities(events.KindUser)
	if len(users) != 1 || users[0].GetName() != "alice" {
		t.Fatalf("restored users = %v, want [alice]", users)
	}
	tk, err := dst.TargetByKey(bytes.Repeat([]byte{7}, 32))
	if err != nil || tk.GetLabels()["role"] != "web" {
		t.Fatalf("restored target = %v, %v", tk, err)
	}
	var n int
	dst.Events(0, func(*events.Event) bool { n++; return true })
	if n != 3 {
		t.Fatalf("restored archive has %d events, want 3", n)
	}
	// Same state, same bytes: snapshots are deterministic.
	if !bytes.Equal(snap, snapshotBytes(t, dst)) {
		t.Fatal("snapshot of restored state differs from the original snapshot")
	}
}

func TestRestoreRefusesBadSnapshot(t *testing.T) {
	src := openTest(t, t.TempDir())
	a := &applier{t: t, f: src}
	a.mustApply(&events.UserAdded{Name: "alice"})
	good := snapshotBytes(t, src)

	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-5] ^= 0xff
	cases := map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("NOTSNAP!"), good[8:]...),
		"truncated": good[:len(good)-20],
		"corrupt":   corrupt,
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dst := openTest(t, t.TempDir())
			b := &applier{t: t, f: dst}
			b.mustApply(&events.UserAdded{Name: "keep"})
			if err := dst.Restore(bytes.NewReader(data)); err == nil {
				t.Fatal("bad snapshot restored")
			}
			if _, err := dst.Identity(events.Subject{Kind: "user", Name: "keep"}); err != nil {
				t.Fatalf("state changed by a refused restore: %v", err)
			}
		})
	}
}

// TestWaitApplied proves by events, not by a time window, that a waiter
// woken by an apply short of its index goes back to waiting: synctest.Wait
// returns only once every goroutine of the bubble is blocked, so after it
// the waiter has seen index 2 and is blocked again, or has returned.
func TestWaitApplied(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	synctest.Test(t, func(t *testing.T) {
		// The channel WaitApplied blocks on is made by the last apply; made
		// inside the bubble, blocking on it is what synctest can see.
		a.t = t
		a.mustApply(&events.UserAdded{Name: "a"})
		done := make(chan error, 1)
		go func() { done <- f.WaitApplied(context.Background(), 3) }()
		synctest.Wait()
		a.mustApply(&events.UserAdded{Name: "b"})
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("WaitApplied(3) returned at index 2: %v", err)
		default:
		}
		a.mustApply(&events.UserAdded{Name: "c"})
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("WaitApplied(3) at index 3: %v", err)
			}
		default:
			t.Fatal("WaitApplied(3) still waiting at index 3")
		}
		// Already applied: no wait at all.
		if err := f.WaitApplied(context.Background(), 2); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := f.WaitApplied(ctx, 99); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitApplied(99) with its context done = %v, want context.Canceled", err)
		}
	})
}

func TestApplyHaltsOnUndecodableEntry(t *testing.T) {
	f := openTest(t, t.TempDir())
	defer func() {
		if recover() == nil {
			t.Fatal("ApplyBatch accepted an undecodable entry")
		}
		if f.AppliedIndex() != 0 {
			t.Fatalf("applied index advanced to %d past a corrupt entry", f.AppliedIndex())
		}
	}()
	f.ApplyBatch([]Entry{{Index: 1, Data: []byte{0xff, 0xff}}})
}

// Abandon is what fault tests crash a node with: it must leave on disk what
// a killed process would, which is the state at its last flush.
func TestAbandonLosesTheMemtables(t *testing.T) {
	dir := t.TempDir()
	f := openTest(t, dir)
	a := &applier{t: t, f: f}
	a.apply("", &events.UserAdded{Name: "flushed"})
	snapshotBytes(t, f) // flushes
	flushed := f.AppliedIndex()
	a.apply("", &events.UserAdded{Name: "lost"})
	if err := f.Abandon(); err != nil {
		t.Fatal(err)
	}
	g := openTest(t, dir)
	if got := g.AppliedIndex(); got != flushed {
		t.Fatalf("applied index after Abandon = %d, want %d (the last flush)", got, flushed)
	}
	if _, err := g.Identity(events.Subject{Kind: events.KindUser, Name: "lost"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unflushed user after Abandon: %v, want not found", err)
	}
}
