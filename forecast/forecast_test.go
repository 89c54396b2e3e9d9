package forecast

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

func sample(rates map[string]dfaas.Rate) dfaas.Sample {
	s := dfaas.Sample{Functions: map[string]dfaas.FunctionSample{}}
	for n, r := range rates {
		s.Functions[n] = dfaas.FunctionSample{Arrivals: r}
	}
	return s
}

func TestLastValue(t *testing.T) {
	var l LastValue
	assert.Empty(t, l.Predict(time.Time{}, time.Second))
	l.Observe(sample(map[string]dfaas.Rate{"a": 5, "b": 7}))
	l.Observe(sample(map[string]dfaas.Rate{"a": 9}))
	got := l.Predict(time.Time{}, time.Second)
	assert.Equal(t, map[string]dfaas.Rate{"a": 9}, got)
	got["a"] = 100 // the caller's copy
	assert.Equal(t, dfaas.Rate(9), l.Predict(time.Time{}, time.Second)["a"])
}

func TestEWMA(t *testing.T) {
	e, err := NewEWMA(0.5)
	require.NoError(t, err)
	for _, r := range []dfaas.Rate{10, 20, 20} {
		e.Observe(sample(map[string]dfaas.Rate{"a": r}))
	}
	// 10 → 15 → 17.5
	assert.InDelta(t, 17.5, float64(e.Predict(time.Time{}, time.Second)["a"]), 1e-9)
	e.Observe(sample(map[string]dfaas.Rate{"b": 3}))
	assert.Equal(t, map[string]dfaas.Rate{"b": 3}, e.Predict(time.Time{}, time.Second))
}

func TestEWMARejectsBadAlpha(t *testing.T) {
	for _, a := range []float64{0, -1, 1.5} {
		_, err := NewEWMA(a)
		assert.Error(t, err, "alpha %v", a)
	}
}
