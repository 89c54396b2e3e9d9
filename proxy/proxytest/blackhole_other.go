//go:build !linux

package proxytest

import "testing"

// blackHole needs Linux's accept queue (a listen backlog of 0 drops every
// SYN once one connection waits).
func blackHole(t *testing.T) string {
	t.Helper()
	t.Skip("a black-hole address needs Linux")
	return ""
}
