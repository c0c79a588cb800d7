// Package testenv decides what a test does when the machine lacks a tool or
// root privileges it needs: on a developer's machine it skips, saying what
// to install; under CI=true it fails, because .ci/run installs everything
// and a skip there would hide a test that never ran. It also holds the one
// poll-until helper tests wait for conditions with (Poll, Eventually).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// InCI reports whether the environment says this is a CI run (CI=true, or
// any other value strconv.ParseBool takes as true).
func InCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// Missing skips the test with the reason, or fails it under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s; CI=true, so this is a failure, not a skip (.ci/run must install it)", why)
		return
	}
	t.Skip(why)
}

// NeedTool returns the path of the named program, or skips (fails under CI)
// naming the Debian package that provides it.
func NeedTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "needs %s (Debian package %s): %v", name, debianPackage, err)
	}
	return p
}

// NeedRoot skips (fails under CI) unless the test runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (runs as uid %d)", os.Geteuid())
	}
}
