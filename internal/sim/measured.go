package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/internal/plant"
	"github.com/dfaas-go/dfaas/proxy"
)

// settle is the ticks of learning a measured run's figures leave out.
const settle = 15

// measured is a run's model of the nodes' platforms and their capacity
// estimators (Config.Measured): per node and function, a processor-sharing
// station whose CPU budget runs the scenario's capacity, and an estimator
// fed what the station did with what the node admitted, as a Monitor feeds
// one from its data plane's counts.
type measured struct {
	sc       Scenario
	interval time.Duration
	cost     time.Duration
	stations [][]*plant.Station // [node][function]
	est      [][]capacity.Estimator
	obs      [][]capacity.Observation
	carry    [][]float64 // fractional arrivals carried to the next tick
	capacity [][]dfaas.Rate
	rng      *rand.Rand
	costOf   func(*rand.Rand) time.Duration

	execs    proxy.Latencies // after settle
	timeouts float64
	errSum   float64
	errN     int
}

func newMeasured(sc Scenario, cfg Config) (*measured, error) {
	cost := cfg.Cost
	if cost == 0 {
		cost = 10 * time.Millisecond
	}
	mk := cfg.Estimator
	if mk == nil {
		mk = func() capacity.Estimator {
			a, _ := capacity.NewAdaptive(capacity.Config{})
			return a
		}
	}
	nn, nf := len(sc.Nodes), len(sc.Functions)
	m := &measured{sc: sc, interval: cfg.Interval, cost: cost, rng: rand.New(rand.NewPCG(cfg.Seed, 77)), costOf: plant.Lognormal(cost, 0.05)}
	m.stations = make([][]*plant.Station, nn)
	m.est = make([][]capacity.Estimator, nn)
	m.obs = make([][]capacity.Observation, nn)
	m.carry = make([][]float64, nn)
	m.capacity = make([][]dfaas.Rate, nn)
	for i := range nn {
		m.stations[i] = make([]*plant.Station, nf)
		m.est[i] = make([]capacity.Estimator, nf)
		m.obs[i] = make([]capacity.Observation, nf)
		m.carry[i] = make([]float64, nf)
		m.capacity[i] = make([]dfaas.Rate, nf)
		for f := range nf {
			m.stations[i][f] = plant.New(plant.Config{Cores: m.cores(-1, i, f)})
			m.est[i][f] = mk()
			m.capacity[i][f] = m.est[i][f].Update(epoch, capacity.Observation{}, capacity.Limits{})
		}
	}
	return m, nil
}

// cores is the CPU budget that runs node i's true capacity for f during
// tick t.
func (m *measured) cores(t, i, f int) float64 {
	return max(1e-6, m.sc.capacityAt(max(0, t), i, f)*m.cost.Seconds())
}

// run feeds tick t's executions of function f into the stations: what each
// node ran locally and received, spread evenly over the tick.
func (m *measured) run(t, f int, fl flows, demand, truth []float64, plans []dfaas.FunctionPlan) {
	start := time.Duration(t) * m.interval
	end := start + m.interval
	secs := m.interval.Seconds()
	for i, st := range m.stations {
		s := st[f]
		s.SetCores(start, m.cores(t, i, f))
		x := (fl.local[i]+fl.received[i])*secs + m.carry[i][f]
		k := int(math.Floor(x))
		m.carry[i][f] = x - float64(k)
		for j := range k {
			s.Submit(start+time.Duration(float64(j)+0.5)*m.interval/time.Duration(k), m.costOf(m.rng))
		}
		s.Advance(end)
		o := s.Observe(m.interval)
		if t >= settle {
			m.timeouts += float64(o.Failed)
		}
		// Demand on the node: its users' and what peers sent it.
		o.Demand = dfaas.Rate(demand[i] + fl.received[i])
		m.obs[i][f] = o
		if t >= settle {
			m.execs = m.execs.Add(o.Latency)
			if truth[i] > 0 {
				m.errSum += math.Abs(float64(m.capacity[i][f])-truth[i]) / truth[i]
				m.errN++
			}
		}
	}
}

// learn updates every estimator with the tick just run.
func (m *measured) learn(now time.Time) {
	for i := range m.est {
		for f, e := range m.est[i] {
			m.capacity[i][f] = e.Update(now, m.obs[i][f], capacity.Limits{})
		}
	}
}

func (m *measured) report(r *Result) {
	r.ExecP95ms = float64(m.execs.Quantile(0.95)) / float64(time.Millisecond)
	r.Timeouts = m.timeouts
	if m.errN > 0 {
		r.CapacityErrPct = 100 * m.errSum / float64(m.errN)
	}
}
