package pinned

import (
	"net"
	"syscall"
)

// hasUnreadData reports whether bytes from the peer wait in the kernel's
// receive buffer, without reading them. It uses Control, which does not
// take the read lock, so it neither waits for nor disturbs a Read blocked
// on the same connection in another goroutine.
func hasUnreadData(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	return rerr == nil && n > 0
}
