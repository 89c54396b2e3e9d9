// Package plant models what a capacity estimator controls: a node's CPU
// budget shared by the executions of a function, as a processor-sharing
// queueing station. Tests of faas/capacity and the simulator run the
// estimator against it, with a true capacity that is known and can change
// mid-run (a quota cut, a noisy neighbour, costlier inputs).
//
// A Station is not safe for concurrent use; time is a duration since the
// station's start, and only moves forward.
package plant

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/proxy"
)

// Station is a FaaS platform's CPU as a processor-sharing station: the
// executions in progress share Cores cores equally, each using at most one
// (a function call runs on one thread), so with Cores <= 1 a call alone
// takes its cost divided by Cores, and n calls take n times as long.
type Station struct {
	cores         float64
	maxConcurrent int
	timeout       time.Duration
	overhead      time.Duration

	now      time.Duration
	jobs     []*job
	done     []Done
	occupied time.Duration // with at least one execution in progress
	observed time.Duration // occupied at the last Observe
}

type job struct {
	arrive time.Duration
	left   float64 // CPU seconds of work left
	solo   bool
}

// Done is one execution that ended.
type Done struct {
	At      time.Duration // when it ended
	Latency time.Duration // from its arrival at the station
	// Solo is set when it ran alone: no other execution was in progress
	// from its arrival to its end.
	Solo bool
	// Status is 200, 429 (refused: the station was at MaxConcurrent) or 504
	// (it took longer than Timeout and was given up).
	Status int
}

// Config shapes a Station.
type Config struct {
	// Cores is the CPU budget at the start. Required, positive.
	Cores float64
	// MaxConcurrent bounds the executions in progress: beyond it a call
	// is refused (429), as faas/local's dfaas.concurrency does. Zero: 64.
	MaxConcurrent int
	// Timeout gives up an execution that ran this long (504). Zero: 30 s.
	Timeout time.Duration
	// Overhead is latency every call has beyond its CPU work (the hop to
	// the platform, say), using no CPU of the budget.
	Overhead time.Duration
}

// New returns an idle station at time 0.
func New(cfg Config) *Station {
	if cfg.MaxConcurrent == 0 {
		cfg.MaxConcurrent = 64
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Station{cores: cfg.Cores, maxConcurrent: cfg.MaxConcurrent, timeout: cfg.Timeout, overhead: cfg.Overhead}
}

// SetCores changes the CPU budget from time at on (a quota changed, or a
// neighbour started or stopped using part of it).
func (s *Station) SetCores(at time.Duration, cores float64) {
	s.Advance(at)
	s.cores = cores
}

// Cores is the current CPU budget.
func (s *Station) Cores() float64 { return s.cores }

// InFlight is the number of executions in progress.
func (s *Station) InFlight() int { return len(s.jobs) }

// Submit starts an execution of cost CPU time at time at; a refusal (the
// station at MaxConcurrent) ends at once with status 429.
func (s *Station) Submit(at time.Duration, cost time.Duration) {
	s.Advance(at)
	if len(s.jobs) >= s.maxConcurrent {
		s.done = append(s.done, Done{At: at, Status: http.StatusTooManyRequests})
		return
	}
	for _, j := range s.jobs {
		j.solo = false // no longer alone
	}
	s.jobs = append(s.jobs, &job{arrive: at, left: cost.Seconds(), solo: len(s.jobs) == 0})
}

// Advance runs the station until time to.
func (s *Station) Advance(to time.Duration) {
	for s.now < to {
		if len(s.jobs) == 0 {
			s.now = to
			return
		}
		rate := math.Min(1, s.cores/float64(len(s.jobs))) // CPU seconds per second, each
		// The next event: a job finishes its work, or one times out.
		next := to
		first := -1
		for i, j := range s.jobs {
			if rate > 0 {
				d := max(time.Duration(math.Ceil(j.left/rate*float64(time.Second))), 1)
				if at := s.now + d; at < next {
					next, first = at, i
				}
			}
			if at := j.arrive + s.timeout; at < next {
				next, first = at, i
			}
		}
		if next < s.now {
			next = s.now
		}
		elapsed := (next - s.now).Seconds()
		s.occupied += next - s.now
		for _, j := range s.jobs {
			j.left -= rate * elapsed
		}
		s.now = next
		if first < 0 {
			continue
		}
		// Everything due at this instant ends (ties included).
		s.jobs = slices.DeleteFunc(s.jobs, func(j *job) bool {
			switch {
			case j.left <= rate*1e-9: // less than a nanosecond's work left
				s.done = append(s.done, Done{At: s.now, Latency: s.now - j.arrive + s.overhead, Solo: j.solo, Status: http.StatusOK})
				return true
			case s.now-j.arrive >= s.timeout:
				s.done = append(s.done, Done{At: s.now, Latency: s.now - j.arrive, Solo: j.solo, Status: http.StatusGatewayTimeout})
				return true
			}
			return false
		})
	}
}

// Occupied is the time, since the start, at least one execution was in
// progress.
func (s *Station) Occupied() time.Duration { return s.occupied }

// Observe is what a data plane would have counted of the station since
// the last Observe (or Drain), over window: the executions that ended with
// their latency (those that ran alone also in Solo), the refusals (Busy)
// and timeouts (Failed), the executions in progress and the time at least
// one was. Demand is left to the caller.
func (s *Station) Observe(window time.Duration) capacity.Observation {
	o := capacity.Observation{Window: window}
	var h, solo proxy.LatencyHistogram
	for _, d := range s.Drain() {
		switch d.Status {
		case http.StatusTooManyRequests:
			o.Busy++
			continue
		case http.StatusGatewayTimeout:
			o.Failed++
		}
		h.Observe(d.Latency)
		if d.Solo {
			solo.Observe(d.Latency)
		}
	}
	o.Latency, o.Solo = h.Snapshot(), solo.Snapshot()
	o.InFlight = len(s.jobs)
	o.Occupied, s.observed = s.occupied-s.observed, s.occupied
	return o
}

// Drain returns the executions that ended since the last Drain.
func (s *Station) Drain() []Done {
	out := s.done
	s.done = nil
	return out
}
