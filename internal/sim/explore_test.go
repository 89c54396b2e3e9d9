package sim

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas/balance"
)

func TestExplore(t *testing.T) {
	if os.Getenv("EXPLORE") == "" {
		return
	}
	for _, net := range []struct {
		d time.Duration
		l float64
	}{{0, 0}} {
		for _, sc := range Standard(1)[:9] {
			for _, b := range balance.Names() {
				strategy, _ := balance.ByName(b)
				res, err := Run(context.Background(), Config{Scenario: sc, Strategy: strategy, Delay: net.d, Loss: net.l, Seed: 1})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%v/%v %-20s %-12s served/opt %.4f rejected %.2f%% fwd %.2f%% retried %.0f reaction %.1f",
					net.d, net.l, sc.Name, b, res.ServedOverOptimum, res.RejectedPct, res.ForwardedPct, res.Retried, res.ReactionS)
			}
		}
	}
}
