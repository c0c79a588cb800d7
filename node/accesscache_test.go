package node

import (
	"crypto/sha256"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

// TestAccessCacheFollowsTheState applies changes to a real state between
// lookups: each is visible to the next lookup, and events that do not touch
// access leave the cache alone.
func TestAccessCacheFollowsTheState(t *testing.T) {
	f, err := fsm.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var index uint64
	apply := func(p proto.Message) {
		t.Helper()
		ev, err := events.New("user:admin", "", time.Unix(1, 0), p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		index++
		if r := f.ApplyBatch([]fsm.Entry{{Index: index, Data: data}})[0]; r.Rejected != nil {
			t.Fatalf("apply %T: %v", p, r.Rejected)
		}
	}
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
