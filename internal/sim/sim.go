package sim

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/overlay"
)

// Config is one simulation run.
type Config struct {
	Scenario Scenario
	// Strategy plans every node.
	Strategy dfaas.Balancer
	// Forecaster makes each node's forecaster. Default forecast.LastValue.
	Forecaster func() dfaas.Forecaster
	// Interval is the control tick. Default 1 s.
	Interval time.Duration
	// Delay and Loss shape the adverts' network; Seed its losses.
	Delay time.Duration
	Loss  float64
	Seed  uint64
	// Neighbours is how many peers each node follows, as the libp2p
	// overlay's Libp2pConfig.Neighbours: 0 means overlay.DefaultNeighbours,
	// negative every peer (no neighbourhoods).
	Neighbours int
	// Measured makes every node learn its capacities, as an agent does
	// (faas/capacity), instead of being told them: each function's calls
	// cost Cost of CPU (spread 5%) on a node whose CPU budget runs
	// Scenario.Capacity of them a second (times Scenario.CPU), modelled as
	// a processor-sharing station (internal/plant). A node admits what its
	// estimate says; what it admits beyond its true capacity queues there,
	// and the run reports the executions' latency.
	Measured bool
	// Cost is a call's CPU time with Measured. Default 10 ms.
	Cost time.Duration
	// Estimator makes each node's estimator of each function with
	// Measured. Default capacity.NewAdaptive with its defaults.
	Estimator func() capacity.Estimator
}

// TickResult sums one tick over nodes and functions, in req/s.
type TickResult struct {
	Demand, Served, Forwarded, Rejected, Optimum float64
}

// Result is what a run measured. Request totals are rates × seconds.
type Result struct {
	Scenario, Strategy string
	Ticks              []TickResult
	// Totals over the run, in requests.
	Demand, Served, Forwarded, Rejected, Retried, Optimum float64
	// ServedOverOptimum is Served / Optimum (1 when nothing could be served).
	ServedOverOptimum float64
	// RejectedPct and ForwardedPct are percentages of Demand.
	RejectedPct, ForwardedPct float64
	// MeanHops is the mean number of proxy-to-proxy hops of a served request.
	MeanHops float64
	// MeanForwardRTTms is the mean round trip, in ms, between a forwarded
	// request's node and the peer that served it (0 without Scenario.RTT).
	MeanForwardRTTms float64
	// ControlMsgsPerNodeS and ControlBytesPerNodeS are the adverts a node
	// sends per second (one copy per receiver) and their bytes.
	ControlMsgsPerNodeS, ControlBytesPerNodeS float64
	// ProbeBytesPerNodeS is what a node sends per second in probes: a ping
	// to each peer it follows and an echo to each follower, every
	// overlay.DefaultProbeInterval.
	ProbeBytesPerNodeS float64
	// ReactionS is the mean time from an overload's onset (a node's demand
	// rising above its capacity) until the node rejects at most 1% of its
	// demand, or nothing more could be served anywhere; -1 if some overload
	// ended, or the run did, before that; 0 if there was no onset or every
	// one was absorbed in its own tick.
	ReactionS float64
	// ForecastMAE (req/s) and ForecastMAPE (%, over non-zero demand) compare
	// each node's forecast for a tick with the demand that came.
	ForecastMAE, ForecastMAPE float64
	// With Config.Measured: ExecP95ms is the 95th percentile of every
	// execution's latency after the first 15 ticks (the learning), in ms;
	// Timeouts counts the executions given up (30 s); CapacityErrPct is the
	// mean absolute difference between what nodes advertised and their
	// true capacity, after the first 15 ticks, in percent of the latter.
	ExecP95ms, Timeouts, CapacityErrPct float64
}

// simProxy records the plan its agent applies.
type simProxy struct{ plan dfaas.Plan }

func (p *simProxy) Apply(_ context.Context, plan dfaas.Plan) error {
	p.plan = plan
	return nil
}

// simMonitor reports the data plane's last tick.
type simMonitor struct{ sample dfaas.Sample }

func (m *simMonitor) Sample(context.Context) (dfaas.Sample, error) { return m.sample, nil }

