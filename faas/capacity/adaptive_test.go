package capacity_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/internal/plant"
	"github.com/dfaas-go/dfaas/proxy"
)

// The plant of these tests: a function of 10 ms of CPU per call (5%
// variation) on a node whose CPU budget is cores: it runs at most
// cores/10ms calls a second, and one call alone takes 10ms/cores.
const cost = 10 * time.Millisecond

func raw(cores float64) float64 { return cores / cost.Seconds() }

func loop(t *testing.T, cores float64, demand func(time.Duration) float64, l capacity.Limits) (*capacity.Adaptive, *plant.Loop) {
	t.Helper()
	est, err := capacity.NewAdaptive(capacity.Config{})
	require.NoError(t, err)
	return est, &plant.Loop{Station: plant.New(plant.Config{Cores: cores}), Estimator: est, Limits: l, Rate: demand,
		Cost: plant.Lognormal(cost, 0.05), Seed: 7}
}

func constant(r float64) func(time.Duration) float64 { return func(time.Duration) float64 { return r } }

// meanCapacity is the mean capacity over ticks [from, to).
func meanCapacity(ticks []plant.Tick, from, to int) float64 {
	var sum float64
	for _, tk := range ticks[from:to] {
		sum += float64(tk.Capacity)
	}
	return sum / float64(to-from)
}

func pooledP95(ticks []plant.Tick, from, to int) time.Duration {
	var h proxy.Latencies
	for _, tk := range ticks[from:to] {
		h = h.Add(tk.Latency)
	}
	return h.Quantile(0.95)
}

// TestLearnsTheCapacity: from 1 req/s and no label, under demand far above
// what the node runs, the capacity reaches 90% of what the node can run
// within 6 s and then stays near it, the executions' p95 within about twice
// the p95 of a call alone (the default objective; the calls' costs vary by
// 5%, and the histogram's buckets by up to 12%).
func TestLearnsTheCapacity(t *testing.T) {
	for _, cores := range []float64{0.1, 0.2, 0.3} {
		_, l := loop(t, cores, constant(50), capacity.Limits{})
		ticks := l.Run(120 * time.Second)
		first := -1
		for i, tk := range ticks {
			if float64(tk.Capacity) >= 0.9*raw(cores) {
				first = i
				break
			}
		}
		assert.True(t, first >= 0 && first < 6, "cores %v: 90%% of %v reached at tick %d", cores, raw(cores), first)
		mean := meanCapacity(ticks, 15, len(ticks))
		assert.InDelta(t, 0.9*raw(cores), mean, 0.1*raw(cores), "cores %v: mean capacity", cores)
		service := time.Duration(float64(cost) / cores)
		assert.LessOrEqual(t, pooledP95(ticks, 15, len(ticks)), time.Duration(2.5*float64(service)), "cores %v: p95", cores)
	}
}

// TestFollowsACapacityDrop: the node's CPU budget halves at 30 s (a quota
// cut, or a neighbour taking half): the capacity is under the new limit in
// the first tick after, and back near it within 8 s, without collapsing;
// when the budget comes back, so does the capacity.
func TestFollowsACapacityDrop(t *testing.T) {
	_, l := loop(t, 0.2, constant(16), capacity.Limits{})
	l.Event = func(at time.Duration, s *plant.Station) {
		switch at {
		case 30 * time.Second:
			s.SetCores(at, 0.1)
		case 60 * time.Second:
			s.SetCores(at, 0.2)
		}
	}
	ticks := l.Run(90 * time.Second)
	assert.Greater(t, float64(ticks[29].Capacity), 0.8*raw(0.2), "learned before the drop")
	assert.Less(t, float64(ticks[30].Capacity), raw(0.1), "under the new limit at once")
	for _, tk := range ticks[30:60] {
		assert.Greater(t, float64(tk.Capacity), 0.2*raw(0.1), "no collapse at %v", tk.At)
	}
	assert.InDelta(t, 0.85*raw(0.1), meanCapacity(ticks, 38, 60), 0.15*raw(0.1), "near the new limit from 8 s on")
	assert.Greater(t, meanCapacity(ticks, 80, 90), 0.7*16.0, "back up with the budget (demand 16)")
}

