package events

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func encodedEvents(t testing.TB, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		ev, err := New("user:a", "r", time.Unix(1, 0), &BenchWrite{Data: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		if out[i], err = Encode(ev); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	enc := encodedEvents(t, 3)
	b, err := EncodeBatch(enc)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("decoded %d events, want 3", len(evs))
	}
	for i, d := range evs {
		if got := d.Payload.(*BenchWrite).GetData(); len(got) != 1 || got[0] != byte(i) {
			t.Fatalf("event %d: payload %v", i, d.Payload)
		}
		want, _ := Decode(enc[i])
		if !proto.Equal(d.Event, want) {
			t.Fatalf("event %d differs after the round trip", i)
		}
	}
}

func TestBatchRefusesBadInput(t *testing.T) {
	if _, err := EncodeBatch(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty batch encoded: %v", err)
	}
	if _, err := EncodeBatch(make([][]byte, PerEntry+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("batch of %d encoded: %v", PerEntry+1, err)
	}
	empty, _ := proto.Marshal(&Batch{})
	if _, err := DecodeBatch(empty); !errors.Is(err, ErrMalformed) {
		t.Errorf("batch without events decoded: %v", err)
	}
	// A bad event anywhere refuses the whole entry, naming its position.
	enc := encodedEvents(t, 2)
	enc = append(enc, []byte{0xff, 0x01})
	b, _ := proto.Marshal(&Batch{Events: enc})
	_, err := DecodeBatch(b)
	if !errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "batch event 2:") {
		t.Errorf("bad third event: %v", err)
	}
}

func TestIndexNamesItsEntry(t *testing.T) {
	for _, c := range []struct {
		entry uint64
		i     int
	}{{1, 0}, {52, 17}, {1 << 40, PerEntry - 1}} {
		idx := IndexOf(c.entry, c.i)
		if EntryOf(idx) != c.entry {
			t.Errorf("EntryOf(IndexOf(%d, %d)) = %d", c.entry, c.i, EntryOf(idx))
		}
		if c.i < PerEntry-1 && IndexOf(c.entry, c.i+1) != idx+1 {
			t.Errorf("events of entry %d are not consecutive", c.entry)
		}
	}
	if IndexOf(52, 17) != 52017 {
		t.Errorf("IndexOf(52, 17) = %d, want 52017", IndexOf(52, 17))
	}
}

// FuzzDecodeEntry feeds arbitrary bytes to the decoder of Raft entries: it
// must never panic, and whatever it accepts must encode and decode to the
// same events.
func FuzzDecodeEntry(f *testing.F) {
	b, _ := EncodeBatch(encodedEvents(f, 2))
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	enc := encodedEvents(f, 1)
	f.Add(enc[0]) // an entry from before batches
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, legacy, err := DecodeEntry(data)
		if err != nil {
			return
		}
		if legacy {
			if len(evs) != 1 {
				t.Fatalf("legacy entry decoded to %d events", len(evs))
			}
			again, err := Decode(data)
			if err != nil || !proto.Equal(again, evs[0].Event) {
				t.Fatalf("legacy entry differs from its event: %v", err)
			}
			return
		}
		enc := make([][]byte, len(evs))
		for i, d := range evs {
			if enc[i], err = Encode(d.Event); err != nil {
				t.Fatalf("accepted event %d does not encode: %v", i, err)
			}
		}
		b, err := EncodeBatch(enc)
		if err != nil {
			t.Fatalf("accepted batch does not encode: %v", err)
		}
		again, err := DecodeBatch(b)
		if err != nil || len(again) != len(evs) {
			t.Fatalf("re-decode differs: %v", err)
		}
		for i := range evs {
			if !proto.Equal(evs[i].Event, again[i].Event) || !proto.Equal(evs[i].Payload, again[i].Payload) {
				t.Fatalf("event %d differs after re-decode", i)
			}
		}
	})
}
