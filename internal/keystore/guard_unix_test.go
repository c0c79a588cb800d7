//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestGuardFault checks that a memory fault inside a guarded call (as bbolt
// reading past the end of a file truncated under it) becomes an error.
func TestGuardFault(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8192); err != nil {
		t.Fatal(err)
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, 8192, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(b)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	k := &Keystore{path: "/some/path"}
	var x byte
	err = k.guard("read", func() error {
		x = b[4096] // SIGBUS: the page is past the end of the file
		return nil
	})
	var pe *panicError
	if !errors.Is(err, ErrNotKeystore) || !errors.As(err, &pe) || !strings.Contains(err.Error(), "/some/path") {
		t.Fatalf("guard: err = %v (read %d), want a recovered fault wrapping ErrNotKeystore", err, x)
	}
	err = k.guard("read", func() error { panic("bbolt assertion") })
	if !errors.Is(err, ErrNotKeystore) || !strings.Contains(err.Error(), "bbolt assertion") {
		t.Errorf("guard: err = %v, want a recovered panic wrapping ErrNotKeystore", err)
	}
}
