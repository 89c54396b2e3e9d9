package embedded

import (
	"sync"
	"sync/atomic"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// counters are one function's live counters; snapshot turns them into
// proxy.Counts.
type counters struct {
	arrivals, servedLocal, forwardedOut, receivedIn, rejected, refused, failedTries atomic.Uint64
	inFlight                                                                        atomic.Int64
	latency                                                                         proxy.LatencyHistogram

	mu        sync.Mutex
	forwarded map[dfaas.NodeID]*atomic.Uint64
}

func newCounters() *counters { return &counters{forwarded: map[dfaas.NodeID]*atomic.Uint64{}} }

// peer returns the counter of requests forwarded to node.
func (c *counters) peer(node dfaas.NodeID) *atomic.Uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.forwarded[node]
	if !ok {
		n = new(atomic.Uint64)
		c.forwarded[node] = n
	}
	return n
}

func (c *counters) snapshot() proxy.Counts {
	out := proxy.Counts{
		Arrivals: c.arrivals.Load(), ServedLocal: c.servedLocal.Load(), ForwardedOut: c.forwardedOut.Load(),
		ReceivedIn: c.receivedIn.Load(), Rejected: c.rejected.Load(), Refused: c.refused.Load(),
		FailedTries: c.failedTries.Load(), InFlight: c.inFlight.Load(), Latency: c.latency.Snapshot(),
	}
	c.mu.Lock()
	out.Forwarded = make(map[dfaas.NodeID]uint64, len(c.forwarded))
	for n, v := range c.forwarded {
		out.Forwarded[n] = v.Load()
	}
	c.mu.Unlock()
	return out
}
