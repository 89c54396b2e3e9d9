package dfaas

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Agent runs the control loop of one node: every tick it samples the load,
// forecasts demand, advertises its state, plans over the peers' adverts and
// applies the plan to the proxy.
//
// An Agent is safe for concurrent use; Tick and Run serialise on an internal
// lock. The Agent does not own its collaborators: close them after Run
// returns.
type Agent struct {
	cfg        Config
	overlay    Overlay
	monitor    Monitor
	forecaster Forecaster
	balancer   Balancer
	proxy      ProxyDriver
	log        *slog.Logger

	tickMu   sync.Mutex // serialises ticks
	seq      uint64
	draining atomic.Bool
	kick     chan struct{} // an early tick, asked by Drain

	mu     sync.Mutex // guards status and shapes
	status Status
	shapes map[string]string // per function, the latest plan's shape (see functionShape)
}

// Status is a snapshot of the Agent's progress.
type Status struct {
	Ticks    uint64    // ticks run
	Failures uint64    // ticks that returned an error
	LastTick time.Time // start of the latest tick
	// LastTickDuration is how long the latest tick took, by the wall clock.
	LastTickDuration time.Duration
	LastErr          error // error of the latest tick, nil if it succeeded
	Peers            int   // live peer adverts at the latest tick
	// PeerNodes are the nodes of those adverts, sorted, less the peers the
	// data plane ejected: the federation the latest plan was made with.
	PeerNodes []NodeID
	LastState State
	LastPlan  Plan
	// Draining is set once a tick has run since Drain: the node advertises
	// no capacity and its plan executes nothing locally.
	Draining bool
	// LastAdvert is the latest advert the agent made of this node (whether
	// or not publishing it succeeded).
	LastAdvert Advert
}

// NewAgent checks cfg and composes an Agent from its five collaborators,
// all required.
func NewAgent(cfg Config, o Overlay, m Monitor, f Forecaster, b Balancer, p ProxyDriver) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o == nil || m == nil || f == nil || b == nil || p == nil {
		return nil, fmt.Errorf("%w: nil collaborator", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	return &Agent{
		cfg: cfg, overlay: o, monitor: m, forecaster: f, balancer: b, proxy: p,
		log: cfg.Logger.With("node", string(o.Self())),
		// Start above every sequence number a previous run could have used.
		seq:  uint64(cfg.Now().UnixNano()),
		kick: make(chan struct{}, 1),
	}, nil
}

// Status returns a snapshot of the Agent's progress.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Run ticks at once, then every Interval and early on any Trigger of the
// collaborators, until ctx ends. A failed tick is logged and counted; the
// loop goes on. Run returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	var triggers [3]<-chan struct{}
	for i, c := range []any{a.overlay, a.monitor, a.proxy} {
		if t, ok := c.(Trigger); ok {
			triggers[i] = t.Trigger()
		}
	}
	ticker := time.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	var last time.Time
	for {
		if err := a.Tick(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("control tick failed", "err", err)
		}
		last = time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-triggers[0]:
		case <-triggers[1]:
		case <-triggers[2]:
		case <-a.kick:
		}
		if wait := a.cfg.Holdoff - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
}

