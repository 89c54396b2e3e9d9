package proxy_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/proxytest"
)

// TestPickGoldenVectors: the Go pick rule reproduces every golden vector.
func TestPickGoldenVectors(t *testing.T) {
	vs, err := proxytest.PickVectors()
	require.NoError(t, err)
	require.NotEmpty(t, vs)
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, v := range vs {
		assert.Equal(t, v.Want, v.RunGo(t0), v.Name)
	}
}

// TestBucketKeepsSpentTokensAcrossPlans: a new plan's rate does not refill
// a bucket, a clock that goes back adds nothing, and an infinite cap is
// MaxCap.
func TestBucketKeepsSpentTokensAcrossPlans(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	b := proxy.NewBucket(10, 100*time.Millisecond, t0)
	assert.True(t, b.Take(t0))
	assert.True(t, b.Take(t0))
	assert.False(t, b.Take(t0), "depth 2 spent")
	b.Set(1000, 100*time.Millisecond)
	assert.False(t, b.Take(t0), "a new plan refills nothing")
	assert.False(t, b.Take(t0.Add(-time.Second)), "a clock that went back adds nothing")
	assert.True(t, b.Take(t0.Add(time.Millisecond)), "1 ms at 1000 req/s is a token")
	assert.Equal(t, int(proxy.MaxCap/10), proxy.BucketDepth(dfaas.Rate(math.Inf(1)), 100*time.Millisecond))
	assert.Zero(t, proxy.BucketDepth(dfaas.Rate(math.NaN()), time.Second))
}