// TestNoGrowthWithoutDemand: a node asked little advertises little more
// than that (it probes only while demand exceeds its capacity), and an
// idle one stays where it was.
func TestNoGrowthWithoutDemand(t *testing.T) {
	_, l := loop(t, 0.3, constant(3), capacity.Limits{})
	ticks := l.Run(60 * time.Second)
	for _, tk := range ticks {
		assert.LessOrEqual(t, float64(tk.Capacity), 2*3/0.95+0.01, "at %v", tk.At)
	}
	est, l := loop(t, 0.3, constant(0), capacity.Limits{})
	ticks = l.Run(30 * time.Second)
	assert.Equal(t, capacity.DefaultInitial, ticks[len(ticks)-1].Capacity)
	assert.Equal(t, "hold", est.State().Phase)
}

// TestMildOverloadDoesNotGrow: demand just above what the node runs (the
// trap of Netflix concurrency-limits #134, where a queue term grew the
// limit without bound) keeps the capacity near the limit for minutes.
func TestMildOverloadDoesNotGrow(t *testing.T) {
	_, l := loop(t, 0.2, constant(1.1*raw(0.2)), capacity.Limits{})
	ticks := l.Run(300 * time.Second)
	for _, tk := range ticks[10:] {
		assert.LessOrEqual(t, float64(tk.Capacity), 1.25*raw(0.2), "at %v", tk.At)
	}
	assert.InDelta(t, 0.9*raw(0.2), meanCapacity(ticks, 60, 300), 0.1*raw(0.2))
}

// TestBoundAndFloor: a declared bound is the start and the ceiling; a
// platform that refuses everything takes the capacity down to its floor,
// never to zero, so that executions go on and it can recover.
func TestBoundAndFloor(t *testing.T) {
	_, l := loop(t, 0.3, constant(50), capacity.Limits{Max: 12})
	ticks := l.Run(30 * time.Second)
	assert.Equal(t, dfaas.Rate(12), ticks[0].Capacity, "starts at the bound")
	for _, tk := range ticks {
		assert.LessOrEqual(t, float64(tk.Capacity), 12.0)
	}

	est, err := capacity.NewAdaptive(capacity.Config{})
	require.NoError(t, err)
	now := time.Now()
	c := est.Update(now, capacity.Observation{}, capacity.Limits{Max: 20})
	assert.Equal(t, dfaas.Rate(20), c)
	for i := range 20 {
		now = now.Add(time.Second)
		c = est.Update(now, capacity.Observation{Window: time.Second, Busy: 5, Demand: 30}, capacity.Limits{Max: 20})
		assert.Positive(t, float64(c), "tick %d", i)
	}
	assert.Equal(t, capacity.DefaultInitial, c, "at the floor")
	assert.Contains(t, est.State().Reason, "refused")
}

// TestObjectiveOfItsOwn: a function of varied calls (costs spread 50%)
// is held to its own objective: a tight one costs capacity, a loose one
// allows more, and each keeps within it.
func TestObjectiveOfItsOwn(t *testing.T) {
	service := time.Duration(float64(cost) / 0.2)
	run := func(obj time.Duration) []plant.Tick {
		_, l := loop(t, 0.2, constant(50), capacity.Limits{Objective: capacity.Objective{Quantile: 0.95, Latency: obj}})
		l.Cost = plant.Lognormal(cost, 0.5)
		return l.Run(120 * time.Second)
	}
	tight, loose := run(3*service), run(8*service)
	assert.Greater(t, meanCapacity(loose, 15, 120), meanCapacity(tight, 15, 120))
	// Within the objective to the histogram's resolution (a bucket is 6
	// to 12% wide: 458 ms is the bucket next above 440).
	assert.LessOrEqual(t, pooledP95(tight, 15, 120), 3*service+3*service*15/100)
	assert.LessOrEqual(t, pooledP95(loose, 15, 120), 8*service+8*service*15/100)
}

