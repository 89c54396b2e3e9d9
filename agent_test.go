package dfaas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type mockOverlay struct{ mock.Mock }

func (m *mockOverlay) Self() dfaas.NodeID { return "n1" }
func (m *mockOverlay) Publish(ctx context.Context, a dfaas.Advert) error {
	return m.Called(ctx, a).Error(0)
}
func (m *mockOverlay) Adverts(now time.Time) []dfaas.Advert {
	return m.Called(now).Get(0).([]dfaas.Advert)
}
func (m *mockOverlay) Close() error { return m.Called().Error(0) }

type mockMonitor struct{ mock.Mock }

func (m *mockMonitor) Sample(ctx context.Context) (dfaas.Sample, error) {
	args := m.Called(ctx)
	return args.Get(0).(dfaas.Sample), args.Error(1)
}

type mockForecaster struct{ mock.Mock }

func (m *mockForecaster) Observe(s dfaas.Sample) { m.Called(s) }
func (m *mockForecaster) Predict(now time.Time, h time.Duration) map[string]dfaas.Rate {
	return m.Called(now, h).Get(0).(map[string]dfaas.Rate)
}

type mockBalancer struct{ mock.Mock }

func (m *mockBalancer) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	return m.Called(self, peers).Get(0).(dfaas.Plan)
}

type mockProxy struct {
	mock.Mock
	trigger chan struct{}
}

func (m *mockProxy) Apply(ctx context.Context, p dfaas.Plan) error { return m.Called(ctx, p).Error(0) }
func (m *mockProxy) Trigger() <-chan struct{}                      { return m.trigger }

type mocks struct {
	o *mockOverlay
	m *mockMonitor
	f *mockForecaster
	b *mockBalancer
	p *mockProxy
}

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newAgent(t *testing.T, cfg dfaas.Config) (*dfaas.Agent, mocks) {
	t.Helper()
	ms := mocks{&mockOverlay{}, &mockMonitor{}, &mockForecaster{}, &mockBalancer{}, &mockProxy{trigger: make(chan struct{}, 1)}}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:7000"
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return now }
	}
	a, err := dfaas.NewAgent(cfg, ms.o, ms.m, ms.f, ms.b, ms.p)
	require.NoError(t, err)
	t.Cleanup(func() {
		ms.o.AssertExpectations(t)
		ms.m.AssertExpectations(t)
		ms.f.AssertExpectations(t)
		ms.b.AssertExpectations(t)
		ms.p.AssertExpectations(t)
	})
	return a, ms
}

var sample = dfaas.Sample{Time: now, Functions: map[string]dfaas.FunctionSample{
	"figlet": {Capacity: 10, Arrivals: 48},
	"echo":   {Capacity: 5, Arrivals: 2},
}}

var peers = []dfaas.Advert{{Node: "n2", Seq: 9, TTL: 3 * time.Second, Addr: "127.0.0.1:7001",
	Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 20}}}}

func TestTickComposesTheLoop(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{Name: "edge-1"})
	ms.m.On("Sample", mock.Anything).Return(sample, nil).Twice()
	ms.f.On("Observe", sample).Twice()
	// The forecaster knows figlet only, and says nonsense about echo: echo
	// falls back to its arrivals.
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{"figlet": 50, "echo": dfaas.Rate(math.NaN())}).Twice()
	wantState := dfaas.State{Node: "n1", Time: now, Functions: map[string]dfaas.FunctionState{
		"figlet": {Capacity: 10, Demand: 50}, "echo": {Capacity: 5, Demand: 2}}}
	var seqs []uint64
	ms.o.On("Publish", mock.Anything, mock.MatchedBy(func(ad dfaas.Advert) bool {
		return ad.Node == "n1" && ad.Name == "edge-1" && ad.TTL == 3*time.Second && ad.Addr == "127.0.0.1:7000" &&
			assert.ObjectsAreEqual(wantState.Functions, ad.Functions)
	})).Run(func(args mock.Arguments) { seqs = append(seqs, args.Get(1).(dfaas.Advert).Seq) }).Return(nil).Twice()
	ms.o.On("Adverts", now).Return(peers).Twice()
	plan := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Limit: 10, Capacity: 10}}}
	ms.b.On("Plan", wantState, peers).Return(plan).Twice()
	ms.p.On("Apply", mock.Anything, dfaas.Plan{Time: now, Functions: plan.Functions}).Return(nil).Twice()

	require.NoError(t, a.Tick(context.Background()))
	require.NoError(t, a.Tick(context.Background()))
	require.Len(t, seqs, 2)
	assert.Equal(t, seqs[0]+1, seqs[1], "sequence numbers increase by one per tick")
	assert.Greater(t, seqs[0], uint64(now.UnixNano()), "sequence starts above any earlier run's")
	st := a.Status()
	assert.Equal(t, uint64(2), st.Ticks)
	assert.Zero(t, st.Failures)
	assert.Equal(t, 1, st.Peers)
	assert.Equal(t, []dfaas.NodeID{peers[0].Node}, st.PeerNodes)
	assert.Equal(t, wantState, st.LastState)
	assert.Equal(t, plan.Functions, st.LastPlan.Functions)
}

