package balance

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

const fn = "figlet"

func state(node string, capacity, demand dfaas.Rate) dfaas.State {
	return dfaas.State{Node: dfaas.NodeID(node), Functions: map[string]dfaas.FunctionState{fn: {Capacity: capacity, Demand: demand}}}
}

func advert(node string, capacity, demand dfaas.Rate) dfaas.Advert {
	return dfaas.Advert{Node: dfaas.NodeID(node), Seq: 1, TTL: 3e9, Addr: node + ":1", Functions: map[string]dfaas.FunctionState{fn: {Capacity: capacity, Demand: demand}}}
}

// forwarded is what a node forwarding deficit d by weight sends each peer,
// bounded by the peer's cap (what a weighted proxy with caps converges to).
func forwarded(fp dfaas.FunctionPlan, d dfaas.Rate) map[dfaas.NodeID]dfaas.Rate {
	out := map[dfaas.NodeID]dfaas.Rate{}
	for _, p := range fp.Peers {
		out[p.Node] = min(p.Cap, d*dfaas.Rate(p.Weight))
	}
	return out
}

func TestProportional(t *testing.T) {
	type peerWant struct {
		weight float64
		cap    dfaas.Rate
	}
	tests := []struct {
		name  string
		self  dfaas.State
		peers []dfaas.Advert
		limit dfaas.Rate
		want  map[dfaas.NodeID]peerWant
	}{
		{
			name:  "paper: node 1 overloaded forwards 40 as 0.4/0.6",
			self:  state("1", 10, 50),
			peers: []dfaas.Advert{advert("2", 20, 0), advert("3", 30, 0)},
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{"2": {0.4, 20}, "3": {0.6, 30}},
		},
		{
			name:  "paper: node 2 not overloaded keeps node 3's unclaimed slack as standby",
			self:  state("2", 20, 0),
			peers: []dfaas.Advert{advert("1", 10, 50), advert("3", 30, 0)},
			limit: 20,
			// S = 30 (node 3 only), D = 40: nothing unclaimed.
			want: map[dfaas.NodeID]peerWant{},
		},
		{
			name:  "idle federation: all slack is standby",
			self:  state("1", 10, 0),
			peers: []dfaas.Advert{advert("2", 20, 5), advert("3", 30, 0)},
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{"2": {15.0 / 45, 15}, "3": {30.0 / 45, 30}},
		},
		{
			name:  "no peers",
			self:  state("1", 10, 50),
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{},
		},
		{
			name:  "all peers overloaded",
			self:  state("1", 10, 50),
			peers: []dfaas.Advert{advert("2", 20, 25), advert("3", 30, 31)},
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{},
		},
		{
			name:  "peer at exactly its capacity has no slack",
			self:  state("1", 10, 20),
			peers: []dfaas.Advert{advert("2", 20, 20), advert("3", 30, 0)},
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{"3": {1, 30}},
		},
		{
			name: "demand above total capacity: slack shared max-min fairly",
			// D = 40 + 20 = 60 > S = 30: each deficit is larger than an
			// equal share of 15, so node 1 claims 15: half of each slack.
			self:  state("1", 10, 50),
			peers: []dfaas.Advert{advert("2", 10, 30), advert("3", 10, 0), advert("4", 20, 0)},
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{"3": {1.0 / 3, 10 * 15.0 / 30}, "4": {2.0 / 3, 20 * 15.0 / 30}},
		},
		{
			name: "demand above total capacity: a deficit under the fair level is met whole",
			// D = 8 + 40 = 48 > S = 30: node 1's 8 is under an equal share,
			// so it gets all 8, and node 2 the other 22.
			self:  state("1", 10, 18),
			peers: []dfaas.Advert{advert("2", 10, 50), advert("3", 10, 0), advert("4", 20, 0)},
			limit: 10,
			want:  map[dfaas.NodeID]peerWant{"3": {1.0 / 3, 10 * 8.0 / 30}, "4": {2.0 / 3, 20 * 8.0 / 30}},
		},
		{
			name:  "function unknown locally: standby only",
			self:  dfaas.State{Node: "1", Functions: map[string]dfaas.FunctionState{}},
			peers: []dfaas.Advert{advert("2", 20, 0)},
			limit: 0,
			want:  map[dfaas.NodeID]peerWant{"2": {1, 20}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Proportional{}.Plan(tt.self, tt.peers)
			fp, ok := plan.Functions[fn]
			require.True(t, ok)
			assert.InDelta(t, float64(tt.limit), float64(fp.Limit), 1e-9)
			assert.InDelta(t, float64(tt.self.Functions[fn].Capacity), float64(fp.Capacity), 1e-9)
			got := map[dfaas.NodeID]peerWant{}
			for _, p := range fp.Peers {
				got[p.Node] = peerWant{p.Weight, p.Cap}
				assert.Equal(t, string(p.Node)+":1", p.Addr)
			}
			require.Len(t, got, len(tt.want))
			for n, w := range tt.want {
				assert.InDelta(t, w.weight, got[n].weight, 1e-9, "weight of %s", n)
				assert.InDelta(t, float64(w.cap), float64(got[n].cap), 1e-9, "cap of %s", n)
			}
		})
	}
}