// rttOverlay is a member of the in-memory network that reports the
// scenario's round-trip times, as the libp2p overlay's probes would.
type rttOverlay struct {
	*overlay.Memory
	self int
	idx  map[dfaas.NodeID]int
	rtt  func(a, b int) time.Duration
}

func (o rttOverlay) RTT(n dfaas.NodeID) (time.Duration, bool) {
	j, ok := o.idx[n]
	if !ok || j == o.self {
		return 0, false
	}
	return o.rtt(o.self, j), true
}

type node struct {
	agent   *dfaas.Agent
	overlay *overlay.Memory
	proxy   *simProxy
	monitor *simMonitor
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Run simulates cfg. It is deterministic: the same Config gives the same
// Result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	sc := cfg.Scenario
	if err := sc.Validate(); err != nil {
		return Result{}, err
	}
	if cfg.Strategy == nil {
		return Result{}, fmt.Errorf("%w: sim: no strategy", dfaas.ErrInvalidConfig)
	}
	if cfg.Forecaster == nil {
		cfg.Forecaster = func() dfaas.Forecaster { return &forecast.LastValue{} }
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Delay == 0 {
		cfg.Delay = sc.Delay
	}
	if cfg.Loss == 0 {
		cfg.Loss = sc.Loss
	}
	now := epoch
	clock := func() time.Time { return now }
	nn, nf := len(sc.Nodes), len(sc.Functions)
	// Node ids and addresses as long as a libp2p agent's, so that adverts
	// weigh what they would.
	ids := make([]dfaas.NodeID, nn)
	idx := make(map[dfaas.NodeID]int, nn)
	for i, name := range sc.Nodes {
		ids[i] = peerLikeID(name)
		idx[ids[i]] = i
	}
	ncfg := overlay.NetworkConfig{Now: clock, Delay: cfg.Delay, Loss: cfg.Loss, Seed: cfg.Seed, Direct: true,
		Neighbours: cfg.Neighbours}
	switch {
	case cfg.Neighbours == 0:
		ncfg.Neighbours = overlay.DefaultNeighbours
	case cfg.Neighbours < 0:
		ncfg.Neighbours = 0
	}
	if sc.RTT != nil {
		ncfg.RTT = func(a, b dfaas.NodeID) time.Duration { return sc.RTT(idx[a], idx[b]) }
	}
	net, err := overlay.NewNetworkWith(ncfg)
	if err != nil {
		return Result{}, err
	}
	var rttMS [][]float64
	if sc.RTT != nil {
		rttMS = make([][]float64, nn)
		for a := range nn {
			rttMS[a] = make([]float64, nn)
			for b := range nn {
				rttMS[a][b] = float64(sc.RTT(a, b)) / float64(time.Millisecond)
			}
		}
	}
	var est *measured
	if cfg.Measured {
		if est, err = newMeasured(sc, cfg); err != nil {
			return Result{}, err
		}
	}
	nodes := make([]node, nn)
	quiet := slog.New(slog.DiscardHandler)
	for i := range sc.Nodes {
		m, err := net.Join(ids[i])
		if err != nil {
			return Result{}, err
		}
		nodes[i] = node{overlay: m, proxy: &simProxy{}, monitor: &simMonitor{}}
		nodes[i].monitor.sample = measure(sc, 0, i, nil, nil, now, cfg.Interval, est)
		var ov dfaas.Overlay = m
		if sc.RTT != nil {
			ov = rttOverlay{Memory: m, self: i, idx: idx, rtt: sc.RTT}
		}
		addr := fmt.Sprintf("10.%d.%d.%d:8081", i>>16&255, i>>8&255, i&255)
		nodes[i].agent, err = dfaas.NewAgent(dfaas.Config{Interval: cfg.Interval, Addr: addr, Logger: quiet, Now: clock},
			ov, nodes[i].monitor, cfg.Forecaster(), cfg.Strategy, nodes[i].proxy)
		if err != nil {
			return Result{}, err
		}
	}

	res := Result{Scenario: sc.Name, Strategy: fmt.Sprintf("%T", cfg.Strategy), Ticks: make([]TickResult, sc.Ticks)}
	secs := cfg.Interval.Seconds()
	demand := make([][]float64, nf) // [f][n]
	capacity := make([][]float64, nf)
	for f := range nf {
		demand[f] = make([]float64, nn)
		capacity[f] = make([]float64, nn)
		for i := range nn {
			capacity[f][i] = sc.Capacity[i][f]
		}
	}
	plans := make([]dfaas.FunctionPlan, nn)
	peerIdx := make([][]int, nn)
	var absErr, absPctErr float64
	var errN, pctN int
	var hopSum, fwdRTTSum float64
	var onsets []onset
	open := map[[2]int]int{} // (function, node) -> index of its open onset
	overloaded := make([][]bool, nf)
	for f := range overloaded {
		overloaded[f] = make([]bool, nn)
	}
	tickFlows := make([]flows, nf)

	// Agents tick at fixed phases spread over the interval, as unsynchronised
	// agents would; adverts published earlier in a tick reach the later ones.
	tickAll := func(t int) error {
		base := epoch.Add(time.Duration(t) * cfg.Interval)
		for i := range nodes {
			now = base.Add(time.Duration(i) * cfg.Interval / time.Duration(nn))
			if err := nodes[i].agent.Tick(ctx); err != nil {
				return fmt.Errorf("sim: %s tick %d: %w", sc.Nodes[i], t, err)
			}
		}
		now = base.Add(cfg.Interval)
		return nil
	}
	// The federation forms before the load starts: one idle tick, whose
	// adverts the control traffic figures leave out.
	if err := tickAll(-1); err != nil {
		return Result{}, err
	}
	formation := net.Stats()
	for t := range sc.Ticks {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		if err := tickAll(t); err != nil {
			return Result{}, err
		}

		var tr TickResult
		for f, name := range sc.Functions {
			var dSum, cSum float64
			for i := range nn {
				d := max(0, sc.Demand(t, i, f))
				demand[f][i] = d
				dSum += d
				capacity[f][i] = sc.capacityAt(t, i, f)
				cSum += capacity[f][i]
				over := d > capacity[f][i]+eps
				key := [2]int{f, i}
				switch {
				case over && !overloaded[f][i] && t > 0:
					open[key] = len(onsets)
					onsets = append(onsets, onset{start: t, recovered: -1})
				case !over && overloaded[f][i]:
					delete(open, key) // over, recovered or not
				}
				overloaded[f][i] = over
				fp := nodes[i].proxy.plan.Functions[name]
				plans[i] = fp
				peerIdx[i] = peerIdx[i][:0]
				for _, p := range fp.Peers {
					j, ok := idx[p.Node]
					if !ok {
						j = -1
					}
					peerIdx[i] = append(peerIdx[i], j)
				}
				if st, ok := nodes[i].agent.Status().LastState.Functions[name]; ok && t > 0 {
					e := math.Abs(float64(st.Demand) - d)
					absErr += e
					errN++
					if d > 0 {
						absPctErr += e / d
						pctN++
					}
				}
			}
			admit := capacity[f]
			if est != nil { // a node admits what it believes it can run
				admit = make([]float64, nn)
				for i := range nn {
					admit[i] = float64(plans[i].Capacity)
				}
			}
			fl := serve(demand[f], admit, plans, peerIdx, rttMS)
			if est != nil {
				est.run(t, f, fl, demand[f], capacity[f], plans)
			}
			tickFlows[f] = fl
			tr.Demand += dSum
			tr.Optimum += min(dSum, cSum)
			var servedF float64
			for i := range nn {
				servedF += fl.local[i] + fl.received[i]
			}
			// An overloaded node has recovered once it rejects at most 1% of
			// its demand, or once nothing more could be served anywhere.
			for key, k := range open {
				if o := &onsets[k]; key[0] == f && o.recovered < 0 {
					i := key[1]
					if fl.rejected[i] <= 0.01*demand[f][i]+eps || servedF >= min(dSum, cSum)-1e-6 {
						o.recovered = t
					}
				}
			}
			for i := range nn {
				tr.Served += fl.local[i] + fl.received[i]
				tr.Forwarded += fl.forwarded[i]
				tr.Rejected += fl.rejected[i]
				res.Retried += fl.retried[i] * secs
				hopSum += fl.received[i] * secs
				fwdRTTSum += fl.fwdRTT[i] * secs
			}
		}
		res.Ticks[t] = tr
		if est != nil {
			est.learn(now)
		}
		for i := range nn {
			nodes[i].monitor.sample = measure(sc, t+1, i, demand, tickFlows, now, cfg.Interval, est)
		}
	}

	for _, tr := range res.Ticks {
		res.Demand += tr.Demand * secs
		res.Served += tr.Served * secs
		res.Forwarded += tr.Forwarded * secs
		res.Rejected += tr.Rejected * secs
		res.Optimum += tr.Optimum * secs
	}
	res.ServedOverOptimum = 1
	if res.Optimum > 0 {
		res.ServedOverOptimum = res.Served / res.Optimum
	}
	if res.Demand > 0 {
		res.RejectedPct = 100 * res.Rejected / res.Demand
		res.ForwardedPct = 100 * res.Forwarded / res.Demand
	}
	if res.Served > 0 {
		res.MeanHops = hopSum / res.Served
	}
	if res.Forwarded > 0 {
		res.MeanForwardRTTms = fwdRTTSum / res.Forwarded
	}
	duration := float64(sc.Ticks) * secs
	st := net.Stats()
	res.ControlMsgsPerNodeS = float64(st.Sent-formation.Sent) / float64(nn) / duration
	res.ControlBytesPerNodeS = float64(st.Bytes-formation.Bytes) / float64(nn) / duration
	res.ProbeBytesPerNodeS = float64(net.FollowPairs()) * 2 * overlay.ProbeBytes / overlay.DefaultProbeInterval.Seconds() / float64(nn)
	res.ReactionS = reaction(onsets) * secs
	if errN > 0 {
		res.ForecastMAE = absErr / float64(errN)
	}
	if pctN > 0 {
		res.ForecastMAPE = 100 * absPctErr / float64(pctN)
	}
	if est != nil {
		est.report(&res)
	}
	return res, nil
}

// peerLikeID is a node id of the length and alphabet of a libp2p peer id
// (an Ed25519 key's, 52 characters), made from the node's name.
func peerLikeID(name string) dfaas.NodeID {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	r := rand.New(rand.NewPCG(h.Sum64(), 0))
	b := []byte("12D3KooW")
	for len(b) < 52 {
		b = append(b, alphabet[r.IntN(len(alphabet))])
	}
	return dfaas.NodeID(b)
}

// measure is node i's Monitor sample of the tick just served, for tick t:
// its capacities as the scenario declares them (exactly, drift included: an
// oracle), or as it learned them.
func measure(sc Scenario, t, i int, demand [][]float64, fl []flows, now time.Time, window time.Duration, est *measured) dfaas.Sample {
	s := dfaas.Sample{Time: now, Window: window, Functions: make(map[string]dfaas.FunctionSample, len(sc.Functions))}
	for f, name := range sc.Functions {
		fs := dfaas.FunctionSample{Capacity: dfaas.Rate(sc.capacityAt(t, i, f))}
		if est != nil {
			fs.Capacity = est.capacity[i][f]
		}
		if demand != nil {
			fs.Arrivals = dfaas.Rate(demand[f][i])
			fs.ServedLocal = dfaas.Rate(fl[f].local[i])
			fs.ForwardedOut = dfaas.Rate(fl[f].forwarded[i])
			fs.ReceivedIn = dfaas.Rate(fl[f].received[i])
			fs.Rejected = dfaas.Rate(fl[f].rejected[i])
		}
		s.Functions[name] = fs
	}
	return s
}

// onset is an overload of one node and function that began at tick start
// and was absorbed at tick recovered (-1: never, while it lasted).
type onset struct{ start, recovered int }

// reaction is the mean number of ticks from each onset until its recovery,
// or -1 if some overload was never absorbed.
func reaction(onsets []onset) float64 {
	if len(onsets) == 0 {
		return 0
	}
	var sum float64
	for _, o := range onsets {
		if o.recovered < 0 {
			return -1
		}
		sum += float64(o.recovered - o.start)
	}
	return sum / float64(len(onsets))
}
