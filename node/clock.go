package node

import "time"

// Clock is the time the scheduler judges time-outs by and waits with.
// Event times are the proposer's (SPEC section 6) and the scheduler
// compares them with Now, so a Clock must keep to wall-clock time: a test
// clock may run ahead of it, not elsewhere.
type Clock interface {
	Now() time.Time
	// After sends the time once d has passed, as time.After.
	After(d time.Duration) <-chan time.Time
}

// realClock is the default Clock: package time.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
