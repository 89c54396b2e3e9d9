package balance

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// sends runs the data plane's pick rule over a plan's peers for one second
// of requests at rate (evenly spaced) and counts what each peer is sent;
// requests no peer takes are counted under "".
func sends(t *testing.T, fp dfaas.FunctionPlan, rate int) map[dfaas.NodeID]int {
	t.Helper()
	t0 := time.Unix(1000, 0)
	weights := make([]float64, len(fp.Peers))
	buckets := make([]*proxy.Bucket, len(fp.Peers))
	for i, s := range fp.Peers {
		require.True(t, proxy.Usable(s), "%+v", s)
		weights[i] = s.Weight
		buckets[i] = proxy.NewBucket(s.Cap, 100*time.Millisecond, t0)
	}
	p := proxy.NewPick(weights, buckets)
	out := map[dfaas.NodeID]int{}
	for k := range rate * 10 { // ten seconds
		i := p.Next(t0.Add(time.Duration(k) * time.Second / time.Duration(rate)))
		if i < 0 {
			out[""]++
			continue
		}
		out[fp.Peers[i].Node]++
	}
	for n := range out {
		out[n] /= 10
	}
	return out
}

func nearFar(demand dfaas.Rate) (dfaas.State, []dfaas.Advert) {
	self := state("a", 10, demand)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 60 * time.Millisecond}
	return self, []dfaas.Advert{advert("b", 30, 0), advert("c", 30, 0)}
}

// TestNearestFillsNearFirst: a's excess goes to b (5 ms) while b has room,
// spills to c (60 ms) only beyond b's slack, and never to a peer beyond the
// function's budget.
func TestNearestFillsNearFirst(t *testing.T) {
	self, peers := nearFar(25)
	fp := Nearest{}.Plan(self, peers).Functions[fn]
	got := sends(t, fp, 15)
	assert.GreaterOrEqual(t, float64(got["b"]), 0.95*15, "%v", got)
	assert.Zero(t, got[""])

	self, peers = nearFar(60)
	fp = Nearest{}.Plan(self, peers).Functions[fn]
	got = sends(t, fp, 50)
	assert.InDelta(t, 30, got["b"], 1, "b filled to its slack: %v", got)
	assert.InDelta(t, 20, got["c"], 1, "the rest to c: %v", got)
	assert.Zero(t, got[""])

	// A budget of 20 ms leaves c out: beyond b's slack, the excess is
	// rejected, exactly.
	self.MaxRTT = map[string]time.Duration{fn: 20 * time.Millisecond}
	fp = Nearest{}.Plan(self, peers).Functions[fn]
	for _, s := range fp.Peers {
		assert.NotEqual(t, dfaas.NodeID("c"), s.Node)
	}
	got = sends(t, fp, 50)
	assert.InDelta(t, 30, got["b"], 1, "%v", got)
	assert.InDelta(t, 20, got[""], 1, "%v", got)
	// The strategy's own default budget applies to functions without one.
	self.MaxRTT = nil
	fp = Nearest{MaxRTT: 50 * time.Millisecond}.Plan(self, peers).Functions[fn]
	assert.Len(t, fp.Peers, 1)
}

// TestNearestIsBaseOnALAN: with every peer in one tier, or none measured,
// the plan is Base's.
func TestNearestIsBaseOnALAN(t *testing.T) {
	self := state("a", 10, 50)
	peers := []dfaas.Advert{advert("b", 20, 0), advert("c", 30, 0)}
	for _, rtt := range []map[dfaas.NodeID]time.Duration{nil, {"b": 10 * time.Millisecond, "c": 12 * time.Millisecond}} {
		self.RTT = rtt
		assert.Equal(t, Resilient{}.Plan(self, peers), Nearest{}.Plan(self, peers))
		assert.Equal(t, Proportional{}.Plan(self, peers), Nearest{Base: Proportional{}}.Plan(self, peers))
	}
}

// TestNearestTiers: tiers open at the nearest peer not yet in one, span 1.5
// times its RTT plus 2 ms, and unmeasured peers come last.
func TestNearestTiers(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	shares := []dfaas.Share{{Node: "a"}, {Node: "b"}, {Node: "c"}, {Node: "d"}, {Node: "e"}, {Node: "f"}}
	rtt := map[dfaas.NodeID]time.Duration{"a": ms(10), "b": ms(17), "c": ms(18), "d": ms(40), "e": ms(1)}
	assert.Equal(t, []int{1, 1, 2, 3, 0, 4}, tiersOf(shares, rtt))
}

