package forecast

import (
	"maps"
	"time"

	"github.com/dfaas-go/dfaas"
)

// LastValue predicts that the next interval's demand equals the last
// observed arrival rate. The zero value is ready to use.
type LastValue struct {
	last map[string]dfaas.Rate
}

// Observe implements dfaas.Forecaster.
func (l *LastValue) Observe(s dfaas.Sample) {
	l.last = make(map[string]dfaas.Rate, len(s.Functions))
	for name, f := range s.Functions {
		l.last[name] = f.Arrivals
	}
}

// Predict implements dfaas.Forecaster.
func (l *LastValue) Predict(time.Time, time.Duration) map[string]dfaas.Rate {
	return maps.Clone(l.last)
}

var _ dfaas.Forecaster = (*LastValue)(nil)
