package sim

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/proxytest"
)

// TestFlowModelAgreesWithThePickRule: the simulator's fluid model of the
// forwarding (waterfill) gives every peer of a steady golden vector the
// rate the pick rule sent it, within what the token buckets' bursts and
// one request allow.
func TestFlowModelAgreesWithThePickRule(t *testing.T) {
	vs, err := proxytest.PickVectors()
	require.NoError(t, err)
	checked := 0
	for _, v := range vs {
		secs := v.Arrival(v.Count).Seconds()
		if secs < 1 {
			continue // a burst, not a rate: nothing for a fluid model
		}
		checked++
		shares := v.Shares()
		capLeft, refused, idx := make([]float64, len(shares)), make([]bool, len(shares)), make([]int, len(shares))
		for k, s := range shares {
			if proxy.Usable(s) {
				capLeft[k] = float64(s.Cap)
			}
		}
		flow := waterfill(float64(v.Count)/secs, shares, capLeft, refused, idx)
		for k, s := range shares {
			got := float64(strings.Count(v.Want, proxytest.PeerName(k))) / secs
			// A full bucket at the start (at most 2 requests here), and one
			// request of rounding.
			slack := float64(min(proxy.BucketDepth(s.Cap, v.Burst()), 2)+1) / secs
			assert.InDelta(t, flow[k], got, slack, "%s: peer %s", v.Name, proxytest.PeerName(k))
		}
	}
	assert.Positive(t, checked, "a steady vector to compare with")
}
