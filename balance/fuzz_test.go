package balance

import (
	"math"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas"
)

// FuzzPlanIsFinite: for any state and peers' adverts within the federation's
// bounds (rates from 0 to dfaas.MaxRate, the tiniest positive ones
// included), every strategy plans finite, non-negative limits and caps, and
// every peer it lists has a finite positive weight: a member advertising
// absurd but valid rates cannot turn the plan into NaN or silence the
// others. The long run is
//
//	go test -run '^$' -fuzz FuzzPlanIsFinite -fuzztime 60s ./balance/
func FuzzPlanIsFinite(f *testing.F) {
	f.Add(10.0, 50.0, 20.0, 0.0, 30.0, 0.0)
	f.Add(10.0, 50.0, float64(dfaas.MaxRate), 0.0, 30.0, 0.0)
	f.Add(0.0, float64(dfaas.MaxRate), float64(dfaas.MaxRate), 0.0, 5e-324, 0.0)
	f.Add(1e-300, 1e-300, float64(dfaas.MaxRate), float64(dfaas.MaxRate), 1e-300, 0.0)
	f.Fuzz(func(t *testing.T, myCap, myDemand, p1Cap, p1Demand, p2Cap, p2Demand float64) {
		clamp := func(v float64) dfaas.Rate {
			if math.IsNaN(v) || v < 0 {
				return 0
			}
			return min(dfaas.Rate(v), dfaas.MaxRate)
		}
		self := dfaas.State{Node: "self", Time: time.Unix(0, 0), Functions: map[string]dfaas.FunctionState{
			"fn": {Capacity: clamp(myCap), Demand: clamp(myDemand)}}}
		peers := []dfaas.Advert{
			{Node: "p1", Seq: 1, TTL: time.Second, Addr: "10.0.0.1:1", Functions: map[string]dfaas.FunctionState{"fn": {Capacity: clamp(p1Cap), Demand: clamp(p1Demand)}}},
			{Node: "p2", Seq: 1, TTL: time.Second, Addr: "10.0.0.2:1", Functions: map[string]dfaas.FunctionState{"fn": {Capacity: clamp(p2Cap), Demand: clamp(p2Demand)}}},
		}
		for _, a := range peers {
			if err := a.Validate(); err != nil {
				t.Fatalf("test advert invalid: %v", err)
			}
		}
		finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }
		for _, name := range Names() {
			b, err := ByName(name)
			if err != nil {
				t.Fatal(err)
			}
			plan := b.Plan(self, peers)
			for fn, fp := range plan.Functions {
				if !finite(float64(fp.Limit)) || !finite(float64(fp.Capacity)) {
					t.Fatalf("%s: %s: limit %v capacity %v", name, fn, fp.Limit, fp.Capacity)
				}
				for _, s := range fp.Peers {
					if !finite(float64(s.Cap)) || !finite(s.Weight) || !(s.Weight > 0) {
						t.Fatalf("%s: %s: peer %s weight %v cap %v", name, fn, s.Node, s.Weight, s.Cap)
					}
				}
			}
		}
	})
}
