package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// Poll returns as soon as the condition holds, and cond's last error when
// it never does.
func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(context.Background(), 10*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Poll = %v after %d calls, want nil after 3", err, n)
	}
	err := Poll(context.Background(), 50*time.Millisecond, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Poll of a false condition = %v, want its error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Poll(ctx, time.Hour, func() error { return errors.New("cancelled") }); err == nil {
		t.Fatal("Poll with a cancelled context returned nil")
	}
}