// Drain prepares the node to leave: from the next tick on, which Run starts
// at once, the agent advertises zero capacity for every function, so peers
// stop forwarding to it at their next tick, and it plans no local
// execution: its data plane refuses what peers still forward (they retry
// elsewhere: a refusal ran nothing) and forwards its own users' requests.
// Status.Draining tells when that tick has run. It cannot be undone.
func (a *Agent) Drain() {
	a.draining.Store(true)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Tick runs one control tick: Sample, Forecast, Publish, Plan, Apply. A
// failed Publish, or a Sample error wrapping ErrDegraded, does not stop the
// tick: the node still plans on what it knows. Tick returns the error that
// made it stop, or those it went on despite.
func (a *Agent) Tick(ctx context.Context) error {
	a.tickMu.Lock()
	defer a.tickMu.Unlock()
	now := a.cfg.Now()
	began := time.Now()
	draining := a.draining.Load()
	state, advert, plan, nodes, err := a.tick(ctx, now, draining)
	took := time.Since(began)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Ticks++
	a.status.LastTick = now
	a.status.LastTickDuration = took
	a.status.LastErr = err
	if err != nil {
		a.status.Failures++
	}
	if advert.Node != "" {
		a.status.LastAdvert = advert
	}
	if state.Functions != nil {
		a.status.LastState = state
		a.status.Peers = len(nodes)
		a.status.PeerNodes = nodes
	}
	if plan.Functions != nil {
		a.logShape(plan)
		a.status.LastPlan = plan
	}
	// Draining once a zero-capacity plan is applied, whatever else failed
	// (a degraded sample, an advert not published).
	if draining && plan.Functions != nil && !errors.Is(err, errApply) {
		a.status.Draining = true
	}
	return err
}

func (a *Agent) tick(ctx context.Context, now time.Time, draining bool) (State, Advert, Plan, []NodeID, error) {
	sample, err := a.monitor.Sample(ctx)
	var degraded error
	if err != nil {
		if !errors.Is(err, ErrDegraded) {
			return State{}, Advert{}, Plan{}, nil, fmt.Errorf("agent: sample: %w", err)
		}
		degraded = fmt.Errorf("agent: sample: %w", err)
	}
	a.forecaster.Observe(sample)
	demand := a.forecaster.Predict(now, a.cfg.Interval)
	state := State{Node: a.overlay.Self(), Time: now, Functions: make(map[string]FunctionState, len(sample.Functions))}
	for name, fs := range sample.Functions {
		d, ok := demand[name]
		if !ok || !d.valid() {
			d = fs.Arrivals // no usable forecast: assume the present continues
		}
		capacity := fs.Capacity
		if draining {
			capacity = 0
		}
		state.Functions[name] = FunctionState{Capacity: capacity, Demand: d}
		if fs.MaxRTT > 0 {
			if state.MaxRTT == nil {
				state.MaxRTT = map[string]time.Duration{}
			}
			state.MaxRTT[name] = fs.MaxRTT
		}
	}

	var pubErr error
	var advert Advert
	if a.cfg.Sequencer != nil {
		a.seq, pubErr = a.cfg.Sequencer.Next()
	} else {
		a.seq++
	}
	if pubErr == nil {
		advert = Advert{Node: state.Node, Name: a.cfg.Name, Seq: a.seq, TTL: a.cfg.TTL, Addr: a.cfg.Addr, Functions: state.Functions,
			Traffic: trafficOf(sample)}
		pubErr = a.overlay.Publish(ctx, advert)
		if errors.Is(pubErr, ErrInvalidAdvert) && advert.Traffic != nil {
			// The traffic is for operators' views: never let it cost the
			// advert peers plan with (too large, or a peer id refused).
			advert.Traffic = nil
			pubErr = a.overlay.Publish(ctx, advert)
		}
	}
	if pubErr != nil {
		pubErr = fmt.Errorf("agent: publish: %w", pubErr)
	}

	peers := a.overlay.Adverts(now)
	if ph, ok := a.proxy.(PeerHealth); ok {
		if out := ph.Ejected(); len(out) > 0 {
			peers = slices.DeleteFunc(slices.Clone(peers), func(ad Advert) bool { return slices.Contains(out, ad.Node) })
		}
	}
	nodes := make([]NodeID, len(peers))
	for i, ad := range peers {
		nodes[i] = ad.Node
	}
	slices.Sort(nodes)
	if m, ok := a.overlay.(RTTMeter); ok {
		for _, ad := range peers {
			if rtt, ok := m.RTT(ad.Node); ok {
				if state.RTT == nil {
					state.RTT = make(map[NodeID]time.Duration, len(peers))
				}
				state.RTT[ad.Node] = rtt
			}
		}
	}
	if m, ok := a.overlay.(LinkMeter); ok {
		for _, ad := range peers {
			if c, ok := m.Clean(ad.Node); ok {
				if state.Clean == nil {
					state.Clean = make(map[NodeID]float64, len(peers))
				}
				state.Clean[ad.Node] = c
			}
		}
	}
	if m, ok := a.proxy.(ForwardMeter); ok {
		state.Forwards = m.Forwards(now)
	}
	plan := a.balancer.Plan(state, peers)
	plan.Time = now
	if err := a.proxy.Apply(ctx, plan); err != nil {
		return state, advert, plan, nodes, errors.Join(fmt.Errorf("%w: %w", errApply, err), degraded, pubErr)
	}
	return state, advert, plan, nodes, errors.Join(degraded, pubErr)
}

// trafficOf is what a sample tells peers of the node's traffic: per
// function with any, what it executed and rejected, and its MaxAdvertFlows
// busiest flows to peers over all functions. Rates are held to MaxRate.
func trafficOf(s Sample) map[string]Traffic {
	type flow struct {
		fn   string
		peer NodeID
		rate Rate
	}
	var flows []flow
	var out map[string]Traffic
	for name, fs := range s.Functions {
		for peer, r := range fs.Forwarded {
			if r > 0 {
				flows = append(flows, flow{name, peer, min(r, MaxRate)})
			}
		}
		t := Traffic{Served: min(fs.ServedLocal+fs.ReceivedIn, MaxRate), Rejected: min(fs.Rejected, MaxRate)}
		if t.Served == 0 && t.Rejected == 0 && len(fs.Forwarded) == 0 {
			continue
		}
		if out == nil {
			out = map[string]Traffic{}
		}
		out[name] = t
	}
	slices.SortFunc(flows, func(x, y flow) int {
		if c := cmp.Compare(y.rate, x.rate); c != 0 {
			return c
		}
		if c := cmp.Compare(x.fn, y.fn); c != 0 {
			return c
		}
		return cmp.Compare(x.peer, y.peer)
	})
	for _, f := range flows[:min(len(flows), MaxAdvertFlows)] {
		t := out[f.fn]
		if t.Forwarded == nil {
			t.Forwarded = map[NodeID]Rate{}
		}
		t.Forwarded[f.peer] = f.rate
		out[f.fn] = t
	}
	return out
}

// functionShape is what the "plan changed" log says of a function's plan:
// its limit and its set of peers (their weights and caps change every
// tick, and are not logged).
func functionShape(fp FunctionPlan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "limit %.0f", float64(fp.Limit))
	if len(fp.Peers) > 0 {
		peers := make([]string, 0, len(fp.Peers))
		for _, s := range fp.Peers {
			peers = append(peers, string(s.Node))
		}
		slices.Sort(peers)
		b.WriteString(" peers ")
		b.WriteString(strings.Join(peers, ","))
	}
	return b.String()
}

