package rpc

import (
	"encoding/hex"
	"testing"
	"time"
)

// Request ids sort by the time they were made, so the state's index of
// them grows at its end; within a millisecond they still differ.
func TestRequestIDsGrowWithTime(t *testing.T) {
	seen := map[string]bool{}
	prev := NewRequestID()
	for i := range 3 {
		time.Sleep(2 * time.Millisecond)
		id := NewRequestID()
		if id <= prev {
			t.Fatalf("id %d: %s does not sort after %s, made earlier", i, id, prev)
		}
		prev = id
	}
	for range 1000 {
		id := NewRequestID()
		if len(id) != 32 {
			t.Fatalf("id %q: %d characters, want 32", id, len(id))
		}
		if _, err := hex.DecodeString(id); err != nil {
			t.Fatalf("id %q is not hex: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("id %s made twice", id)
		}
		seen[id] = true
	}
}
