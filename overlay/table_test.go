package overlay

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func testAdvert(node string, seq uint64) dfaas.Advert {
	return dfaas.Advert{Node: dfaas.NodeID(node), Seq: seq, TTL: 3 * time.Second, Addr: "127.0.0.1:9000",
		Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 20, Demand: 4}}}
}

func TestCodecRoundTrip(t *testing.T) {
	a := testAdvert("n1", 7)
	raw, err := Encode(a)
	require.NoError(t, err)
	got, err := Decode(raw)
	require.NoError(t, err)
	assert.Equal(t, a, got)
}

func TestDecodeRejects(t *testing.T) {
	valid, err := Encode(testAdvert("n1", 1))
	require.NoError(t, err)
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"not json", "{nope", dfaas.ErrInvalidAdvert},
		{"empty", "", dfaas.ErrInvalidAdvert},
		{"trailing data", string(valid) + "{}", dfaas.ErrInvalidAdvert},
		{"unknown field", strings.Replace(string(valid), `"v":1`, `"v":1,"x":2`, 1), dfaas.ErrInvalidAdvert},
		{"future version", strings.Replace(string(valid), `"v":1`, `"v":2`, 1), ErrUnsupportedVersion},
		{"no node", strings.Replace(string(valid), `"node":"n1"`, `"node":""`, 1), dfaas.ErrInvalidAdvert},
		{"zero ttl", strings.Replace(string(valid), `"ttl_ms":3000`, `"ttl_ms":0`, 1), dfaas.ErrInvalidAdvert},
		{"huge ttl", strings.Replace(string(valid), `"ttl_ms":3000`, `"ttl_ms":99999999999`, 1), dfaas.ErrInvalidAdvert},
		{"negative rate", strings.Replace(string(valid), `"cap":20`, `"cap":-1`, 1), dfaas.ErrInvalidAdvert},
		{"bad function name", strings.Replace(string(valid), `"figlet"`, `"Fig let/../x"`, 1), dfaas.ErrInvalidAdvert},
		{"no address", strings.Replace(string(valid), `"addr":"127.0.0.1:9000"`, `"addr":""`, 1), dfaas.ErrInvalidAdvert},
		{"oversized", `{"v":1,"node":"` + strings.Repeat("x", MaxAdvertBytes) + `"}`, ErrOversized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.raw))
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	a := testAdvert("n1", 1)
	a.Functions["x"] = dfaas.FunctionState{Capacity: -5}
	_, err := Encode(a)
	assert.ErrorIs(t, err, dfaas.ErrInvalidAdvert)
}

func TestTableNewestSequenceWins(t *testing.T) {
	tab := NewTable("self")
	require.NoError(t, tab.Put(testAdvert("n1", 5), "n1", t0))
	err := tab.Put(testAdvert("n1", 5), "n1", t0) // replay
	assert.ErrorIs(t, err, dfaas.ErrStaleAdvert)
	err = tab.Put(testAdvert("n1", 3), "n1", t0) // older
	assert.ErrorIs(t, err, dfaas.ErrStaleAdvert)
	newer := testAdvert("n1", 6)
	newer.Functions["figlet"] = dfaas.FunctionState{Capacity: 20, Demand: 19}
	require.NoError(t, tab.Put(newer, "n1", t0))
	got := tab.Adverts(t0)
	require.Len(t, got, 1)
	assert.Equal(t, uint64(6), got[0].Seq)
	assert.Equal(t, Stats{Accepted: 2, Stale: 2}, tab.Stats())
}

func TestTableDropsAndCounts(t *testing.T) {
	tab := NewTable("self")
	_, err := tab.Receive([]byte("garbage"), "n1", t0)
	assert.Error(t, err)
	_, err = tab.Receive(make([]byte, MaxAdvertBytes+1), "n1", t0)
	assert.ErrorIs(t, err, ErrOversized)
	raw, _ := Encode(testAdvert("n2", 1))
	_, err = tab.Receive(raw, "n1", t0) // n1 relays an advert claiming to be n2's
	assert.ErrorIs(t, err, ErrSpoofed)
	raw, _ = Encode(testAdvert("self", 1))
	_, err = tab.Receive(raw, "", t0) // our own advert echoed back
	assert.NoError(t, err)
	assert.Empty(t, tab.Adverts(t0))
	assert.Equal(t, Stats{Malformed: 1, Oversized: 1, Spoofed: 1}, tab.Stats())
}

func TestTableExpiresOnLocalClock(t *testing.T) {
	tab := NewTable("self")
	require.NoError(t, tab.Put(testAdvert("n1", 1), "n1", t0))
	assert.Len(t, tab.Adverts(t0.Add(2999*time.Millisecond)), 1)
	assert.Empty(t, tab.Adverts(t0.Add(3*time.Second)))
	assert.Equal(t, uint64(1), tab.Stats().Expired)
	// The sequence number outlives the advert: a replay stays stale.
	assert.ErrorIs(t, tab.Put(testAdvert("n1", 1), "n1", t0), dfaas.ErrStaleAdvert)
}

func TestTableRemove(t *testing.T) {
	tab := NewTable("self")
	require.NoError(t, tab.Put(testAdvert("n1", 1), "n1", t0))
	assert.True(t, tab.Remove("n1"))
	assert.False(t, tab.Remove("n1"))
	assert.Empty(t, tab.Adverts(t0))
	assert.Equal(t, uint64(1), tab.Stats().PeersDown)
}
