// Package capacity learns what a node can run of each function from what
// it observes of its own executions, instead of taking the number from an
// operator. An Estimator is fed, every control tick, an Observation of one
// function's local executions - how many ended, how long they took, which
// of them ran alone, what the platform refused or gave up, how much was
// asked of the node - and answers the rate, in requests per second, that
// the node admits and advertises for it.
//
// Adaptive, the default, is described on its type. The Monitor of package
// faas runs one per function in an agent, and the simulator runs the same
// code against modelled CPU budgets (internal/plant).
package capacity

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Observation is what a node saw of one function's local executions, of
// every origin (its users' and its peers'), over one window.
type Observation struct {
	// Window is the span observed.
	Window time.Duration
	// Latency holds the executions that ended in the window, whatever
	// their status, from the data plane's hand-over to the platform to
	// the end of the answer.
	Latency proxy.Latencies
	// Solo holds those of them that started while no other execution of
	// the function was in progress on the node: their latency is the
	// service time without queueing.
	Solo proxy.Latencies
	// Busy counts the calls the platform refused (429): it did not run
	// them.
	Busy uint64
	// Failed counts the calls the platform gave up or could not reach its
	// function for (502, 503, 504).
	Failed uint64
	// InFlight is the number of executions in progress at the window's
	// end.
	InFlight int
	// Occupied is the time in the window at least one execution was in
	// progress.
	Occupied time.Duration
	// Demand is the rate of requests that asked to run on the node,
	// admitted or not: its users' requests and its peers' forwards.
	Demand dfaas.Rate
}

// Limits are what the platform declares of a function.
type Limits struct {
	// Max is an upper bound on the capacity (the dfaas.maxrate label), and
	// the rate an estimator starts from; zero means none.
	Max dfaas.Rate
	// Objective is the function's latency objective (the dfaas.slo label);
	// the zero value means the estimator's default.
	Objective Objective
	// MaxInFlight is the most executions the platform runs at once
	// (OpenFaaS: the replicas times the max_inflight their watchdogs
	// take, beyond which they answer 429); zero means no bound. The
	// capacity is then at most that many per unloaded service time
	// (Little's law), so that the node does not admit what its platform
	// would refuse.
	MaxInFlight int
}

// Objective is a latency objective: the Quantile of executions' latency
// at most Latency.
type Objective struct {
	// Quantile in (0, 1), such as 0.95. Zero means 0.95.
	Quantile float64
	// Latency is the bound. Zero means relative to the function's
	// unloaded service time (Adaptive's Tolerance).
	Latency time.Duration
}

// String writes o as the dfaas.slo label does ("p95=200ms"); "" for the
// zero value.
func (o Objective) String() string {
	if o.Latency == 0 {
		return ""
	}
	q := o.Quantile
	if q == 0 {
		q = 0.95
	}
	return "p" + strconv.FormatFloat(q*100, 'f', -1, 64) + "=" + o.Latency.String()
}

// ParseObjective reads a dfaas.slo label: "p<quantile>=<duration>", such
// as "p95=200ms" or "p99.9=1s", the quantile in (0, 100) and the duration
// positive and at most a minute.
func ParseObjective(v string) (Objective, error) {
	bad := fmt.Errorf("%w: objective %q: want p<quantile>=<duration>, such as p95=200ms", dfaas.ErrInvalidConfig, v)
	q, d, ok := strings.Cut(strings.TrimSpace(v), "=")
	if !ok || len(q) < 2 || q[0] != 'p' {
		return Objective{}, bad
	}
	pct, err := strconv.ParseFloat(q[1:], 64)
	if err != nil || !(pct > 0 && pct < 100) {
		return Objective{}, bad
	}
	lat, err := time.ParseDuration(d)
	if err != nil || lat <= 0 || lat > time.Minute {
		return Objective{}, bad
	}
	return Objective{Quantile: math.Round(pct*1e7) / 1e9, Latency: lat}, nil
}

// Estimator learns one function's capacity on a node.
//
// Update is called from one goroutine at a time, once per window; State
// may be called from any goroutine.
type Estimator interface {
	// Update folds one window's observation in and returns the capacity
	// now: the rate to admit and advertise, at most l.Max when that is set.
	Update(now time.Time, o Observation, l Limits) dfaas.Rate
	// State is what the estimator believes, for status pages and logs.
	State() State
}

// State is an estimator's belief about one function.
type State struct {
	// Capacity is the rate it answered last.
	Capacity dfaas.Rate `json:"capacity"`
	// Ceiling is the rate the function was last seen to run at when it
	// was overloaded (zero before that): what the node delivered at its
	// limit; or, before any overload, where the start met demand without
	// exceeding it.
	Ceiling dfaas.Rate `json:"ceiling"`
	// Service is the unloaded service time: the median latency of recent
	// executions that ran alone (zero before the first).
	Service time.Duration `json:"service_ns"`
	// Objective is the latency objective in force, at Quantile.
	Objective time.Duration `json:"objective_ns"`
	Quantile  float64       `json:"quantile"`
	// Latency is that quantile of the latest window's executions.
	Latency time.Duration `json:"latency_ns"`
	// Full is what the platform runs a second when busy: executions over
	// the time at least one was in progress, by the latest span busy
	// enough to tell (zero before).
	Full dfaas.Rate `json:"full"`
	// Phase is "start" (growing fast: no limit seen yet), "probe"
	// (growing while demand presses the capacity: 80% of it or more),
	// "fill" (growing toward a part of Full), "hold" or "cut" (the latest
	// window was overloaded).
	Phase string `json:"phase"`
	// Reason says why the latest cut, or step of the service time, was
	// made, and Cut when the latest cut was ("" and zero before the
	// first).
	Reason string    `json:"reason,omitempty"`
	Cut    time.Time `json:"cut,omitzero"`
}