func TestParseObjective(t *testing.T) {
	for in, want := range map[string]capacity.Objective{
		"p95=200ms": {Quantile: 0.95, Latency: 200 * time.Millisecond},
		" p99.9=1s": {Quantile: 0.999, Latency: time.Second},
		"p50=5ms":   {Quantile: 0.5, Latency: 5 * time.Millisecond},
	} {
		got, err := capacity.ParseObjective(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	assert.Equal(t, "p95=200ms", capacity.Objective{Latency: 200 * time.Millisecond}.String())
	for _, bad := range []string{"", "p95", "95=1s", "p0=1s", "p100=1s", "p95=", "p95=-1s", "p95=2m", "px=1s", "p95=1"} {
		_, err := capacity.ParseObjective(bad)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, bad)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, bad := range []capacity.Config{{Initial: -1}, {Tolerance: 1}, {Tolerance: 0.5}, {Slack: -1}, {MinSamples: -1}, {Hold: -1}} {
		_, err := capacity.NewAdaptive(bad)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "%+v", bad)
	}
}

// TestHelperFillsToWhatItRuns: a helper asked a fixed part of what it
// advertises below the pressure that probes (peers split their excess by
// room) is never asked all of it, yet learns it: from what it runs per
// second of busy time, it grows to about 60% of its limit, and no further
// (pressure, not this, finds the rest).
func TestHelperFillsToWhatItRuns(t *testing.T) {
	est, l := loop(t, 0.2, nil, capacity.Limits{})
	l.Rate = func(time.Duration) float64 { return max(6, 0.75*float64(est.State().Capacity)) }
	ticks := l.Run(60 * time.Second)
	assert.InDelta(t, 0.6*raw(0.2), meanCapacity(ticks, 40, 60), 0.1*raw(0.2))
	for _, tk := range ticks {
		assert.LessOrEqual(t, float64(tk.Capacity), raw(0.2), "at %v", tk.At)
	}
	assert.InDelta(t, raw(0.2), float64(est.State().Full), 0.1*raw(0.2), "what it runs when busy")
}

// TestDeclaredBoundStandsUntilOverload: a function that declares 20 and is
// asked 6 keeps 20 (an operator's bound is believed until an overload
// shows otherwise), where one that doubled its way there without being
// asked falls back to a margin over what it ran.
func TestDeclaredBoundStandsUntilOverload(t *testing.T) {
	_, l := loop(t, 0.3, constant(6), capacity.Limits{Max: 20})
	ticks := l.Run(30 * time.Second)
	assert.Equal(t, dfaas.Rate(20), ticks[len(ticks)-1].Capacity)

	// A node of many cores (its busy share too small to tell its rate),
	// asked all it offers for 6 s, then 3 req/s.
	est, l := loop(t, 3, nil, capacity.Limits{})
	l.Rate = func(at time.Duration) float64 {
		if at < 6*time.Second {
			return 2 * float64(est.State().Capacity)
		}
		return 3
	}
	ticks = l.Run(30 * time.Second)
	var peak int
	var top dfaas.Rate
	for _, tk := range ticks {
		peak, top = max(peak, tk.Ran), max(top, tk.Capacity)
	}
	last := ticks[len(ticks)-1].Capacity
	assert.Less(t, float64(last), float64(top), "fell back from the doubling")
	full := float64(est.State().Full)
	assert.LessOrEqual(t, float64(last), max(1.25*float64(peak), 0.6*full)+0.01,
		"to a margin over the most that ran, or 60% of what it runs per busy second")
}

// TestMaxInFlightBoundsTheCapacity: a platform that runs at most one call
// at once (OpenFaaS's max_inflight, times one replica) on a node that could
// run two: the capacity stays within one call per service time (10 ms:
// 100 req/s), under demand far above it.
func TestMaxInFlightBoundsTheCapacity(t *testing.T) {
	est, l := loop(t, 2, constant(4*raw(2)), capacity.Limits{MaxInFlight: 1})
	ticks := l.Run(30 * time.Second)
	service := est.State().Service
	require.Positive(t, service)
	bound := float64(time.Second) / float64(service)
	for _, tk := range ticks {
		assert.LessOrEqual(t, float64(tk.Capacity), bound+1e-9, "at %v", tk.At)
	}
	assert.Greater(t, meanCapacity(ticks, 20, 30), 0.8*bound, "up to the bound")
	assert.Less(t, bound, 0.6*raw(2), "below what the node could run")
}

// TestHelperAskedMostOfItsAdvertFindsItsLimit: a helper asked 85% of what
// it advertises (the federation's demand a little under its adverts) is
// pressed: it probes up to about its limit, so that the federation's
// adverts hold room beyond its demand, and no further than one probe past
// it (the overload that probe meets cuts it back).
func TestHelperAskedMostOfItsAdvertFindsItsLimit(t *testing.T) {
	est, l := loop(t, 0.2, nil, capacity.Limits{})
	l.Rate = func(time.Duration) float64 { return max(6, 0.85*float64(est.State().Capacity)) }
	ticks := l.Run(90 * time.Second)
	mean := meanCapacity(ticks, 30, 90)
	t.Logf("mean capacity %.1f of a limit of %.0f", mean, raw(0.2))
	assert.Greater(t, mean, 0.85*raw(0.2))
	for _, tk := range ticks[30:] {
		assert.LessOrEqual(t, float64(tk.Capacity), 1.3*raw(0.2), "at %v", tk.At)
	}
}

// TestCeilingAfterAProbeIsTheMostThatRan: a saturated node that probes
// above its ceiling and is cut keeps, as its ceiling, the most that ran
// since the probe began (what ran in the cut's span alone, with the queue
// in progress, undercounts the limit), so that it settles near its limit
// rather than under it.
func TestCeilingAfterAProbeIsTheMostThatRan(t *testing.T) {
	est, l := loop(t, 0.2, constant(50), capacity.Limits{})
	var ceilings []float64
	l.Event = func(at time.Duration, _ *plant.Station) {
		if st := est.State(); st.Phase == "cut" {
			ceilings = append(ceilings, float64(st.Ceiling))
		}
	}
	l.Run(120 * time.Second)
	t.Logf("ceilings at the cuts: %.1f", ceilings)
	require.GreaterOrEqual(t, len(ceilings), 3, "cuts after probes")
	var sum float64
	for _, c := range ceilings[1:] { // the first cut ends the start
		assert.Greater(t, c, 0.9*raw(0.2))
		sum += c
	}
	assert.Greater(t, sum/float64(len(ceilings)-1), 0.95*raw(0.2), "the ceilings' mean")
}

// TestFollowsADropItIsNotAskedToShow: a helper asked half of what it
// advertises (its peers moved their forwards away as they slowed) is not
// overloaded when its CPU budget halves, yet its capacity follows within
// 5 s: a call alone takes twice as long, so it runs about half as many
// (a step takes off at most a cut's 30%: the rest is left to an overload,
// should demand come).
func TestFollowsADropItIsNotAskedToShow(t *testing.T) {
	est, l := loop(t, 0.2, nil, capacity.Limits{Max: 16})
	l.Rate = func(time.Duration) float64 { return 0.5 * float64(est.State().Capacity) }
	l.Event = func(at time.Duration, s *plant.Station) {
		if at == 30*time.Second {
			s.SetCores(at, 0.1)
		}
	}
	ticks := l.Run(40 * time.Second)
	require.Equal(t, 16.0, float64(ticks[29].Capacity), "the declared bound before the drop")
	assert.LessOrEqual(t, float64(ticks[34].Capacity), 0.7*16+0.01, "within 5 s of the drop")
}

// TestStartResumesUnderAFlashCrowd: a node whose start ended at a margin
// over steady demand (a plateau, not an overload) doubles again when
// demand jumps far past it, rather than probing up from the plateau by 3%
// steps.
func TestStartResumesUnderAFlashCrowd(t *testing.T) {
	_, l := loop(t, 0.3, nil, capacity.Limits{})
	l.Rate = func(at time.Duration) float64 {
		if at < 20*time.Second {
			return 5
		}
		return 50
	}
	ticks := l.Run(30 * time.Second)
	assert.Less(t, float64(ticks[19].Capacity), 0.5*raw(0.3), "a plateau under the limit before the crowd")
	var most float64
	for _, tk := range ticks[20:25] {
		most = max(most, float64(tk.Capacity))
	}
	assert.Greater(t, most, 0.8*raw(0.3), "near the limit within 5 s of the crowd")
}
