package overlay

import (
	"context"
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// A node given bootstrap peers that reaches none of them, and no other
// member, serves alone: its users are served within its own capacity and
// nothing shows it but an empty peer list. The usual causes are an
// operator's: a wrong bootstrap address or peer id, another federation's
// secret, a copied key, a firewall. So every aloneEvery without a peer
// (the first time after aloneAfter) the overlay says so at Warn, with the
// last error a dial to a bootstrap peer met, and says at Info when peers
// come. The first node of a federation (no bootstrap peers) waits quietly.
var (
	aloneAfter = 10 * time.Second // vars: the tests shorten them
	aloneEvery = time.Minute
)

// bootstrapErr records the last failed dial to a bootstrap peer, unless
// it only met the swarm's back-off: that says nothing of why, and would
// hide the error that caused it.
func (o *Libp2p) bootstrapErr(err error) {
	if errors.Is(err, swarm.ErrDialBackoff) {
		return
	}
	s := err.Error()
	o.lastDialErr.Store(&s)
}

// watchAlone takes after and every (aloneAfter, aloneEvery) from its
// caller, so that a test may change those between nodes.
func (o *Libp2p) watchAlone(ctx context.Context, after, every time.Duration) {
	if len(o.bootstrap) == 0 {
		return
	}
	t := time.NewTicker(max(after/4, 10*time.Millisecond))
	defer t.Stop()
	since := time.Now() // alone since
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := len(o.host.Network().Peers()); n > 0 {
				if !warned.IsZero() {
					o.log.Info("connected to the federation", "peers", n)
				}
				since, warned = now, time.Time{}
				continue
			}
			if now.Sub(since) < after || (!warned.IsZero() && now.Sub(warned) < every) {
				continue
			}
			warned = now
			last := "none yet"
			if p := o.lastDialErr.Load(); p != nil {
				last = *p
			}
			o.log.Warn("connected to no peer: this node serves alone; check the bootstrap addresses and peer ids, the federation's secret, that this node's key is its own, and the firewall",
				"for", now.Sub(since).Round(time.Second), "bootstrap", o.cfg.Bootstrap, "last_error", last)
		}
	}
}
