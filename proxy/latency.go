package proxy

import (
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits = 3
	sub     = 1 << subBits
	// LatencyBuckets is the number of buckets of a LatencyHistogram: 32
	// powers of two of microseconds, 8 sub-buckets each.
	LatencyBuckets = 32 * sub
)

// LatencyHistogram is a lock-free latency histogram with log-linear
// buckets (8 sub-buckets per power of two, so quantiles are within 9% of
// the true value) from 1 µs to about 70 minutes. Data planes count the
// latency of user requests in one. The zero value is ready; it is safe for
// concurrent use.
type LatencyHistogram struct {
	counts [LatencyBuckets]atomic.Uint64
}

// bucket maps a duration to its bucket index.
func bucket(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < sub {
		return int(us)
	}
	exp := bits.Len64(us) - 1 // us in [2^exp, 2^(exp+1))
	mant := (us >> (exp - subBits)) & (sub - 1)
	i := (exp-subBits+1)*sub + int(mant)
	return min(i, LatencyBuckets-1)
}

// upper is the largest duration that falls in bucket i.
func upper(i int) time.Duration {
	if i < sub {
		return time.Duration(i) * time.Microsecond
	}
	exp := i/sub + subBits - 1
	mant := uint64(i % sub)
	lo := (uint64(sub) + mant) << (exp - subBits)
	return time.Duration(lo+(uint64(1)<<(exp-subBits))-1) * time.Microsecond
}

// Observe counts one duration.
func (h *LatencyHistogram) Observe(d time.Duration) { h.counts[bucket(max(d, 0))].Add(1) }

// Snapshot copies the counts.
func (h *LatencyHistogram) Snapshot() Latencies {
	var s Latencies
	for i := range h.counts {
		s[i] = h.counts[i].Load()
	}
	return s
}

// Latencies is a LatencyHistogram's counts at one moment, as Counts
// carries them. The zero value holds no observation.
type Latencies [LatencyBuckets]uint64

// Sub returns the counts observed between old and s. A count below old's
// was reset in between: all of it is new.
func (s Latencies) Sub(old Latencies) Latencies {
	for i := range s {
		s[i] = Delta(s[i], old[i])
	}
	return s
}

// Delta is what a counter counted from old to now: now-old, or now if the
// counter was reset in between (now < old), as Prometheus reads counters.
func Delta(now, old uint64) uint64 {
	if now < old {
		return now
	}
	return now - old
}

// Add returns the sum of two snapshots.
func (s Latencies) Add(o Latencies) Latencies {
	for i := range s {
		s[i] += o[i]
	}
	return s
}

// Count is the number of observations.
func (s Latencies) Count() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket holding quantile q in
// [0, 1], or 0 without observations. Quantile(1) is an upper bound on the
// maximum.
func (s Latencies) Quantile(q float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n-1)) + 1
	var seen uint64
	for i, c := range s {
		seen += c
		if seen >= rank {
			return upper(i)
		}
	}
	return upper(LatencyBuckets - 1)
}

// AtMost returns how many observations fell in buckets whose upper bound
// is at most d: those of at most d, to the buckets' resolution (Prometheus
// histograms' cumulative "le" counts).
func (s Latencies) AtMost(d time.Duration) uint64 {
	var n uint64
	for i, c := range s {
		if upper(i) > d {
			break
		}
		n += c
	}
	return n
}

// Sum estimates the observations' total, each counted at its bucket's
// middle.
func (s Latencies) Sum() time.Duration {
	var sum time.Duration
	for i, c := range s {
		if c == 0 {
			continue
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = upper(i-1) + time.Microsecond
		}
		sum += time.Duration(c) * (lo + upper(i)) / 2
	}
	return sum
}
