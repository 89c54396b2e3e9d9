package balance

import (
	"maps"
	"slices"
	"time"

	"github.com/dfaas-go/dfaas"
)

// DefaultMaxRTT is the farthest, in round-trip time, Nearest forwards a
// function that sets no budget of its own (label dfaas.maxrtt): a remote
// execution that costs more than about a tenth of a second on the way is
// rarely better for a user than a quick 503 with Retry-After.
const DefaultMaxRTT = 100 * time.Millisecond

// tierFactor separates the weights of successive RTT tiers: the pick rule
// starts with a farther tier's peer about once in a million requests while a
// nearer one has cap left, and falls back to it in weight order when the
// nearer caps are spent.
const tierFactor = 1e-6

// Nearest forwards near before far, as Envoy's locality priorities do. It
// takes the shares of Base (Resilient by default), then:
//
//   - Budget. A peer farther than the function's RTT budget (State.MaxRTT,
//     else MaxRTT, else DefaultMaxRTT) is never used for it: its slack is
//     left out of Base's input (its deficit stays, so fairness between
//     overloaded nodes does not change) and any share Base still gives it is
//     dropped.
//   - Tiers. The remaining peers fall into RTT tiers: the nearest peer opens
//     the first tier, which takes every peer within 1.5 times its RTT plus
//     2 ms; the next peer opens the next tier, and so on; peers whose RTT is
//     not measured yet form the last. Each tier's weights are a millionth
//     of the tier before it, so the data plane fills the nearer tiers' caps
//     first and spills to a farther tier only when they are spent.
//   - Health. A peer whose forwards take longer than its distance explains
//     (State.Forwards: a starved peer, a lossy link) or fail keeps a part
//     of its weight: the square of the ratio of what the best peer's
//     answers would take at its distance (its RTT plus the best peer's
//     latency beyond RTT) to its own latency, times the fourth power of its
//     success rate (failing half its forwards keeps a sixteenth), at least
//     degradedFloor. A peer ten times slower keeps about a fiftieth; the rest of its share goes to its tier's other
//     peers while they have room, and what it keeps measures its recovery.
//     A peer whose link loses packets (State.Clean below cleanEnough: the
//     overlay's probes come late or not at all) keeps at most the eighth
//     power of its clean share (a third of its forwards wait for a
//     retransmission at 20% loss: at 0.64^4 it took a tenth of them for a
//     tick and set the p99), whether or not its
//     forwards were measured: a lossy link gets little of the load's first
//     second, and forwards measured healthy (lucky, or on HAProxy, whose
//     connection that never comes up is known only after its timeout) do
//     not bring it back. A peer not measured yet (fewer than minAttempts
//     recent attempts) on a clean link, beside a peer measured healthy,
//     starts slowly, at newcomerShare of its weight, until its own
//     forwards are measured (Envoy's slow start): on a link losing 40% a
//     peer back from a suspicion, or met late, took half the forwards for
//     a tick. With no peer measured healthy, or the only one measured, the
//     measured peers keep their weights but for their links.
//
// With every peer in one tier (a LAN, or no RTT measured) the plan is
// Base's. Plan stays a pure function of its inputs: the RTTs come in
// State.RTT.
type Nearest struct {
	// Base plans the shares. Default Resilient.
	Base dfaas.Balancer
	// MaxRTT is the budget of functions without their own. Default
	// DefaultMaxRTT.
	MaxRTT time.Duration
}

// Plan implements dfaas.Balancer.
func (n Nearest) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	base := n.Base
	if base == nil {
		base = Resilient{}
	}
	budget := func(fn string) time.Duration {
		if d, ok := self.MaxRTT[fn]; ok && d > 0 {
			return d
		}
		if n.MaxRTT > 0 {
			return n.MaxRTT
		}
		return DefaultMaxRTT
	}
	far := func(node dfaas.NodeID, fn string) bool {
		rtt, ok := self.RTT[node]
		return ok && rtt > budget(fn)
	}
	// Peers beyond a function's budget offer no slack for it.
	view, cloned := peers, false
	for i, p := range peers {
		var fns map[string]dfaas.FunctionState
		for fn, f := range p.Functions {
			if f.Slack() > 0 && far(p.Node, fn) {
				if fns == nil {
					fns = maps.Clone(p.Functions)
				}
				f.Capacity = f.Demand
				fns[fn] = f
			}
		}
		if fns != nil {
			if !cloned {
				view, cloned = slices.Clone(peers), true
			}
			view[i].Functions = fns
		}
	}
	plan := base.Plan(self, view)
	for fn, fp := range plan.Functions {
		if len(fp.Peers) == 0 {
			continue
		}
		shares := slices.DeleteFunc(slices.Clone(fp.Peers), func(s dfaas.Share) bool { return far(s.Node, fn) })
		weighHealth(shares, self.Forwards[fn], self.RTT, self.Clean, float64(self.Functions[fn].Demand-fp.Limit))
		tiers := tiersOf(shares, self.RTT)
		for i := range shares {
			for range tiers[i] {
				shares[i].Weight *= tierFactor
			}
		}
		shares = slices.DeleteFunc(shares, func(s dfaas.Share) bool { return !(s.Weight > 0) })
		fp.Peers = shares
		plan.Functions[fn] = fp
	}
	return plan
}