func TestProportionalPaperForwardedRates(t *testing.T) {
	plan := Proportional{}.Plan(state("1", 10, 50), []dfaas.Advert{advert("2", 20, 0), advert("3", 30, 0)})
	got := forwarded(plan.Functions[fn], 40)
	assert.InDelta(t, 16, float64(got["2"]), 1e-9)
	assert.InDelta(t, 24, float64(got["3"]), 1e-9)
}

// TestProportionalNeverOversubscribes plans every node of a federation and
// checks that no helper is sent more than its slack, and that when demand
// exceeds capacity the helpers' slack is used in full.
func TestProportionalNeverOversubscribes(t *testing.T) {
	cases := []struct {
		name       string
		capacities []dfaas.Rate
		demands    []dfaas.Rate
	}{
		{"paper", []dfaas.Rate{10, 20, 30}, []dfaas.Rate{50, 0, 0}},
		{"two overloaded, fits", []dfaas.Rate{10, 20, 30, 40}, []dfaas.Rate{50, 50, 0, 0}},
		{"two overloaded, exceeds", []dfaas.Rate{10, 20, 30}, []dfaas.Rate{60, 50, 0}},
		{"three overloaded, one helper", []dfaas.Rate{10, 10, 10, 50}, []dfaas.Rate{30, 20, 15, 5}},
		{"uneven", []dfaas.Rate{5, 7, 11, 13, 17}, []dfaas.Rate{40, 1, 0, 30, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.capacities)
			ids := make([]string, n)
			adverts := make([]dfaas.Advert, n)
			for i := range n {
				ids[i] = string(rune('a' + i))
				adverts[i] = advert(ids[i], tc.capacities[i], tc.demands[i])
			}
			received := map[dfaas.NodeID]dfaas.Rate{}
			var totalSlack, totalDeficit, sent dfaas.Rate
			for i := range n {
				self := state(ids[i], tc.capacities[i], tc.demands[i])
				totalSlack += self.Functions[fn].Slack()
				totalDeficit += self.Functions[fn].Deficit()
				var peers []dfaas.Advert
				for j := range n {
					if j != i {
						peers = append(peers, adverts[j])
					}
				}
				fp := Proportional{}.Plan(self, peers).Functions[fn]
				for node, r := range forwarded(fp, self.Functions[fn].Deficit()) {
					received[node] += r
					sent += r
				}
			}
			for i := range n {
				slack := adverts[i].Functions[fn].Slack()
				assert.LessOrEqual(t, float64(received[dfaas.NodeID(ids[i])]), float64(slack)+1e-9, "node %s", ids[i])
			}
			assert.InDelta(t, float64(min(totalSlack, totalDeficit)), float64(sent), 1e-9, "forwarded in total")
		})
	}
}

func TestAllLocalNeverForwards(t *testing.T) {
	plan := AllLocal{}.Plan(state("1", 10, 50), []dfaas.Advert{advert("2", 20, 0)})
	assert.Equal(t, dfaas.FunctionPlan{Limit: 10, Capacity: 10}, plan.Functions[fn])
}

