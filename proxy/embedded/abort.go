package embedded

import (
	"context"
	"errors"
	"sync"

	"github.com/dfaas-go/dfaas"
)

// errPeerDown cancels the forwards in flight to a peer the overlay declared
// down (AbortForwards).
var errPeerDown = errors.New("the peer was declared down (frozen, partitioned or dead) while the forward waited")

// inFlight holds the cancel functions of the forward attempts in flight,
// per peer.
type inFlight struct {
	mu   sync.Mutex
	next uint64
	m    map[dfaas.NodeID]map[uint64]context.CancelCauseFunc
}

// start registers an attempt to peer, abortable until untrack, and returns
// its context (a child of ctx) and its cancel. Both functions may be called
// again (deferred too).
func (f *inFlight) start(ctx context.Context, peer dfaas.NodeID) (_ context.Context, untrack, cancel func()) {
	ctx, cancelCause := context.WithCancelCause(ctx)
	f.mu.Lock()
	if f.m == nil {
		f.m = map[dfaas.NodeID]map[uint64]context.CancelCauseFunc{}
	}
	if f.m[peer] == nil {
		f.m[peer] = map[uint64]context.CancelCauseFunc{}
	}
	f.next++
	id := f.next
	f.m[peer][id] = cancelCause
	f.mu.Unlock()
	return ctx, func() {
		f.mu.Lock()
		delete(f.m[peer], id)
		if len(f.m[peer]) == 0 {
			delete(f.m, peer)
		}
		f.mu.Unlock()
	}, func() { cancelCause(nil) }
}

// abort cancels every attempt in flight to peer, and reports how many.
func (f *inFlight) abort(peer dfaas.NodeID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cancel := range f.m[peer] {
		cancel(errPeerDown)
	}
	return len(f.m[peer])
}

// AbortForwards answers the forwards waiting for peer's answer at once,
// because the overlay declared it down (its probes unanswered: frozen or
// cut off): one not sent yet goes to another peer; one sent may have run
// there, so it is answered 504, never sent elsewhere, instead of waiting
// for the peer until the forward timeout (or until a frozen peer thaws). A
// forward whose answer has begun is left to finish. The node
// wires it to the overlay (overlay.Libp2p.SetOnSuspect).
func (p *Proxy) AbortForwards(peer dfaas.NodeID) {
	// Its measures stay, the aborted attempts counted as failures: a peer
	// back from a moment's silence on a lossy link, measured afresh, took
	// half the forwards again until three of them were measured.
	if n := p.inflight.abort(peer); n > 0 {
		p.log.Info("forwards in flight to a peer declared down answered at once", "peer", peer, "forwards", n)
	}
}
