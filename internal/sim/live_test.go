package sim

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
)

// TestLiveNeighbourhoods: twenty real agents on libp2p hosts, each
// following eight, under a signed membership that changes every second:
// the federation forms, adverts reach the followers in milliseconds, the
// membership's versions travel on GossipSub, and a node that stops leaves
// every plan within three intervals. The control traffic is reported
// beside the simulator's.
func TestLiveNeighbourhoods(t *testing.T) {
	sc := Hotspot(20, 60, 5, 1)
	newBalancer := func() dfaas.Balancer { return balance.Nearest{} }
	res, err := Live(context.Background(), LiveConfig{Scenario: sc, Strategy: newBalancer, Interval: 250 * time.Millisecond,
		Duration: 3 * time.Second, Neighbours: 8, MembershipEvery: time.Second})
	require.NoError(t, err)
	var gossip float64
	for p, b := range res.ByProtocol {
		if strings.Contains(p, "meshsub") {
			gossip += b
		}
	}
	assert.Positive(t, gossip, "membership versions on GossipSub: %v", res.ByProtocol)
	assert.Equal(t, 20, res.Agents)
	assert.Positive(t, res.PropagationP50MS, "adverts were seen arriving")
	// Three intervals, in time: the count of ticks includes those the
	// departure itself (and any follow change) triggers early.
	assert.LessOrEqual(t, res.DetectionS, 3*0.25, "the stopped node left every plan within 3 intervals")
	simRes, err := Run(context.Background(), Config{Scenario: sc, Strategy: newBalancer(), Interval: 250 * time.Millisecond, Neighbours: 8})
	require.NoError(t, err)
	t.Logf("formed in %.1f s; per node: %.0f B/s sent (adverts %.0f), simulator %.0f (adverts %.0f + probes %.0f); propagation p50 %.1f ms, p99 %.1f ms; stopped node gone after %d ticks (%.2f s)",
		res.FormedS, res.BytesPerNodeS, res.AdvertBytesPerNodeS, simRes.ControlBytesPerNodeS+simRes.ProbeBytesPerNodeS,
		simRes.ControlBytesPerNodeS, simRes.ProbeBytesPerNodeS, res.PropagationP50MS, res.PropagationP99MS, res.DetectionTicks, res.DetectionS)
}
