package overlay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// Redial: a followee lost against this node's will after its stream had
// lasted (a crash, a partition, a restart: see follow) and a bootstrap peer
// whose connection dropped or never came up are dialled again soon and
// often (after 250 ms, then every redialMax), for redialFor, so that a
// healed partition or a restarted node is followed again within about a
// second rather than at the end of a back-off or the next discovery round.
// A dial to a dead node is one refused SYN; to a partitioned one a SYN that
// gets no answer. Its addresses come from the peerstore, which keeps a
// departed peer's for a while, and a bootstrap peer's configuration. So few
// peers are redialled at once: followees lost, and bootstrap peers.
const (
	redialFirst = 250 * time.Millisecond
	redialMax   = 500 * time.Millisecond
	redialFor   = 10 * time.Minute
	redialDial  = time.Second // one dial's bound
)

type redialer struct {
	o    *Libp2p
	mu   sync.Mutex
	lost map[peer.ID]*lostPeer
	// started counts the peers redialled: each loss that began a redial
	// (Stats.Redialled).
	started atomic.Uint64
}

type lostPeer struct {
	since, next time.Time
	wait        time.Duration
}

func newRedialer(o *Libp2p) *redialer { return &redialer{o: o, lost: map[peer.ID]*lostPeer{}} }

// maxLost bounds the peers being redialled at once.
const maxLost = 1024

// dropped records that p's connection closed at now.
func (r *redialer) dropped(p peer.ID, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost[p] == nil && len(r.lost) < maxLost {
		r.lost[p] = &lostPeer{since: now, next: now.Add(redialFirst), wait: redialFirst}
		r.started.Add(1)
	}
}

// forget stops redialling p: it is connected again, or not to be redialled.
func (r *redialer) forget(p peer.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.lost, p)
}

// due returns the lost peers to dial at now, and schedules their next
// attempt; peers lost for longer than redialFor are left to discovery.
func (r *redialer) due(now time.Time) []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []peer.ID
	for p, l := range r.lost {
		switch {
		case now.Sub(l.since) > redialFor:
			delete(r.lost, p)
		case !now.Before(l.next):
			out = append(out, p)
			l.wait = min(2*l.wait, redialMax)
			l.next = now.Add(l.wait)
		}
	}
	return out
}

func (r *redialer) run(ctx context.Context) {
	t := time.NewTicker(redialFirst / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range r.due(now) {
				r.dial(ctx, p)
			}
		}
	}
}

// dial tries p once, in the background, past the swarm's dial backoff (it
// would refuse to try for seconds after the failures a partition causes).
func (r *redialer) dial(ctx context.Context, p peer.ID) {
	if r.o.outcast.Load() {
		return // no member admits this node: see fedcast.apply
	}
	h := r.o.host
	if h.Network().Connectedness(p) == network.Connected {
		return // still up (a stream lost, not the connection): dialled if that drops
	}
	// A bootstrap peer's configured addresses too: the peerstore forgets
	// those of a peer never reached after a couple of minutes.
	addrs := append(h.Peerstore().Addrs(p), r.o.bootstrapAddrs(p)...)
	if len(addrs) == 0 {
		return
	}
	if sw, ok := h.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(p)
	}
	r.o.goRun(func() {
		dctx, cancel := context.WithTimeout(ctx, redialDial)
		defer cancel()
		if err := h.Connect(dctx, peer.AddrInfo{ID: p, Addrs: addrs}); err != nil {
			r.o.log.Debug("redial failed", "peer", p, "err", err)
			if r.o.isBootstrap(p) {
				r.o.bootstrapErr(err)
			}
		}
	})
}
