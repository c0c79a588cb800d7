package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Poll and Eventually check their condition.
const PollInterval = 20 * time.Millisecond

// Poll checks cond every PollInterval until it returns nil, ctx ends or
// timeout passes, and then returns nil or cond's last error. It is the one
// poll-until loop of hpt's tests (nats-server's checkFor): tests wait for
// conditions, never for durations.
func Poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met in %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// Eventually polls cond (Poll) and fails the test with cond's last error
// if it does not hold within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(context.Background(), timeout, cond); err != nil {
		t.Fatal(err)
	}
}
