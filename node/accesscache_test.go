package node

import (
	"crypto/sha256"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

// openState opens a real, empty state in a temporary directory, closed
// when the test ends.
func openState(tb testing.TB) *fsm.FSM {
	tb.Helper()
	f, err := fsm.Open(tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// applyEvents applies payloads to f as one batch of consecutive log
// entries after *index, by user:admin, and fails on a rejection.
func applyEvents(tb testing.TB, f *fsm.FSM, index *uint64, payloads ...proto.Message) {
	tb.Helper()
	entries := make([]fsm.Entry, len(payloads))
	for i, p := range payloads {
		ev, err := events.New("user:admin", "", time.Unix(1, 0), p)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := events.Encode(ev)
		if err != nil {
			tb.Fatal(err)
		}
		if data, err = events.EncodeBatch([][]byte{data}); err != nil {
			tb.Fatal(err)
		}
		*index++
		entries[i] = fsm.Entry{Index: *index, Data: data}
	}
	for i, r := range f.ApplyBatch(entries) {
		if r[0].Rejected != nil {
			tb.Fatalf("apply %T at %d: %v", payloads[i], entries[i].Index, r[0].Rejected)
		}
	}
}

// TestAccessCacheFollowsTheState applies changes to a real state between
// lookups: each is visible to the next lookup, and events that do not touch
// access leave the cache alone.
func TestAccessCacheFollowsTheState(t *testing.T) {
	f := openState(t)
	var index uint64
	apply := func(p proto.Message) { applyEvents(t, f, &index, p) }
	c := newAccessCache(f)
	secret := sha256.Sum256([]byte("s"))
	apply(&events.UserAdded{Name: "alice"})
	apply(&events.GroupAdded{Name: "ops"})
	apply(&events.GroupMemberAdded{Group: "ops", Member: "user:alice"})
	apply(&events.GrantAdded{Subject: "group:ops", Privilege: "view", Resource: "*"})
	apply(&events.TokenCreated{Id: "abcdefghijkl", SecretSha256: secret[:], Subject: "user:alice"})

	tok, err := c.token("abcdefghijkl")
	if err != nil || tok.GetRevoked() {
		t.Fatalf("token %v, %v", tok, err)
	}
	groups, err := c.groupsOf("user:alice")
	if err != nil || len(groups) != 1 {
		t.Fatalf("groups %v, %v", groups, err)
	}
	grants, err := c.grantsOf("group:ops")
	if err != nil || len(grants) != 1 {
		t.Fatalf("grants %v, %v", grants, err)
	}

	gen := f.AccessGeneration()
	apply(&events.BenchWrite{Data: []byte("x")})
	if f.AccessGeneration() != gen {
		t.Error("a bench write moved the access generation")
	}

	apply(&events.TokenRevoked{Id: "abcdefghijkl"})
	if tok, err := c.token("abcdefghijkl"); err != nil || !tok.GetRevoked() {
		t.Errorf("after revocation: token %v, %v", tok, err)
	}
	apply(&events.GroupMemberRemoved{Group: "ops", Member: "user:alice"})
	if groups, err := c.groupsOf("user:alice"); err != nil || len(groups) != 0 {
		t.Errorf("after leaving the group: groups %v, %v", groups, err)
	}
	apply(&events.GrantRemoved{Subject: "group:ops", Privilege: "view", Resource: "*"})
	if grants, err := c.grantsOf("group:ops"); err != nil || len(grants) != 0 {
		t.Errorf("after removing the grant: grants %v, %v", grants, err)
	}
}
