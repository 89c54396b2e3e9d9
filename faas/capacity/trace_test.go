package capacity_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/internal/plant"
)

func TestTrace(t *testing.T) {
	if os.Getenv("TRACE") == "" {
		t.Skip()
	}
	cores, _ := strconv.ParseFloat(os.Getenv("CORES"), 64)
	demand, _ := strconv.ParseFloat(os.Getenv("DEMAND"), 64)
	est, _ := capacity.NewAdaptive(capacity.Config{})
	l := &plant.Loop{Station: plant.New(plant.Config{Cores: cores}), Estimator: est, Poisson: os.Getenv("POISSON") != "",
		Rate: func(time.Duration) float64 { return demand }, Cost: plant.Lognormal(10*time.Millisecond, cvOf()), Seed: 1,
		Event: func(t time.Duration, s *plant.Station) {
			if os.Getenv("DROP") != "" && t == 30*time.Second {
				s.SetCores(t, cores/2)
			}
			if os.Getenv("DROP") != "" && t == 60*time.Second {
				s.SetCores(t, cores)
			}
		}}
	l.RunEach(90*time.Second, func(tk plant.Tick) {
		s := est.State()
		fmt.Printf("%3.0f cap %6.2f adm %3d ran %3d p95 %4.0fms %-5s svc %4.0fms obj %4.0fms lat %4.0fms ceil %5.1f %s\n", tk.At.Seconds(), tk.Capacity, tk.Admitted, tk.Ran,
			float64(tk.P95)/1e6, s.Phase, float64(s.Service)/1e6, float64(s.Objective)/1e6, float64(s.Latency)/1e6, s.Ceiling, s.Reason)
	})
}

func cvOf() float64 {
	if os.Getenv("CV0") != "" {
		return 0.05
	}
	return 0.3
}