// TestAdvertCarriesTraffic: the advert tells peers what the node executed
// and rejected per function over the sample's window, and its
// MaxAdvertFlows busiest flows over all functions; the Status keeps the
// advert made. An advert the overlay refuses with its traffic goes without.
func TestAdvertCarriesTraffic(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{})
	forwarded := map[dfaas.NodeID]dfaas.Rate{"idle": 0}
	for i := range dfaas.MaxAdvertFlows + 6 {
		forwarded[dfaas.NodeID(fmt.Sprintf("p%03d", i))] = dfaas.Rate(i + 1)
	}
	s := dfaas.Sample{Time: now, Functions: map[string]dfaas.FunctionSample{
		"figlet": {Capacity: 10, Arrivals: 48, ServedLocal: 10, ReceivedIn: 2, Rejected: 3, Forwarded: forwarded},
		"echo":   {Capacity: 5, Forwarded: map[dfaas.NodeID]dfaas.Rate{"q": 2 * dfaas.MaxRate}},
		"idle":   {Capacity: 5},
	}}
	ms.m.On("Sample", mock.Anything).Return(s, nil).Twice()
	ms.f.On("Observe", s).Twice()
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{}).Twice()
	var published []dfaas.Advert
	record := func(args mock.Arguments) { published = append(published, args.Get(1).(dfaas.Advert)) }
	ms.o.On("Publish", mock.Anything, mock.Anything).Run(record).Return(nil).Once()
	ms.o.On("Adverts", now).Return([]dfaas.Advert(nil)).Twice()
	ms.b.On("Plan", mock.Anything, []dfaas.Advert(nil)).Return(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{}}).Twice()
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(nil).Twice()
	require.NoError(t, a.Tick(context.Background()))

	require.Len(t, published, 1)
	ad := published[0]
	require.NoError(t, ad.Validate())
	assert.NotContains(t, ad.Traffic, "idle", "no traffic, nothing to tell")
	tr := ad.Traffic["figlet"]
	assert.Equal(t, dfaas.Rate(12), tr.Served, "executed here: own users' and peers'")
	assert.Equal(t, dfaas.Rate(3), tr.Rejected)
	assert.Equal(t, map[dfaas.NodeID]dfaas.Rate{"q": dfaas.MaxRate}, ad.Traffic["echo"].Forwarded, "the busiest flow, held to MaxRate")
	assert.Len(t, tr.Forwarded, dfaas.MaxAdvertFlows-1, "the rest of the flows, over all functions")
	assert.NotContains(t, tr.Forwarded, dfaas.NodeID("p006"), "one of the least busy")
	assert.Equal(t, dfaas.Rate(dfaas.MaxAdvertFlows+6), tr.Forwarded["p069"], "the busiest")
	assert.Equal(t, dfaas.Rate(8), tr.Forwarded["p007"], "the least busy kept")
	assert.Equal(t, ad, a.Status().LastAdvert)

	// The overlay refuses the advert (too large, say): it goes again
	// without its traffic, and the tick succeeds.
	ms.o.On("Publish", mock.Anything, mock.MatchedBy(func(ad dfaas.Advert) bool { return ad.Traffic != nil })).
		Run(record).Return(fmt.Errorf("encode: %w: too large", dfaas.ErrInvalidAdvert)).Once()
	ms.o.On("Publish", mock.Anything, mock.MatchedBy(func(ad dfaas.Advert) bool { return ad.Traffic == nil })).
		Run(record).Return(nil).Once()
	require.NoError(t, a.Tick(context.Background()))
	require.Len(t, published, 3)
	assert.Nil(t, published[2].Traffic)
	assert.Equal(t, published[1].Functions, published[2].Functions)
}

