//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package keystore

import (
	"os"
	"time"
)

// lockFile does nothing here: bbolt's own lock (with the same timeout) is
// the only one, taken after checkBolt has read the file.
func lockFile(*os.File, time.Duration) error { return nil }
