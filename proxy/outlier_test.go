package proxy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

func TestOutliers(t *testing.T) {
	o, err := proxy.NewOutliers(proxy.OutlierConfig{Consecutive: 3, BaseEjection: time.Second, MaxEjection: 4 * time.Second})
	require.NoError(t, err)
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	// Failures in a row eject; a success in between starts the count again.
	assert.False(t, o.Failure("p", at(0)))
	assert.False(t, o.Failure("p", at(0)))
	o.Success("p")
	assert.False(t, o.Failure("p", at(0)))
	assert.False(t, o.Failure("p", at(0)))
	assert.True(t, o.Failure("p", at(0)), "third in a row")
	assert.Equal(t, []dfaas.NodeID{"p"}, o.Ejected(at(0.5)))
	assert.False(t, o.Usable("p", at(0.99)))
	assert.True(t, o.Usable("q", at(0.5)), "others unaffected")

	// After 1 s: a probe. Its failure ejects again at once, for 2 s.
	assert.True(t, o.Usable("p", at(1)))
	assert.Empty(t, o.Ejected(at(1)))
	assert.True(t, o.Failure("p", at(1)))
	assert.False(t, o.Usable("p", at(2.9)))
	assert.True(t, o.Usable("p", at(3)))
	// Then 4 s, and never more than MaxEjection.
	assert.True(t, o.Failure("p", at(3)))
	assert.False(t, o.Usable("p", at(6.9)))
	assert.True(t, o.Usable("p", at(7)))
	assert.True(t, o.Failure("p", at(7)))
	assert.False(t, o.Usable("p", at(10.9)))
	assert.True(t, o.Usable("p", at(11)), "capped at 4 s")

	// A successful probe makes the peer healthy and halves its back-off.
	o.Success("p")
	assert.True(t, o.Usable("p", at(11)))
	for range 2 {
		assert.False(t, o.Failure("p", at(12)), "a healthy peer again needs 3 in a row")
	}
	assert.True(t, o.Failure("p", at(12)))
	assert.False(t, o.Usable("p", at(13.9)), "back-off halved from 4 s to 2 s")
	assert.True(t, o.Usable("p", at(14)))

	// A failure that started before the ejection does not extend it.
	assert.True(t, o.Failure("p", at(14)))
	assert.False(t, o.Failure("p", at(14.1)))

	// Forgetting peers out of the plans keeps their ejections.
	o.Failure("r", at(20))
	o.Forget(func(dfaas.NodeID) bool { return false }, at(14.5))
	assert.Contains(t, o.Ejected(at(14.5)), dfaas.NodeID("p"))
	for range 2 {
		assert.False(t, o.Failure("r", at(20)), "r's count was forgotten")
	}
}

// TestOutliersForgetLongGoneEjections: a peer ejected and then gone from
// the plans (a crash: it never answers again) is forgotten once its
// ejection ended MaxEjection ago; one still in the plans is not.
func TestOutliersForgetLongGoneEjections(t *testing.T) {
	o, err := proxy.NewOutliers(proxy.OutlierConfig{Consecutive: 1, BaseEjection: time.Second, MaxEjection: 10 * time.Second})
	require.NoError(t, err)
	t0 := time.Unix(1000, 0)
	require.True(t, o.Failure("gone", t0))
	require.True(t, o.Failure("kept", t0))
	none := func(dfaas.NodeID) bool { return false }
	keepKept := func(n dfaas.NodeID) bool { return n == "kept" }
	// Remembered, a peer's next ejection is twice as long (2 s); forgotten,
	// it starts again at BaseEjection (1 s).
	o.Forget(none, t0.Add(10*time.Second)) // ended 9 s ago: remembered
	require.True(t, o.Failure("gone", t0.Add(10*time.Second)))
	assert.False(t, o.Usable("gone", t0.Add(11500*time.Millisecond)), "remembered: ejected for 2 s")
	o, err = proxy.NewOutliers(proxy.OutlierConfig{Consecutive: 1, BaseEjection: time.Second, MaxEjection: 10 * time.Second})
	require.NoError(t, err)
	require.True(t, o.Failure("gone", t0))
	require.True(t, o.Failure("kept", t0))
	o.Forget(keepKept, t0.Add(11*time.Second))
	// Forgotten: a fresh record, which needs Consecutive failures and
	// starts at BaseEjection again.
	require.True(t, o.Failure("gone", t0.Add(12*time.Second)))
	assert.True(t, o.Usable("gone", t0.Add(13500*time.Millisecond)), "forgotten: ejected for 1 s, as a newcomer")
	require.True(t, o.Failure("kept", t0.Add(12*time.Second)))
	assert.False(t, o.Usable("kept", t0.Add(13500*time.Millisecond)), "in the plans: remembered, ejected for 2 s")
}

func TestOutlierConfigValidate(t *testing.T) {
	for _, c := range []proxy.OutlierConfig{{Consecutive: -1}, {BaseEjection: -time.Second}, {MaxEjection: -1}} {
		_, err := proxy.NewOutliers(c)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "%+v", c)
	}
	assert.NoError(t, proxy.OutlierConfig{}.Validate())
}

// TestOutliersForgetQuietProbes: a peer left on probation (its ejection
// over, no forward since) and gone from the plans is forgotten once quiet
// for MaxEjection, not before.
func TestOutliersForgetQuietProbes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	none := func(dfaas.NodeID) bool { return false }
	for _, tc := range []struct {
		forgetAt   float64
		remembered bool
	}{{5, true}, {12, false}} {
		o, err := proxy.NewOutliers(proxy.OutlierConfig{Consecutive: 1, BaseEjection: time.Second, MaxEjection: 10 * time.Second})
		require.NoError(t, err)
		require.True(t, o.Failure("p", at(0)))
		require.True(t, o.Usable("p", at(1)), "on probation from 1 s")
		o.Forget(none, at(tc.forgetAt))
		require.True(t, o.Failure("p", at(tc.forgetAt)))
		// Remembered, its next ejection is 2 s; forgotten, 1 s.
		assert.Equal(t, !tc.remembered, o.Usable("p", at(tc.forgetAt+1.5)), "Forget at %v s", tc.forgetAt)
	}
}

// TestRefusalsTakeMore: a peer whose capacity just fell refuses what was
// planned on its last advert for a moment; only one that keeps refusing
// is ejected, and a success in between forgives both counts.
func TestRefusalsTakeMore(t *testing.T) {
	o, err := proxy.NewOutliers(proxy.OutlierConfig{})
	require.NoError(t, err)
	now := time.Now()
	for i := range 29 {
		assert.False(t, o.Refused("b", now), "refusal %d", i+1)
	}
	o.Success("b")
	for i := range 29 {
		assert.False(t, o.Refused("b", now), "refusal %d after a success", i+1)
	}
	assert.True(t, o.Refused("b", now), "the 30th in a row")
	assert.Equal(t, []dfaas.NodeID{"b"}, o.Ejected(now))
	for i := range 4 {
		assert.False(t, o.Failure("c", now), "failure %d", i+1)
	}
	assert.True(t, o.Failure("c", now), "failures: 5 in a row")
}
