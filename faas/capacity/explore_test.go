package capacity_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/internal/plant"
	"github.com/dfaas-go/dfaas/proxy"
)

type fixed dfaas.Rate

func (f fixed) Update(time.Time, capacity.Observation, capacity.Limits) dfaas.Rate {
	return dfaas.Rate(f)
}
func (f fixed) State() capacity.State { return capacity.State{} }

func pooledQ(ticks []plant.Tick, from int, q float64) time.Duration {
	var h proxy.Latencies
	for _, t := range ticks[from:] {
		h = h.Add(t.Latency)
	}
	return h.Quantile(q)
}

func TestExplore(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		t.Skip()
	}
	poisson := os.Getenv("POISSON") != ""
	cv := 0.3
	if os.Getenv("CV0") != "" {
		cv = 0.05
	}
	for _, cores := range []float64{0.1, 0.2, 0.3} {
		mk := func(est capacity.Estimator, r float64, seed uint64) *plant.Loop {
			return &plant.Loop{Station: plant.New(plant.Config{Cores: cores}), Estimator: est, Poisson: poisson,
				Rate: func(time.Duration) float64 { return r }, Cost: plant.Lognormal(10*time.Millisecond, cv), Seed: seed}
		}
		unloaded := pooledQ(mk(fixed(0.5), 0.5, 3).Run(200*time.Second), 0, 0.95)
		truth := 0.0
		for r := 1.0; r < 40; r += 0.5 {
			if pooledQ(mk(fixed(r), r, 2).Run(120*time.Second), 5, 0.95) <= 2*unloaded {
				truth = r
			}
		}
		for _, demand := range []float64{50, 1.2 * truth} {
			est, _ := capacity.NewAdaptive(capacity.Config{})
			ticks := mk(est, demand, 1).Run(120 * time.Second)
			var sum, ran float64
			var n, over int
			first := -1
			for _, tk := range ticks[15:] {
				sum += float64(tk.Capacity)
				ran += float64(tk.Ran)
				n++
				if tk.P95 > 2*unloaded {
					over++
				}
			}
			for i, tk := range ticks {
				if first < 0 && float64(tk.Capacity) >= 0.9*truth {
					first = i + 1
				}
			}
			fmt.Printf("cores %.1f unloaded p95 %v truth %.1f demand %.0f: mean cap %.2f (%.0f%%) ran %.2f first>=90%% at %ds, p95 %v (%.2fx), ticks over %d/%d\n",
				cores, unloaded.Round(time.Millisecond), truth, demand, sum/float64(n), 100*sum/float64(n)/truth, ran/float64(n), first,
				pooledQ(ticks, 15, 0.95).Round(time.Millisecond), float64(pooledQ(ticks, 15, 0.95))/float64(unloaded), over, n)
		}
	}
}
