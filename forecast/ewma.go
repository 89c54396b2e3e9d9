package forecast

import (
	"fmt"
	"maps"
	"time"

	"github.com/dfaas-go/dfaas"
)

// EWMA predicts an exponentially weighted moving average of the arrival
// rate: level ← α·observed + (1−α)·level. A higher α follows changes faster;
// a lower α smooths noise. A function seen for the first time starts at its
// observed rate; a function absent from a sample is forgotten.
type EWMA struct {
	alpha float64
	level map[string]dfaas.Rate
}

// DefaultAlpha weighs the newest sample at one half.
const DefaultAlpha = 0.5

// NewEWMA returns an EWMA with smoothing factor alpha in (0, 1].
func NewEWMA(alpha float64) (*EWMA, error) {
	if !(alpha > 0 && alpha <= 1) {
		return nil, fmt.Errorf("forecast: ewma alpha %v outside (0, 1]", alpha)
	}
	return &EWMA{alpha: alpha, level: map[string]dfaas.Rate{}}, nil
}

// Observe implements dfaas.Forecaster.
func (e *EWMA) Observe(s dfaas.Sample) {
	next := make(map[string]dfaas.Rate, len(s.Functions))
	for name, f := range s.Functions {
		prev, ok := e.level[name]
		if !ok {
			next[name] = f.Arrivals
			continue
		}
		next[name] = dfaas.Rate(e.alpha)*f.Arrivals + dfaas.Rate(1-e.alpha)*prev
	}
	e.level = next
}

// Predict implements dfaas.Forecaster.
func (e *EWMA) Predict(time.Time, time.Duration) map[string]dfaas.Rate {
	return maps.Clone(e.level)
}

var _ dfaas.Forecaster = (*EWMA)(nil)
