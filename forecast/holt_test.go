package forecast

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

func next(f dfaas.Forecaster) float64 { return float64(f.Predict(time.Time{}, time.Second)["a"]) }

func TestHoltFollowsATrend(t *testing.T) {
	h, err := NewHolt(0.5, 0.3)
	require.NoError(t, err)
	for i := range 10 {
		h.Observe(sample(map[string]dfaas.Rate{"a": dfaas.Rate(10 + 2*i)}))
	}
	assert.InDelta(t, 30, next(h), 1e-9, "a ramp 10, 12, ..., 28 continues to 30")
	var l LastValue
	l.Observe(sample(map[string]dfaas.Rate{"a": 28}))
	assert.InDelta(t, 28, next(&l), 0, "last value lags the ramp by one step")

	for range 20 { // a falling demand never predicts below zero
		h.Observe(sample(map[string]dfaas.Rate{"a": 0}))
	}
	assert.GreaterOrEqual(t, next(h), 0.0)
}

// oneStepMAE feeds series to f and measures its one-step-ahead error from
// sample skip on.
func oneStepMAE(f dfaas.Forecaster, series []float64, skip int) float64 {
	var sum float64
	for i, y := range series {
		if i >= skip {
			sum += math.Abs(next(f) - y)
		}
		f.Observe(sample(map[string]dfaas.Rate{"a": dfaas.Rate(y)}))
	}
	return sum / float64(len(series)-skip)
}

func TestHoltWintersLearnsASeason(t *testing.T) {
	const period = 24
	series := make([]float64, 10*period)
	for i := range series {
		series[i] = 50 + 30*math.Sin(2*math.Pi*float64(i)/period) + 0.05*float64(i)
	}
	hw, err := NewHoltWinters(0.5, 0.1, 0.3, period)
	require.NoError(t, err)
	hwMAE := oneStepMAE(hw, series, 4*period)
	lastMAE := oneStepMAE(&LastValue{}, series, 4*period)
	t.Logf("one-step MAE: holt-winters %.3f, last value %.3f", hwMAE, lastMAE)
	assert.Less(t, hwMAE, 0.5)
	assert.Less(t, hwMAE, lastMAE/5)
}

func TestHoltWintersBeforeTwoSeasonsActsAsHolt(t *testing.T) {
	hw, err := NewHoltWinters(0.5, 0.3, 0.3, 50)
	require.NoError(t, err)
	h, err := NewHolt(0.5, 0.3)
	require.NoError(t, err)
	for i := range 20 {
		s := sample(map[string]dfaas.Rate{"a": dfaas.Rate(i * i)})
		hw.Observe(s)
		h.Observe(s)
		assert.InDelta(t, next(h), next(hw), 1e-9)
	}
}

func TestForecasterByNameAndBadParameters(t *testing.T) {
	for _, name := range []string{"last", "ewma", "holt", "holt-winters:24"} {
		f, err := ByName(name)
		require.NoError(t, err, name)
		f.Observe(sample(map[string]dfaas.Rate{"a": 3}))
		assert.InDelta(t, 3, next(f), 1e-9, name)
	}
	for _, name := range []string{"oracle", "holt-winters:1", "holt-winters:x"} {
		_, err := ByName(name)
		assert.Error(t, err, name)
	}
	_, err := NewHolt(0, 0.5)
	assert.Error(t, err)
	_, err = NewHoltWinters(0.5, 0.5, 2, 10)
	assert.Error(t, err)
}
