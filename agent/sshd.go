package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/rpc"
)

// sshdRetry is how long a failed Apply (a write or reload error, not bad
// input) waits before it is tried again, unless newer state comes first.
const sshdRetry = 10 * time.Second

// sshdApplier applies the SSH access state nodes send, in its own
// goroutine so that a slow reload never stalls the stream: every SSHAccess
// is the whole desired state, so only the latest waiting one matters.
type sshdApplier struct {
	m   *sshaccess.Manager
	log *slog.Logger

	mu   sync.Mutex
	next *rpc.SSHAccess
	wake chan struct{} // capacity 1: "next is set"
}

func newSSHDApplier(m *sshaccess.Manager, log *slog.Logger) *sshdApplier {
	return &sshdApplier{m: m, log: log, wake: make(chan struct{}, 1)}
}

// offer replaces the state waiting to be applied.
func (s *sshdApplier) offer(msg *rpc.SSHAccess) {
	s.mu.Lock()
	s.next = msg
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run applies offered states until ctx ends.
func (s *sshdApplier) run(ctx context.Context) {
	var retry <-chan time.Time
	var failed *rpc.SSHAccess
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-retry:
			s.mu.Lock()
			if s.next == nil {
				s.next = failed
			}
			s.mu.Unlock()
		}
		retry, failed = nil, nil
		s.mu.Lock()
		msg := s.next
		s.next = nil
		s.mu.Unlock()
		if msg == nil {
			continue
		}
		_, err := s.m.Apply(ctx, msg)
		switch {
		case err == nil:
		case errors.Is(err, sshaccess.ErrInvalid), errors.Is(err, sshaccess.ErrStale):
			// Trying again cannot help; the node's next state may.
			s.log.Error("ssh access state refused", "index", msg.GetIndex(), "err", err)
		case ctx.Err() != nil:
			return
		default:
			s.log.Error("ssh access state not applied; retrying", "index", msg.GetIndex(), "err", err, "in", sshdRetry)
			failed, retry = msg, time.After(sshdRetry)
		}
	}
}
