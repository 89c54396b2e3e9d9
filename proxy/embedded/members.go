package embedded

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Members on the peer port. A TLS handshake admits only a current member
// (proxy.TLS.ServerConfig); a member removed later would keep the
// connections it holds, kept alive with no end. So the peer port tracks
// its connections by the node that opened them, and at every Apply (the
// Agent's tick, run at once when the overlay's membership changes) cuts
// off the nodes no longer members: a request on one of their connections
// is refused (proxy.StatusRefused, proxy.RefusedMember: it ran nowhere, the
// forwarder may try another peer) and that connection closes, a request
// in flight finishes before its connection closes, and their connections
// still idle cutGrace after the Apply close. A node that comes back (a
// partition healed) is let in again at the next Apply.
//
// The grace: a server that closes an idle connection races the client's
// next request on it, which may then have been sent and is never retried
// (at most once). A node whose view drops a peer a moment before the
// peer's plan drops it (a removed node sees its peers leave first) would
// cost that peer's users such requests; a refusal costs nothing.
const cutGrace = time.Second

type peerConns struct {
	mu    sync.Mutex
	conns map[net.Conn]*peerConn
	cut   atomic.Pointer[map[dfaas.NodeID]time.Time] // node -> when it was cut off
}

type peerConn struct {
	node dfaas.NodeID // "" until its handshake is done
	idle bool
}

// connNode is the node whose certificate c's handshake verified. Only
// once the connection has carried a request (StateActive, StateIdle):
// ConnectionState waits for a handshake in progress, which a client that
// sends nothing holds for ReadHeaderTimeout.
func connNode(c net.Conn) dfaas.NodeID {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	cs := tc.ConnectionState()
	if !cs.HandshakeComplete || len(cs.PeerCertificates) == 0 {
		return ""
	}
	node, _ := proxy.ClaimedNode(cs.PeerCertificates[0])
	return node
}

// isCut reports whether node is cut off.
func (pc *peerConns) isCut(node dfaas.NodeID) bool {
	_, cut := pc.cutAt(node)
	return cut
}

// cutAt returns when node was cut off, if it is.
func (pc *peerConns) cutAt(node dfaas.NodeID) (time.Time, bool) {
	cut := pc.cut.Load()
	if cut == nil {
		return time.Time{}, false
	}
	at, ok := (*cut)[node]
	return at, ok
}

// closeLater looks again, once the grace of a node cut off at at is over,
// for idle connections to close (closeIdleCut).
func (pc *peerConns) closeLater(at time.Time) {
	time.AfterFunc(max(0, time.Until(at.Add(cutGrace))), pc.closeIdleCut)
}

// state is the peer server's ConnState hook.
func (pc *peerConns) state(c net.Conn, st http.ConnState) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch st {
	case http.StateNew:
		pc.conns[c] = &peerConn{}
	case http.StateActive, http.StateIdle:
		e := pc.conns[c]
		if e == nil {
			return
		}
		if e.node == "" {
			e.node = connNode(c)
		}
		e.idle = st == http.StateIdle
		if at, cut := pc.cutAt(e.node); e.idle && cut {
			// A request in flight at the cut has finished: the connection
			// is closed once the grace is over, not at once (its node may
			// be sending the next one).
			pc.closeLater(at)
		}
	case http.StateClosed, http.StateHijacked:
		delete(pc.conns, c)
	}
}

// sweep cuts off the nodes holding connections that are not in members,
// closes their connections still idle cutGrace after their cut, and lets
// back in those that are; it returns the nodes cut.
func (pc *peerConns) sweep(members []dfaas.NodeID) int {
	in := make(map[dfaas.NodeID]bool, len(members))
	for _, m := range members {
		in[m] = true
	}
	now := time.Now()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	cut := map[dfaas.NodeID]time.Time{}
	var first time.Time // the earliest cut of a node with an idle connection
	for _, e := range pc.conns {
		if e.node == "" || in[e.node] {
			continue // still in its handshake (checked against the members then), or a member
		}
		at, ok := pc.cutAt(e.node) // cut by an earlier sweep: its grace goes on
		if !ok {
			at = now
		}
		cut[e.node] = at
		if e.idle && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	pc.cut.Store(&cut)
	if !first.IsZero() {
		pc.closeLater(first)
	}
	return len(cut)
}

// closeIdleCut closes the idle connections of the nodes cut off at least
// cutGrace ago (outside the lock: a TLS close may wait on its peer), and
// arranges a later look for those cut since.
func (pc *peerConns) closeIdleCut() {
	now := time.Now()
	var due []net.Conn
	var next time.Time
	pc.mu.Lock()
	for c, e := range pc.conns {
		at, cut := pc.cutAt(e.node)
		switch {
		case !e.idle || !cut:
		case now.Sub(at) >= cutGrace:
			due = append(due, c)
		case next.IsZero() || at.Before(next):
			next = at
		}
	}
	pc.mu.Unlock()
	for _, c := range due {
		_ = c.Close()
	}
	if !next.IsZero() {
		pc.closeLater(next)
	}
}
