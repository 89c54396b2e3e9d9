package capacity

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Config tunes an Adaptive estimator. The zero value of every field means
// its default.
type Config struct {
	// Initial is where a function without Limits.Max starts. Default
	// 1 req/s: low, so that a costly function does not meet a flood before
	// anything is known of it; the capacity doubles every window from
	// there while demand exceeds it and executions stay within their
	// objective (x1.25 past 80% of what the platform runs when busy).
	Initial dfaas.Rate
	// Tolerance sets the objective of a function without one of its own:
	// its Quantile of latency at most Tolerance times its unloaded service
	// time (and at least Slack above it). Default 2.
	Tolerance float64
	// Slack is the least an objective relative to the service time allows
	// above it, so that a function of a millisecond is not judged on the
	// scheduler's noise. Default 25 ms: on a busy machine (a test suite
	// under the race detector) a call of a millisecond took 20 ms at
	// times, with no queue behind it. A step of the service time cuts the
	// capacity only when it is Slack or more, for the same reason.
	Slack time.Duration
	// MinSamples is the fewest executions a latency is judged on: sparser
	// windows are pooled until they hold that many or MaxPool. Default 5.
	MinSamples int
	// MaxPool is the longest span pooled. Default 5 s.
	MaxPool time.Duration
	// Hold is how long after a cut the capacity does not grow: the cut
	// reaches the data plane only with the next plan, and the queue it
	// leaves takes a while to drain. Default 2 s.
	Hold time.Duration
	// Settle is how long after a cut the capacity stays at most 95% of
	// the ceiling before probing above it. Default 10 s.
	Settle time.Duration
}

// Defaults of Config.
const (
	DefaultInitial    dfaas.Rate = 1
	DefaultTolerance             = 2.0
	DefaultSlack                 = 25 * time.Millisecond
	DefaultMinSamples            = 5
	DefaultMaxPool               = 5 * time.Second
	DefaultHold                  = 2 * time.Second
	DefaultSettle                = 10 * time.Second
)

