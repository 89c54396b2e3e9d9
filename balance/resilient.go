package balance

import (
	"github.com/dfaas-go/dfaas"
	"slices"
)

// Resilient is our strategy: Proportional's informed routes, plus every
// other peer that serves the function as a last resort. It gives up
// Proportional's guarantee that no helper is sent more than its slack: a
// helper refuses what it cannot take, and the proxy retries elsewhere.
//
// Adverts are a tick old at best, and late or lost at worst: a peer
// advertised as overloaded may have room by now, and a helper's slack may
// already be gone. Proportional sends each request where the adverts say
// there is room, so a stale view turns into rejections. Resilient keeps the
// same first choices - Proportional's weights - but caps every peer only at
// its capacity, and appends the remaining peers with a negligible weight. The proxy tries them only after the informed peers have
// refused or hit their caps, so an accurate view costs nothing and a stale
// one costs retries instead of requests. The zero value is ready to use.
type Resilient struct{}

// lastResort is the total weight the fallback peers share: small enough that
// weighted choice practically never starts with them.
const lastResort = 1e-6

// Plan implements dfaas.Balancer.
func (Resilient) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	plan := Proportional{}.Plan(self, peers)
	for name, fp := range plan.Functions {
		informed := make(map[dfaas.NodeID]int, len(fp.Peers))
		for i, s := range fp.Peers {
			informed[s.Node] = i
		}
		var fallback []dfaas.Share
		for _, p := range peers {
			f, ok := p.Functions[name]
			if !ok || f.Capacity <= 0 {
				continue
			}
			if i, ok := informed[p.Node]; ok {
				// Beyond its fair share a helper may still have room: it
				// refuses what it cannot take.
				fp.Peers[i].Cap = f.Capacity
				continue
			}
			fallback = append(fallback, dfaas.Share{Node: p.Node, Addr: p.Addr, Cap: f.Capacity})
		}
		if len(fallback) == 0 {
			continue
		}
		// Scale the informed weights so that all weights still sum to one.
		for i := range fp.Peers {
			fp.Peers[i].Weight *= 1 - lastResort
		}
		for i := range fallback {
			fallback[i].Weight = lastResort / float64(len(fallback))
		}
		if len(fp.Peers) == 0 {
			for i := range fallback {
				fallback[i].Weight = 1 / float64(len(fallback))
			}
		}
		fp.Peers = append(fp.Peers, fallback...)
		fp.Peers = slices.DeleteFunc(fp.Peers, func(s dfaas.Share) bool { return !(s.Weight > 0) })
		plan.Functions[name] = fp
	}
	return plan
}

var _ dfaas.Balancer = Resilient{}
