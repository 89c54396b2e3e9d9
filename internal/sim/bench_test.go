package sim

import (
	"context"
	"testing"

	"github.com/dfaas-go/dfaas/balance"
)

// BenchmarkHundredNodesHour simulates 100 nodes for one hour at 1 s ticks.
func BenchmarkHundredNodesHour(b *testing.B) {
	sc := Diurnal(100, 3600, 600, 1)
	for b.Loop() {
		if _, err := Run(context.Background(), Config{Scenario: sc, Strategy: balance.Proportional{}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkShort is a quick profile target: 100 nodes for 5 minutes.
func BenchmarkShort(b *testing.B) {
	sc := Diurnal(100, 300, 600, 1)
	for b.Loop() {
		if _, err := Run(context.Background(), Config{Scenario: sc, Strategy: balance.Proportional{}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkThousandNodes is a profile target: 1000 nodes, 3 ticks.
func BenchmarkThousandNodes(b *testing.B) {
	sc := Hotspot(1000, 3, 5, 1)
	for b.Loop() {
		if _, err := Run(context.Background(), Config{Scenario: sc, Strategy: balance.Resilient{}}); err != nil {
			b.Fatal(err)
		}
	}
}
