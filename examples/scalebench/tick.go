package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/node"
)

// tickRow is a whole Agent's tick on one node: the real Monitor over the
// real data plane and platform (faas/local with the functions deployed),
// the balancer, Apply, with the peers' adverts and the node's demand from
// the benchmark's world.
type tickRow struct {
	plane            string
	functions, peers int
	ticks            []time.Duration
}

// stubOverlay hands the Agent the world's adverts and publishes nowhere.
type stubOverlay struct{ adverts []dfaas.Advert }

func (o *stubOverlay) Self() dfaas.NodeID                          { return "a" }
func (o *stubOverlay) Publish(context.Context, dfaas.Advert) error { return nil }
func (o *stubOverlay) Adverts(time.Time) []dfaas.Advert            { return o.adverts }
func (o *stubOverlay) Close() error                                { return nil }
func (o *stubOverlay) set(adverts []dfaas.Advert)                  { o.adverts = adverts }

// RTT implements dfaas.RTTMeter: every peer 10 ms away.
func (o *stubOverlay) RTT(dfaas.NodeID) (time.Duration, bool) { return 10 * time.Millisecond, true }

// Clean implements dfaas.LinkMeter: every link clean.
func (o *stubOverlay) Clean(dfaas.NodeID) (float64, bool) { return 1, true }

// demandMonitor is the real Monitor, whose arrivals are the world's: the
// node idles, but its plan forwards as under load.
type demandMonitor struct {
	inner  *faas.Monitor
	demand func() map[string]dfaas.Rate
}

func (m demandMonitor) Sample(ctx context.Context) (dfaas.Sample, error) {
	s, err := m.inner.Sample(ctx)
	for fn, d := range m.demand() {
		if fs, ok := s.Functions[fn]; ok {
			fs.Arrivals = d
			s.Functions[fn] = fs
		}
	}
	return s, err
}

// agentTicks runs an Agent on a node of plane with functions deployed on
// faas/local and peers in the world, and times its ticks.
func agentTicks(o options, strategy dfaas.Balancer, plane string, functions, peers int) (tickRow, error) {
	r := tickRow{plane: plane, functions: functions, peers: peers}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	fns := map[string]dfaas.Rate{}
	for i := range functions {
		fns[fmt.Sprintf("f%d", i)] = 20
	}
	pf, err := node.OpenPlatform(ctx, "local", node.PlatformSpec{Node: "a", Functions: fns, Handler: node.Echo, Logger: quiet})
	if err != nil {
		return r, err
	}
	defer pf.Close()
	b, err := startBench(plane, pf.Handler, pf.Addr, peers)
	if err != nil {
		return r, err
	}
	defer b.Close()
	dp, stubs, peerAddr := b.dp, b.peers, b.peerAddr
	mon, err := faas.NewMonitor(dp, pf.Capacities, faas.MonitorConfig{Logger: quiet})
	if err != nil {
		return r, err
	}
	w := newWorld(functions, stubs, o.churn)
	w.localFixed = true // the platform's functions stay; those at peers come and go
	ov := &stubOverlay{}
	agent, err := dfaas.NewAgent(dfaas.Config{Addr: peerAddr, Logger: quiet}, ov,
		demandMonitor{inner: mon, demand: func() map[string]dfaas.Rate { return w.demand }}, &forecast.LastValue{}, strategy, dp)
	if err != nil {
		return r, err
	}
	for tick := range o.ticks + 2 {
		_, adverts := w.tick(time.Now())
		ov.set(adverts)
		t0 := time.Now()
		if err := agent.Tick(ctx); err != nil {
			return r, fmt.Errorf("tick: %w", err)
		}
		if tick >= 2 { // the first plans set every route
			r.ticks = append(r.ticks, time.Since(t0))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r, nil
}