// Health weighing (see Nearest): the least part of its weight a degraded
// peer keeps, and the attempts a peer's measures need to count.
const (
	degradedFloor = 0.01
	// probeRate is the forwards per second a degraded peer keeps at least
	// (within minProbeShare and maxProbeShare of what is forwarded), so
	// that its recovery is measured within seconds: the peak-EWMA comes
	// down only with answers. One every 4 s: at 1 req/s a third of them
	// waited for a retransmission on a link losing 20%, about 1% of the
	// forwards, and that was the p99 (4.3 times the clean link's).
	probeRate     = 0.25
	minProbeShare = 0.005
	maxProbeShare = 0.05
	minAttempts   = 3
	// newcomerShare is the part of its weight a peer not measured yet
	// keeps beside one measured healthy: enough forwards to be measured
	// within a tick.
	newcomerShare = 0.1
	// healthySuccess is the success rate a peer needs to set the latency
	// the others are held to.
	healthySuccess = 0.9
	// cleanEnough is the share of clean probes (State.Clean) below which a
	// peer with no forwards measured counts as degraded: two of the
	// latest ten late or missed. A link losing 10% of its packets each
	// way answers about 81% of probes clean, 20% about 64%, 40% about 36%.
	cleanEnough = 0.8
)

// weighHealth scales each share's weight by its peer's health (see
// Nearest), from the forwards' measures fh and the RTTs; forwarding is the
// rate the plan forwards (req/s), whose probeRate a degraded peer keeps.
func weighHealth(shares []dfaas.Share, fh map[dfaas.NodeID]dfaas.ForwardHealth, rtt map[dfaas.NodeID]time.Duration, clean map[dfaas.NodeID]float64, forwarding float64) {
	// beyond is what a peer's answers take beyond its RTT: its own time
	// and what the link adds past its best round trip (retransmissions).
	beyond := func(n dfaas.NodeID) (time.Duration, bool) {
		h, ok := fh[n]
		if !ok || h.Attempts < minAttempts || h.Latency <= 0 {
			return 0, false
		}
		return max(0, h.Latency-rtt[n]), true
	}
	// The best is of the peers that mostly succeed: one failing fast (or
	// lying) must not make the others look slow.
	best, measured := time.Duration(-1), 0
	for _, s := range shares {
		if b, ok := beyond(s.Node); ok {
			measured++
			if fh[s.Node].Success >= healthySuccess && (best < 0 || b < best) {
				best = b
			}
		}
	}
	degraded := make([]bool, len(shares))
	for i, s := range shares {
		// A link that loses packets (the overlay's probes late or missed)
		// is weighed by the eighth power of its clean share, whether or
		// not forwards were measured: the forwards measured so far may
		// have been lucky, and on HAProxy a connection that never comes up
		// is known only after its timeout.
		link := 1.0
		if c, ok := clean[s.Node]; ok && c < cleanEnough {
			c2 := c * c
			c4 := c2 * c2
			link = c4 * c4
		}
		if _, ok := beyond(s.Node); !ok {
			switch {
			case link < 1:
				shares[i].Weight *= max(link, degradedFloor)
				degraded[i] = true
			case best >= 0:
				shares[i].Weight *= newcomerShare // slow start, until measured
			}
			continue
		}
		f := link
		if best >= 0 && measured >= 2 { // else nothing to compare with: no peer is slow but against another
			f = min(f, measuredHealth(fh[s.Node], rtt[s.Node], best))
		}
		if f < 1 {
			degraded[i] = true
			shares[i].Weight *= max(f, degradedFloor)
		}
	}
	// A degraded peer keeps probeRate, as a share of its RTT tier's weight:
	// enough answers to see it recover.
	probe := maxProbeShare
	if forwarding > 0 {
		probe = min(maxProbeShare, max(minProbeShare, probeRate/forwarding))
	}
	tiers := tiersOf(shares, rtt)
	for i := range shares {
		if !degraded[i] {
			continue
		}
		var tier float64
		for j := range shares {
			if tiers[j] == tiers[i] {
				tier += shares[j].Weight
			}
		}
		shares[i].Weight = max(shares[i].Weight, probe*tier)
	}
}

// measuredHealth is the part of its weight a peer keeps for its forwards'
// measures h (see Nearest): the square of how much slower than its RTT rtt
// plus the best peer's time beyond RTT, a quarter more, its answers are,
// times the fourth power of its success rate. The quarter: a peer a
// millisecond slower than the best is not degraded (weighed down by the
// square of 12/13, a healthy peer lost a tenth of its share: the testbed's
// TestCrash saw 17.6/22.4 for 16/24).
func measuredHealth(h dfaas.ForwardHealth, rtt, best time.Duration) float64 {
	f := 1.0
	if expect := (rtt + best) * 5 / 4; h.Latency > expect {
		r := float64(expect) / float64(h.Latency)
		f = r * r
	}
	success := h.Success
	if !(success >= 0) { // NaN too
		success = 0
	}
	s2 := min(success, 1) * min(success, 1)
	return f * s2 * s2
}

// tiersOf returns each share's RTT tier: 0 for the nearest.
func tiersOf(shares []dfaas.Share, rtt map[dfaas.NodeID]time.Duration) []int {
	known := make([]time.Duration, 0, len(shares))
	for _, s := range shares {
		if r, ok := rtt[s.Node]; ok {
			known = append(known, r)
		}
	}
	slices.Sort(known)
	// Tier boundaries: each tier spans [start, 1.5 start + 2 ms].
	var ends []time.Duration
	for _, r := range known {
		if len(ends) == 0 || r > ends[len(ends)-1] {
			ends = append(ends, r*3/2+2*time.Millisecond)
		}
	}
	out := make([]int, len(shares))
	for i, s := range shares {
		r, ok := rtt[s.Node]
		if !ok {
			out[i] = len(ends) // not measured: after every measured tier
			continue
		}
		out[i], _ = slices.BinarySearch(ends, r)
	}
	return out
}

var _ dfaas.Balancer = Nearest{}
