package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBucketBounds(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 7 * time.Microsecond, 8 * time.Microsecond,
		301 * time.Microsecond, 11400 * time.Microsecond, 91 * time.Millisecond, 3 * time.Second, time.Hour} {
		i := bucket(d)
		assert.LessOrEqual(t, d.Truncate(time.Microsecond), upper(i), "%v in bucket %d", d, i)
		if i > 0 {
			assert.Greater(t, d.Truncate(time.Microsecond), upper(i-1), "%v above bucket %d", d, i-1)
		}
		if d >= 8*time.Microsecond && d < time.Hour {
			assert.LessOrEqual(t, float64(upper(i)), 1.125*float64(d), "%v relative error", d)
		}
	}
	assert.Equal(t, LatencyBuckets-1, bucket(1000*time.Hour), "clamped")
}

func TestQuantiles(t *testing.T) {
	var h LatencyHistogram
	assert.Zero(t, h.Snapshot().Quantile(0.5))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 250; i++ {
				h.Observe(time.Duration(w*250+i) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	s := h.Snapshot()
	assert.Equal(t, uint64(1000), s.Count())
	assert.InEpsilon(t, float64(500*time.Millisecond), float64(s.Quantile(0.5)), 0.13)
	assert.InEpsilon(t, float64(990*time.Millisecond), float64(s.Quantile(0.99)), 0.13)
	assert.GreaterOrEqual(t, s.Quantile(1), time.Second)

	before := s
	h.Observe(5 * time.Second)
	d := h.Snapshot().Sub(before)
	assert.Equal(t, uint64(1), d.Count())
	assert.GreaterOrEqual(t, d.Quantile(0.5), 5*time.Second)
	assert.Equal(t, uint64(1001), before.Add(d).Count())
}

func TestLatenciesAtMostAndSum(t *testing.T) {
	var h LatencyHistogram
	for _, d := range []time.Duration{3 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, time.Second} {
		h.Observe(d)
	}
	s := h.Snapshot()
	assert.Equal(t, uint64(0), s.AtMost(2*time.Microsecond))
	assert.Equal(t, uint64(1), s.AtMost(3*time.Microsecond))
	assert.Equal(t, uint64(1), s.AtMost(900*time.Microsecond))
	assert.Equal(t, uint64(3), s.AtMost(2200*time.Microsecond), "within the buckets' 9%")
	assert.Equal(t, uint64(4), s.AtMost(2*time.Second))
	assert.InEpsilon(t, float64(time.Second+3*time.Millisecond), float64(s.Sum()), 0.1)
}
