//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package h1pool

import "net"

// alive cannot peek on this system: a connection is taken as open.
func alive(net.Conn) bool { return true }
