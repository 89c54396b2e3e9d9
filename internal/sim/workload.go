package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// The workloads below are deterministic for a seed. Demands are piecewise
// constant over ticks.

func names(prefix string, n int) []string {
	out := make([]string, n)
	w := len(fmt.Sprint(n))
	for i := range out {
		out[i] = fmt.Sprintf("%s%0*d", prefix, w, i+1)
	}
	return out
}

func uniform(nodes, fns int, c float64) [][]float64 {
	out := make([][]float64, nodes)
	for i := range out {
		out[i] = make([]float64, fns)
		for f := range out[i] {
			out[i][f] = c
		}
	}
	return out
}

func rng(seed uint64, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

// Reference is the paper's experiment: capacities 10/20/30, 50 req/s at
// node 1 only.
func Reference(ticks int) Scenario {
	return Scenario{Name: "reference", Nodes: []string{"1", "2", "3"}, Functions: []string{"figlet"},
		Capacity: [][]float64{{10}, {20}, {30}}, Ticks: ticks,
		Demand: func(_, n, _ int) float64 { return []float64{50, 0, 0}[n] }}
}

// Drift is the reference federation under 45 req/s at node 1 whose node 2
// loses half its CPU budget (a quota cut, a noisy neighbour) for the
// middle third of the run: capacity that drifts under load.
func Drift(ticks int) Scenario {
	sc := Reference(ticks)
	sc.Name = "drift-3"
	sc.Demand = func(t, n, f int) float64 {
		if n == 0 {
			return 45
		}
		return 0
	}
	sc.CPU = func(t, n int) float64 {
		if n == 1 && t >= ticks/3 && t < 2*ticks/3 {
			return 0.5
		}
		return 1
	}
	return sc
}

// Hotspot models mobile users: every node has a light base load, and a
// crowd of hot req/s moves to the next node every period ticks.
func Hotspot(nodes, ticks, period int, seed uint64) Scenario {
	r := rng(seed, 1)
	base := make([]float64, nodes)
	for i := range base {
		base[i] = 3 + 4*r.Float64()
	}
	const capacity, hot = 20.0, 60.0
	return Scenario{Name: fmt.Sprintf("hotspot-%d", nodes), Nodes: names("n", nodes), Functions: []string{"figlet"},
		Capacity: uniform(nodes, 1, capacity), Ticks: ticks,
		Demand: func(t, n, _ int) float64 {
			if (t/period)%nodes == n {
				return base[n] + hot
			}
			return base[n]
		}}
}

// Diurnal gives every node a daily cycle (compressed to period ticks) with
// its own phase, as nodes in different places see, plus 10% noise; nodes
// have capacities between 10 and 40 req/s and a mean load of 60%.
func Diurnal(nodes, ticks, period int, seed uint64) Scenario {
	r := rng(seed, 2)
	capacity := make([][]float64, nodes)
	phase := make([]float64, nodes)
	for i := range nodes {
		capacity[i] = []float64{10 + 30*r.Float64()}
		phase[i] = 2 * math.Pi * r.Float64()
	}
	noise := make([]float64, nodes*ticks)
	for i := range noise {
		noise[i] = 1 + 0.1*r.NormFloat64()
	}
	return Scenario{Name: fmt.Sprintf("diurnal-%d", nodes), Nodes: names("n", nodes), Functions: []string{"figlet"},
		Capacity: capacity, Ticks: ticks,
		Demand: func(t, n, _ int) float64 {
			cycle := 1 + 0.7*math.Sin(2*math.Pi*float64(t)/float64(period)+phase[n])
			return 0.6 * capacity[n][0] * cycle * noise[t*nodes+n]
		}}
}

// FlashCrowd keeps every node at 40% load and hits one node with six times
// its capacity for a minute, twice.
func FlashCrowd(nodes, ticks int, seed uint64) Scenario {
	r := rng(seed, 3)
	capacity := make([][]float64, nodes)
	for i := range nodes {
		capacity[i] = []float64{10 + 20*r.Float64()}
	}
	victim := r.IntN(nodes)
	return Scenario{Name: fmt.Sprintf("flash-crowd-%d", nodes), Nodes: names("n", nodes), Functions: []string{"figlet"},
		Capacity: capacity, Ticks: ticks,
		Demand: func(t, n, _ int) float64 {
			d := 0.4 * capacity[n][0]
			inCrowd := (t >= ticks/5 && t < ticks/5+60) || (t >= 3*ticks/5 && t < 3*ticks/5+60)
			if n == victim && inCrowd {
				d = 6 * capacity[n][0]
			}
			return d
		}}
}

// Heterogeneous mixes small and large nodes (5 to 100 req/s) under demand
// that drifts as a bounded random walk, with the small nodes busiest.
func Heterogeneous(nodes, ticks int, seed uint64) Scenario {
	r := rng(seed, 4)
	sizes := []float64{5, 10, 50, 100}
	capacity := make([][]float64, nodes)
	for i := range nodes {
		capacity[i] = []float64{sizes[i%len(sizes)]}
	}
	demand := make([]float64, nodes*ticks)
	for i := range nodes {
		level := 20.0
		for t := range ticks {
			level = min(60, max(0, level+2*r.NormFloat64()))
			demand[t*nodes+i] = level
		}
	}
	return Scenario{Name: fmt.Sprintf("heterogeneous-%d", nodes), Nodes: names("n", nodes), Functions: []string{"figlet"},
		Capacity: capacity, Ticks: ticks,
		Demand: func(t, n, _ int) float64 { return demand[t*nodes+n] }}
}

// ManyFunctions runs fns functions with their own capacities per node; each
// function's demand concentrates on a node that changes every period ticks.
func ManyFunctions(nodes, fns, ticks, period int, seed uint64) Scenario {
	r := rng(seed, 5)
	capacity := make([][]float64, nodes)
	for i := range nodes {
		capacity[i] = make([]float64, fns)
		for f := range fns {
			capacity[i][f] = 2 + 8*r.Float64()
		}
	}
	hot := make([]int, fns*(ticks/period+1))
	for i := range hot {
		hot[i] = r.IntN(nodes)
	}
	total := make([]float64, fns)
	for f := range fns {
		for i := range nodes {
			total[f] += capacity[i][f]
		}
	}
	return Scenario{Name: fmt.Sprintf("many-functions-%d", nodes), Nodes: names("n", nodes), Functions: names("fn-", fns),
		Capacity: capacity, Ticks: ticks,
		Demand: func(t, n, f int) float64 {
			if hot[(t/period)*fns+f] == n {
				return 0.5 * total[f] // half the federation's capacity, at one node
			}
			return 0.1 * capacity[n][f]
		}}
}

// Lossy runs sc over a network that delays adverts by a third of a tick and
// loses one in five.
func Lossy(sc Scenario) Scenario {
	sc.Name += "-lossy"
	sc.Delay, sc.Loss = 300*time.Millisecond, 0.2
	return sc
}

// Geo spreads sc's nodes over a region: each gets a random place in a
// square, and the round trip between two is 1 ms plus 60 ms per side of the
// square between them (1 to 86 ms: within Nearest's default budget, so
// every strategy may use every peer and only the distance travelled
// differs).
func Geo(sc Scenario, seed uint64) Scenario {
	r := rng(seed, 7)
	xs, ys := make([]float64, len(sc.Nodes)), make([]float64, len(sc.Nodes))
	for i := range xs {
		xs[i], ys[i] = r.Float64(), r.Float64()
	}
	sc.Name += "-geo"
	sc.RTT = func(a, b int) time.Duration {
		d := math.Hypot(xs[a]-xs[b], ys[a]-ys[b])
		return time.Millisecond + time.Duration(d*60*float64(time.Millisecond))
	}
	return sc
}

// Standard is the workload set of the comparison table.
func Standard(seed uint64) []Scenario {
	return []Scenario{
		Reference(300),
		Drift(300),
		Hotspot(10, 600, 60, seed),
		Lossy(Hotspot(10, 600, 5, seed)),
		Diurnal(10, 1200, 300, seed),
		FlashCrowd(10, 600, seed),
		Heterogeneous(12, 600, seed),
		ManyFunctions(10, 20, 600, 60, seed),
		Lossy(ManyFunctions(10, 20, 600, 10, seed)),
		Diurnal(100, 600, 300, seed),
		Geo(Hotspot(10, 600, 60, seed), seed),
		Geo(Diurnal(100, 600, 300, seed), seed),
		Hotspot(1000, 120, 10, seed),
		Diurnal(1000, 300, 150, seed),
		Geo(Hotspot(1000, 120, 10, seed), seed),
	}
}

// Scale is the workload set of federations of ten thousand nodes, run on
// request (go run ./examples/sim -workloads scale).
func Scale(seed uint64) []Scenario {
	return []Scenario{
		Hotspot(10000, 30, 10, seed),
		Diurnal(10000, 60, 60, seed),
		Geo(Hotspot(10000, 30, 10, seed), seed),
	}
}