// Bounds of the loop's steps (see Adaptive).
const (
	cutMin       = 0.7  // a cut keeps at least this part of what ran
	cutMax       = 0.9  // and gives up at least a tenth
	probeFirst   = 0.03 // the first step above the ceiling, as a fraction
	probeMax     = 0.25 // the largest
	probeRun     = 4    // probes in a row that double the step
	minSolo      = 5    // executions that ran alone an objective is drawn from, at the least
	recoverStep  = 1.25 // below the ceiling
	demandMet    = 0.8  // demand at this part of the capacity presses it (probes)
	demandOver   = 0.95 // and at this part exceeds it (the start doubles)
	sameRegime   = 0.8  // what ran in a cut's span, as a part of the most since a probe began, that tells an overshoot from a drop
	minOccupied  = 0.2  // the busy share of a span that tells how fast the platform runs when busy
	fill         = 0.6  // the part of that an unpressed node grows to
	drainShare   = 0.6  // of what runs while a backlog drains, admitted meanwhile
	startBack    = 1.25 // over the most that ran, where a start no demand tested falls back
	startWait    = 3    // spans in a row that show it
	startFull    = 0.8  // of what runs when busy, past which the start no longer doubles
	headroom     = 0.8  // growth only while latency is under this part of the objective
	soloScale    = 1024 // fixed-point units of a solo execution
	soloDecay    = 4    // the solo histogram loses 1/soloDecay of its weight every window
	regime       = 3    // solo executions of a span that can show the service time stepped
	stepped      = 1.5  // by this factor, up or down
	saturatedRan = 0.8  // what ran, as a part of the capacity, that shows the node was at its limit
)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case !(c.Initial >= 0) || c.Initial > dfaas.MaxRate:
		return fmt.Errorf("%w: capacity: initial %v", dfaas.ErrInvalidConfig, c.Initial)
	case c.Tolerance != 0 && !(c.Tolerance > 1 && c.Tolerance < 100):
		return fmt.Errorf("%w: capacity: tolerance %v: want above 1", dfaas.ErrInvalidConfig, c.Tolerance)
	case c.Slack < 0 || c.MinSamples < 0 || c.MaxPool < 0 || c.Hold < 0 || c.Settle < 0:
		return fmt.Errorf("%w: capacity: negative slack, samples, pool or hold", dfaas.ErrInvalidConfig)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Initial == 0 {
		c.Initial = DefaultInitial
	}
	if c.Tolerance == 0 {
		c.Tolerance = DefaultTolerance
	}
	if c.Slack == 0 {
		c.Slack = DefaultSlack
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.MaxPool == 0 {
		c.MaxPool = DefaultMaxPool
	}
	if c.Hold == 0 {
		c.Hold = DefaultHold
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	return c
}

// Adaptive is the default Estimator. It measures the rate the node
// delivers when it is overloaded, as TCP BBR measures a path's bottleneck
// bandwidth, rather than keeping a concurrency limit and converting it
// (Little's law) into a rate: the data planes admit by rate, and a rate
// measured at the limit needs no conversion, nor a latency that holds
// still while the limit is probed. The loop, in one place:
//
//   - Signal: per window (the control tick), the executions that ended
//     and their latency at the objective's quantile, the platform's
//     refusals (429) and failures (502-504), the executions in progress,
//     and the demand on the node. A window of fewer than MinSamples
//     executions (and no refusal or failure) is pooled with the next, up
//     to MaxPool, unless the capacity itself lets fewer through.
//   - Objective: the function's own (Limits.Objective), else its 95th
//     percentile at most Tolerance times the 95th percentile of recent
//     executions that ran alone (and Slack above it): like compared with
//     like, so a function whose calls vary is not held to its median.
//     Executions that ran alone (no other of the function from their start
//     to their end) show the service time unqueued and unshared: queueing
//     cannot inflate it, so it does not drift up under sustained load
//     (Envoy's #11579), and it is a quantile of many, not a minimum a few
//     cheap calls pull down (Netflix concurrency-limits #125). Under
//     saturation nothing runs alone and it stays as it was; when a span's
//     solo executions are 1.5 times off its median (the service time), it
//     starts over from them (a quota, a neighbour, costlier inputs: today's
//     latency is not judged on yesterday's service), and if five or more
//     are slower by Slack or more, the capacity falls by the same factor
//     at once (30% at most; undone if the service steps back down within
//     Settle): a helper whose peers move their forwards away as it slows
//     may never be overloaded enough to be cut.
//   - Overload: a refusal, a failure, or more executions over the
//     objective (to the histogram's resolution) than its quantile allows,
//     by two standard deviations, and at least two (a window exactly at
//     the objective often has one or two more; one is the scheduler's
//     noise). An objective drawn from executions that ran alone is used
//     once there are five of them.
//   - Cut: to what ran in the span (never more than the capacity) times
//     sqrt(objective/latency), held to [0.7, 0.9]: every cut gives up a
//     tenth so that the queue the overload left drains, and none more
//     than 30% (a queue's latency measures the excess summed over time,
//     not the rate's excess: a deep cut for a long queue left the
//     capacity far under the limit, and a helper's cut moved its share
//     onto the others at once). What ran becomes the Ceiling; after a
//     probe above the Ceiling (or the start), the most that ran in a span
//     since it began (at most the capacity), if the cut's span ran at
//     least 80% of that (executions end no faster than the platform runs
//     them, so no span overstates the limit, and the cut's own span, with
//     work in progress, undercounts it: BBR keeps the most a path
//     delivered over recent rounds likewise; a span that ran far less is
//     a drop). No second
//     cut for Hold after one: the backlog drains, what runs meanwhile
//     raises the Ceiling (the span of the cut, with work in progress,
//     undercounts it), and the capacity to 60% of it at least. One cut
//     per overload: until a span is within the objective again, only a
//     queue that still grows cuts again. Never down to nothing (the trap
//     of Envoy's #8337).
//   - Growth, only while demand presses the capacity and latency is under
//     80% of the objective, never within Hold of a cut (so neither an idle
//     node nor a mildly overloaded one grows: the trap of Netflix
//     concurrency-limits #134). Demand presses at 80% of the capacity: a
//     helper is asked its peers' excess in proportion to its room, so all
//     helpers are asked the same part of what they advertise, and with
//     95% (as first built) the federation's adverts stopped 5% above its
//     demand - one helper's cut then turned users away at once. At 80% an
//     advert is at most 1.25 times what the node was asked (Netflix's
//     limiters grow only while in flight is half the limit or more).
//     Before any overload, doubling while demand is 95% of the capacity
//     (x1.25 past 80% of what the platform runs when busy, once that is
//     known: below); demand between 80% and 95% of it three spans in a
//     row ends the start there, with that capacity as a provisional
//     ceiling (demand exceeding it doubles again; an overload replaces
//     it); once the doubling is half again the most that ran, with demand
//     under 80% of it three spans in a row, back to 1.25 times the most
//     that ran, which becomes the Ceiling (a declared bound it began at
//     stands until an overload shows otherwise). After a cut, at once to
//     80% of the Ceiling, then x1.25 up to 90% of it, +1% a window up to
//     95%, then nothing until Settle after the cut; above that, probes of
//     3% whose step doubles every four in a row, up to 25%. Latency gives
//     no warning before the knee, so steps stay small near the last
//     limit.
//   - A helper is sent a part of its peers' excess in proportion to its
//     room, so it may never be asked all of its capacity. Busy 20% of a
//     span or more, it knows how fast it runs when busy (Little's law:
//     executions over the time at least one was in progress, a lower bound
//     for a function that runs calls in parallel), and grows toward 60% of
//     that (x1.25 a window), no further, with latency under 80% of the
//     objective. Not more: under a CPU quota a call runs faster at half
//     load than at saturation (the quota is enforced at the scheduler's
//     ticks, and a call after an idle gap meets a fresh period), and on the
//     testbed what a node ran per busy second at half load was 1.1 to 1.5
//     times what it ran saturated.
//   - Bounds: at most Limits.Max (and it starts there, trusting a declared
//     bound until it sees otherwise), and at most Limits.MaxInFlight calls
//     per service time; at least the lesser of Initial and one call per
//     service time, so that executions go on and it can recover.
//   - Time constant: one window per step. A drop in the true capacity shows
//     in the first overloaded window; a rise is found by probing, 3% and
//     more a window.
//
// It is safe for concurrent use.
type Adaptive struct {
	cfg Config

	mu      sync.Mutex
	started bool
	c       dfaas.Rate
	ceiling dfaas.Rate
	step    float64 // the next probe above the ceiling
	probes  int     // above the ceiling since the last cut
	cut     time.Time
	reason  string
	phase   string
	pool    Observation
	service time.Duration
	// solo is a histogram of recent solo executions, in soloScale units
	// of an execution, each window's older counts decayed.
	solo   proxy.Latencies
	solos  uint64     // executions that ran alone, since the service time last stepped
	full   dfaas.Rate // what ran per second of occupied time, by the latest span busy enough
	peak   dfaas.Rate // the most that ran in a span, before any ceiling
	probed dfaas.Rate // the most that ran in a span since the capacity went above the ceiling
	short  int        // spans in a row the start has outrun demand
	met    int        // spans in a row the start has met demand without exceeding it
	// provisional: the ceiling is where the start met demand, not an
	// overload: demand exceeding the capacity doubles it again.
	provisional bool
	stepF       dfaas.Rate // the factor of the latest step of the service time (0 once undone; past Settle, kept)
	stepAt      time.Time
	doubled     bool // the start doubled (not only a declared bound it began at)
	obj, lat    time.Duration
	quantile    float64
	inflight    int  // at the end of the last span judged
	episode     bool // cut, and no span within the objective since
}

// NewAdaptive returns an Adaptive estimator.
func NewAdaptive(cfg Config) (*Adaptive, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Adaptive{cfg: cfg.withDefaults(), step: probeFirst, phase: "start"}, nil
}

// Update implements Estimator.
func (a *Adaptive) Update(now time.Time, o Observation, l Limits) dfaas.Rate {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		a.started = true
		a.c = a.cfg.Initial
		if l.Max > 0 {
			a.c = l.Max // trust a declared bound until the node sees otherwise
		}
	}
	if o.Window <= 0 {
		return a.bounded(l)
	}
	// The service time: the median of recent solo executions, older
	// ones weighing less and less (a time constant of soloDecay windows).
	for i, c := range a.solo {
		a.solo[i] = c - c/soloDecay + o.Solo[i]*soloScale
	}
	a.solos += o.Solo.Count()
	if o.Solo.Count() > 0 {
		a.service = a.solo.Quantile(0.5)
	}
	inflight := a.inflight
	a.pool = pooled(a.pool, o)
	p := a.pool
	n := p.Latency.Count()
	// Judge on MinSamples executions, or on what the capacity lets through
	// when that is fewer, or on what MaxPool gathered.
	enough := n >= uint64(a.cfg.MinSamples) || p.Busy+p.Failed > 0 || p.Window >= a.cfg.MaxPool ||
		(n > 0 && float64(a.c)*p.Window.Seconds() < float64(a.cfg.MinSamples))
	if !enough {
		return a.bounded(l)
	}
	a.pool = Observation{}
	a.inflight = p.InFlight
	// The span's solo executions are far from the service time: it
	// stepped (a quota, a neighbour, other inputs). Start over from them,
	// rather than judge today's latency on yesterday's service.
	if k := p.Solo.Count(); k >= regime && a.service > 0 {
		if m := p.Solo.Quantile(0.5); float64(m) > stepped*float64(a.service) || float64(m) < float64(a.service)/stepped {
			for i, c := range p.Solo {
				a.solo[i] = c * soloScale
			}
			switch {
			case m-a.service >= a.cfg.Slack && k >= minSolo:
				// A call alone takes 1/f times as long: the node runs
				// about f as many (a quota cut, a neighbour on its CPU),
				// at once, rather than wait for an overload that peers,
				// seeing its forwards slow, may never send it. At most
				// a cut's depth a step, held for Hold against growth
				// (not against a cut: an overload in the same span still
				// cuts to what ran). The ceiling stays (a start that
				// never met one takes the capacity it had): if the step
				// was noise, demand brings the capacity back to it, and
				// a step back down within Settle undoes it; if it was
				// real, that meets an overload, whose cut sets the
				// ceiling to what runs now. Only a step of Slack or more,
				// seen in minSolo calls: a call of a few milliseconds
				// doubles on the scheduler's noise alone (the testbed's
				// echoes of half a millisecond lost their declared
				// capacity to it).
				f := max(dfaas.Rate(cutMin), dfaas.Rate(float64(a.service)/float64(m)))
				if a.ceiling == 0 {
					a.ceiling = a.c
				}
				a.c, a.probed, a.stepF, a.stepAt = a.c*f, 0, f, now
				a.reason, a.step, a.probes = fmt.Sprintf("a call alone took %v, not %v", m.Round(time.Millisecond), a.service.Round(time.Millisecond)), probeFirst, 0
			case m < a.service && a.stepF > 0 && now.Sub(a.stepAt) < a.cfg.Settle:
				// Back within Settle of a step down: it was noise.
				a.c, a.stepF = a.c/a.stepF, 0
			}
			a.service, a.solos = m, k
		}
	}
	a.quantile = l.Objective.Quantile
	if a.quantile == 0 {
		a.quantile = 0.95
	}
	a.obj = l.Objective.Latency
	if a.obj == 0 && a.service > 0 {
		// The same quantile of executions that ran alone, Tolerance times:
		// like compared with like, so that a function whose calls vary
		// (inputs, the scheduler's periods) is not held to its median.
		alone := a.solo.Quantile(a.quantile)
		a.obj = max(time.Duration(float64(alone)*a.cfg.Tolerance), alone+a.cfg.Slack)
	}
	a.lat = p.Latency.Quantile(a.quantile)
	ran := dfaas.Rate(float64(n-min(n, p.Failed)) / p.Window.Seconds())
	if a.ceiling == 0 {
		a.peak = max(a.peak, ran)
	}
	if a.c > a.ceiling {
		a.probed = max(a.probed, ran)
	}
	// What the platform runs a second when busy, from a span it was busy
	// enough to tell.
	if occ := p.Occupied.Seconds() / p.Window.Seconds(); occ >= minOccupied && ran > 0 {
		a.full = ran / dfaas.Rate(min(1, occ))
	}
	// Over the objective, to the histogram's resolution (a bucket is 6 to
	// 12% wide, and an objective drawn from it falls on a bucket's edge):
	// more executions above it than its quantile allows, by two standard
	// deviations (a small window at exactly the objective would often have
	// one or two more), and at least two. An objective of its own
	// is judged at once; one drawn from the executions that ran alone
	// waits for minSolo of them.
	judged := a.obj + a.obj/20
	known := l.Objective.Latency > 0 || a.solos >= minSolo
	slow := a.obj > 0 && known && a.lat > judged && float64(n-p.Latency.AtMost(judged)) > overAllowed(n, a.quantile)
	holding := !a.cut.IsZero() && now.Sub(a.cut) < a.cfg.Hold
	overloaded := p.Busy > 0 || p.Failed > 0 || slow
	// One cut per overload: after a cut, until a span is within the
	// objective again, the backlog it left drains, and only a queue that
	// still grows (the cut was not enough) cuts again.
	draining := a.episode && p.InFlight <= inflight
	if !overloaded {
		a.episode = false
	}
	switch {
	case overloaded && (holding || draining):
		// What runs while a backlog drains is the limit: the span of the
		// cut, with work in progress, undercounts it. Admitting 60% of it
		// drains the backlog, without the deeper cut that undercount made.
		if inflight > 0 {
			a.ceiling = max(a.ceiling, ran)
			a.c = max(a.c, drainShare*a.ceiling)
		}
		a.phase = "hold"
	case p.Busy > 0:
		a.cutTo(now, ran, cutMax, fmt.Sprintf("the platform refused %d", p.Busy))
	case p.Failed > 0:
		a.cutTo(now, ran, cutMax, fmt.Sprintf("the platform failed %d", p.Failed))
	case slow:
		f := min(cutMax, max(cutMin, math.Sqrt(float64(a.obj)/float64(a.lat))))
		a.cutTo(now, ran, f, fmt.Sprintf("p%g %v over %v", a.quantile*100, a.lat.Round(time.Millisecond), a.obj.Round(time.Millisecond)))
	default:
		a.grow(now, p, ran, holding)
	}
	return a.bounded(l)
}

