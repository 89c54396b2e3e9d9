package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/dfaas-go/dfaas"
)

func TestCountsAddUndoesSub(t *testing.T) {
	old := Counts{Arrivals: 3, ServedLocal: 1, ForwardedOut: 2, Forwarded: map[dfaas.NodeID]uint64{"b": 2}}
	cur := Counts{Arrivals: 10, ServedLocal: 4, ForwardedOut: 5, Rejected: 1, Forwarded: map[dfaas.NodeID]uint64{"b": 4, "c": 1}}
	d := cur.Sub(old)
	assert.Equal(t, uint64(7), d.Arrivals)
	assert.Equal(t, map[dfaas.NodeID]uint64{"b": 2, "c": 1}, d.Forwarded)
	assert.Equal(t, cur, d.Add(old))
	assert.Equal(t, uint64(2), old.Forwarded["b"], "operands unchanged")
}

// TestCountsSubAcrossReset: a counter that went back was reset in between
// (a restarted data plane): its whole count is the delta, never a wrapped
// difference.
func TestCountsSubAcrossReset(t *testing.T) {
	old := Counts{Arrivals: 100, ServedLocal: 50, Forwarded: map[dfaas.NodeID]uint64{"b": 50}}
	cur := Counts{Arrivals: 7, ServedLocal: 60, Forwarded: map[dfaas.NodeID]uint64{"b": 3}}
	d := cur.Sub(old)
	assert.Equal(t, uint64(7), d.Arrivals)
	assert.Equal(t, uint64(10), d.ServedLocal)
	assert.Equal(t, uint64(3), d.Forwarded["b"])
}