func TestSampleFailureStopsTheTick(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{})
	boom := errors.New("gateway down")
	ms.m.On("Sample", mock.Anything).Return(dfaas.Sample{}, boom).Once()
	err := a.Tick(context.Background())
	assert.ErrorIs(t, err, boom)
	st := a.Status()
	assert.Equal(t, uint64(1), st.Failures)
	assert.ErrorIs(t, st.LastErr, boom)
	// Publish, Plan and Apply were never called: AssertExpectations in cleanup.
}

// expectTick expects one whole tick with no peers, whose Publish and Apply
// return the given errors.
func expectTick(ms mocks, publishErr, applyErr error) {
	ms.m.On("Sample", mock.Anything).Return(sample, nil).Once()
	ms.f.On("Observe", sample).Once()
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{}).Once()
	ms.o.On("Publish", mock.Anything, mock.Anything).Return(publishErr).Once()
	ms.o.On("Adverts", now).Return([]dfaas.Advert(nil)).Once()
	ms.b.On("Plan", mock.Anything, []dfaas.Advert(nil)).Return(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{}}).Once()
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(applyErr).Once()
}

func TestPublishFailureStillPlans(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{})
	boom := errors.New("no peers")
	expectTick(ms, boom, nil) // Plan and Apply still expected
	assert.ErrorIs(t, a.Tick(context.Background()), boom)
}

func TestDegradedSampleStillPlans(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{})
	down := fmt.Errorf("monitor: %w: gateway down", dfaas.ErrDegraded)
	degraded := dfaas.Sample{Time: now, Functions: map[string]dfaas.FunctionSample{"figlet": {Arrivals: 12}}}
	ms.m.On("Sample", mock.Anything).Return(degraded, down).Once()
	ms.f.On("Observe", degraded).Once()
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{}).Once()
	ms.o.On("Publish", mock.Anything, mock.MatchedBy(func(ad dfaas.Advert) bool {
		return ad.Functions["figlet"] == dfaas.FunctionState{Capacity: 0, Demand: 12}
	})).Return(nil).Once()
	ms.o.On("Adverts", now).Return([]dfaas.Advert(nil)).Once()
	ms.b.On("Plan", mock.Anything, []dfaas.Advert(nil)).Return(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{}}).Once()
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(nil).Once()
	err := a.Tick(context.Background())
	assert.ErrorIs(t, err, dfaas.ErrDegraded)
	assert.ErrorIs(t, a.Status().LastErr, dfaas.ErrDegraded)
}

func TestApplyFailureIsReported(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{})
	boom := errors.New("haproxy gone")
	expectTick(ms, nil, boom)
	err := a.Tick(context.Background())
	assert.ErrorIs(t, err, boom)
	assert.ErrorContains(t, err, "agent: apply")
	assert.Equal(t, uint64(1), a.Status().Failures)
}

// TestRunTicksEarlyOnTrigger: with a five-minute interval, only the first
// tick and the triggered one can happen.
func TestRunTicksEarlyOnTrigger(t *testing.T) {
	a, ms := newAgent(t, dfaas.Config{Interval: 5 * time.Minute, TTL: 10 * time.Minute, Holdoff: time.Millisecond})
	applied := make(chan struct{}, 4)
	ms.m.On("Sample", mock.Anything).Return(sample, nil)
	ms.f.On("Observe", sample)
	ms.f.On("Predict", now, 5*time.Minute).Return(map[string]dfaas.Rate{})
	ms.o.On("Publish", mock.Anything, mock.Anything).Return(nil)
	ms.o.On("Adverts", now).Return([]dfaas.Advert(nil))
	ms.b.On("Plan", mock.Anything, mock.Anything).Return(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{}})
	ms.p.On("Apply", mock.Anything, mock.Anything).Run(func(mock.Arguments) { applied <- struct{}{} }).Return(nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, applied)
	ms.p.trigger <- struct{}{}
	waitFor(t, applied)
	cancel()
	require.NoError(t, <-done)
	assert.Equal(t, uint64(2), a.Status().Ticks)
}

