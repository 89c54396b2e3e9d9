package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// nodeCounts reads a node's counters.
func nodeCounts(t *testing.T, n *Node) map[string]proxy.Counts {
	t.Helper()
	c, err := n.DataPlane.Counts(t.Context())
	require.NoError(t, err)
	return c
}

func start(t *testing.T, cfg ClusterConfig) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := StartCluster(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	require.NoError(t, c.WaitFormed(ctx))
	return c
}

func run(t *testing.T, c *Cluster, rates []dfaas.Rate, d time.Duration) Report {
	t.Helper()
	rep, err := Run(context.Background(), c, LoadConfig{Rates: rates, Duration: d})
	require.NoError(t, err)
	t.Logf("report: %+v", rep)
	return rep
}

// steady asserts each node's served rate after convergence.
func steady(t *testing.T, rep Report, want []float64, tol float64) {
	t.Helper()
	for i, w := range want {
		assert.InDelta(t, w, rep.Nodes[i].SteadyServedRPS, tol, "node %s served %v", rep.Nodes[i].ID, rep.Nodes[i].Served)
	}
}

func totalRejected(rep Report) (n uint64) {
	for _, nr := range rep.Nodes {
		n += nr.Rejected
	}
	return n
}

// TestReferenceScenario is the paper's experiment on real libp2p hosts, the
// embedded proxy and faas/local: 50 req/s at node 1 of 10/20/30.
func TestReferenceScenario(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}})
	rep := run(t, c, []dfaas.Rate{50, 0, 0}, 12*time.Second)
	steady(t, rep, []float64{10}, 1)
	steady(t, rep, []float64{10, 16, 24}, 1.5)
	assert.LessOrEqual(t, rep.ConvergedAt([]float64{10, 16, 24}), 3.0, "converged to the expected shares")
	// Every node had room for the excess: nothing may be lost.
	assert.LessOrEqual(t, float64(totalRejected(rep)), 0.01*float64(rep.Requests))
	assert.LessOrEqual(t, float64(rep.RejectedAfterConvergence), 0.01*float64(rep.Requests))
	clientAgrees(t, rep)
}

// clientAgrees holds the nodes' counters to what the load generator saw:
// every answer a client got at a node was served there or forwarded, every
// forward was received by a peer, and the rejections counted are the ones
// the clients got.
func clientAgrees(t *testing.T, rep Report) {
	t.Helper()
	var sent, forwarded, received uint64
	for _, nr := range rep.Nodes {
		sent += nr.ClientOK + nr.Rejected
		assert.Equal(t, nr.ClientOK, nr.ServedLocal+nr.ForwardedOut, "node %s: the clients' 200s are its local and forwarded answers", nr.ID)
		assert.Equal(t, nr.Rejected, nr.CountedRejected, "node %s: rejections counted as the clients saw them", nr.ID)
		forwarded += nr.ForwardedOut
		received += nr.Received
	}
	assert.Equal(t, rep.Requests, sent, "every request accounted for")
	assert.Equal(t, forwarded, received, "every forward received once")
}

// TestSeveralOverloadedNodes: two nodes overloaded at once share the
// helpers' slack in proportion to it, and no helper gets more than its slack.
func TestSeveralOverloadedNodes(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30, 40}, Overlay: "memory"})
	rep := run(t, c, []dfaas.Rate{45, 35, 0, 0}, 10*time.Second)
	// Deficits 35 + 15 = 50 over slack 30 + 40 = 70.
	steady(t, rep, []float64{10, 20, 50 * 30.0 / 70, 50 * 40.0 / 70}, 1.5)
	assert.LessOrEqual(t, rep.Nodes[2].SteadyServedRPS, 30.5)
	assert.LessOrEqual(t, rep.Nodes[3].SteadyServedRPS, 40.5)
	assert.LessOrEqual(t, float64(totalRejected(rep)), 0.01*float64(rep.Requests))
	clientAgrees(t, rep)
}

