package faas

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/proxy"
)

// Platform is the part of a FaaS platform a Monitor needs: the functions it
// serves and the capacity each declares.
type Platform interface {
	// Capacities returns every deployed function with the capacity it
	// declares (the dfaas.maxrate label), or Undeclared. A Monitor that
	// measures capacities takes a declared one as an upper bound and its
	// starting point; one that does not (MonitorConfig.Declared) takes it
	// as the capacity, and Undeclared as 0. It may do I/O.
	Capacities(ctx context.Context) (map[string]dfaas.Rate, error)
}

// Undeclared is the capacity a Platform reports for a function that
// declares none.
const Undeclared dfaas.Rate = -1

// Objectives is a Platform that also knows, per function, a latency
// objective (the dfaas.slo label), as of its last Capacities answer; the
// Monitor's estimators hold the function to it.
type Objectives interface {
	Objectives() map[string]capacity.Objective
}

// InFlightBounds is a Platform that also knows, per function, the most
// executions it runs at once (OpenFaaS: replicas times max_inflight), as
// of its last Capacities answer; the Monitor's estimators keep the
// capacity within it (capacity.Limits.MaxInFlight).
type InFlightBounds interface {
	MaxInFlight() map[string]int
}

// RTTBudgets is a Platform that also knows, per function, how far in
// round-trip time its requests may be forwarded (the dfaas.maxrtt label),
// as of its last Capacities answer; the Monitor passes it on in
// FunctionSample.MaxRTT.
type RTTBudgets interface {
	MaxRTTs() map[string]time.Duration
}

// MonitorConfig tunes a Monitor. The zero value of every field means its
// default.
type MonitorConfig struct {
	// Window is the shortest span rates are measured over: each Sample
	// compares the counters with the newest earlier sample at least this
	// old. Default 500 ms.
	Window time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Estimator makes the capacity estimator of a function: what the node
	// observes of the function's local executions becomes its capacity,
	// bounded by what the platform declares. Default: capacity.NewAdaptive
	// with its defaults.
	Estimator func(function string) capacity.Estimator
	// Declared turns estimation off: a function's capacity is what the
	// platform declares, and 0 when it declares none.
	Declared bool
	// Logger receives the estimators' cuts. Default slog.Default().
	Logger *slog.Logger
}

// Monitor is the default dfaas.Monitor: per-function rates from a data
// plane's monotonic counters, capacities from a platform. Sample is meant to
// be called from one goroutine; it is nonetheless safe for concurrent use.
type Monitor struct {
	counter  proxy.Counter
	platform Platform
	window   time.Duration
	now      func() time.Time

	declared  bool
	estimator func(string) capacity.Estimator
	log       *slog.Logger

	mu         sync.Mutex
	history    []snapshot            // oldest first
	known      map[string]dfaas.Rate // the platform's last answer
	estimators map[string]capacity.Estimator
	observed   map[string]Observed // by the latest sample
	last       time.Time           // the latest sample
	stallUntil time.Time           // the estimators learn nothing before (see stalledFor)
}

// stalledFor is the gap between two samples that says the node itself was
// stopped (SIGSTOP, a paused VM) or starved: the executions that end just
// after it waited through it, and say nothing of what the platform can
// run. The estimators are fed idle windows for as long again (at least
// stallQuiet).
const (
	stalledFor = 3 * time.Second
	stallQuiet = 2 * time.Second
)

// Observed is what a Monitor's latest sample saw of a function's local
// executions.
type Observed struct {
	// Executions is their latency over the sample's window.
	Executions dfaas.Latency `json:"executions"`
	// InFlight is how many were in progress at the sample.
	InFlight int `json:"in_flight"`
}

// maxHistory bounds the snapshots a Monitor keeps.
const maxHistory = 64

type snapshot struct {
	at     time.Time
	counts map[string]proxy.Counts
}

// Validate reports the first invalid field.
func (c MonitorConfig) Validate() error {
	if c.Window < 0 {
		return fmt.Errorf("%w: monitor: negative window", dfaas.ErrInvalidConfig)
	}
	return nil
}