func waitFor(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []dfaas.Config{
		{}, // no address
		{Addr: "x", Interval: time.Microsecond},
		{Addr: "x", Interval: time.Second, TTL: time.Millisecond},
		{Addr: "x", TTL: time.Hour},
		{Addr: "x", Interval: time.Hour},
		{Addr: "x", Holdoff: -1},
		{Addr: "x", Interval: time.Second, Holdoff: 2 * time.Second},
		{Addr: "127.0.0.1:1", Name: "edge 1"},
	}
	for _, c := range bad {
		assert.ErrorIs(t, c.Validate(), dfaas.ErrInvalidConfig, "%+v", c)
	}
	assert.NoError(t, dfaas.Config{Addr: "127.0.0.1:1"}.Validate())
	_, err := dfaas.NewAgent(dfaas.Config{Addr: "x"}, nil, &mockMonitor{}, &mockForecaster{}, &mockBalancer{}, &mockProxy{})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
}

func TestValidateFunctionName(t *testing.T) {
	for _, ok := range []string{"figlet", "a", "nodeinfo-2", "x1"} {
		assert.NoError(t, dfaas.ValidateFunctionName(ok), ok)
	}
	for _, bad := range []string{"", "-a", "a-", "Upper", "a_b", "a/b", "a.b", string(make([]byte, 64))} {
		assert.ErrorIs(t, dfaas.ValidateFunctionName(bad), dfaas.ErrInvalidName, bad)
	}
}

func TestFunctionStateArithmetic(t *testing.T) {
	f := dfaas.FunctionState{Capacity: 10, Demand: 50}
	assert.Equal(t, dfaas.Rate(40), f.Deficit())
	assert.Zero(t, f.Slack())
	assert.True(t, f.Overloaded())
	g := dfaas.FunctionState{Capacity: 30, Demand: 6}
	assert.Equal(t, dfaas.Rate(24), g.Slack())
	assert.Zero(t, g.Deficit())
	assert.False(t, g.Overloaded())
}

type seqFunc func() (uint64, error)

func (f seqFunc) Next() (uint64, error) { return f() }

// TestSequencerNumbersAdverts: with a Sequencer the adverts carry its
// numbers; when it fails the tick publishes nothing but still plans.
func TestSequencerNumbersAdverts(t *testing.T) {
	n := uint64(41)
	fail := false
	a, ms := newAgent(t, dfaas.Config{Sequencer: seqFunc(func() (uint64, error) {
		if fail {
			return 0, errors.New("disk full")
		}
		n++
		return n, nil
	})})
	expectTick(ms, nil, nil)
	require.NoError(t, a.Tick(context.Background()))
	published := ms.o.Calls[0].Arguments.Get(1).(dfaas.Advert)
	assert.Equal(t, uint64(42), published.Seq)

	fail = true
	ms.m.On("Sample", mock.Anything).Return(sample, nil).Once()
	ms.f.On("Observe", sample).Once()
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{}).Once()
	ms.o.On("Adverts", now).Return([]dfaas.Advert(nil)).Once()
	ms.b.On("Plan", mock.Anything, []dfaas.Advert(nil)).Return(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{}}).Once()
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(nil).Once()
	assert.ErrorContains(t, a.Tick(context.Background()), "disk full")
	ms.o.AssertNumberOfCalls(t, "Publish", 1)
}

// rttOverlay is a mock overlay that measures RTTs and clean shares.
type rttOverlay struct {
	*mockOverlay
	rtt   map[dfaas.NodeID]time.Duration
	clean map[dfaas.NodeID]float64
}

func (o rttOverlay) RTT(n dfaas.NodeID) (time.Duration, bool) {
	d, ok := o.rtt[n]
	return d, ok
}

func (o rttOverlay) Clean(n dfaas.NodeID) (float64, bool) {
	c, ok := o.clean[n]
	return c, ok
}

