package fsm

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// applyAt applies p as an event proposed at time at.
func (a *applier) applyAt(at time.Time, p proto.Message) Result {
	a.t.Helper()
	ev, err := events.New("user:admin", "", at, p)
	if err != nil {
		a.t.Fatal(err)
	}
	b, err := events.Encode(ev)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.f.ApplyBatch([]Entry{a.batch(b)})[0][0]
}

func (a *applier) mustApplyAt(at time.Time, p proto.Message) Result {
	a.t.Helper()
	r := a.applyAt(at, p)
	if r.Rejected != nil {
		a.t.Fatalf("apply %T at %s: rejected: %v", p, at, r.Rejected)
	}
	return r
}

func wantRejected(t *testing.T, what string, r Result, kind error) {
	t.Helper()
	if r.Rejected == nil || !errors.Is(r.Rejected, kind) {
		t.Fatalf("%s: result %+v, want a rejection as %v", what, r.Rejected, kind)
	}
}

func grantOf(t *testing.T, f *FSM, subject string) *Grant {
	t.Helper()
	gs, err := f.Grants(subject)
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants of %s = %v, %v; want one", subject, gs, err)
	}
	return gs[0]
}

func expiredGrants(t *testing.T, f *FSM, now time.Time) []string {
	t.Helper()
	gs, err := f.ExpiredGrants(now, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range gs {
		out = append(out, g.GetSubject()+" "+g.GetPrivilege()+" "+g.GetResource())
	}
	return out
}

func TestTimeBoundGrants(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.mustApply(&events.UserAdded{Name: "alice"})
	exp := t0.Add(time.Hour).UnixNano()
	grant := func(e int64) *events.GrantAdded {
		return &events.GrantAdded{Subject: "user:alice", Privilege: "view", Resource: "targets/*", ExpiresUnixNano: e}
	}

	// Expiry is judged against the event's time, never a clock.
	wantRejected(t, "expiry at the event time", a.applyAt(t0, grant(t0.UnixNano())), ErrInvalid)
	wantRejected(t, "expiry before the event time", a.applyAt(t0, grant(t0.Add(-time.Second).UnixNano())), ErrInvalid)
	wantRejected(t, "negative expiry", a.applyAt(t0, grant(-1)), ErrInvalid)
	a.mustApplyAt(t0.Add(-2*time.Hour), grant(t0.Add(-time.Hour).UnixNano())) // in the past now, not when proposed
	if got := grantOf(t, f, "user:alice").GetExpiresUnixNano(); got != t0.Add(-time.Hour).UnixNano() {
		t.Fatalf("expiry = %d", got)
	}

	// Re-adding with another expiry moves it (and its index entry); with
	// the same one it is a duplicate.
	created := grantOf(t, f, "user:alice").GetCreated().GetIndex()
	a.mustApplyAt(t0, grant(exp))
	g := grantOf(t, f, "user:alice")
	if g.GetExpiresUnixNano() != exp || g.GetCreated().GetIndex() != created {
		t.Fatalf("re-added grant = %v, want expiry %d and origin %d kept", g, exp, created)
	}
	wantRejected(t, "same grant, same expiry", a.applyAt(t0, grant(exp)), ErrExists)
	if got := expiredGrants(t, f, t0); len(got) != 0 {
		t.Fatalf("expired at t0 = %v, want none (the old expiry's entry must be gone)", got)
	}
	if got := expiredGrants(t, f, t0.Add(time.Hour)); !slices.Equal(got, []string{"user:alice view targets/*"}) {
		t.Fatalf("expired at expiry = %v", got)
	}

	// The leader's removal applies only once the grant expired by the
	// removal event's time; a second removal (two leaders racing) is
	// refused as not found, changing nothing.
	expired := &events.GrantRemoved{Subject: "user:alice", Privilege: "view", Resource: "targets/*", Reason: events.GrantExpired}
	wantRejected(t, "expired removal before expiry", a.applyAt(t0.Add(30*time.Minute), expired), ErrConflict)
	wantRejected(t, "unknown reason", a.applyAt(t0.Add(2*time.Hour), &events.GrantRemoved{Subject: "user:alice", Privilege: "view", Resource: "targets/*", Reason: "bored"}), ErrInvalid)
	a.mustApplyAt(t0.Add(time.Hour), expired)
	wantRejected(t, "second expired removal", a.applyAt(t0.Add(time.Hour), expired), ErrNotFound)
	if got := expiredGrants(t, f, t0.Add(48*time.Hour)); len(got) != 0 {
		t.Fatalf("expired after removal = %v, want none", got)
	}

	// Making a grant permanent by re-adding it without expiry.
	a.mustApplyAt(t0, grant(exp))
	a.mustApplyAt(t0, grant(0))
	if got := expiredGrants(t, f, t0.Add(48*time.Hour)); len(got) != 0 {
		t.Fatalf("expired after making it permanent = %v, want none", got)
	}
	wantRejected(t, "expired removal of a permanent grant", a.applyAt(t0.Add(48*time.Hour), expired), ErrConflict)

	// Removing the subject removes its expiring grants' index entries too.
	a.mustApplyAt(t0, &events.GrantAdded{Subject: "user:alice", Privilege: "view", Resource: "jobs/*", ExpiresUnixNano: exp})
	a.mustApply(&events.UserRemoved{Name: "alice"})
	if got := expiredGrants(t, f, t0.Add(48*time.Hour)); len(got) != 0 {
		t.Fatalf("expired after the subject's removal = %v, want none", got)
	}
}