// TestDemandAboveCapacity: 80 req/s offered to 60 req/s of capacity. Every
// node runs at capacity and the rejections are the excess, no more.
func TestDemandAboveCapacity(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, Overlay: "memory"})
	d := 10 * time.Second
	rep := run(t, c, []dfaas.Rate{50, 30, 0}, d)
	steady(t, rep, []float64{10, 20, 30}, 1.5)
	after := d.Seconds() - rep.ConvergenceS
	require.Positive(t, after)
	rejectedRate := float64(rep.RejectedAfterConvergence) / after
	assert.InDelta(t, 20, rejectedRate, 2, "rejected req/s after convergence")
	clientAgrees(t, rep)
}

func inPlan(c *Cluster, n *Node, peer dfaas.NodeID) bool {
	for _, s := range n.Agent.Status().LastPlan.Functions[c.Function].Peers {
		if s.Node == peer {
			return true
		}
	}
	return false
}

// ticksUntilGone waits until peer leaves n's plan and returns how many ticks
// n ran from since until then.
// fullMesh waits until every libp2p node is connected to every other.
// Adverts may reach a node through another, but the connection-drop path
// (a peer gone at the next tick) needs the direct connection, which
// discovery makes soon after start.
func fullMesh(t *testing.T, c *Cluster) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range c.Nodes {
			if n.Overlay.(*overlay.Libp2p).Peers() < len(c.Nodes)-1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "a full mesh")
}

func ticksUntilGone(t *testing.T, c *Cluster, n *Node, peer dfaas.NodeID, since uint64) uint64 {
	t.Helper()
	var ticks uint64
	require.Eventually(t, func() bool {
		left := !inPlan(c, n, peer)
		ticks = n.Agent.Status().Ticks // read after the plan: never an undercount
		return left
	}, 10*time.Second, time.Millisecond)
	return ticks - since
}

// TestStoppedNodeLeavesPlans: a node that stops is out of its peers' plans
// within three ticks, and the survivors keep serving.
func TestStoppedNodeLeavesPlans(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, Interval: 200 * time.Millisecond})
	gone := c.Nodes[2].Overlay.Self()
	require.True(t, inPlan(c, c.Nodes[0], gone))
	fullMesh(t, c)
	require.NoError(t, c.Nodes[2].Stop())
	for _, n := range c.Nodes[:2] {
		ticks := ticksUntilGone(t, c, n, gone, n.Agent.Status().Ticks)
		t.Logf("node %s: the stopped node left the plan after %d ticks (overlay %+v)", n.Name, ticks, n.Overlay.(*overlay.Libp2p).Stats())
		assert.LessOrEqual(t, ticks, uint64(3))
	}

	// 25 req/s at node 1 (capacity 10) still fits node 2's 20. As in
	// TestReferenceScenario, 1% may be refused: every node, and the load
	// generator, share this one raced process, and a stall of it longer
	// than the buckets' 100 ms window bunches arrivals beyond their depth
	// (CI saw 1 of 100). The testbed's real processes hold zero.
	rep := run(t, &Cluster{Nodes: c.Nodes[:2], Function: c.Function}, []dfaas.Rate{25, 0}, 4*time.Second)
	assert.LessOrEqual(t, float64(totalRejected(rep)), 0.01*float64(rep.Requests))
	assert.InDelta(t, 15, rep.Nodes[1].SteadyServedRPS, 1.5)
	clientAgrees(t, rep)
}

// TestSilentNodeExpires: a node whose agent hangs while its host stays
// connected leaves the plans when its last advert expires (TTL = 3 ticks),
// so at most four ticks after it fell silent.
func TestSilentNodeExpires(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, Interval: 200 * time.Millisecond})
	silent := c.Nodes[2].Overlay.Self()
	since := c.Nodes[0].Agent.Status().Ticks
	c.Nodes[2].StopAgent()
	ticks := ticksUntilGone(t, c, c.Nodes[0], silent, since)
	t.Logf("the silent node left the plan after %d ticks", ticks)
	assert.LessOrEqual(t, ticks, uint64(5))
}

func TestConvergence(t *testing.T) {
	series := [][]float64{
		{0, 5, 10, 10, 10, 10},
		{50, 20, 17, 16, 16, 16},
	}
	assert.Equal(t, 2, Convergence(series))
	assert.Equal(t, 0, Convergence([][]float64{{10, 10, 10}}))
	assert.Equal(t, 3, Convergence([][]float64{{10, 10, 10, 30}}), "settles in the last bucket only")
	assert.Equal(t, 0, Convergence(nil))
}
