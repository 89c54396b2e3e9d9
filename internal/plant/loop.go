package plant

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/proxy"
)

// Loop runs an estimator against a station as a node runs it: requests
// arrive, the data plane admits them at the estimator's rate (a
// proxy.Window, as both data planes measure a capacity), the station runs
// them, and every tick the estimator gets what the data plane counted.
// Requests not admitted leave (to peers, in a federation).
type Loop struct {
	Station   *Station
	Estimator capacity.Estimator
	Limits    capacity.Limits
	// Rate is the demand at time t, in requests per second.
	Rate func(t time.Duration) float64
	// Poisson spaces arrivals at random (exponential gaps); else evenly.
	Poisson bool
	// Cost is a call's CPU time. Default 10 ms.
	Cost func(r *rand.Rand) time.Duration
	// Tick is the control interval. Default 1 s.
	Tick time.Duration
	// Event, if set, runs at the start of every tick (to change the
	// station's cores, say).
	Event func(t time.Duration, s *Station)
	Seed  uint64
}

// Tick is one control interval of a Loop.
type Tick struct {
	At       time.Duration // its end
	Capacity dfaas.Rate    // the estimator's answer at its end
	Demand   float64       // arrivals per second
	// Admitted, Ran, Busy and Failed count its requests admitted and its
	// executions that ended: run, refused or given up.
	Admitted, Ran, Busy, Failed int
	P95                         time.Duration // of the executions that ended
	Latency                     proxy.Latencies
	// Cores is the station's budget during the tick.
	Cores float64
}

// Run runs the loop for d and returns its ticks.
func (l *Loop) Run(d time.Duration) []Tick { return l.RunEach(d, nil) }

// RunEach is Run calling each, if set, at the end of every tick.
func (l *Loop) RunEach(d time.Duration, each func(Tick)) []Tick {
	tick := l.Tick
	if tick == 0 {
		tick = time.Second
	}
	cost := l.Cost
	if cost == nil {
		cost = func(*rand.Rand) time.Duration { return 10 * time.Millisecond }
	}
	rng := rand.New(rand.NewPCG(l.Seed, 1))
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := l.Estimator.Update(epoch, capacity.Observation{}, l.Limits)
	// Admission as the embedded proxy admits its users' requests: a token
	// bucket a tenth of a second deep, within a Window of the capacity.
	win := proxy.NewWindow(c, epoch)
	bucket := proxy.NewBucket(c, 100*time.Millisecond, epoch)
	var out []Tick
	next := time.Duration(0) // the next arrival
	for start := time.Duration(0); start < d; start += tick {
		end := start + tick
		if l.Event != nil {
			l.Event(start, l.Station)
		}
		t := Tick{At: end, Cores: l.Station.Cores()}
		var arrivals int
		for next < end {
			r := l.Rate(next)
			if r <= 0 {
				next += tick / 10
				continue
			}
			at := next
			gap := 1 / r
			if l.Poisson {
				gap = rng.ExpFloat64() / r
			}
			next += time.Duration(gap * float64(time.Second))
			arrivals++
			if !bucket.Take(epoch.Add(at)) || !win.Take(epoch.Add(at)) {
				continue
			}
			t.Admitted++
			l.Station.Submit(at, cost(rng))
		}
		l.Station.Advance(end)
		obs := l.Station.Observe(tick)
		t.Busy, t.Failed = int(obs.Busy), int(obs.Failed)
		t.Ran = int(obs.Latency.Count()) - t.Failed
		t.Demand = float64(arrivals) / tick.Seconds()
		obs.Demand = dfaas.Rate(t.Demand)
		t.P95 = obs.Latency.Quantile(0.95)
		t.Latency = obs.Latency
		c = l.Estimator.Update(epoch.Add(end), obs, l.Limits)
		win.Set(c)
		bucket.Set(c, 100*time.Millisecond)
		t.Capacity = c
		out = append(out, t)
		if each != nil {
			each(t)
		}
	}
	return out
}

// Lognormal returns costs of the given mean whose coefficient of
// variation is cv (0: always the mean).
func Lognormal(mean time.Duration, cv float64) func(*rand.Rand) time.Duration {
	if cv == 0 {
		return func(*rand.Rand) time.Duration { return mean }
	}
	s2 := math.Log(1 + cv*cv)
	mu := math.Log(float64(mean)) - s2/2
	return func(r *rand.Rand) time.Duration {
		return time.Duration(math.Exp(mu + math.Sqrt(s2)*r.NormFloat64()))
	}
}
