package haproxy

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dfaas-go/dfaas"
)

// TestPeersNoPlanNamesAreForgotten: the driver names the forwards of a peer
// (Counts.Forwarded, and so the metrics' peer label) until no plan has named
// it for forgetPeersAfter; its forwards still count in ForwardedOut.
func TestPeersNoPlanNamesAreForgotten(t *testing.T) {
	d := &Driver{cfg: Config{MaxPeers: 64, Burst: 100 * time.Millisecond}, log: slog.New(slog.DiscardHandler),
		nodes: map[string]dfaas.NodeID{}, wanted: map[string]time.Time{}, servers: map[dfaas.NodeID]server{}, functions: []string{"figlet"}}
	d.wantServers(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{
		{Node: "old", Addr: "10.0.0.2:8081", Weight: 1, Cap: 5}, {Node: "new", Addr: "10.0.0.3:8081", Weight: 1, Cap: 5}}}}}, []string{"figlet"})
	now := time.Now()
	d.wanted[serverName("old")] = now.Add(-forgetPeersAfter - time.Second)
	d.wanted[serverName("new")] = now.Add(-forgetPeersAfter + time.Second)
	d.forgetPeers(now)
	tables := map[string]map[string]tableEntry{tableFwd: {
		"figlet/" + serverName("old"): {requests: 3},
		"figlet/" + serverName("new"): {requests: 4},
	}}
	c := d.tableCountsByFunction(tables)["figlet"]
	assert.Equal(t, map[dfaas.NodeID]uint64{"new": 4}, c.Forwarded)
	assert.Equal(t, uint64(7), c.ForwardedOut)
}

// TestMaxPeersKeepsTheHeaviest: with more peers than MaxPeers, the
// forwarding backend holds those with the most weight over all the
// functions, whatever the functions' names (it was the first in name
// order).
func TestMaxPeersKeepsTheHeaviest(t *testing.T) {
	d := &Driver{cfg: Config{MaxPeers: 2, Burst: 100 * time.Millisecond}, log: slog.New(slog.DiscardHandler),
		nodes: map[string]dfaas.NodeID{}, wanted: map[string]time.Time{}, servers: map[dfaas.NodeID]server{}}
	share := func(node string, w float64) dfaas.Share {
		return dfaas.Share{Node: dfaas.NodeID(node), Addr: "10.0.0." + node[1:] + ":8081", Weight: w, Cap: 5}
	}
	plan := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{
		"a-first": {Peers: []dfaas.Share{share("n1", 0.1), share("n2", 0.1)}},
		"b-heavy": {Peers: []dfaas.Share{share("n3", 0.9), share("n4", 0.5)}},
		"c-more":  {Peers: []dfaas.Share{share("n2", 0.3), share("n4", 0.3)}},
	}}
	want := d.wantServers(plan, []string{"a-first", "b-heavy", "c-more"})
	assert.Len(t, want, 2)
	assert.Contains(t, want, dfaas.NodeID("n3"), "0.9")
	assert.Contains(t, want, dfaas.NodeID("n4"), "0.8")
	assert.Empty(t, d.route(plan.Functions["a-first"].Peers, want), "a-first's peers left out")
}
