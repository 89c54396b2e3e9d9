package faas

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func upper() http.Handler {
	return HandlerFunc(func(_ context.Context, b []byte) ([]byte, error) {
		if string(b) == "fail" {
			return nil, errors.New("asked to fail")
		}
		return []byte(strings.ToUpper(string(b))), nil
	})
}

func invoke(rt http.Handler, path, body string) (int, string) {
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader(body)))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestRuntimeInvokes(t *testing.T) {
	rt := NewRuntime()
	require.NoError(t, rt.Deploy(Function{Name: "upper", Handler: upper(), Capacity: 100}))
	code, body := invoke(rt, "/function/upper", "hi")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "HI", body)
	code, _ = invoke(rt, "/function/upper/sub/path", "fail")
	assert.Equal(t, http.StatusInternalServerError, code)
	code, _ = invoke(rt, "/function/nope", "")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = invoke(rt, "/system/functions", "")
	assert.Equal(t, http.StatusNotFound, code)
	ran, throttled := rt.Invocations("upper")
	assert.Equal(t, uint64(2), ran)
	assert.Zero(t, throttled)
	assert.Equal(t, []string{"upper"}, rt.Functions())
	assert.True(t, rt.Remove("upper"))
	assert.False(t, rt.Remove("upper"))
	code, _ = invoke(rt, "/function/upper", "")
	assert.Equal(t, http.StatusNotFound, code)
}

// TestRuntimeCapacityIsPhysical: a burst far above capacity executes a
// second's worth, as a data plane admits it (proxy.AdmissionWindow), and a
// tenth more (capacityMargin), and refuses the rest.
func TestRuntimeCapacityIsPhysical(t *testing.T) {
	rt := NewRuntime()
	require.NoError(t, rt.Deploy(Function{Name: "upper", Handler: upper(), Capacity: 10}))
	ok := 0
	for range 50 {
		if code, _ := invoke(rt, "/function/upper", "x"); code == http.StatusOK {
			ok++
		}
	}
	assert.Equal(t, 11, ok)
	ran, throttled := rt.Invocations("upper")
	assert.Equal(t, uint64(ok), ran)
	assert.Equal(t, uint64(50-ok), throttled)
}

func TestRuntimeWorkHoldsTheInvocation(t *testing.T) {
	rt := NewRuntime()
	require.NoError(t, rt.Deploy(Function{Name: "slow", Handler: upper(), Capacity: 100, Work: 20 * time.Millisecond}))
	start := time.Now()
	code, _ := invoke(rt, "/function/slow", "x")
	assert.Equal(t, http.StatusOK, code)
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
}

func TestRuntimeDeployRejects(t *testing.T) {
	rt := NewRuntime()
	assert.ErrorIs(t, rt.Deploy(Function{Name: "Bad Name", Handler: upper()}), dfaas.ErrInvalidName)
	assert.ErrorIs(t, rt.Deploy(Function{Name: "ok"}), dfaas.ErrInvalidConfig)
	assert.ErrorIs(t, rt.Deploy(Function{Name: "ok", Handler: upper(), Capacity: -1}), dfaas.ErrInvalidConfig)
}

// fakeCounter is a data plane whose counters the test sets.
type fakeCounter struct {
	counts map[string]proxy.Counts
	err    error
}

func (f *fakeCounter) Counts(context.Context) (map[string]proxy.Counts, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.counts, nil
}

type failingPlatform struct{}

func (failingPlatform) Capacities(context.Context) (map[string]dfaas.Rate, error) {
	return nil, errors.New("gateway unreachable")
}

