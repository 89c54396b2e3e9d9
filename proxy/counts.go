package proxy

import (
	"context"
	"maps"
	"net/http"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Counts are a function's counters since the data plane started. Every
// field but InFlight only grows, across plan changes.
type Counts struct {
	Arrivals     uint64 // user requests for the function
	ServedLocal  uint64 // user requests executed locally
	ForwardedOut uint64 // user requests answered by a peer
	ReceivedIn   uint64 // peer requests executed locally
	Rejected     uint64 // user requests answered 503 by this node, or 429 by the local runtime or a peer's
	Refused      uint64 // peer requests refused over capacity, or answered 429 by the local runtime
	FailedTries  uint64 // forward attempts refused by or failed at a peer, then retried
	InFlight     int64  // requests being executed locally now
	// Forwarded counts, per peer, the user requests that peer answered.
	Forwarded map[dfaas.NodeID]uint64
	// Latency of user requests at this node, from arrival to the end of the
	// response.
	Latency Latencies
	// Executions is the latency of local executions, of every origin, from
	// the hand-over to the platform to the end of its answer, whatever the
	// answer; Solo those of them that ran alone: no other execution of the
	// function was in progress here from their start to their end (their
	// service time, with no queueing nor sharing). A capacity estimator
	// learns from them (faas/capacity).
	Executions, Solo Latencies
	// Busy counts local executions the platform answered 429 (it ran
	// none of them), Failed those it answered 502, 503 or 504 (it gave up
	// or could not reach the function); both of every origin.
	Busy, Failed uint64
	// Statuses counts the user requests by the status they were answered
	// (the data plane's own 503 and 413 included), with their time from
	// arrival to the end of the answer: the OpenFaaS gateway's metrics.
	Statuses map[int]StatusCount
	// Occupied is the time at least one local execution of the function
	// was in progress: executions that ended over it, divided by it, is
	// the rate the platform runs the function at when busy (exact for a
	// function that runs one call at a time at full speed, a lower bound
	// for one that runs several in parallel).
	Occupied time.Duration
}

// PlatformFailed reports whether a platform's status says it gave up a
// call or could not reach its function (Counts.Failed).
func PlatformFailed(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// Counter is what a Monitor reads: a data plane's counters per function.
//
// Counts may do I/O (HAProxy's counters are read over its runtime socket)
// and honours ctx; it is safe for concurrent use. It lists every function
// the data plane has counted; on error it returns nil and the error, never
// stale counts that look current.
type Counter interface {
	Counts(ctx context.Context) (map[string]Counts, error)
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
	s.Executions = c.Executions.Add(o.Executions)
	s.Solo = c.Solo.Add(o.Solo)
	s.Busy += o.Busy
	s.Failed += o.Failed
	s.Occupied += o.Occupied
	s.Statuses = addStatuses(c.Statuses, o.Statuses)
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
	d.Arrivals = Delta(c.Arrivals, old.Arrivals)
	d.ServedLocal = Delta(c.ServedLocal, old.ServedLocal)
	d.ForwardedOut = Delta(c.ForwardedOut, old.ForwardedOut)
	d.ReceivedIn = Delta(c.ReceivedIn, old.ReceivedIn)
	d.Rejected = Delta(c.Rejected, old.Rejected)
	d.Refused = Delta(c.Refused, old.Refused)
	d.FailedTries = Delta(c.FailedTries, old.FailedTries)
	d.Latency = c.Latency.Sub(old.Latency)
	d.Executions = c.Executions.Sub(old.Executions)
	d.Solo = c.Solo.Sub(old.Solo)
	d.Busy = Delta(c.Busy, old.Busy)
	d.Failed = Delta(c.Failed, old.Failed)
	d.Occupied = time.Duration(Delta(uint64(c.Occupied), uint64(old.Occupied)))
	d.Statuses = subStatuses(c.Statuses, old.Statuses)
	d.Forwarded = maps.Clone(c.Forwarded)
	for n, v := range d.Forwarded {
		d.Forwarded[n] = Delta(v, old.Forwarded[n])
	}
	return d
}