// cutTo lowers the capacity to f times what ran (at most the capacity),
// and makes what ran the ceiling: what ran in the span of the cut, or,
// after a probe above the ceiling (or the start), the most that ran in a
// span since it began if the cut's span ran nearly as much. Executions end
// no faster than the platform runs them, so what ran in any span is at
// most what the node can run, and the span of the cut alone, with the
// queue's work in progress, undercounts it (BBR, likewise, keeps the most
// a path delivered over recent rounds). A cut at or below the ceiling, or
// one whose span ran far less than before, is a drop: what ran before it
// no longer tells.
func (a *Adaptive) cutTo(now time.Time, ran dfaas.Rate, f float64, reason string) {
	above := a.c > a.ceiling
	a.ceiling = ran
	if above && ran >= sameRegime*a.probed {
		a.ceiling = max(ran, min(a.probed, a.c))
	}
	a.probed, a.provisional = 0, false
	a.c = dfaas.Rate(f) * min(a.c, ran)
	a.cut, a.reason, a.phase, a.step, a.probes, a.episode = now, reason, "cut", probeFirst, 0, true
}

// grow raises the capacity if demand exceeds it and latency has room,
// or toward what the platform runs when busy.
func (a *Adaptive) grow(now time.Time, p Observation, ran dfaas.Rate, holding bool) {
	pressed := p.Demand >= demandMet*a.c
	if a.ceiling == 0 && pressed && p.Demand < demandOver*a.c {
		// The start ends where demand stops exceeding the capacity
		// (startWait spans in a row: a helper's demand follows its advert
		// a tick or two late): what it reached is the ceiling the probes
		// go on from. Until then it holds.
		if a.met++; a.met < startWait {
			a.phase = "hold"
			return
		}
		a.ceiling, a.provisional, a.probed = a.c, true, 0
	} else {
		a.met = 0
	}
	room := a.obj == 0 || a.lat <= time.Duration(headroom*float64(a.obj))
	if holding || !room || now.Sub(a.stepAt) < a.cfg.Hold {
		a.phase = "hold"
		return
	}
	if !pressed {
		// The start doubled well past what it was asked (half again the
		// most the node ran, demand under 80% of it, startWait spans in a
		// row: peers plan on an advert a tick or two old): back to a
		// margin over the most that ran, and call that its limit for now,
		// so that a doubling no demand ever tested does not stay
		// advertised.
		if a.doubled && a.ceiling == 0 && a.peak > 0 && a.c > 1.5*a.peak && p.Demand < 0.8*a.c {
			a.short++
		} else {
			a.short = 0
		}
		if a.short >= startWait {
			a.c = max(startBack*a.peak, fill*a.full)
			a.ceiling, a.provisional, a.probed = a.c, true, 0
			a.phase = "hold"
			return
		}
		// A helper's demand follows what it advertises: peers send it a
		// part of their excess in proportion to its room, so it may never
		// be asked all it can run. Busy a good part of the time, it knows
		// how fast it runs when busy (Little's law: what ran over the
		// time occupied), and grows to a part of that, no further.
		if a.full > 0 && a.c < fill*a.full {
			a.c = min(a.c*recoverStep, fill*a.full)
			a.phase = "fill"
			return
		}
		a.phase = "hold"
		return
	}
	a.short = 0
	switch {
	case a.ceiling == 0 || (a.provisional && p.Demand >= demandOver*a.c):
		// Doubling, but not far past what the platform runs when busy
		// (which overstates it: see fill), where that is known.
		next := 2 * a.c
		if a.full > 0 {
			next = min(next, max(a.c*recoverStep, startFull*a.full))
		}
		a.c = next
		a.doubled = true
		a.phase = "start"
	case a.c < 0.9*a.ceiling:
		// Back at once to most of what the node ran at its limit.
		a.c = min(max(a.c*recoverStep, 0.8*a.ceiling), 0.9*a.ceiling)
		a.phase = "probe"
	case a.c < 0.95*a.ceiling:
		a.c = min(a.c*(1+probeFirst/3), 0.95*a.ceiling)
		a.phase = "probe"
	case now.Sub(a.cut) < a.cfg.Settle:
		// Just under the limit last measured: stay a while before
		// probing above it.
		a.phase = "hold"
	default:
		// Latency gives no warning before the knee: steps stay small near
		// the last limit, and grow only as probes keep succeeding.
		a.c *= dfaas.Rate(1 + a.step)
		a.probes++
		if a.probes%probeRun == 0 {
			a.step = min(probeMax, 2*a.step)
		}
		a.phase = "probe"
	}
	a.c = min(a.c, dfaas.MaxRate)
}

