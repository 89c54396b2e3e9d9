// Package sim is a deterministic, discrete-time simulator of a federation.
// It runs the real control logic - one dfaas.Agent per node with the chosen
// Balancer and Forecaster, adverts over the in-memory overlay with delay and
// loss - against a workload, models the data plane as fluid flows with the
// embedded proxy's rules, and compares what was served with the optimum.
package sim

import (
	"fmt"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Scenario is a federation and the demand offered to it.
type Scenario struct {
	// Name identifies the workload in reports.
	Name string
	// Nodes names the nodes; Functions names the functions.
	Nodes     []string
	Functions []string
	// Capacity[n][f] is node n's capacity for function f, in req/s.
	Capacity [][]float64
	// Ticks is the length of the run in control intervals.
	Ticks int
	// Demand returns the user demand at node n for function f during tick t,
	// in req/s. It must be a pure function of its arguments.
	Demand func(t, n, f int) float64
	// Delay and Loss are the adverts' network conditions in this workload;
	// a Config's non-zero values override them.
	Delay time.Duration
	Loss  float64
	// RTT, if set, is the round-trip time between nodes a and b (the same
	// both ways): the agents' overlays report it (dfaas.RTTMeter), and the
	// run measures how far forwarded requests travel. Nil: a LAN, no RTT
	// measured.
	RTT func(a, b int) time.Duration
	// CPU, if set, scales node n's CPU budget during tick t (1: as
	// Capacity says; 0.5: a quota halved or a neighbour taking half):
	// capacity drift, which runs with Config.Measured learn.
	CPU func(t, n int) float64
}

// capacityAt is node n's true capacity for function f during tick t.
func (s Scenario) capacityAt(t, n, f int) float64 {
	c := s.Capacity[n][f]
	if s.CPU != nil {
		c *= max(0, s.CPU(t, n))
	}
	return c
}

// Validate checks the scenario's shape.
func (s Scenario) Validate() error {
	switch {
	case len(s.Nodes) == 0 || len(s.Functions) == 0:
		return fmt.Errorf("%w: sim: scenario %q has no nodes or no functions", dfaas.ErrInvalidConfig, s.Name)
	case len(s.Capacity) != len(s.Nodes):
		return fmt.Errorf("%w: sim: scenario %q: %d capacity rows for %d nodes", dfaas.ErrInvalidConfig, s.Name, len(s.Capacity), len(s.Nodes))
	case s.Ticks <= 0 || s.Demand == nil:
		return fmt.Errorf("%w: sim: scenario %q: no ticks or no demand", dfaas.ErrInvalidConfig, s.Name)
	}
	for n, row := range s.Capacity {
		if len(row) != len(s.Functions) {
			return fmt.Errorf("%w: sim: scenario %q: node %s has %d capacities for %d functions", dfaas.ErrInvalidConfig, s.Name, s.Nodes[n], len(row), len(s.Functions))
		}
		for f, c := range row {
			if !(c >= 0) {
				return fmt.Errorf("%w: sim: scenario %q: capacity %v of %s/%s", dfaas.ErrInvalidConfig, s.Name, c, s.Nodes[n], s.Functions[f])
			}
		}
	}
	for _, f := range s.Functions {
		if err := dfaas.ValidateFunctionName(f); err != nil {
			return fmt.Errorf("sim: scenario %q: %w", s.Name, err)
		}
	}
	return nil
}
