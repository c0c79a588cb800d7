package auth

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
)

// realState applies events to a real state machine, for authorization
// tests that read what the log wrote.
func realState(t *testing.T, at time.Time, payloads ...proto.Message) *fsm.FSM {
	t.Helper()
	f, err := fsm.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	for i, p := range payloads {
		ev, err := events.New("user:admin", "", at, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		entry, err := events.EncodeBatch([][]byte{b})
		if err != nil {
			t.Fatal(err)
		}
		if r := f.ApplyBatch([]fsm.Entry{{Index: uint64(i + 1), Data: entry}})[0][0]; r.Rejected != nil {
			t.Fatalf("apply %T: %v", p, r.Rejected)
		}
	}
	return f
}

// TestExpiredGrantAllowsNothing: a grant allows until its expiry by the
// authorizer's clock and nothing from then on, though still in the state
// (the leader has not removed it yet); the denial says which grant expired
// and when, and GrantsHeld still shows it as expired.
func TestExpiredGrantAllowsNothing(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	exp := t0.Add(4 * time.Hour)
	st := realState(t, t0,
		&events.UserAdded{Name: "alice"},
		&events.GroupAdded{Name: "ops"},
		&events.GroupMemberAdded{Group: "ops", Member: "user:alice"},
		&events.GrantAdded{Subject: "user:alice", Privilege: "provision", Resource: "targets/web-*", ExpiresUnixNano: exp.UnixNano()},
		&events.GrantAdded{Subject: "group:ops", Privilege: "keys", Resource: "targets/*", ExpiresUnixNano: exp.UnixNano()},
		&events.GrantAdded{Subject: "user:alice", Privilege: "view", Resource: "*"},
	)
	a := NewAuthorizer(st, nil, nil)
	now := t0
	a.now = func() time.Time { return now }

	tests := []struct {
		at                 time.Time
		subject, priv, res string
		allowed            bool
		reason             string
	}{
		{t0, "user:alice", "provision", "targets/web-1", true, "until " + exp.Format(time.RFC3339)},
		{exp.Add(-time.Nanosecond), "user:alice", "provision", "targets/web-1", true, ""},
		{exp, "user:alice", "provision", "targets/web-1", false, "grant user:alice provision targets/web-* expired at " + exp.Format(time.RFC3339)},
		{exp.Add(time.Hour), "user:alice", "provision", "targets/web-1", false, "hpt grants add user:alice provision 'targets/web-*' --ttl D"},
		{t0, "user:alice", "keys", "targets/db-1", true, ""},
		{exp, "user:alice", "keys", "targets/db-1", false, "grant group:ops keys targets/* expired at"},
		// A permanent grant is untouched by the clock.
		{exp.Add(1000 * time.Hour), "user:alice", "view", "targets/db-1", true, ""},
		// Nothing covers it at all: the plain denial.
		{exp, "user:alice", "admin", "targets/db-1", false, "(add one with: hpt grants add user:alice admin targets/db-1)"},
	}
	for _, tc := range tests {
		now = tc.at
		d, err := a.Check(tc.subject, tc.priv, tc.res)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tc.allowed || !strings.Contains(d.Reason, tc.reason) {
			t.Errorf("at %s: Check(%s %s %s) = allowed %t %q, want %t and %q", tc.at, tc.subject, tc.priv, tc.res, d.Allowed, d.Reason, tc.allowed, tc.reason)
		}
	}

	now = exp
	_, grants, err := a.GrantsHeld("user:alice")
	if err != nil {
		t.Fatal(err)
	}
	var expired, live int
	for _, g := range grants {
		if a.GrantExpired(g) {
			expired++
		} else {
			live++
		}
	}
	if expired != 2 || live != 1 {
		t.Fatalf("GrantsHeld at expiry: %d expired, %d live; want 2 and 1", expired, live)
	}
}
