package forecast

import (
	"fmt"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Holt is double exponential smoothing: a level and a trend per function,
// so a steadily rising demand is predicted where it will be, not where it
// was. level ← α·y + (1−α)(level + trend); trend ← β(level − level′) +
// (1−β)·trend. The prediction for the next interval is level + trend, never
// negative.
type Holt struct {
	alpha, beta float64
	state       map[string]*holtState
}

type holtState struct {
	level, trend float64
	seen         int
}

// NewHolt returns a Holt forecaster with smoothing factors alpha (level) and
// beta (trend) in (0, 1].
func NewHolt(alpha, beta float64) (*Holt, error) {
	if !inUnit(alpha) || !inUnit(beta) {
		return nil, fmt.Errorf("forecast: holt alpha %v, beta %v outside (0, 1]", alpha, beta)
	}
	return &Holt{alpha: alpha, beta: beta, state: map[string]*holtState{}}, nil
}

func inUnit(x float64) bool { return x > 0 && x <= 1 }

// observe updates one series with y.
func (s *holtState) observe(y, alpha, beta float64) {
	switch s.seen {
	case 0:
		s.level = y
	case 1:
		s.trend = y - s.level
		s.level = y
	default:
		prev := s.level
		s.level = alpha*y + (1-alpha)*(s.level+s.trend)
		s.trend = beta*(s.level-prev) + (1-beta)*s.trend
	}
	s.seen++
}

// Observe implements dfaas.Forecaster.
func (h *Holt) Observe(s dfaas.Sample) {
	next := make(map[string]*holtState, len(s.Functions))
	for name, f := range s.Functions {
		st := h.state[name]
		if st == nil {
			st = &holtState{}
		}
		st.observe(float64(f.Arrivals), h.alpha, h.beta)
		next[name] = st
	}
	h.state = next
}

// Predict implements dfaas.Forecaster.
func (h *Holt) Predict(time.Time, time.Duration) map[string]dfaas.Rate {
	out := make(map[string]dfaas.Rate, len(h.state))
	for name, st := range h.state {
		out[name] = dfaas.Rate(max(0, st.level+st.trend))
	}
	return out
}

// HoltWinters is triple exponential smoothing with an additive season of
// Period samples (a day, say, at the agent's interval): level, trend and one
// seasonal offset per phase. Until it has seen two seasons it predicts as
// Holt does.
type HoltWinters struct {
	alpha, beta, gamma float64
	period             int
	state              map[string]*hwState
}

type hwState struct {
	holt    holtState
	history []float64 // the first two seasons, to initialise from
	season  []float64
	t       int // samples seen
	ready   bool
	level   float64
	trend   float64
}

// NewHoltWinters returns a Holt-Winters forecaster with smoothing factors in
// (0, 1] and a season of period samples (at least 2).
func NewHoltWinters(alpha, beta, gamma float64, period int) (*HoltWinters, error) {
	if !inUnit(alpha) || !inUnit(beta) || !inUnit(gamma) || period < 2 {
		return nil, fmt.Errorf("forecast: holt-winters alpha %v, beta %v, gamma %v outside (0, 1] or period %d below 2", alpha, beta, gamma, period)
	}
	return &HoltWinters{alpha: alpha, beta: beta, gamma: gamma, period: period, state: map[string]*hwState{}}, nil
}

// Observe implements dfaas.Forecaster.
func (h *HoltWinters) Observe(s dfaas.Sample) {
	next := make(map[string]*hwState, len(s.Functions))
	for name, f := range s.Functions {
		st := h.state[name]
		if st == nil {
			st = &hwState{}
		}
		h.observe(st, float64(f.Arrivals))
		next[name] = st
	}
	h.state = next
}

func (h *HoltWinters) observe(st *hwState, y float64) {
	m := h.period
	st.holt.observe(y, h.alpha, h.beta)
	if !st.ready {
		st.history = append(st.history, y)
		st.t++
		if len(st.history) < 2*m {
			return
		}
		// Initialise from two seasons: level and trend from their means,
		// each phase's offset from its mean deviation.
		var a, b float64
		for i := range m {
			a += st.history[i]
			b += st.history[m+i]
		}
		a, b = a/float64(m), b/float64(m)
		st.trend = (b - a) / float64(m)
		st.level = b + st.trend*float64(m-1)/2
		st.season = make([]float64, m)
		for i := range m {
			st.season[i] = (st.history[i] - a + st.history[m+i] - b) / 2
		}
		st.history, st.ready = nil, true
		return
	}
	phase := st.t % m
	prev := st.level
	st.level = h.alpha*(y-st.season[phase]) + (1-h.alpha)*(st.level+st.trend)
	st.trend = h.beta*(st.level-prev) + (1-h.beta)*st.trend
	st.season[phase] = h.gamma*(y-st.level) + (1-h.gamma)*st.season[phase]
	st.t++
}

// Predict implements dfaas.Forecaster.
func (h *HoltWinters) Predict(time.Time, time.Duration) map[string]dfaas.Rate {
	out := make(map[string]dfaas.Rate, len(h.state))
	for name, st := range h.state {
		if !st.ready {
			out[name] = dfaas.Rate(max(0, st.holt.level+st.holt.trend))
			continue
		}
		out[name] = dfaas.Rate(max(0, st.level+st.trend+st.season[st.t%h.period]))
	}
	return out
}

// ByName returns a fresh forecaster: "last", "ewma" (α 0.5), "holt"
// (α 0.5, β 0.3) or "holt-winters:<period>" (α 0.5, β 0.1, γ 0.3).
func ByName(name string) (dfaas.Forecaster, error) {
	switch name {
	case "last":
		return &LastValue{}, nil
	case "ewma":
		return NewEWMA(DefaultAlpha)
	case "holt":
		return NewHolt(0.5, 0.3)
	}
	var period int
	if _, err := fmt.Sscanf(name, "holt-winters:%d", &period); err == nil {
		return NewHoltWinters(0.5, 0.1, 0.3, period)
	}
	return nil, fmt.Errorf("forecast: unknown forecaster %q (known: last, ewma, holt, holt-winters:<period>)", name)
}

var (
	_ dfaas.Forecaster = (*Holt)(nil)
	_ dfaas.Forecaster = (*HoltWinters)(nil)
)
