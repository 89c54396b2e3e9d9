package scenario

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
)

// TestReferenceScenarioOnHAProxy: the paper's experiment with a real HAProxy
// process as every node's data plane, driven through its runtime API.
func TestReferenceScenarioOnHAProxy(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, DataPlane: "haproxy"})
	rep := run(t, c, []dfaas.Rate{50, 0, 0}, 12*time.Second)
	steady(t, rep, []float64{10, 16, 24}, 1.5)
	assert.LessOrEqual(t, rep.ConvergedAt([]float64{10, 16, 24}), 3.0, "converged to the expected shares")
	assert.LessOrEqual(t, float64(rep.RejectedAfterConvergence), 0.01*float64(rep.Requests))
	clientAgrees(t, rep)
}

// TestHAProxyPeerDiesUnderLoad: a helper dies while HAProxy data planes
// forward to it. Its share moves to the surviving peer without a failed
// request, and its server leaves node 1's backend within two ticks.
func TestHAProxyPeerDiesUnderLoad(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, DataPlane: "haproxy"})
	fullMesh(t, c)
	n1, dead := c.Nodes[0], c.Nodes[2]
	deadID := dead.Overlay.Self()
	var stopped sync.WaitGroup
	var ticksToLeave uint64 = 1 << 62 // until measured
	stopped.Add(1)
	// 25 req/s at node 1: 15 forwarded, which node 2 alone can also take.
	rep, err := Run(context.Background(), c, LoadConfig{Rates: []dfaas.Rate{25, 0, 0}, Duration: 8 * time.Second,
		Progress: func(b int, _ []float64) {
			if b == 2 {
				go func() {
					defer stopped.Done()
					assert.NoError(t, dead.Stop())
					since := n1.Agent.Status().Ticks
					for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
						left := !inPlan(c, n1, deadID)
						if ticks := n1.Agent.Status().Ticks - since; left {
							ticksToLeave = ticks
							return
						}
					}
				}()
			}
		}})
	require.NoError(t, err)
	stopped.Wait()
	t.Logf("served %v / %v / %v", rep.Nodes[0].Served, rep.Nodes[1].Served, rep.Nodes[2].Served)
	assert.Zero(t, totalRejected(rep), "no request failed while the peer died")
	assert.InDelta(t, 15, rep.Nodes[1].Served[len(rep.Nodes[1].Served)-1], 1.5, "node 2 took the dead peer's share")

	assert.LessOrEqual(t, ticksToLeave, uint64(2), "the dead peer left node 1's plan within two ticks")
	peers, err := n1.DataPlane.(*haproxy.Driver).Peers(c.Function)
	require.NoError(t, err)
	assert.NotContains(t, peers, deadID, "and its server left the backend")
	assert.Contains(t, peers, c.Nodes[1].Overlay.Self())
}

// TestSeveralOverloadedNodesOnHAProxy: two overloaded senders share two
// helpers through HAProxy data planes. Each sender keeps to its caps, so
// the helpers serve their share of the deficits and hardly ever refuse.
func TestSeveralOverloadedNodesOnHAProxy(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30, 40}, Overlay: "memory", DataPlane: "haproxy"})
	rep := run(t, c, []dfaas.Rate{45, 35, 0, 0}, 10*time.Second)
	steady(t, rep, []float64{10, 20, 50 * 30.0 / 70, 50 * 40.0 / 70}, 1.5)
	assert.LessOrEqual(t, float64(totalRejected(rep)), 0.01*float64(rep.Requests))
	var refused uint64
	for _, n := range c.Nodes[2:] {
		refused += nodeCounts(t, n)[c.Function].Refused
	}
	t.Logf("helpers refused %d of %d requests", refused, rep.Requests)
	assert.LessOrEqual(t, float64(refused), 0.01*float64(rep.Requests), "the senders kept to their caps")
}
