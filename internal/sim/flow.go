package sim

import (
	"sort"

	"github.com/dfaas-go/dfaas"
)

// flows is what the data plane did with one function in one tick, per node,
// in req/s.
type flows struct {
	local, forwarded, received, rejected, retried []float64
	// fwdRTT is, per forwarding node, the sum over its forwarded requests
	// of the round trip to the peer that served them (req/s × ms).
	fwdRTT []float64
}

// maxRounds bounds the forward attempts of one request: the first try and
// retries on other peers after refusals.
const maxRounds = 4

const eps = 1e-9

// serve routes one tick of demand for one function through the nodes'
// plans, with the embedded proxy's rules as fluid flows: users are served
// locally up to the plan's Limit and the node's capacity; the excess goes to
// the plan's peers by weight, within each peer's rate cap; a peer executes
// what fits its remaining capacity and refuses the rest, which is retried on
// the forwarder's other peers; what no peer takes runs on spare local
// capacity if any, and is rejected otherwise. Forwarded requests are never
// forwarded again.
//
// rtt, if not nil, is the round trip between nodes in ms, for fwdRTT.
func serve(demand, capacity []float64, plans []dfaas.FunctionPlan, peerIdx [][]int, rtt [][]float64) flows {
	n := len(demand)
	fl := flows{local: make([]float64, n), forwarded: make([]float64, n), received: make([]float64, n),
		rejected: make([]float64, n), retried: make([]float64, n), fwdRTT: make([]float64, n)}
	room := make([]float64, n)
	excess := make([]float64, n)
	for i := range n {
		limit := max(0, min(float64(plans[i].Limit), capacity[i]))
		fl.local[i] = min(demand[i], limit)
		room[i] = capacity[i] - fl.local[i]
		excess[i] = demand[i] - fl.local[i]
	}
	capLeft := make([][]float64, n)
	refused := make([][]bool, n)
	for i := range n {
		capLeft[i] = make([]float64, len(plans[i].Peers))
		refused[i] = make([]bool, len(plans[i].Peers))
		for k, p := range plans[i].Peers {
			capLeft[i][k] = float64(p.Cap)
		}
	}
	offers := make([][]float64, n)
	incoming := make([]float64, n)
	for range maxRounds {
		any := false
		clear(incoming)
		for i := range n {
			offers[i] = nil
			if excess[i] <= eps || len(plans[i].Peers) == 0 {
				continue
			}
			offers[i] = waterfill(excess[i], plans[i].Peers, capLeft[i], refused[i], peerIdx[i])
			for k, x := range offers[i] {
				if x > 0 {
					incoming[peerIdx[i][k]] += x
					any = true
				}
			}
		}
		if !any {
			break
		}
		accept := make([]float64, n)
		for j := range n {
			accept[j] = 1
			if incoming[j] > room[j] {
				accept[j] = max(0, room[j]) / incoming[j]
			}
			room[j] -= min(incoming[j], max(0, room[j]))
		}
		for i := range n {
			for k, x := range offers[i] {
				if x <= 0 {
					continue
				}
				j := peerIdx[i][k]
				got := x * accept[j]
				fl.received[j] += got
				fl.forwarded[i] += got
				if rtt != nil {
					fl.fwdRTT[i] += got * rtt[i][j]
				}
				excess[i] -= got
				capLeft[i][k] -= x
				if accept[j] < 1 {
					refused[i][k] = true
					fl.retried[i] += x - got
				}
			}
		}
	}
	for i := range n {
		extra := min(max(0, excess[i]), max(0, room[i]))
		fl.local[i] += extra
		excess[i] -= extra
		fl.rejected[i] = max(0, excess[i])
	}
	return fl
}

// waterfill splits amount over the usable peers in proportion to their
// weights, none above its remaining cap, handing what a capped peer cannot
// take to the others.
func waterfill(amount float64, peers []dfaas.Share, capLeft []float64, refused []bool, idx []int) []float64 {
	out := make([]float64, len(peers))
	type cand struct {
		k    int
		w, c float64
	}
	var cs []cand
	var wsum float64
	for k, p := range peers {
		if refused[k] || idx[k] < 0 || capLeft[k] <= eps || p.Weight <= 0 {
			continue
		}
		cs = append(cs, cand{k, p.Weight, capLeft[k]})
		wsum += p.Weight
	}
	// Peers whose cap binds first are those with the smallest cap per weight.
	sort.Slice(cs, func(a, b int) bool {
		ra, rb := cs[a].c/cs[a].w, cs[b].c/cs[b].w
		if ra != rb {
			return ra < rb
		}
		return cs[a].k < cs[b].k
	})
	for _, c := range cs {
		if amount <= eps || wsum <= 0 {
			break
		}
		share := amount * c.w / wsum
		x := min(share, c.c)
		out[c.k] = x
		amount -= x
		wsum -= c.w
	}
	return out
}
