package node

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// TestFollowEventsPagesFiltersStopsAndFollows reads a real archive longer
// than a page: every kept event arrives once and in order, the resume point
// passes filtered-out events, a handle can stop it, and following delivers
// what is applied later until the context ends.
func TestFollowEventsPagesFiltersStopsAndFollows(t *testing.T) {
	f := openState(t)
	var index uint64
	var payloads []proto.Message
	for i := range 2*followPage + 10 {
		if i%3 == 0 {
			payloads = append(payloads, &events.UserAdded{Name: fmt.Sprintf("u%d", i)})
		} else {
			payloads = append(payloads, &events.BenchWrite{Data: []byte("x")})
		}
	}
	applyEvents(t, f, &index, payloads...)
	users := func(ev *events.Event) bool { return ev.GetType() == events.Type_TYPE_USER_ADDED }
	var got []uint64
	collect := func(ev *events.Event) error { got = append(got, ev.GetIndex()); return nil }

	next, err := followEvents(context.Background(), f, 0, false, users, collect)
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(payloads) + 2) / 3; len(got) != want {
		t.Fatalf("got %d user events, want %d", len(got), want)
	}
	for i, idx := range got {
		if want := events.IndexOf(uint64(3*i+1), 0); idx != want {
			t.Fatalf("event %d has index %d, want %d", i, idx, want)
		}
	}
	// The last event is a bench write: the resume point is past it.
	if want := events.IndexOf(index, 0) + 1; next != want {
		t.Errorf("resume at %d, want %d (after the last event read)", next, want)
	}

	// A handle stops it: the resume point is after the event it took.
	got = nil
	next, err = followEvents(context.Background(), f, 0, false, nil, func(ev *events.Event) error {
		got = append(got, ev.GetIndex())
		if len(got) == 3 {
			return errStopFollow
		}
		return nil
	})
	if err != nil || len(got) != 3 || next != got[2]+1 {
		t.Errorf("stopped after %v at %d, %v; want 3 events and the index after the third", got, next, err)
	}
	// Any other handle error is returned as it is, at the event it refused.
	boom := errors.New("boom")
	next, err = followEvents(context.Background(), f, 0, false, nil, func(*events.Event) error { return boom })
	if err != boom || next != events.IndexOf(1, 0) {
		t.Errorf("handle error: %d, %v; want %d, %v", next, err, events.IndexOf(1, 0), boom)
	}

	// Following: events applied later arrive, then the context ends it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from := events.IndexOf(index, 0) + 1
	arrived := make(chan uint64, 8)
	done := make(chan error, 1)
	go func() {
		_, err := followEvents(ctx, f, from, true, users, func(ev *events.Event) error {
			arrived <- ev.GetIndex()
			return nil
		})
		done <- err
	}()
	for i := range 3 {
		applyEvents(t, f, &index, &events.BenchWrite{Data: []byte("y")}, &events.UserAdded{Name: fmt.Sprintf("late%d", i)})
		select {
		case idx := <-arrived:
			if want := events.IndexOf(index, 0); idx != want {
				t.Fatalf("followed event %d, want %d", idx, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d applied while following never arrived", i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("follow ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}
