package fsm

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/hpt-dev/hpt/events"
)

// BenchmarkApplyBatch measures applying 64 256-byte bench_write events at a
// time, in entries of 16, each event with its own request id, to a state
// that already holds 100,000 events: the state machine's share of a
// committed write. Request ids are random, as any client may send, or grow
// with time, as hpt's own clients make them (rpc.NewRequestID).
func BenchmarkApplyBatch(b *testing.B) {
	b.Run("random-ids", func(b *testing.B) {
		benchmarkApplyBatch(b, func(id []byte) { rand.Read(id) })
	})
	b.Run("time-ordered-ids", func(b *testing.B) {
		var n uint64
		benchmarkApplyBatch(b, func(id []byte) {
			// As rpc.NewRequestID, with a counter for the clock.
			n++
			binary.BigEndian.PutUint64(id[:8], n<<16)
			rand.Read(id[6:])
		})
	})
}

func benchmarkApplyBatch(b *testing.B, newID func([]byte)) {
	f, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const perEntry = 16
	var next uint64
	batch := func(n int) []Entry {
		out := make([]Entry, n/perEntry)
		for i := range out {
			encoded := make([][]byte, perEntry)
			for j := range encoded {
				var id [16]byte
				newID(id[:])
				ev, err := events.New("user:admin", hex.EncodeToString(id[:]), t0, &events.BenchWrite{Data: make([]byte, 256)})
				if err != nil {
					b.Fatal(err)
				}
				if encoded[j], err = events.Encode(ev); err != nil {
					b.Fatal(err)
				}
			}
			data, err := events.EncodeBatch(encoded)
			if err != nil {
				b.Fatal(err)
			}
			next++
			out[i] = Entry{Index: next, Data: data}
		}
		return out
	}
	for range 100_000 / 512 {
		f.ApplyBatch(batch(512))
	}
	pending := make([][]Entry, b.N)
	for i := range pending {
		pending[i] = batch(64)
	}
	b.ResetTimer()
	for i := range b.N {
		for _, entry := range f.ApplyBatch(pending[i]) {
			for _, r := range entry {
				if r.Rejected != nil || r.Duplicate {
					b.Fatalf("result %+v", r)
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/event")
}