func TestMonitorRates(t *testing.T) {
	rt := NewRuntime()
	require.NoError(t, rt.Deploy(Function{Name: "figlet", Handler: upper(), Capacity: 10}))
	require.NoError(t, rt.Deploy(Function{Name: "idle", Handler: upper(), Capacity: 5}))
	clock := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fc := &fakeCounter{counts: map[string]proxy.Counts{
		"figlet":  {Arrivals: 100, ServedLocal: 20, ForwardedOut: 80, Forwarded: map[dfaas.NodeID]uint64{"b": 60, "c": 20}},
		"remote":  {Arrivals: 7},  // planned because a peer serves it
		"retired": {Arrivals: 30}, // neither deployed nor asked for any more
	}}
	m, err := NewMonitor(fc, rt, MonitorConfig{Window: time.Second, Now: func() time.Time { return clock }})
	require.NoError(t, err)
	ctx := context.Background()

	s, err := m.Sample(ctx)
	require.NoError(t, err)
	assert.Zero(t, s.Window)
	assert.Equal(t, dfaas.FunctionSample{Capacity: 10}, s.Functions["figlet"], "first sample has no rates")

	clock = clock.Add(time.Second)
	fc.counts = map[string]proxy.Counts{
		"figlet":  {Arrivals: 150, ServedLocal: 30, ForwardedOut: 115, Rejected: 5, InFlight: 3, Forwarded: map[dfaas.NodeID]uint64{"b": 90, "c": 20, "d": 5}},
		"remote":  {Arrivals: 11},
		"retired": {Arrivals: 30},
	}
	s, err = m.Sample(ctx)
	require.NoError(t, err)
	assert.Equal(t, time.Second, s.Window)
	f := s.Functions["figlet"]
	assert.Equal(t, dfaas.FunctionSample{Capacity: 10, Arrivals: 50, ServedLocal: 10, ForwardedOut: 35, Rejected: 5, InFlight: 3,
		Forwarded: map[dfaas.NodeID]dfaas.Rate{"b": 30, "d": 5}}, f, "per peer, only the peers that answered in the window")
	assert.Equal(t, dfaas.FunctionSample{Capacity: 5}, s.Functions["idle"])
	assert.Equal(t, dfaas.Rate(4), s.Functions["remote"].Arrivals)
	assert.NotContains(t, s.Functions, "retired")

	// A sample 100 ms later measures against the one a second before it.
	clock = clock.Add(100 * time.Millisecond)
	fc.counts["figlet"] = proxy.Counts{Arrivals: 155}
	s, err = m.Sample(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1100*time.Millisecond, s.Window)
	assert.InDelta(t, 55/1.1, float64(s.Functions["figlet"].Arrivals), 1e-9)

	_, err = NewMonitor(nil, rt, MonitorConfig{})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	bad, err := NewMonitor(fc, failingPlatform{}, MonitorConfig{})
	require.NoError(t, err)
	_, err = bad.Sample(ctx)
	assert.ErrorContains(t, err, "gateway unreachable")
	assert.ErrorIs(t, err, dfaas.ErrDegraded)
}

// flakyPlatform fails while down is set.
type flakyPlatform struct {
	caps map[string]dfaas.Rate
	down bool
}

func (f *flakyPlatform) Capacities(context.Context) (map[string]dfaas.Rate, error) {
	if f.down {
		return nil, errors.New("gateway unreachable")
	}
	return f.caps, nil
}

// TestMonitorDegradesToZeroCapacity: while the platform is down, its
// functions stay in the sample with no capacity, and rates are still
// measured; when it returns, so do the capacities.
func TestMonitorDegradesToZeroCapacity(t *testing.T) {
	clock := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	fc := &fakeCounter{counts: map[string]proxy.Counts{"figlet": {Arrivals: 10}}}
	pf := &flakyPlatform{caps: map[string]dfaas.Rate{"figlet": 10, "idle": 5}}
	m, err := NewMonitor(fc, pf, MonitorConfig{Window: time.Second, Now: func() time.Time { return clock }})
	require.NoError(t, err)
	_, err = m.Sample(context.Background())
	require.NoError(t, err)

	pf.down = true
	clock = clock.Add(time.Second)
	fc.counts = map[string]proxy.Counts{"figlet": {Arrivals: 30}}
	s, err := m.Sample(context.Background())
	require.ErrorIs(t, err, dfaas.ErrDegraded)
	assert.Equal(t, dfaas.FunctionSample{Arrivals: 20}, s.Functions["figlet"])
	assert.Equal(t, dfaas.FunctionSample{}, s.Functions["idle"])

	pf.down = false
	clock = clock.Add(time.Second)
	s, err = m.Sample(context.Background())
	require.NoError(t, err)
	assert.Equal(t, dfaas.Rate(10), s.Functions["figlet"].Capacity)
}

