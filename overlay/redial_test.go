package overlay

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedialSchedule(t *testing.T) {
	r := newRedialer(nil)
	t0 := time.Unix(1000, 0)
	p := peer.ID("p")
	r.dropped(p, t0)
	assert.Empty(t, r.due(t0), "not at once")
	var at []time.Duration
	for now := t0; now.Before(t0.Add(10 * time.Second)); now = now.Add(10 * time.Millisecond) {
		if len(r.due(now)) > 0 {
			at = append(at, now.Sub(t0))
		}
	}
	want := []time.Duration{250 * time.Millisecond}
	for d := 750 * time.Millisecond; d < 10*time.Second; d += 500 * time.Millisecond {
		want = append(want, d)
	}
	assert.Equal(t, want, at)
	r.connected(p)
	assert.Empty(t, r.due(t0.Add(time.Hour)))
	r.dropped(p, t0)
	assert.Empty(t, r.due(t0.Add(redialFor+time.Second)), "left to discovery after redialFor")
	assert.Empty(t, r.lost)
}

// TestDroppedPeerIsRedialled: a connection that drops is dialled again
// within about a second, long before the next discovery round.
func TestDroppedPeerIsRedialled(t *testing.T) {
	start := func(bootstrap []string) *Libp2p {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o, err := NewLibp2p(ctx, Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", Bootstrap: bootstrap,
			DiscoveryInterval: time.Hour})
		require.NoError(t, err)
		t.Cleanup(func() { _ = o.Close() })
		return o
	}
	a := start(nil)
	b := start(a.Addrs())
	require.Eventually(t, func() bool { return a.host.Network().Connectedness(b.host.ID()) == network.Connected },
		10*time.Second, 10*time.Millisecond)
	require.NoError(t, a.host.Network().ClosePeer(b.host.ID()))
	dropped := time.Now()
	require.Eventually(t, func() bool { return a.host.Network().Connectedness(b.host.ID()) == network.Connected },
		5*time.Second, 10*time.Millisecond, "not redialled")
	t.Logf("reconnected after %v", time.Since(dropped))
}
