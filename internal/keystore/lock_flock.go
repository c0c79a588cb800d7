//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package keystore

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes bbolt's exclusive flock on f before anything reads the
// file, waiting up to timeout; it returns ErrLocked on timeout. bbolt later
// takes the same lock on the same open file, which succeeds at once.
func lockFile(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return err
		case time.Now().After(deadline):
			return ErrLocked
		}
		// Polling, as bbolt does: flock has no timeout of its own.
		time.Sleep(50 * time.Millisecond)
	}
}