// TestMonitorFailsWithoutCounts: a data plane whose counters cannot be read
// fails the sample (the tick fails) instead of reporting rates it does not
// know.
func TestMonitorFailsWithoutCounts(t *testing.T) {
	rt := NewRuntime()
	require.NoError(t, rt.Deploy(Function{Name: "figlet", Handler: upper(), Capacity: 10}))
	fc := &fakeCounter{err: errors.New("runtime socket gone")}
	m, err := NewMonitor(fc, rt, MonitorConfig{})
	require.NoError(t, err)
	_, err = m.Sample(context.Background())
	require.Error(t, err)
	assert.NotErrorIs(t, err, dfaas.ErrDegraded, "no usable sample")
	assert.Contains(t, err.Error(), "runtime socket gone")
}

func TestMonitorConfigValidate(t *testing.T) {
	assert.ErrorIs(t, MonitorConfig{Window: -1}.Validate(), dfaas.ErrInvalidConfig)
	_, err := NewMonitor(&fakeCounter{}, NewRuntime(), MonitorConfig{Window: -1})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	assert.NoError(t, MonitorConfig{}.Validate())
}

// budgetPlatform lists one function with an RTT budget.
type budgetPlatform struct{}

func (budgetPlatform) Capacities(context.Context) (map[string]dfaas.Rate, error) {
	return map[string]dfaas.Rate{"figlet": 10, "echo": 5}, nil
}

func (budgetPlatform) MaxRTTs() map[string]time.Duration {
	return map[string]time.Duration{"figlet": 20 * time.Millisecond}
}

func TestMonitorPassesRTTBudgets(t *testing.T) {
	m, err := NewMonitor(&fakeCounter{counts: map[string]proxy.Counts{}}, budgetPlatform{}, MonitorConfig{})
	require.NoError(t, err)
	s, err := m.Sample(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 20*time.Millisecond, s.Functions["figlet"].MaxRTT)
	assert.Zero(t, s.Functions["echo"].MaxRTT)
}

// objectivePlatform declares one function's bound and another's latency
// objective, and leaves a third undeclared.
type objectivePlatform struct{}

func (objectivePlatform) Capacities(context.Context) (map[string]dfaas.Rate, error) {
	return map[string]dfaas.Rate{"bounded": 8, "slo": Undeclared, "free": Undeclared, "never": 0}, nil
}

func (objectivePlatform) Objectives() map[string]capacity.Objective {
	return map[string]capacity.Objective{"slo": {Quantile: 0.95, Latency: 50 * time.Millisecond}}
}

func (objectivePlatform) MaxInFlight() map[string]int { return map[string]int{"bounded": 3} }

// recording is an estimator that remembers what it was fed.
type recording struct {
	obs    []capacity.Observation
	limits []capacity.Limits
	answer dfaas.Rate
}

func (r *recording) Update(_ time.Time, o capacity.Observation, l capacity.Limits) dfaas.Rate {
	r.obs, r.limits = append(r.obs, o), append(r.limits, l)
	return r.answer
}

func (r *recording) State() capacity.State { return capacity.State{Capacity: r.answer} }

// TestMonitorMeasuresCapacities: each deployed function's estimator gets,
// every sample, what the data plane counted of its local executions over
// the window and what the platform declares of it; its answer is the
// capacity, but for a function declared at 0, which runs nothing here.
func TestMonitorMeasuresCapacities(t *testing.T) {
	clock := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var h proxy.LatencyHistogram
	h.Observe(20 * time.Millisecond)
	h.Observe(30 * time.Millisecond)
	execs := h.Snapshot()
	fc := &fakeCounter{counts: map[string]proxy.Counts{"free": {Arrivals: 10}}}
	ests := map[string]*recording{}
	m, err := NewMonitor(fc, objectivePlatform{}, MonitorConfig{Window: time.Second, Now: func() time.Time { return clock },
		Estimator: func(fn string) capacity.Estimator {
			ests[fn] = &recording{answer: 7}
			return ests[fn]
		}})
	require.NoError(t, err)
	s, err := m.Sample(context.Background())
	require.NoError(t, err)
	assert.Equal(t, dfaas.Rate(7), s.Functions["free"].Capacity)
	assert.Zero(t, s.Functions["never"].Capacity, "declared 0: nothing runs here")
	assert.Equal(t, capacity.Observation{}, ests["free"].obs[0], "no window yet")

	clock = clock.Add(2 * time.Second)
	fc.counts = map[string]proxy.Counts{"free": {Arrivals: 30, ReceivedIn: 4, Refused: 2, InFlight: 3, Busy: 1, Failed: 2,
		Executions: execs, Solo: execs}}
	s, err = m.Sample(context.Background())
	require.NoError(t, err)
	got := ests["free"].obs[1]
	assert.Equal(t, capacity.Observation{Window: 2 * time.Second, Latency: execs, Solo: execs, Busy: 1, Failed: 2, InFlight: 3,
		Demand: (20 + 4 + 2) / 2}, got, "the window's executions, and all that asked to run here")
	assert.Equal(t, capacity.Limits{Max: 8, MaxInFlight: 3}, ests["bounded"].limits[1], "a label is a bound, and so is the platform's on calls at once")
	assert.Equal(t, capacity.Limits{Objective: capacity.Objective{Quantile: 0.95, Latency: 50 * time.Millisecond}}, ests["slo"].limits[1])
	assert.Equal(t, capacity.Limits{}, ests["free"].limits[1])
	assert.InEpsilon(t, float64(20*time.Millisecond), float64(s.Functions["free"].Executions.P50), 0.1, "the executions' median")
	assert.Equal(t, dfaas.Rate(7), m.Estimates()["free"].Capacity)

	// Declared: the label is the capacity, and no label none.
	d, err := NewMonitor(fc, objectivePlatform{}, MonitorConfig{Declared: true})
	require.NoError(t, err)
	s, err = d.Sample(context.Background())
	require.NoError(t, err)
	assert.Equal(t, dfaas.Rate(8), s.Functions["bounded"].Capacity)
	assert.Zero(t, s.Functions["free"].Capacity)
	assert.Nil(t, d.Estimates())
}

