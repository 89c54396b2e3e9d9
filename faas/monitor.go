package faas

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Platform is the part of a FaaS platform a Monitor needs: the functions it
// serves and the rate each can be executed at.
type Platform interface {
	// Capacities returns r_max per deployed function. It may do I/O.
	Capacities(ctx context.Context) (map[string]dfaas.Rate, error)
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
}

// Monitor is the default dfaas.Monitor: per-function rates from a data
// plane's monotonic counters, capacities from a platform. Sample is meant to
// be called from one goroutine; it is nonetheless safe for concurrent use.
type Monitor struct {
	counter  proxy.Counter
	platform Platform
	window   time.Duration
	now      func() time.Time

	mu      sync.Mutex
	history []snapshot            // oldest first
	known   map[string]dfaas.Rate // the platform's last answer
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
	return &Monitor{counter: counter, platform: platform, window: cfg.Window, now: cfg.Now}, nil
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
	if rb, ok := m.platform.(RTTBudgets); ok && capErr == nil {
		budgets = rb.MaxRTTs()
	}
	for name, c := range caps {
		out.Functions[name] = dfaas.FunctionSample{Capacity: c, MaxRTT: budgets[name]}
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
		fs.Latency = dfaas.Latency{P50: d.Latency.Quantile(0.5), P99: d.Latency.Quantile(0.99), Max: d.Latency.Quantile(1)}
		out.Functions[name] = fs
	}
	return out, degraded
}

var _ dfaas.Monitor = (*Monitor)(nil)
