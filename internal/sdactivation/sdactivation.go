// Package sdactivation takes over sockets passed by systemd socket
// activation (sd_listen_fds(3)): the first passed descriptor is 3, and
// LISTEN_PID names the process they are meant for.
package sdactivation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
)

// firstFD is SD_LISTEN_FDS_START.
const firstFD = 3

// Listener returns the first socket systemd passed to this process, or nil
// if none was passed (not started by socket activation, or the variables
// are meant for another process). It unsets LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES so that children do not take the socket for theirs.
func Listener() (net.Listener, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if pid == "" || fds == "" {
		return nil, nil
	}
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	if p, err := strconv.Atoi(pid); err != nil || p != os.Getpid() {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("socket activation: LISTEN_FDS=%q: want a count of at least 1", fds)
	}
	if n > 1 {
		return nil, errors.New("socket activation: more than one socket passed; the agent listens on one")
	}
	f := os.NewFile(uintptr(firstFD), "systemd-socket")
	if f == nil {
		return nil, errors.New("socket activation: descriptor 3 is not open")
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("socket activation: descriptor 3: %w", err)
	}
	return ln, nil
}