// TestNearestDropsFarPeersBaseStillPicks: a peer beyond the budget that is
// busy itself (demand of its own, slack left) offers Base no slack, but
// Base may still give it a share (Resilient spreads over every peer with
// capacity): Nearest drops that share too, so nothing goes beyond the
// budget.
func TestNearestDropsFarPeersBaseStillPicks(t *testing.T) {
	self := state("a", 10, 60)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 60 * time.Millisecond}
	self.MaxRTT = map[string]time.Duration{fn: 20 * time.Millisecond}
	peers := []dfaas.Advert{advert("b", 30, 0), advert("c", 30, 5)}
	for _, base := range []dfaas.Balancer{Resilient{}, Proportional{}, Random{}, Static{}} {
		fp := Nearest{Base: base}.Plan(self, peers).Functions[fn]
		for _, s := range fp.Peers {
			assert.NotEqual(t, dfaas.NodeID("c"), s.Node, "%T gave c, beyond the budget, a share: %+v", base, fp.Peers)
		}
		got := sends(t, fp, 50)
		assert.Zero(t, got["c"], "%T: %v", base, got)
	}
}

// health is a ForwardHealth of a peer measured lately.
func health(latency time.Duration, success float64) dfaas.ForwardHealth {
	return dfaas.ForwardHealth{Latency: latency, Success: success, Attempts: 20, Age: 100 * time.Millisecond}
}

// TestNearestMovesTheShareOfADegradedPeer: of two peers at the same
// distance with room, one ten times slower (or failing half its forwards)
// keeps at most a tenth of what it got, the other takes the rest while it
// has room; recovered, it has its share back. A peer far away is not slow
// for its distance, and one peer alone is not slow against anything.
func TestNearestMovesTheShareOfADegradedPeer(t *testing.T) {
	self := state("a", 10, 40)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 5 * time.Millisecond}
	peers := []dfaas.Advert{advert("b", 40, 0), advert("c", 40, 0)}
	healthy := sends(t, Nearest{}.Plan(self, peers).Functions[fn], 30)
	require.InDelta(t, 15, healthy["c"], 2, "the peers share alike: %v", healthy)

	for name, c := range map[string]dfaas.ForwardHealth{
		"ten times slower":           health(105*time.Millisecond, 1),
		"failing half its forwards":  health(15*time.Millisecond, 0.5),
		"slower and failing a third": health(45*time.Millisecond, 0.67),
	} {
		self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 1), "c": c}}
		fp := Nearest{}.Plan(self, peers).Functions[fn]
		got := sends(t, fp, 30)
		assert.LessOrEqual(t, float64(got["c"]), 0.1*30, "%s: c keeps at most a tenth: %v", name, got)
		assert.Positive(t, fp.Peers[slices.IndexFunc(fp.Peers, func(s dfaas.Share) bool { return s.Node == "c" })].Weight,
			"%s: c keeps a trickle, to see it recover", name)
		assert.Zero(t, got[""], "%s: nothing lost: %v", name, got)
	}
	// Recovered: its share back.
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 1), "c": health(16*time.Millisecond, 1)}}
	got := sends(t, Nearest{}.Plan(self, peers).Functions[fn], 30)
	assert.InDelta(t, 15, got["c"], 3, "%v", got)
	// Beyond b's room the slow peer takes what is left: slow beats lost.
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 1), "c": health(105*time.Millisecond, 1)}}
	self.Functions[fn] = dfaas.FunctionState{Capacity: 10, Demand: 75}
	got = sends(t, Nearest{}.Plan(self, peers).Functions[fn], 65)
	assert.InDelta(t, 40, got["b"], 1, "%v", got)
	assert.InDelta(t, 25, got["c"], 1, "%v", got)

	// A far peer whose answers take its distance is not slow.
	self = state("a", 10, 40)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 60 * time.Millisecond}
	base := Nearest{}.Plan(self, peers)
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 1), "c": health(70*time.Millisecond, 1)}}
	assert.Equal(t, base, Nearest{}.Plan(self, peers))
	// One peer measured: nothing to compare it with, so it keeps its
	// weight; the one not measured yet starts slowly beside it, until its
	// own forwards are measured.
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 5 * time.Millisecond}
	self.Forwards = nil
	base = Nearest{}.Plan(self, peers)
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"c": health(105*time.Millisecond, 1)}}
	fp := Nearest{}.Plan(self, peers).Functions[fn]
	weight := func(fp dfaas.FunctionPlan, n dfaas.NodeID) float64 {
		return fp.Peers[slices.IndexFunc(fp.Peers, func(s dfaas.Share) bool { return s.Node == n })].Weight
	}
	assert.Equal(t, weight(base.Functions[fn], "c"), weight(fp, "c"))
	assert.InDelta(t, newcomerShare*weight(base.Functions[fn], "b"), weight(fp, "b"), 1e-12)
}

// TestNearestStartsANewcomerSlowly: a peer not measured yet (met late, or
// back after a while) beside a peer measured healthy gets a tenth of its
// weight until its own forwards are measured, then its whole share if it is
// healthy; with no peer measured every peer keeps its weight.
func TestNearestStartsANewcomerSlowly(t *testing.T) {
	self := state("a", 10, 40)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 5 * time.Millisecond}
	peers := []dfaas.Advert{advert("b", 40, 0), advert("c", 40, 0)}
	base := Nearest{}.Plan(self, peers)
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 1)}}
	got := sends(t, Nearest{}.Plan(self, peers).Functions[fn], 30)
	assert.InDelta(t, 30*newcomerShare/(1+newcomerShare), got["c"], 1, "c not measured yet: %v", got)
	assert.Zero(t, got[""], "nothing lost: %v", got)
	self.Forwards[fn]["c"] = health(15*time.Millisecond, 1)
	assert.Equal(t, base, Nearest{}.Plan(self, peers), "measured healthy: its whole share")
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 0.5)}}
	assert.Equal(t, base, Nearest{}.Plan(self, peers), "no peer measured healthy: nothing to start slowly against")
}

