//go:build !linux

package pinned

import "net"

// hasUnreadData is known only on Linux; elsewhere a connection counts as
// started once its handshake goroutine has read from it.
func hasUnreadData(net.Conn) bool { return false }
