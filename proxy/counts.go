package proxy

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/internal/hist"
)

// Counts are a function's counters since the proxy started. Every field but
// InFlight only grows, across plan changes.
type Counts struct {
	Arrivals     uint64 // user requests for the function
	ServedLocal  uint64 // user requests executed locally
	ForwardedOut uint64 // user requests answered by a peer
	ReceivedIn   uint64 // peer requests executed locally
	Rejected     uint64 // user requests answered 503 by this node, or 429 by the local runtime
	Refused      uint64 // peer requests refused for lack of capacity
	FailedTries  uint64 // forward attempts refused by or failed at a peer, then retried
	InFlight     int64  // requests being executed locally now
	// Forwarded counts, per peer, the user requests that peer answered.
	Forwarded map[dfaas.NodeID]uint64
	// Latency of user requests at this node, from arrival to the end of the
	// response.
	Latency hist.Snapshot
}

// Counter is what a Monitor reads: a data plane's counters per function.
type Counter interface {
	Counts() map[string]Counts
}

type counters struct {
	arrivals, servedLocal, forwardedOut, receivedIn, rejected, refused, failedTries atomic.Uint64
	inFlight                                                                        atomic.Int64
	latency                                                                         hist.Histogram

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

func (c *counters) snapshot() Counts {
	out := Counts{
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

// Add returns the sum of c and o, as when counts of an earlier process
// carry over; InFlight is c's.
func (c Counts) Add(o Counts) Counts {
	s := c
	s.Arrivals += o.Arrivals
	s.ServedLocal += o.ServedLocal
	s.ForwardedOut += o.ForwardedOut
	s.ReceivedIn += o.ReceivedIn
	s.Rejected += o.Rejected
	s.Refused += o.Refused
	s.FailedTries += o.FailedTries
	s.Latency = c.Latency.Add(o.Latency)
	s.Forwarded = maps.Clone(c.Forwarded)
	if s.Forwarded == nil {
		s.Forwarded = map[dfaas.NodeID]uint64{}
	}
	for n, v := range o.Forwarded {
		s.Forwarded[n] += v
	}
	return s
}

// Sub returns the counts accumulated between old and c; InFlight is c's. A
// counter below old's was reset in between (a data plane restarted): all of
// its count is new, never a wrapped-around difference.
func (c Counts) Sub(old Counts) Counts {
	d := c
	d.Arrivals = hist.Delta(c.Arrivals, old.Arrivals)
	d.ServedLocal = hist.Delta(c.ServedLocal, old.ServedLocal)
	d.ForwardedOut = hist.Delta(c.ForwardedOut, old.ForwardedOut)
	d.ReceivedIn = hist.Delta(c.ReceivedIn, old.ReceivedIn)
	d.Rejected = hist.Delta(c.Rejected, old.Rejected)
	d.Refused = hist.Delta(c.Refused, old.Refused)
	d.FailedTries = hist.Delta(c.FailedTries, old.FailedTries)
	d.Latency = c.Latency.Sub(old.Latency)
	d.Forwarded = maps.Clone(c.Forwarded)
	for n, v := range d.Forwarded {
		d.Forwarded[n] = hist.Delta(v, old.Forwarded[n])
	}
	return d
}
