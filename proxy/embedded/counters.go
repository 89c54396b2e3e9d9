package embedded

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// counters are one function's live counters; snapshot turns them into
// proxy.Counts.
type counters struct {
	arrivals, servedLocal, forwardedOut, receivedIn, rejected, refused, failedTries atomic.Uint64
	busy, failed                                                                    atomic.Uint64
	starts                                                                          atomic.Uint64 // local executions begun
	inFlight                                                                        atomic.Int64
	latency, executions, solo                                                       proxy.LatencyHistogram
	statuses                                                                        proxy.Statuses // user requests

	occupied occupancy

	mu        sync.Mutex
	forwarded map[dfaas.NodeID]*peerCount
}

// occupancy accumulates the time at least one local execution is in
// progress (proxy.Counts.Occupied).
type occupancy struct {
	mu    sync.Mutex
	n     int
	since time.Time
	total time.Duration
}

func (o *occupancy) enter(now time.Time) {
	o.mu.Lock()
	if o.n == 0 {
		o.since = now
	}
	o.n++
	o.mu.Unlock()
}

func (o *occupancy) leave(now time.Time) {
	o.mu.Lock()
	if o.n--; o.n == 0 {
		o.total += now.Sub(o.since)
	}
	o.mu.Unlock()
}

// read is the time occupied up to now.
func (o *occupancy) read(now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n > 0 {
		return o.total + now.Sub(o.since)
	}
	return o.total
}

// peerCount counts the requests forwarded to one peer; planned is when a
// plan last named it.
type peerCount struct {
	n       atomic.Uint64
	planned time.Time
}

func newCounters() *counters { return &counters{forwarded: map[dfaas.NodeID]*peerCount{}} }

// forgetPeersAfter is how long the counter of a peer that no plan names is
// kept: one that comes back soon keeps counting, and a federation whose
// members come and go does not grow the counters (and the metrics' peer
// labels) without end.
const forgetPeersAfter = 10 * time.Minute

// peer returns the counter of requests forwarded to node, named by a plan
// at now.
func (c *counters) peer(node dfaas.NodeID, now time.Time) *atomic.Uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc, ok := c.forwarded[node]
	if !ok {
		pc = new(peerCount)
		c.forwarded[node] = pc
	}
	pc.planned = now
	return &pc.n
}

// prune drops the counters of peers no plan named for forgetPeersAfter.
func (c *counters) prune(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for node, pc := range c.forwarded {
		if now.Sub(pc.planned) > forgetPeersAfter {
			delete(c.forwarded, node)
		}
	}
}

func (c *counters) snapshot() proxy.Counts {
	out := proxy.Counts{
		Arrivals: c.arrivals.Load(), ServedLocal: c.servedLocal.Load(), ForwardedOut: c.forwardedOut.Load(),
		ReceivedIn: c.receivedIn.Load(), Rejected: c.rejected.Load(), Refused: c.refused.Load(),
		FailedTries: c.failedTries.Load(), InFlight: c.inFlight.Load(), Latency: c.latency.Snapshot(),
		Executions: c.executions.Snapshot(), Solo: c.solo.Snapshot(), Busy: c.busy.Load(), Failed: c.failed.Load(),
		Occupied: c.occupied.read(time.Now()), Statuses: c.statuses.Snapshot(),
	}
	c.mu.Lock()
	out.Forwarded = make(map[dfaas.NodeID]uint64, len(c.forwarded))
	for n, v := range c.forwarded {
		out.Forwarded[n] = v.n.Load()
	}
	c.mu.Unlock()
	return out
}