// shapeLogMax bounds the "plan changed" line: a plan of a thousand
// functions and peers is logged as a summary of what changed, not whole
// (it made lines of 180 KB).
const (
	shapeLogMax     = 2000
	shapeLogChanged = 10
)

// logShape logs "plan changed" when a function's limit or set of peers
// changed, or a function came or went: the whole plan's shape while it is
// short, else the number of functions and of those changed, with the
// first of them. Called with a.mu held.
func (a *Agent) logShape(plan Plan) {
	shapes := make(map[string]string, len(plan.Functions))
	size := 0
	for name, fp := range plan.Functions {
		shapes[name] = functionShape(fp)
		size += len(name) + len(shapes[name]) + 3
	}
	var changed []string
	for name, sh := range shapes {
		if old, ok := a.shapes[name]; !ok || old != sh {
			changed = append(changed, name)
		}
	}
	for name := range a.shapes {
		if _, ok := shapes[name]; !ok {
			changed = append(changed, name)
		}
	}
	a.shapes = shapes
	if len(changed) == 0 {
		return
	}
	describe := func(names []string) string {
		parts := make([]string, len(names))
		for i, name := range names {
			if sh, ok := shapes[name]; ok {
				parts[i] = name + " " + sh
			} else {
				parts[i] = name + " gone"
			}
		}
		return strings.Join(parts, "; ")
	}
	if size <= shapeLogMax {
		a.log.Info("plan changed", "plan", describe(slices.Sorted(maps.Keys(shapes))))
		return
	}
	slices.Sort(changed)
	a.log.Info("plan changed", "functions", len(shapes), "changed", len(changed), "first", describe(changed[:min(len(changed), shapeLogChanged)]))
}

// errApply marks a tick whose plan the data plane did not take.
var errApply = errors.New("agent: apply")
