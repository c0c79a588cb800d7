package events

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// PerEntry is how many events one Raft log entry may carry, and the stride
// of event indexes: the i-th event (from 0) of the entry at Raft index e has
// index e*PerEntry+i. Indexes so derived grow with the log, are the same on
// every replica, are never reused (not even after restoring an older
// snapshot, since Raft indexes only grow), and name the entry that holds
// the event, which is what read-your-writes waits for. Decimal keeps that
// readable: event 52017 is the 18th of entry 52.
const PerEntry = 1000

// MaxBatchSize bounds an encoded batch: a batch of small events is cut
// before it reaches this, and a single event of up to MaxEncodedSize always
// fits.
const MaxBatchSize = MaxEncodedSize + 64<<10

// IndexOf returns the index of the i-th event of the entry at Raft index
// entry.
func IndexOf(entry uint64, i int) uint64 { return entry*PerEntry + uint64(i) }

// EntryOf returns the Raft index of the entry that carries the event with
// index index.
func EntryOf(index uint64) uint64 { return index / PerEntry }

// EncodeBatch returns the Raft entry for encoded events, which the caller
// has built with Encode (or checked with Decode).
func EncodeBatch(encoded [][]byte) ([]byte, error) {
	if len(encoded) == 0 || len(encoded) > PerEntry {
		return nil, fmt.Errorf("%w: batch of %d events, want 1 to %d", ErrMalformed, len(encoded), PerEntry)
	}
	b, err := proto.Marshal(&Batch{Events: encoded})
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	if len(b) > MaxBatchSize {
		return nil, fmt.Errorf("%w: batch of %d bytes exceeds the %d byte limit", ErrMalformed, len(b), MaxBatchSize)
	}
	return b, nil
}

// Decoded is one event of a batch with its payload.
type Decoded struct {
	Event   *Event
	Payload proto.Message
}

// DecodeBatch parses a Raft entry into its events, each fully validated as
// Decode does. It never panics on any input.
func DecodeBatch(b []byte) ([]Decoded, error) {
	if len(b) > MaxBatchSize {
		return nil, fmt.Errorf("%w: batch of %d bytes exceeds the %d byte limit", ErrMalformed, len(b), MaxBatchSize)
	}
	var batch Batch
	if err := proto.Unmarshal(b, &batch); err != nil {
		return nil, fmt.Errorf("%w: batch: %v", ErrMalformed, err)
	}
	n := len(batch.GetEvents())
	if n == 0 || n > PerEntry {
		return nil, fmt.Errorf("%w: batch of %d events, want 1 to %d", ErrMalformed, n, PerEntry)
	}
	out := make([]Decoded, n)
	for i, data := range batch.GetEvents() {
		ev, p, err := decode(data)
		if err != nil {
			return nil, fmt.Errorf("batch event %d: %w", i, err)
		}
		out[i] = Decoded{Event: ev, Payload: p}
	}
	return out, nil
}

// DecodeEntry decodes a Raft command entry. Entries are batches; a log
// written before batches (hpt before December 2026) holds single encoded
// events, which DecodeEntry returns alone with legacy set: such an event's
// index is the entry's Raft index, as it was when it was first applied, so
// every replica still agrees on it. The two encodings differ in their first
// byte: an Event starts with its version (field 1, varint: 0x08, and
// version is never 0), a Batch with its first event (field 1, bytes: 0x0a).
func DecodeEntry(b []byte) (evs []Decoded, legacy bool, err error) {
	if len(b) > 0 && b[0] == 0x08 {
		ev, p, err := decode(b)
		if err != nil {
			return nil, true, err
		}
		return []Decoded{{Event: ev, Payload: p}}, true, nil
	}
	evs, err = DecodeBatch(b)
	return evs, false, err
}
