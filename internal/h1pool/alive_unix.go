//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package h1pool

import (
	"errors"
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open and quiet: a peek
// that does not wait finds nothing to read. A closed connection reads its
// end (or a reset), and an idle one that has something to read was not
// left the way an answer ends.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	return n <= 0 && errors.Is(rerr, syscall.EAGAIN)
}
