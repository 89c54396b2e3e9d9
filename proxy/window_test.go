package proxy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestWindowAdmitsASecondsWorthAtOnce: a fresh window takes its limit of
// back-to-back requests and refuses the rest, where a token bucket a Burst
// deep would take two.
func TestWindowAdmitsASecondsWorthAtOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := NewWindow(10, t0)
	n := 0
	for range 50 {
		if w.Take(t0) {
			n++
		}
	}
	assert.Equal(t, 10, n)
	assert.InDelta(t, 10, w.Rate(t0), 1e-9)
	// Half a second into the next period, half of the last one still counts.
	at := t0.Add(1500 * time.Millisecond)
	assert.InDelta(t, 5, w.Rate(at), 1e-9)
	n = 0
	for range 50 {
		if w.Take(at) {
			n++
		}
	}
	assert.Equal(t, 5, n)
	// Two quiet periods forget everything.
	assert.Zero(t, w.Rate(t0.Add(3*time.Second)))
}

// TestWindowHoldsAnySecondToTheLimit: under steady overload (a request
// every 10 ms at a limit of 10 req/s) the window admits the limit over
// time and at most one more than it in any second, spread out once its
// first second is spent.
func TestWindowHoldsAnySecondToTheLimit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := NewWindow(10, t0)
	var admitted []time.Duration
	for at := time.Duration(0); at < 10*time.Second; at += 10 * time.Millisecond {
		if w.Take(t0.Add(at)) {
			admitted = append(admitted, at)
		}
	}
	assert.InDelta(t, 100, len(admitted), 2, "the limit over 10 s")
	for i := range admitted {
		j := i
		for j < len(admitted) && admitted[j]-admitted[i] < time.Second {
			j++
		}
		assert.LessOrEqual(t, j-i, 11, "admitted within the second from %v", admitted[i])
	}
	// After the first second the admissions are spread: none more than
	// 200 ms apart.
	for i := 1; i < len(admitted); i++ {
		if admitted[i-1] >= 2*time.Second {
			assert.LessOrEqual(t, admitted[i]-admitted[i-1], 200*time.Millisecond)
		}
	}
}

// TestWindowSet: a new rate keeps what was counted; zero admits nothing;
// a clock that went back is no error.
func TestWindowSet(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := NewWindow(10, t0)
	for range 8 {
		assert.True(t, w.Take(t0))
	}
	w.Set(9)
	assert.True(t, w.Take(t0))
	assert.False(t, w.Take(t0), "9 counted against the new limit of 9")
	w.Set(0)
	assert.False(t, w.Take(t0.Add(5*time.Second)))
	w.Set(100)
	assert.True(t, w.Take(t0.Add(-time.Hour)), "the clock went back: counted in the current period")
	w.Set(MaxCap * 10)
	assert.True(t, w.Take(t0.Add(5*time.Second)))
}
