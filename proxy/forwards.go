package proxy

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Forwards measures a data plane's forwards per function and peer, for
// dfaas.ForwardMeter: a peak-EWMA of the latency of answered attempts and
// an EWMA of the share of attempts that did not fail, both decaying with
// time (Linkerd's and Finagle's way: a slow answer counts at once, fast
// ones bring the estimate down within seconds). Good news after bad takes
// two answers: the first fast answer after a slower one moves the
// estimate at most half way, and the next in a row as far as the time
// since allows. A degraded peer is sent a forward every few seconds, so a
// single lucky answer (on a lossy link, one forward in two or three
// arrives without a retransmission) would otherwise bring its share back
// for a tick, and its retransmitted forwards would set the p99; a peer
// that has recovered answers fast twice in a row. It is safe for
// concurrent use; the zero value is ready.
type Forwards struct {
	mu sync.Mutex
	m  map[forwardKey]*forwardStat
}

type forwardKey struct {
	fn   string
	peer dfaas.NodeID
}

type forwardStat struct {
	latency  float64 // seconds
	success  float64
	attempts uint64
	answered time.Time // the latest answered attempt (the latency's clock)
	last     time.Time // the latest attempt
	good     bool      // no answer much slower than the estimate since the latest fast one
}

// The time constants of the EWMAs: latency follows answers closely (its
// half-life is about 1.4 s), the success rate over about five seconds, so
// that one lost connection on a lossy link does not halve a peer's share.
const (
	latencyTau = 2 * time.Second
	successTau = 5 * time.Second
)

// decay is the weight of the old value after dt with time constant tau.
func decay(dt, tau time.Duration) float64 {
	if dt <= 0 {
		return 1
	}
	return math.Exp(-float64(dt) / float64(tau))
}

func (f *Forwards) stat(fn string, peer dfaas.NodeID) *forwardStat {
	if f.m == nil {
		f.m = map[forwardKey]*forwardStat{}
	}
	k := forwardKey{fn, peer}
	s := f.m[k]
	if s == nil {
		s = &forwardStat{}
		f.m[k] = s
	}
	return s
}

// Answered records an attempt to forward fn to peer that peer answered
// with status after took (from the request's end to the peer's response
// headers), at now. What the status says of the peer's health:
//
//   - 2xx and 3xx: a success, and its time a latency sample;
//   - other 4xx: a success (the call's own answer), but no sample: a
//     quick refusal of a bad request says nothing of how fast the peer is;
//   - 429: nothing (the peer's capacity, not its health);
//   - 5xx: a failure, and no sample: a peer failing fast must not look
//     fast.
func (f *Forwards) Answered(fn string, peer dfaas.NodeID, status int, took time.Duration, now time.Time) {
	switch {
	case status == http.StatusTooManyRequests:
		return
	case status >= 500:
		f.Failed(fn, peer, now)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stat(fn, peer)
	if status >= 400 {
		s.record(true, now)
		return
	}
	sample := took.Seconds()
	if now.Before(s.answered) {
		now = s.answered // answers recorded out of order (concurrent)
	}
	switch {
	case s.answered.IsZero() || sample > s.latency:
		// Peak: a slower answer counts at once; much slower (not the
		// jitter of a healthy peer) is bad news.
		s.good = s.answered.IsZero() || (s.good && sample <= s.latency*5/4)
		s.latency = sample
	default:
		w := decay(now.Sub(s.answered), latencyTau)
		if !s.good {
			w = max(w, 0.5) // the first good news after bad: half way at most
		}
		s.latency = w*s.latency + (1-w)*sample
		s.good = true
	}
	s.answered = now
	s.record(true, now)
}

// Failed records an attempt to forward fn to peer that failed without an
// answer (connection refused, reset, timed out), at now.
func (f *Forwards) Failed(fn string, peer dfaas.NodeID, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stat(fn, peer).record(false, now)
}

// record adds an attempt's success or failure; f.mu is held.
func (s *forwardStat) record(ok bool, now time.Time) {
	v := 0.0
	if ok {
		v = 1
	}
	if s.attempts == 0 {
		s.success = v
	} else {
		w := decay(now.Sub(s.last), successTau)
		s.success = w*s.success + (1-w)*v
	}
	s.attempts++
	s.last = now
}

// Health returns the measures at now, per function and peer, of the pairs
// with an attempt in the last dfaas.ForwardStale; older ones are forgotten
// (so the measures are bounded by the plans' recent functions and peers).
func (f *Forwards) Health(now time.Time) map[string]map[dfaas.NodeID]dfaas.ForwardHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out map[string]map[dfaas.NodeID]dfaas.ForwardHealth
	for k, s := range f.m {
		age := now.Sub(s.last)
		if age > dfaas.ForwardStale {
			delete(f.m, k)
			continue
		}
		if out == nil {
			out = map[string]map[dfaas.NodeID]dfaas.ForwardHealth{}
		}
		if out[k.fn] == nil {
			out[k.fn] = map[dfaas.NodeID]dfaas.ForwardHealth{}
		}
		out[k.fn][k.peer] = dfaas.ForwardHealth{Latency: time.Duration(s.latency * float64(time.Second)), Success: s.success,
			Attempts: s.attempts, Age: max(0, age)}
	}
	return out
}

// Forget drops what was measured of peer's forwards: it was declared down
// or left the plans, and what it did before says nothing of it when it is
// back (a frozen peer thawed answers as fast as ever).
func (f *Forwards) Forget(peer dfaas.NodeID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.m {
		if k.peer == peer {
			delete(f.m, k)
		}
	}
}
