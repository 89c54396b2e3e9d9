package sim

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/balance"
)

func TestReferenceScenario(t *testing.T) {
	res, err := Run(context.Background(), Config{Scenario: Reference(60), Strategy: balance.Proportional{}})
	require.NoError(t, err)
	t.Logf("%+v", res.Ticks[:3])
	assert.InDelta(t, 1, res.ServedOverOptimum, 0.001)
}

func TestStandardWorkloads(t *testing.T) {
	for _, sc := range Standard(1) {
		for _, b := range []string{"proportional", "all-local"} {
			strategy, _ := balance.ByName(b)
			res, err := Run(context.Background(), Config{Scenario: sc, Strategy: strategy})
			require.NoError(t, err)
			t.Logf("%-20s %-12s served/opt %.4f rejected %.2f%% fwd %.2f%% hops %.2f msgs %.0f bytes %.0f reaction %.1f mae %.2f",
				sc.Name, b, res.ServedOverOptimum, res.RejectedPct, res.ForwardedPct, res.MeanHops, res.ControlMsgsPerNodeS, res.ControlBytesPerNodeS, res.ReactionS, res.ForecastMAE)
		}
	}
}