// bounded holds the capacity above its floor and returns it.
func (a *Adaptive) bounded(l Limits) dfaas.Rate {
	floor := a.cfg.Initial
	if a.service > 0 {
		floor = min(floor, dfaas.Rate(float64(time.Second)/float64(a.service)))
	}
	if l.Max > 0 {
		floor = min(floor, l.Max)
	}
	a.c = max(a.c, floor)
	if l.Max > 0 {
		a.c = min(a.c, l.Max)
	}
	if l.MaxInFlight > 0 && a.service > 0 {
		a.c = min(a.c, dfaas.Rate(float64(l.MaxInFlight)*float64(time.Second)/float64(a.service)))
	}
	return a.c
}

// State implements Estimator.
func (a *Adaptive) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return State{Capacity: a.c, Ceiling: a.ceiling, Full: a.full, Service: a.service, Objective: a.obj, Quantile: a.quantile,
		Latency: a.lat, Phase: a.phase, Reason: a.reason, Cut: a.cut}
}

// pooled adds o to the pool p.
func pooled(p, o Observation) Observation {
	p.Window += o.Window
	p.Latency = p.Latency.Add(o.Latency)
	p.Solo = p.Solo.Add(o.Solo)
	p.Busy += o.Busy
	p.Failed += o.Failed
	p.InFlight = o.InFlight
	p.Occupied += o.Occupied
	// Demand is a rate: weigh each window by its span.
	if p.Window > 0 {
		p.Demand += (o.Demand - p.Demand) * dfaas.Rate(o.Window.Seconds()/p.Window.Seconds())
	}
	return p
}

// overAllowed is how many of n executions may be over the objective's
// quantile q before the window counts as over it: the expected number plus
// two standard deviations (binomial), and at least one.
func overAllowed(n uint64, q float64) float64 {
	mean := float64(n) * (1 - q)
	return max(1, mean+2*math.Sqrt(mean*q))
}

var _ Estimator = (*Adaptive)(nil)