func (c MonitorConfig) withDefaults() MonitorConfig {
	if c.Window == 0 {
		c.Window = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Estimator == nil {
		c.Estimator = func(string) capacity.Estimator {
			a, _ := capacity.NewAdaptive(capacity.Config{}) // the defaults are valid
			return a
		}
	}
	return c
}

// NewMonitor returns a Monitor reading counter and platform.
func NewMonitor(counter proxy.Counter, platform Platform, cfg MonitorConfig) (*Monitor, error) {
	if counter == nil || platform == nil {
		return nil, fmt.Errorf("%w: monitor: nil counter or platform", dfaas.ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Monitor{counter: counter, platform: platform, window: cfg.Window, now: cfg.Now, declared: cfg.Declared,
		estimator: cfg.Estimator, log: cfg.Logger, estimators: map[string]capacity.Estimator{}}, nil
}

// Observed returns, per function, what the latest sample saw of its local
// executions (functions with none over the window and none in progress
// are missing).
func (m *Monitor) Observed() map[string]Observed {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.observed)
}

// Estimates returns what each function's capacity estimator believes, by
// function; nil when capacities are declared.
func (m *Monitor) Estimates() map[string]capacity.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.declared {
		return nil
	}
	out := make(map[string]capacity.State, len(m.estimators))
	for name, e := range m.estimators {
		out[name] = e.State()
	}
	return out
}

// Sample implements dfaas.Monitor. It lists every function the platform
// serves or the data plane has counted; the first Sample has zero rates.
// When the data plane's counters cannot be read, Sample fails.
// When the platform does not answer, Sample still returns the rates, gives
// the functions the platform last listed zero capacity, and returns an error
// wrapping dfaas.ErrDegraded.
func (m *Monitor) Sample(ctx context.Context) (dfaas.Sample, error) {
	caps, capErr := m.platform.Capacities(ctx)
	counts, err := m.counter.Counts(ctx)
	if err != nil {
		// Without counts there are no rates to plan on: the tick fails, and
		// peers stop relying on this node when its advert expires.
		return dfaas.Sample{}, fmt.Errorf("monitor: counts: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var degraded error
	if capErr != nil {
		// Keep measuring, but offer nothing the platform may not serve.
		degraded = fmt.Errorf("monitor: %w: capacities: %w", dfaas.ErrDegraded, capErr)
		caps = make(map[string]dfaas.Rate, len(m.known))
		for name := range m.known {
			caps[name] = 0
		}
	} else {
		m.known = caps
	}
	now := m.now()
	if gap := now.Sub(m.last); !m.last.IsZero() && gap > max(stalledFor, 8*m.window) {
		m.stallUntil = now.Add(max(gap, stallQuiet))
		m.log.Info("this node was stalled: its capacity estimates skip the executions it held", "for", gap.Round(time.Millisecond))
	}
	m.last = now
	stalled := now.Before(m.stallUntil)
	cur := snapshot{at: now, counts: counts}
	base := -1
	for i, s := range m.history {
		if now.Sub(s.at) >= m.window {
			base = i
		}
	}
	out := dfaas.Sample{Time: now, Functions: make(map[string]dfaas.FunctionSample, len(caps))}
	var prev map[string]proxy.Counts
	var secs float64
	if base >= 0 {
		prev = m.history[base].counts
		out.Window = now.Sub(m.history[base].at)
		secs = out.Window.Seconds()
		m.history = m.history[base:]
	}
	m.history = append(m.history, cur)
	if len(m.history) > maxHistory { // a clock that stands still must not grow it forever
		m.history = m.history[len(m.history)-maxHistory:]
	}

	rateOf := func(n uint64) dfaas.Rate {
		if secs <= 0 {
			return 0
		}
		return dfaas.Rate(float64(n) / secs)
	}
	var budgets map[string]time.Duration
	var objectives map[string]capacity.Objective
	var inflight map[string]int
	if capErr == nil {
		if rb, ok := m.platform.(RTTBudgets); ok {
			budgets = rb.MaxRTTs()
		}
		if ob, ok := m.platform.(Objectives); ok {
			objectives = ob.Objectives()
		}
		if ib, ok := m.platform.(InFlightBounds); ok {
			inflight = ib.MaxInFlight()
		}
	}
	for name, c := range caps {
		out.Functions[name] = dfaas.FunctionSample{Capacity: max(0, c), MaxRTT: budgets[name]}
	}
	for name, c := range cur.counts {
		_, deployed := caps[name]
		d := c
		if p, ok := prev[name]; ok {
			d = c.Sub(p)
		} else if prev == nil {
			d = c.Sub(c) // no base yet: zero rates
		}
		if !deployed && d.Arrivals == 0 && c.InFlight == 0 {
			continue // neither served here nor asked for: not this node's business
		}
		fs := out.Functions[name]
		fs.Arrivals = rateOf(d.Arrivals)
		fs.ServedLocal = rateOf(d.ServedLocal)
		fs.ForwardedOut = rateOf(d.ForwardedOut)
		fs.ReceivedIn = rateOf(d.ReceivedIn)
		fs.Rejected = rateOf(d.Rejected)
		for peer, n := range d.Forwarded {
			if r := rateOf(n); r > 0 {
				if fs.Forwarded == nil {
					fs.Forwarded = map[dfaas.NodeID]dfaas.Rate{}
				}
				fs.Forwarded[peer] = r
			}
		}
		fs.InFlight = int(c.InFlight)
		fs.Latency = latencyOf(d.Latency)
		fs.Executions = latencyOf(d.Executions)
		out.Functions[name] = fs
	}
	if !m.declared {
		m.estimate(now, out, caps, objectives, inflight, prev, cur.counts, capErr != nil, stalled)
	}
	m.observed = map[string]Observed{}
	for name, fs := range out.Functions {
		if fs.Executions != (dfaas.Latency{}) || fs.InFlight > 0 {
			m.observed[name] = Observed{Executions: fs.Executions, InFlight: fs.InFlight}
		}
	}
	return out, degraded
}

// latencyOf summarises a histogram.
func latencyOf(h proxy.Latencies) dfaas.Latency {
	return dfaas.Latency{P50: h.Quantile(0.5), P95: h.Quantile(0.95), P99: h.Quantile(0.99), Max: h.Quantile(1)}
}

// estimate sets the capacity of every deployed function from its
// estimator, fed what the data plane counted of its local executions since
// prev. A function the platform declares 0 for runs nothing here; without
// the platform's answer (degraded) no function has capacity, but the
// estimators keep learning. Just after the node itself stalled they are
// fed idle windows.
func (m *Monitor) estimate(now time.Time, out dfaas.Sample, caps map[string]dfaas.Rate, objectives map[string]capacity.Objective,
	inflight map[string]int, prev, cur map[string]proxy.Counts, degraded, stalled bool) {
	for name := range m.estimators {
		if _, ok := caps[name]; !ok {
			delete(m.estimators, name) // no longer deployed
		}
	}
	for name, declared := range caps {
		e, ok := m.estimators[name]
		if !ok {
			e = m.estimator(name)
			m.estimators[name] = e
		}
		var o capacity.Observation
		if p, ok := prev[name]; ok && out.Window > 0 && !stalled {
			d := cur[name].Sub(p)
			o = capacity.Observation{Window: out.Window, Latency: d.Executions, Solo: d.Solo, Busy: d.Busy, Failed: d.Failed,
				InFlight: int(cur[name].InFlight), Occupied: d.Occupied,
				Demand: dfaas.Rate(float64(d.Arrivals+d.ReceivedIn+d.Refused) / out.Window.Seconds())}
		} else if prev != nil && out.Window > 0 {
			o.Window = out.Window // counted nothing yet: an idle window
		}
		limits := capacity.Limits{Objective: objectives[name], MaxInFlight: inflight[name]}
		if declared > 0 {
			limits.Max = declared
		}
		before := e.State()
		c := e.Update(now, o, limits)
		if after := e.State(); !after.Cut.IsZero() && !after.Cut.Equal(before.Cut) {
			m.log.Info("capacity cut", "function", name, "from", float64(before.Capacity), "to", float64(c),
				"ceiling", float64(after.Ceiling), "reason", after.Reason)
		}
		fs := out.Functions[name]
		switch {
		case degraded || declared == 0:
			fs.Capacity = 0
		default:
			fs.Capacity = c
		}
		out.Functions[name] = fs
	}
}

var _ dfaas.Monitor = (*Monitor)(nil)