// TestRuntimeUndeclared: a function deployed without a capacity runs
// unlimited, and the runtime declares none for it.
func TestRuntimeUndeclared(t *testing.T) {
	rt := NewRuntime()
	require.NoError(t, rt.Deploy(Function{Name: "cpu", Handler: CPU(time.Millisecond)}))
	require.NoError(t, rt.Deploy(Function{Name: "upper", Handler: upper(), Capacity: 3}))
	caps, err := rt.Capacities(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[string]dfaas.Rate{"cpu": Undeclared, "upper": 3}, caps)
	for range 20 {
		code, _ := invoke(rt, "/function/cpu", "x")
		require.Equal(t, http.StatusOK, code)
	}
}

// TestMonitorSkipsItsOwnStall: after a gap between samples that says the
// node itself was stopped (a freeze, a paused VM), the executions that end
// just after it waited through it: the estimators get idle windows for as
// long again, then the executions again.
func TestMonitorSkipsItsOwnStall(t *testing.T) {
	clock := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var h proxy.LatencyHistogram
	h.Observe(6 * time.Second) // held through the stall
	held := h.Snapshot()
	fc := &fakeCounter{counts: map[string]proxy.Counts{"free": {Arrivals: 10}}}
	ests := map[string]*recording{}
	m, err := NewMonitor(fc, objectivePlatform{}, MonitorConfig{Window: 500 * time.Millisecond, Now: func() time.Time { return clock },
		Estimator: func(fn string) capacity.Estimator {
			ests[fn] = &recording{answer: 7}
			return ests[fn]
		}})
	require.NoError(t, err)
	sample := func(after time.Duration, c proxy.Counts) capacity.Observation {
		t.Helper()
		clock = clock.Add(after)
		fc.counts = map[string]proxy.Counts{"free": c}
		_, err := m.Sample(context.Background())
		require.NoError(t, err)
		obs := ests["free"].obs
		return obs[len(obs)-1]
	}
	sample(0, proxy.Counts{Arrivals: 10})
	assert.NotZero(t, sample(time.Second, proxy.Counts{Arrivals: 20}).Window)
	// Stopped for 6 s: the held execution ends in the first window after.
	got := sample(6*time.Second, proxy.Counts{Arrivals: 30, Executions: held})
	assert.Equal(t, capacity.Observation{Window: 6 * time.Second}, got, "an idle window, not the held execution")
	got = sample(time.Second, proxy.Counts{Arrivals: 40, Executions: held})
	assert.Equal(t, capacity.Observation{Window: time.Second}, got, "still within as long again")
	for range 5 { // ticks as usual again, as long as the stall lasted
		sample(time.Second, proxy.Counts{Arrivals: 50, Executions: held})
	}
	got = sample(time.Second, proxy.Counts{Arrivals: 60, Executions: held})
	assert.Equal(t, 10.0, float64(got.Demand)*got.Window.Seconds(), "learning again: the window's demand")
}