// TestTickHandsRTTsBudgetsAndForwardsToTheBalancer: the balancer gets the
// RTT and the clean share of each peer the overlay measured, the
// functions' RTT budgets from the sample and what the data plane measured
// of its forwards; none is advertised.
func TestTickHandsRTTsBudgetsAndForwardsToTheBalancer(t *testing.T) {
	ms := mocks{&mockOverlay{}, &mockMonitor{}, &mockForecaster{}, &mockBalancer{}, &mockProxy{trigger: make(chan struct{}, 1)}}
	ov := rttOverlay{ms.o, map[dfaas.NodeID]time.Duration{"n2": 7 * time.Millisecond, "gone": time.Second},
		map[dfaas.NodeID]float64{"n2": 0.6, "gone": 1}}
	fwd := map[string]map[dfaas.NodeID]dfaas.ForwardHealth{"figlet": {"n2": {Latency: 12 * time.Millisecond, Success: 0.9, Attempts: 40}}}
	meter := &meterProxy{mockProxy: ms.p, forwards: fwd}
	a, err := dfaas.NewAgent(dfaas.Config{Addr: "127.0.0.1:7000", Now: func() time.Time { return now }}, ov, ms.m, ms.f, ms.b, meter)
	require.NoError(t, err)
	s := dfaas.Sample{Time: now, Functions: map[string]dfaas.FunctionSample{"figlet": {Capacity: 10, MaxRTT: 20 * time.Millisecond}}}
	ms.m.On("Sample", mock.Anything).Return(s, nil).Once()
	ms.f.On("Observe", s).Once()
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{}).Once()
	ms.o.On("Publish", mock.Anything, mock.Anything).Return(nil).Once()
	ms.o.On("Adverts", now).Return(peers).Once()
	ms.b.On("Plan", mock.MatchedBy(func(st dfaas.State) bool {
		return assert.ObjectsAreEqual(map[dfaas.NodeID]time.Duration{"n2": 7 * time.Millisecond}, st.RTT) &&
			assert.ObjectsAreEqual(map[dfaas.NodeID]float64{"n2": 0.6}, st.Clean) && // of the peers advertising
			assert.ObjectsAreEqual(map[string]time.Duration{"figlet": 20 * time.Millisecond}, st.MaxRTT) &&
			assert.ObjectsAreEqual(fwd, st.Forwards) // what the data plane measured of its forwards
	}), peers).Return(dfaas.Plan{}).Once()
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(nil).Once()
	require.NoError(t, a.Tick(context.Background()))
	ms.b.AssertExpectations(t)
	ms.o.AssertExpectations(t)
}

// loggingAgent is an Agent whose collaborators answer every tick alike,
// but for the balancer's plans (the test's), and whose logs go to buf.
func loggingAgent(t *testing.T) (*dfaas.Agent, mocks, *bytes.Buffer) {
	t.Helper()
	buf := &bytes.Buffer{}
	ms := mocks{&mockOverlay{}, &mockMonitor{}, &mockForecaster{}, &mockBalancer{}, &mockProxy{trigger: make(chan struct{}, 1)}}
	a, err := dfaas.NewAgent(dfaas.Config{Addr: "127.0.0.1:7000", Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(buf, nil))}, ms.o, ms.m, ms.f, ms.b, ms.p)
	require.NoError(t, err)
	ms.m.On("Sample", mock.Anything).Return(sample, nil)
	ms.f.On("Observe", sample)
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{})
	ms.o.On("Publish", mock.Anything, mock.Anything).Return(nil)
	ms.o.On("Adverts", now).Return(peers)
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(nil)
	return a, ms, buf
}

// TestPlanChangesAreLogged: one info line when the plan's shape changes
// (functions, limits, peers), none when only caps move with the forecasts.
func TestPlanChangesAreLogged(t *testing.T) {
	a, ms, buf := loggingAgent(t)
	plan := func(limit dfaas.Rate, caps ...dfaas.Rate) dfaas.Plan {
		fp := dfaas.FunctionPlan{Limit: limit, Capacity: limit}
		for i, c := range caps {
			fp.Peers = append(fp.Peers, dfaas.Share{Node: dfaas.NodeID([]string{"n2", "n3"}[i]), Weight: 1, Cap: c})
		}
		return dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": fp}}
	}
	for _, p := range []dfaas.Plan{plan(10, 5), plan(10, 6), plan(10, 6, 3), plan(8, 6, 3)} {
		ms.b.On("Plan", mock.Anything, peers).Return(p).Once()
		require.NoError(t, a.Tick(context.Background()))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3, "%s", buf.String())
	assert.Contains(t, lines[0], `plan="figlet limit 10 peers n2"`)
	assert.Contains(t, lines[1], `plan="figlet limit 10 peers n2,n3"`)
	assert.Contains(t, lines[2], `plan="figlet limit 8 peers n2,n3"`)
}

