package overlay

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

// TestSeqFileSurvivesAClockGoingBack: a node restarted with its clock an
// hour behind (or a year) numbers its adverts above every number of its
// previous run, so that its peers believe it at once; the file is 0600.
func TestSeqFileSurvivesAClockGoingBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.seq")
	clock := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s1, err := NewSeqFile(path, func() time.Time { return clock })
	require.NoError(t, err)
	var last uint64
	for range seqBlock + 10 { // crosses a block: a second reservation
		n, err := s1.Next()
		require.NoError(t, err)
		require.Greater(t, n, last)
		last = n
	}
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	for _, back := range []time.Duration{time.Hour, 365 * 24 * time.Hour} {
		s2, err := NewSeqFile(path, func() time.Time { return clock.Add(-back) })
		require.NoError(t, err)
		n, err := s2.Next()
		require.NoError(t, err)
		assert.Greater(t, n, last, "clock %v behind", back)
		last = n
	}

	// Its peers' tables take the restarted node's adverts at once.
	tab := NewTable("peer")
	require.NoError(t, tab.Put(dfaas.Advert{Node: "n", Seq: last - 1, TTL: time.Second, Addr: "10.0.0.1:1"}, "n", clock))
	require.NoError(t, tab.Put(dfaas.Advert{Node: "n", Seq: last, TTL: time.Second, Addr: "10.0.0.1:1"}, "n", clock))

	require.NoError(t, os.WriteFile(path, []byte("junk"), 0o600))
	_, err = NewSeqFile(path, nil)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	require.NoError(t, os.Chmod(path, 0o644))
	_, err = NewSeqFile(path, nil)
	assert.ErrorContains(t, err, "chmod 600")
}

// TestReplayAfterExpiryIsRefused: an advert replayed after it expired (its
// node gone quiet or disconnected) is stale: the table keeps the highest
// number it took from every node.
func TestReplayAfterExpiryIsRefused(t *testing.T) {
	tab := NewTable("self")
	t0 := time.Unix(1000, 0)
	old := dfaas.Advert{Node: "n", Seq: 7, TTL: time.Second, Addr: "10.0.0.1:1"}
	require.NoError(t, tab.Put(old, "n", t0))
	assert.Empty(t, tab.Adverts(t0.Add(2*time.Second)), "expired")
	assert.ErrorIs(t, tab.Put(old, "n", t0.Add(3*time.Second)), dfaas.ErrStaleAdvert)
	tab.Remove("n")
	assert.ErrorIs(t, tab.Put(old, "n", t0.Add(4*time.Second)), dfaas.ErrStaleAdvert, "also after the peer disconnected")
	assert.Empty(t, tab.Adverts(t0.Add(4*time.Second)))
}
