package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dfaas-go/dfaas"
)

// TestForwardsMeasures: a slower answer counts at once, faster ones bring
// the latency down within seconds; 5xx are failures and no latency sample
// (a peer failing fast must not look fast), other 4xx successes without a
// sample, 429 nothing; a pair quiet for dfaas.ForwardStale is forgotten.
func TestForwardsMeasures(t *testing.T) {
	var f Forwards
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(0))
	f.Answered("fn", "b", http.StatusOK, 100*time.Millisecond, at(100))
	h := f.Health(at(100))["fn"]["b"]
	assert.Equal(t, 100*time.Millisecond, h.Latency, "peak: the slower answer at once")
	for ms := 200; ms <= 6000; ms += 200 {
		f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(ms))
	}
	h = f.Health(at(6000))["fn"]["b"]
	assert.Less(t, h.Latency, 20*time.Millisecond, "fast answers bring it down within seconds (tau 2 s)")
	assert.Equal(t, 1.0, h.Success)
	assert.Equal(t, uint64(32), h.Attempts)

	// 5xx: failures, never a latency sample; 4xx: success, no sample; 429: nothing.
	before := h
	f.Answered("fn", "b", http.StatusNotFound, time.Microsecond, at(6100))
	f.Answered("fn", "b", http.StatusTooManyRequests, time.Microsecond, at(6200))
	h = f.Health(at(6200))["fn"]["b"]
	assert.Equal(t, before.Attempts+1, h.Attempts, "429 is capacity, not an attempt's health")
	assert.Equal(t, before.Latency, h.Latency, "a quick 404 is no latency sample")
	for ms := 6300; ms <= 9000; ms += 100 {
		f.Answered("fn", "b", http.StatusInternalServerError, time.Microsecond, at(ms))
	}
	h = f.Health(at(9000))["fn"]["b"]
	assert.Equal(t, before.Latency, h.Latency, "failing fast does not look fast")
	assert.Less(t, h.Success, 0.7)
	f.Failed("fn", "c", at(9000))
	assert.Zero(t, f.Health(at(9000))["fn"]["c"].Success)

	// Forgotten after ForwardStale without an attempt.
	assert.Len(t, f.Health(at(9000).Add(dfaas.ForwardStale))["fn"], 2)
	assert.Nil(t, f.Health(at(9001).Add(dfaas.ForwardStale)))
	assert.Empty(t, f.m, "forgotten, not only hidden")
}

// TestGoodNewsTakesTwoAnswers: after a slow answer, one fast answer a few
// seconds later (a lucky one on a lossy link) moves the latency half way;
// a second in a row brings it down as far as the time since allows; a slow
// answer in between starts again.
func TestGoodNewsTakesTwoAnswers(t *testing.T) {
	var f Forwards
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	lat := func(now time.Time) time.Duration { return f.Health(now)["fn"]["b"].Latency }
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(0))
	f.Answered("fn", "b", http.StatusOK, 210*time.Millisecond, at(1))
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(5))
	assert.InDelta(t, 110, lat(at(5)).Seconds()*1000, 1, "one fast answer: half way")
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(9))
	assert.Less(t, lat(at(9)), 30*time.Millisecond, "two in a row: down")

	f.Answered("fn", "b", http.StatusOK, 210*time.Millisecond, at(10))
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(14))
	f.Answered("fn", "b", http.StatusOK, 300*time.Millisecond, at(15))
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(19))
	assert.InDelta(t, 155, lat(at(19)).Seconds()*1000, 1, "slow in between: half way again")

	// A little slower (a healthy peer's jitter) is a peak, but no bad news.
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(23))
	low := lat(at(23))
	f.Answered("fn", "b", http.StatusOK, low+low/10, at(24))
	f.Answered("fn", "b", http.StatusOK, 10*time.Millisecond, at(28))
	assert.Less(t, lat(at(28)), 15*time.Millisecond, "jitter: good news goes on (half way would be 21 ms)")
}

// TestForwardsForget: a peer forgotten (declared down, out of the plans)
// is measured afresh, for every function; the others keep their measures.
func TestForwardsForget(t *testing.T) {
	var f Forwards
	now := time.Unix(1000, 0)
	f.Failed("fn", "b", now)
	f.Failed("other", "b", now)
	f.Answered("fn", "c", http.StatusOK, time.Millisecond, now)
	f.Forget("b")
	h := f.Health(now)
	assert.NotContains(t, h["fn"], dfaas.NodeID("b"))
	assert.NotContains(t, h, "other")
	assert.Contains(t, h["fn"], dfaas.NodeID("c"))
}