// TestLargePlanChangesAreSummarised: a plan of a thousand functions is
// logged as what changed, in a line of bounded length (whole, it made
// lines of 180 KB), naming the first functions changed.
func TestLargePlanChangesAreSummarised(t *testing.T) {
	a, ms, buf := loggingAgent(t)
	plan := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{}}
	for i := range 1000 {
		plan.Functions[fmt.Sprintf("f%03d", i)] = dfaas.FunctionPlan{Limit: 10, Capacity: 10, Peers: []dfaas.Share{{Node: "n2", Weight: 1, Cap: 5}}}
	}
	ms.b.On("Plan", mock.Anything, peers).Return(plan).Once()
	require.NoError(t, a.Tick(context.Background()))
	next := dfaas.Plan{Functions: maps.Clone(plan.Functions)}
	delete(next.Functions, "f500")
	next.Functions["f007"] = dfaas.FunctionPlan{Limit: 4, Capacity: 10, Peers: []dfaas.Share{{Node: "n2", Weight: 1, Cap: 5}}}
	ms.b.On("Plan", mock.Anything, peers).Return(next).Once()
	require.NoError(t, a.Tick(context.Background()))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2, "%s", buf.String())
	for _, l := range lines {
		assert.Less(t, len(l), 2000)
	}
	assert.Contains(t, lines[0], "functions=1000 changed=1000")
	assert.Contains(t, lines[1], `functions=999 changed=2 first="f007 limit 4 peers n2; f500 gone"`)
}

// healthProxy is a mockProxy that ejects peers (dfaas.PeerHealth).
type healthProxy struct {
	*mockProxy
	ejected []dfaas.NodeID
}

func (h healthProxy) Ejected() []dfaas.NodeID { return h.ejected }

// TestEjectedPeersAreLeftOutOfThePlan: a peer the data plane ejected is
// planned without, until the data plane lets it back in; the Status names
// the federation the plan was made with.
func TestEjectedPeersAreLeftOutOfThePlan(t *testing.T) {
	ms := mocks{&mockOverlay{}, &mockMonitor{}, &mockForecaster{}, &mockBalancer{}, &mockProxy{trigger: make(chan struct{}, 1)}}
	hp := &healthProxy{mockProxy: ms.p, ejected: []dfaas.NodeID{"n3"}}
	a, err := dfaas.NewAgent(dfaas.Config{Addr: "127.0.0.1:7000", Now: func() time.Time { return now }}, ms.o, ms.m, ms.f, ms.b, hp)
	require.NoError(t, err)
	two := append(slices.Clone(peers), dfaas.Advert{Node: "n3", Seq: 4, TTL: 3 * time.Second, Addr: "127.0.0.1:7002",
		Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 50}}})
	ms.m.On("Sample", mock.Anything).Return(sample, nil)
	ms.f.On("Observe", sample)
	ms.f.On("Predict", now, time.Second).Return(map[string]dfaas.Rate{})
	ms.o.On("Publish", mock.Anything, mock.Anything).Return(nil)
	ms.o.On("Adverts", now).Return(two)
	ms.b.On("Plan", mock.Anything, peers).Return(dfaas.Plan{}).Once() // n3 left out
	ms.b.On("Plan", mock.Anything, two).Return(dfaas.Plan{}).Once()   // back in
	ms.p.On("Apply", mock.Anything, mock.Anything).Return(nil)

	require.NoError(t, a.Tick(context.Background()))
	assert.Equal(t, []dfaas.NodeID{"n2"}, a.Status().PeerNodes)
	hp.ejected = nil
	require.NoError(t, a.Tick(context.Background()))
	assert.Equal(t, []dfaas.NodeID{"n2", "n3"}, a.Status().PeerNodes)
	ms.b.AssertExpectations(t)
}

// meterProxy is a mockProxy that measures its forwards (dfaas.ForwardMeter).
type meterProxy struct {
	*mockProxy
	forwards map[string]map[dfaas.NodeID]dfaas.ForwardHealth
}

func (m *meterProxy) Forwards(time.Time) map[string]map[dfaas.NodeID]dfaas.ForwardHealth {
	return m.forwards
}
