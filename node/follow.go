package node

import (
	"context"
	"errors"

	"github.com/hpt-dev/hpt/events"
)

// eventArchive is what followEvents reads: the fsm's archive of applied
// events and the signal that more were applied.
type eventArchive interface {
	// Changed returns a channel closed at the next apply.
	Changed() <-chan struct{}
	// Events calls fn for each archived event from index since on, in
	// order, until fn returns false.
	Events(since uint64, fn func(*events.Event) bool) error
}

// followPage bounds how many archived events one read takes, so the
// archive is never held while handle runs (it may send on the network or
// read the state again) and memory stays bounded however far behind the
// follower starts.
const followPage = 256

// errStopFollow, returned by a handle, ends followEvents without error.
var errStopFollow = errors.New("stop following events")

// archiveError is an error reading the archive, as against one that
// handle returned: it reads as the error it wraps.
type archiveError struct{ err error }

func (e *archiveError) Error() string { return e.err.Error() }
func (e *archiveError) Unwrap() error { return e.err }

// followEvents hands handle, in order, each archived event from index next
// on that keep accepts (every event where keep is nil). Without follow it
// returns nil at the end of the archive; with follow it waits for more
// events until ctx ends, and then returns ctx's error.
//
// It returns where a later call would resume: after the last event it
// read and handed on or filtered out. A handle error ends it and is
// returned as it is (errStopFollow as nil), as is an error reading the
// archive (as an *archiveError), after the events read before that error
// were handed on. Taking Changed before each read means an apply between a
// read and the wait is never missed.
func followEvents(ctx context.Context, archive eventArchive, next uint64, follow bool, keep func(*events.Event) bool, handle func(*events.Event) error) (uint64, error) {
	for {
		changed := archive.Changed()
		// Read a page, then hand it on with the archive released.
		var batch []*events.Event
		scanned, after := 0, next
		readErr := archive.Events(next, func(ev *events.Event) bool {
			scanned++
			after = ev.GetIndex() + 1
			if keep == nil || keep(ev) {
				batch = append(batch, ev)
			}
			return scanned < followPage
		})
		for _, ev := range batch {
			if err := handle(ev); err != nil {
				if errors.Is(err, errStopFollow) {
					return ev.GetIndex() + 1, nil
				}
				return ev.GetIndex(), err
			}
		}
		next = after
		if readErr != nil {
			return next, &archiveError{readErr}
		}
		if scanned == followPage {
			continue
		}
		if !follow {
			return next, nil
		}
		select {
		case <-ctx.Done():
			return next, ctx.Err()
		case <-changed:
		}
	}
}
