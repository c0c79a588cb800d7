package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// FuzzRestore feeds arbitrary bytes to Restore, as a snapshot upload
// (`hpt cluster snapshot restore`) or a snapshot file read back does. A
// refused stream must leave the state exactly as it was (same applied index,
// same snapshot bytes), VerifySnapshot (which uploads go through first) must
// agree with Restore, and an accepted stream must round trip: the restored
// state snapshots back to the same bytes.
func FuzzRestore(f *testing.F) {
	// One state per fuzzing process: Restore replaces it wholesale, so a
	// successful restore is undone by restoring the baseline again.
	dst, err := Open(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dst.Close() })
	applyTB(f, dst, 1, &events.UserAdded{Name: "keep"})
	baseline := snapshotTB(f, dst)
	baseIndex := dst.AppliedIndex()

	src, err := Open(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { src.Close() })
	applyTB(f, src, 1, &events.UserAdded{Name: "alice"})
	applyTB(f, src, 2, &events.TargetKeyRegistered{Target: "web-1", PublicKey: bytes.Repeat([]byte{7}, 32), Labels: map[string]string{"role": "web"}})
	applyTB(f, src, 3, &events.DestinationAdded{Name: "web-1", Kind: events.DestSSH, Addr: "127.0.0.1:22", Connector: "web-1"})
	applyTB(f, src, 4, &events.CredentialIssued{Id: "c-1", Subject: "user:alice", Destination: "web-1", Kind: events.DestSSH,
		Role: "login:deploy", Principals: []string{"deploy@web-1"}, Serial: 7, ValidAfterUnixNano: 1, ValidBeforeUnixNano: t0.Add(time.Hour).UnixNano()})
	applyTB(f, src, 5, &events.CredentialRevoked{Id: "c-1", Reason: "test"})
	good := snapshotTB(f, src)

	f.Add(good)
	f.Add(baseline)
	f.Add([]byte{})
	f.Add(good[:len(snapshotMagic)])
	f.Add(good[:len(good)-1])
	f.Add(append([]byte("NOTSNAP!"), good[8:]...))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-5] ^= 0xff
	f.Add(corrupt)

	f.Fuzz(func(t *testing.T, data []byte) {
		verifiedIndex, verr := VerifySnapshot(bytes.NewReader(data))
		err := dst.Restore(bytes.NewReader(data))
		if (verr == nil) != (err == nil) {
			t.Fatalf("VerifySnapshot says %v but Restore says %v", verr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("refusal %v is not ErrBadSnapshot", err)
			}
			if dst.AppliedIndex() != baseIndex {
				t.Fatalf("refused restore moved the applied index to %d, want %d", dst.AppliedIndex(), baseIndex)
			}
			if got := snapshotTB(t, dst); !bytes.Equal(got, baseline) {
				t.Fatal("refused restore changed the state")
			}
			return
		}
		if dst.AppliedIndex() != verifiedIndex {
			t.Fatalf("restored applied index %d, VerifySnapshot said %d", dst.AppliedIndex(), verifiedIndex)
		}
		if got := snapshotTB(t, dst); !bytes.Equal(got, data) {
			t.Fatal("an accepted snapshot does not snapshot back to the same bytes")
		}
		if err := dst.Restore(bytes.NewReader(baseline)); err != nil {
			t.Fatalf("restore baseline: %v", err)
		}
	})
}

// applyTB applies one event at index, failing on a rejection.
func applyTB(tb testing.TB, f *FSM, index uint64, p proto.Message) {
	tb.Helper()
	ev, err := events.New("user:admin", "", t0, p)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := events.Encode(ev)
	if err != nil {
		tb.Fatal(err)
	}
	if b, err = events.EncodeBatch([][]byte{b}); err != nil {
		tb.Fatal(err)
	}
	if r := f.ApplyBatch([]Entry{{Index: index, Data: b}})[0][0]; r.Rejected != nil {
		tb.Fatalf("apply %T: rejected: %v", p, r.Rejected)
	}
}

// snapshotTB returns the bytes of a snapshot of f's current state.
func snapshotTB(tb testing.TB, f *FSM) []byte {
	tb.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	defer snap.Release()
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzVerifySnapshot is FuzzRestore's decoder without the state: uploads
// are verified with VerifySnapshot before Raft restores them, and it runs
// fast enough for the fuzzer to explore the format (Restore opens a fresh
// database per try). A refusal is ErrBadSnapshot; an accepted stream is
// one Restore accepts too, at the index VerifySnapshot reported, and no
// truncation of it is accepted.
func FuzzVerifySnapshot(f *testing.F) {
	src, err := Open(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { src.Close() })
	applyTB(f, src, 1, &events.UserAdded{Name: "alice"})
	applyTB(f, src, 2, &events.GroupAdded{Name: "ops"})
	good := snapshotTB(f, src)
	f.Add(good)
	f.Add(good[:len(snapshotMagic)])
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	dst, err := Open(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dst.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		index, err := VerifySnapshot(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("refusal %v is not ErrBadSnapshot", err)
			}
			return
		}
		for _, n := range []int{len(data) - 1, len(data) / 2, len(snapshotMagic)} {
			if n >= 0 && n < len(data) {
				if _, err := VerifySnapshot(bytes.NewReader(data[:n])); err == nil {
					t.Fatalf("the first %d of %d bytes verify too", n, len(data))
				}
			}
		}
		if err := dst.Restore(bytes.NewReader(data)); err != nil {
			t.Fatalf("VerifySnapshot accepted what Restore refuses: %v", err)
		}
		if dst.AppliedIndex() != index {
			t.Fatalf("restored index %d, verified %d", dst.AppliedIndex(), index)
		}
	})
}