func TestByName(t *testing.T) {
	b, err := ByName("proportional")
	require.NoError(t, err)
	assert.Equal(t, Proportional{}, b)
	_, err = ByName("nope")
	assert.ErrorContains(t, err, "unknown strategy")
	assert.Equal(t, []string{"all-local", "nearest", "proportional", "random", "recalc", "resilient", "static"}, Names())
}

// TestForeignFunctionsAreBounded: a peer advertising many functions nobody
// else runs cannot grow this node's plan past its own functions and
// MaxForeignFunctions of the others, nor crowd out those other peers run:
// names several peers advertise come first, then each peer's in turns.
func TestForeignFunctionsAreBounded(t *testing.T) {
	self := state("1", 10, 12)
	flood := dfaas.Advert{Node: "rogue", Seq: 1, TTL: 3e9, Addr: "rogue:1", Functions: map[string]dfaas.FunctionState{}}
	for i := range 1000 {
		flood.Functions[fmt.Sprintf("a%04d", i)] = dfaas.FunctionState{Capacity: 10}
	}
	runs := func(node string, fns ...string) dfaas.Advert {
		a := dfaas.Advert{Node: dfaas.NodeID(node), Seq: 1, TTL: 3e9, Addr: node + ":1", Functions: map[string]dfaas.FunctionState{}}
		for _, f := range fns {
			a.Functions[f] = dfaas.FunctionState{Capacity: 20}
		}
		return a
	}
	peers := []dfaas.Advert{runs("2", "zeta"), runs("3", "zeta"), advert("4", 30, 0), flood}
	for i := range 15 {
		peers = append(peers, runs(fmt.Sprintf("h%d", i), fmt.Sprintf("only-h%d", i)))
	}
	for _, b := range []dfaas.Balancer{Proportional{}, Resilient{}, Nearest{}, Recalc{}, Static{}, Random{}} {
		plan := b.Plan(self, peers)
		assert.Len(t, plan.Functions, 1+MaxForeignFunctions, "%T", b)
		assert.Contains(t, plan.Functions, "figlet", "%T: its own", b)
		assert.Contains(t, plan.Functions, "zeta", "%T: advertised by two peers", b)
		for i := range 15 {
			assert.Contains(t, plan.Functions, fmt.Sprintf("only-h%d", i), "%T: one peer's only function, beside the rogue's thousand", b)
		}
	}
	// Another node ranks the rogue's names otherwise: no name comes first
	// everywhere.
	a := functionNames(state("1", 10, 12), []dfaas.Advert{flood})
	b := functionNames(state("9", 10, 12), []dfaas.Advert{flood})
	assert.NotEqual(t, a, b)
}

// TestProportionalAMemberClaimingTheMostDemandStarvesNobody: the third
// security review's finding. A member that advertises the largest demand
// an advert may carry used to take nearly all of a helper's slack from an
// honest node (shared in proportion to deficit, the victim's cap was 20
// over 1e9 of 40); max-min fair, the victim's deficit is met whole, since
// it is under an equal share, and the helper is still never sent more
// than its slack.
func TestProportionalAMemberClaimingTheMostDemandStarvesNobody(t *testing.T) {
	victim := state("victim", 10, 30) // deficit 20
	liar := advert("liar", 10, dfaas.MaxRate)
	helper := advert("helper", 40, 0) // slack 40
	fp := Proportional{}.Plan(victim, []dfaas.Advert{liar, helper}).Functions[fn]
	require.Len(t, fp.Peers, 1)
	assert.InDelta(t, 20, float64(fp.Peers[0].Cap), 1e-9, "the victim's whole deficit")

	liarsView := Proportional{}.Plan(dfaas.State{Node: liar.Node, Functions: liar.Functions},
		[]dfaas.Advert{advert("victim", 10, 30), helper}).Functions[fn]
	require.Len(t, liarsView.Peers, 1)
	assert.InDelta(t, 20, float64(liarsView.Peers[0].Cap), 1e-9, "the liar gets the rest, no more")
}
