package overlay

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
)

// TestDepartures: for the quarantine after a peer's connection dropped, its
// relayed adverts are dropped and counted; after it, they count again, and
// old departures are forgotten.
func TestDepartures(t *testing.T) {
	var d departures
	t0 := time.Unix(1000, 0)
	const q = 2 * time.Second
	a, b := peer.ID("a"), peer.ID("b")
	assert.False(t, d.within(a, t0, q), "never departed")
	d.mark(a, t0, q)
	assert.True(t, d.within(a, t0.Add(time.Second), q))
	assert.True(t, d.within(a, t0.Add(q-time.Nanosecond), q))
	assert.False(t, d.within(a, t0.Add(q), q), "quarantine over")
	assert.False(t, d.within(a, t0.Add(time.Second), q), "forgotten once over")
	assert.Equal(t, uint64(2), d.dropped.Load())

	d.mark(a, t0, q)
	d.mark(b, t0.Add(time.Minute), q)
	assert.NotContains(t, d.at, a, "a later departure sweeps the old ones")
	assert.Contains(t, d.at, b)
}
