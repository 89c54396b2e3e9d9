package balance

import (
	"github.com/dfaas-go/dfaas"
	"slices"
)

// Recalc is the original DFaaS prototype's algorithm: every node splits its
// margin (slack) equally over all its peers, and an overloaded node weights
// its peers by the limits they gave it, which also cap what it sends.
// A node therefore gets only 1/(n-1) of a helper's slack even when it is the
// only one in need. The zero value is ready to use.
type Recalc struct{}

// Plan implements dfaas.Balancer. The federation is assumed fully meshed, so
// every peer splits its margin over len(peers) nodes.
func (Recalc) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	return perPeer(self, peers, func(_ dfaas.FunctionState, peer dfaas.FunctionState) (float64, dfaas.Rate) {
		if peer.Overloaded() || len(peers) == 0 {
			return 0, 0
		}
		limit := peer.Slack() / dfaas.Rate(len(peers))
		return float64(limit), limit
	})
}

// Static is load balancing configured once from the nodes' capacities: each
// node serves up to its capacity and spreads the excess over all peers in
// proportion to their capacity, whatever their load. The zero value is
// ready to use.
type Static struct{}

// Plan implements dfaas.Balancer.
func (Static) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	return perPeer(self, peers, func(_ dfaas.FunctionState, peer dfaas.FunctionState) (float64, dfaas.Rate) {
		return float64(peer.Capacity), peer.Capacity
	})
}

// Random sends the excess to a peer chosen uniformly at random among all
// peers, whatever their load: equal weights, capped only by the peer's
// capacity. The zero value is ready to use.
type Random struct{}

// Plan implements dfaas.Balancer.
func (Random) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	return perPeer(self, peers, func(_ dfaas.FunctionState, peer dfaas.FunctionState) (float64, dfaas.Rate) {
		if peer.Capacity <= 0 {
			return 0, 0
		}
		return 1, peer.Capacity
	})
}

// perPeer builds a plan that serves up to capacity locally and gives each
// peer the weight and cap share returns for it; the weights are normalised.
func perPeer(self dfaas.State, peers []dfaas.Advert, share func(me, peer dfaas.FunctionState) (float64, dfaas.Rate)) dfaas.Plan {
	plan := dfaas.Plan{Time: self.Time, Functions: make(map[string]dfaas.FunctionPlan)}
	for _, name := range functionNames(self, peers) {
		me := self.Functions[name]
		fp := dfaas.FunctionPlan{Limit: me.Capacity, Capacity: me.Capacity}
		var total float64
		for _, p := range peers {
			f, ok := p.Functions[name]
			if !ok {
				continue
			}
			w, c := share(me, f)
			if w <= 0 || c <= 0 {
				continue
			}
			fp.Peers = append(fp.Peers, dfaas.Share{Node: p.Node, Addr: p.Addr, Weight: w, Cap: c})
			total += w
		}
		for i := range fp.Peers {
			fp.Peers[i].Weight /= total
		}
		// A weight too small beside the others' to be represented leaves.
		fp.Peers = slices.DeleteFunc(fp.Peers, func(s dfaas.Share) bool { return !(s.Weight > 0) })
		plan.Functions[name] = fp
	}
	return plan
}

// Interface guards.
var (
	_ dfaas.Balancer = Recalc{}
	_ dfaas.Balancer = Static{}
	_ dfaas.Balancer = Random{}
)
