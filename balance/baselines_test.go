package balance

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

type peerWant struct {
	weight float64
	cap    dfaas.Rate
}

// plannedPeers returns the plan's peers of fn by node.
func plannedPeers(t *testing.T, b dfaas.Balancer, self dfaas.State, peers []dfaas.Advert) (dfaas.FunctionPlan, map[dfaas.NodeID]peerWant) {
	t.Helper()
	fp, ok := b.Plan(self, peers).Functions[fn]
	require.True(t, ok)
	got := map[dfaas.NodeID]peerWant{}
	var sum float64
	for _, p := range fp.Peers {
		got[p.Node] = peerWant{p.Weight, p.Cap}
		sum += p.Weight
	}
	if len(got) > 0 {
		assert.InDelta(t, 1, sum, 1e-9, "weights sum to one")
	}
	return fp, got
}

func assertPeers(t *testing.T, want, got map[dfaas.NodeID]peerWant) {
	t.Helper()
	require.Len(t, got, len(want))
	for n, w := range want {
		assert.InDelta(t, w.weight, got[n].weight, 1e-6, "weight of %s", n)
		assert.InDelta(t, float64(w.cap), float64(got[n].cap), 1e-9, "cap of %s", n)
	}
}

var (
	paperSelf  = state("1", 10, 50)
	paperPeers = []dfaas.Advert{advert("2", 20, 0), advert("3", 30, 0)}
)

func TestRecalc(t *testing.T) {
	tests := []struct {
		name  string
		self  dfaas.State
		peers []dfaas.Advert
		want  map[dfaas.NodeID]peerWant
	}{
		// Each helper splits its slack over its two peers: 10 and 15 of the
		// 40 req/s node 1 needs.
		{"paper", paperSelf, paperPeers, map[dfaas.NodeID]peerWant{"2": {0.4, 10}, "3": {0.6, 15}}},
		{"no peers", paperSelf, nil, map[dfaas.NodeID]peerWant{}},
		{"all peers overloaded", paperSelf, []dfaas.Advert{advert("2", 20, 25), advert("3", 30, 31)}, map[dfaas.NodeID]peerWant{}},
		{"several overloaded: limits ignore who needs them", state("1", 10, 50),
			[]dfaas.Advert{advert("2", 10, 30), advert("3", 30, 0)}, map[dfaas.NodeID]peerWant{"3": {1, 15}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, got := plannedPeers(t, Recalc{}, tt.self, tt.peers)
			assert.Equal(t, tt.self.Functions[fn].Capacity, fp.Limit)
			assertPeers(t, tt.want, got)
		})
	}
}

func TestStaticAndRandomIgnoreLoad(t *testing.T) {
	busy := []dfaas.Advert{advert("2", 20, 25), advert("3", 30, 0)} // node 2 is overloaded
	_, got := plannedPeers(t, Static{}, paperSelf, busy)
	assertPeers(t, map[dfaas.NodeID]peerWant{"2": {0.4, 20}, "3": {0.6, 30}}, got)
	_, got = plannedPeers(t, Random{}, paperSelf, busy)
	assertPeers(t, map[dfaas.NodeID]peerWant{"2": {0.5, 20}, "3": {0.5, 30}}, got)
	_, got = plannedPeers(t, Random{}, paperSelf, nil)
	assert.Empty(t, got)
	_, got = plannedPeers(t, Static{}, paperSelf, []dfaas.Advert{advert("2", 0, 0)})
	assert.Empty(t, got, "a peer without capacity takes nothing")
}

func TestResilient(t *testing.T) {
	tests := []struct {
		name  string
		self  dfaas.State
		peers []dfaas.Advert
		want  map[dfaas.NodeID]peerWant
	}{
		{"paper: Proportional's weights, caps at capacity", paperSelf, paperPeers,
			map[dfaas.NodeID]peerWant{"2": {0.4, 20}, "3": {0.6, 30}}},
		{"no peers", paperSelf, nil, map[dfaas.NodeID]peerWant{}},
		{"all peers overloaded: every peer as a last resort, equally", paperSelf,
			[]dfaas.Advert{advert("2", 20, 25), advert("3", 30, 31)}, map[dfaas.NodeID]peerWant{"2": {0.5, 20}, "3": {0.5, 30}}},
		{"an overloaded peer is a last resort behind the helpers", paperSelf,
			[]dfaas.Advert{advert("2", 20, 25), advert("3", 30, 0)}, map[dfaas.NodeID]peerWant{"3": {1 - lastResort, 30}, "2": {lastResort, 20}}},
		{"demand above capacity: helpers capped only at capacity", state("1", 10, 50),
			[]dfaas.Advert{advert("2", 10, 30), advert("3", 10, 0), advert("4", 20, 0)},
			map[dfaas.NodeID]peerWant{"3": {(1 - lastResort) / 3, 10}, "4": {2 * (1 - lastResort) / 3, 20}, "2": {lastResort, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, got := plannedPeers(t, Resilient{}, tt.self, tt.peers)
			assert.Equal(t, dfaas.Rate(10), fp.Limit)
			assertPeers(t, tt.want, got)
		})
	}
	paper := forwarded(Resilient{}.Plan(paperSelf, paperPeers).Functions[fn], 40)
	assert.InDelta(t, 16, float64(paper["2"]), 1e-6)
	assert.InDelta(t, 24, float64(paper["3"]), 1e-6)
}