// TestNearestIgnoresAFastFailingPeer: a peer that fails fast (answers 5xx
// at once, or lies) does not set the latency the others are held to: they
// keep their weights, and it loses its own but for a probe every 4 s.
func TestNearestIgnoresAFastFailingPeer(t *testing.T) {
	self := state("a", 10, 40)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 5 * time.Millisecond, "d": 5 * time.Millisecond}
	peers := []dfaas.Advert{advert("b", 40, 0), advert("c", 40, 0), advert("d", 40, 0)}
	base := Nearest{}.Plan(self, peers).Functions[fn]
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {
		"b": health(15*time.Millisecond, 1), "c": health(16*time.Millisecond, 1), "d": health(5*time.Millisecond+100*time.Microsecond, 0.3)}}
	fp := Nearest{}.Plan(self, peers).Functions[fn]
	weight := func(fp dfaas.FunctionPlan, n dfaas.NodeID) float64 {
		return fp.Peers[slices.IndexFunc(fp.Peers, func(s dfaas.Share) bool { return s.Node == n })].Weight
	}
	assert.Equal(t, weight(base, "b"), weight(fp, "b"), "b is not slow against a peer that fails")
	assert.InDelta(t, weight(base, "c"), weight(fp, "c"), 0.15*weight(base, "c"))
	total := weight(fp, "b") + weight(fp, "c") + weight(fp, "d")
	assert.InDelta(t, probeRate/30, weight(fp, "d")/total, 1e-3, "d fails: it keeps a probe every 4 s of the 30 req/s forwarded, to see it recover")
}

// TestNearestWeighsALossyLink: a peer whose probes come late or not at
// all (State.Clean under cleanEnough) gets the eighth power of its clean
// share, at least the probes' trickle, and the others take the rest,
// before any forward is measured and after forwards measured healthy (they
// may have been lucky); a link clean enough is judged as before.
func TestNearestWeighsALossyLink(t *testing.T) {
	self := state("a", 10, 40)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 5 * time.Millisecond, "c": 5 * time.Millisecond}
	peers := []dfaas.Advert{advert("b", 40, 0), advert("c", 40, 0)}
	base := Nearest{}.Plan(self, peers)

	self.Clean = map[dfaas.NodeID]float64{"b": 0.36, "c": 1} // 40% loss each way
	got := sends(t, Nearest{}.Plan(self, peers).Functions[fn], 30)
	assert.LessOrEqual(t, got["b"], 1, "b's link loses packets: %v", got)
	assert.Zero(t, got[""], "nothing lost: %v", got)
	fp := Nearest{}.Plan(self, peers).Functions[fn]
	assert.Positive(t, fp.Peers[slices.IndexFunc(fp.Peers, func(s dfaas.Share) bool { return s.Node == "b" })].Weight, "b keeps a trickle")

	self.Clean = map[dfaas.NodeID]float64{"b": 0.9, "c": 1}
	assert.Equal(t, base, Nearest{}.Plan(self, peers), "one late probe in ten is noise")

	self.Clean = map[dfaas.NodeID]float64{"b": 0.36, "c": 1}
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(15*time.Millisecond, 1), "c": health(15*time.Millisecond, 1)}}
	assert.Equal(t, fp, Nearest{}.Plan(self, peers).Functions[fn], "forwards measured healthy do not outweigh a lossy link")
	self.Clean = map[dfaas.NodeID]float64{"b": 0.9, "c": 1}
	assert.Equal(t, base, Nearest{}.Plan(self, peers), "measured healthy on a link clean enough")
}

// TestNearestKeepsTheShareOfAPeerAMillisecondSlower: a peer whose answers
// take a millisecond more than the best peer's is not degraded: the plan's
// weights stay those of the peers' room (they lost a tenth of their share,
// and the testbed's crash scenario its 16/24 split).
func TestNearestKeepsTheShareOfAPeerAMillisecondSlower(t *testing.T) {
	self := state("a", 10, 50)
	self.RTT = map[dfaas.NodeID]time.Duration{"b": 10 * time.Millisecond, "c": 10 * time.Millisecond}
	peers := []dfaas.Advert{advert("b", 20, 0), advert("c", 30, 0)}
	base := Nearest{}.Plan(self, peers).Functions[fn]
	self.Forwards = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{fn: {"b": health(12*time.Millisecond, 1), "c": health(13*time.Millisecond, 1)}}
	got := Nearest{}.Plan(self, peers).Functions[fn]
	require.Len(t, got.Peers, 2)
	for i, s := range got.Peers {
		assert.InDelta(t, base.Peers[i].Weight, s.Weight, 1e-9, "%s", s.Node)
	}
}
