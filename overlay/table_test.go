package overlay

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"
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
	a.Name = "edge-rome_1.example"
	a.Functions["alpha"] = dfaas.FunctionState{Capacity: 0.5, Demand: 16.667}
	a.Traffic = map[string]dfaas.Traffic{
		"figlet": {Served: 20, Rejected: 1.25, Forwarded: map[dfaas.NodeID]dfaas.Rate{"n3": 4, "n2": 0.001}},
		"alpha":  {Served: 3},
		"beta":   {Forwarded: map[dfaas.NodeID]dfaas.Rate{"n3": 2}},
	}
	raw, err := Encode(a)
	require.NoError(t, err)
	got, err := Decode(raw)
	require.NoError(t, err)
	assert.Equal(t, a, got)
	again, err := Encode(got)
	require.NoError(t, err)
	assert.Equal(t, raw, again, "one encoding per advert")
	t.Logf("an advert of 2 functions and 3 flows: %d bytes", len(raw))

	// Rates travel in thousandths of a request per second.
	a.Functions["alpha"] = dfaas.FunctionState{Capacity: 10.0 / 3, Demand: dfaas.MaxRate}
	raw, err = Encode(a)
	require.NoError(t, err)
	got, err = Decode(raw)
	require.NoError(t, err)
	assert.Equal(t, dfaas.FunctionState{Capacity: 3.333, Demand: dfaas.MaxRate}, got.Functions["alpha"])
}

// wire builds encoded adverts field by field, valid or not.
type wire []byte

func (w wire) u(v uint64) wire       { return binary.AppendUvarint(w, v) }
func (w wire) append(b ...byte) wire { return append(w, b...) }
func (w wire) s(v string) wire       { return append(w.u(uint64(len(v))), v...) }
func (w wire) head(fns int) wire {
	return w.s("n1").s("edge").u(1).u(3000).s("127.0.0.1:9000").u(uint64(fns))
}

func TestDecodeRejects(t *testing.T) {
	named := testAdvert("n1", 1)
	named.Name = "edge"
	valid, err := Encode(named)
	require.NoError(t, err)
	v := wire{WireVersion}
	require.Equal(t, valid, []byte(v.head(1).s("figlet").u(20000).u(4000).u(0).u(0)), "the builder writes what Encode does")
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, dfaas.ErrInvalidAdvert},
		{"version 1 (JSON)", []byte(`{"v":1,"node":"n1"}`), ErrUnsupportedVersion},
		{"future version", append([]byte{WireVersion + 1}, valid[1:]...), ErrUnsupportedVersion},
		{"truncated", valid[:len(valid)-1], dfaas.ErrInvalidAdvert},
		{"trailing data", append(slices.Clone(valid), 0), dfaas.ErrInvalidAdvert},
		{"overlong varint", append(wire{WireVersion}, bytes.Repeat([]byte{0xff}, 11)...), dfaas.ErrInvalidAdvert},
		{"no node", wire{WireVersion}.s("").s("").u(1).u(3000).s("127.0.0.1:9000").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"zero ttl", wire{WireVersion}.s("n1").s("").u(1).u(0).s("127.0.0.1:9000").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"huge ttl", wire{WireVersion}.s("n1").s("").u(1).u(1 << 40).s("127.0.0.1:9000").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"no address", wire{WireVersion}.s("n1").s("").u(1).u(3000).s("").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"address with a path", wire{WireVersion}.s("n1").s("").u(1).u(3000).s("10.0.0.1:80/admin").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"rate over the maximum", v.head(1).s("figlet").u(uint64(dfaas.MaxRate)*1000 + 1).u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"bad function name", v.head(1).s("Fig let/../x").u(1).u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"functions out of order", v.head(2).s("b").u(1).u(0).s("a").u(1).u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"a function twice", v.head(2).s("a").u(1).u(0).s("a").u(2).u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"count beyond the bytes", v.head(1 << 20), dfaas.ErrInvalidAdvert},
		{"string beyond the bytes", v.head(1).u(1 << 30), dfaas.ErrInvalidAdvert},
		{"flow to no peer", v.head(0).u(1).s("n2").u(1).s("figlet").u(0).u(0).u(1).u(1).u(5), dfaas.ErrInvalidAdvert},
		{"two flows to one peer", v.head(0).u(1).s("n2").u(1).s("figlet").u(0).u(0).u(2).u(0).u(5).u(0).u(6), dfaas.ErrInvalidAdvert},
		{"peers out of order", v.head(0).u(2).s("n3").s("n2").u(0), dfaas.ErrInvalidAdvert},
		{"too many flows", v.head(0).u(0).u(1).s("figlet").u(0).u(0).u(dfaas.MaxAdvertFlows + 1), dfaas.ErrInvalidAdvert},
		{"oversized", append(wire{WireVersion}, make([]byte, MaxAdvertBytes)...), ErrOversized},
		{"padded integer", v.s("n1").s("").u(1).u(3000).s("127.0.0.1:9000").u(1).s("figlet").u(20000).append(0x80, 0x00).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"a peer no flow names", v.head(0).u(1).s("n2").u(0), dfaas.ErrInvalidAdvert},
		{"a peer id with a space", v.head(0).u(1).s("n 2").u(1).s("figlet").u(0).u(0).u(1).u(0).u(5), dfaas.ErrInvalidAdvert},
		{"more peers than flows may name", v.head(0).u(dfaas.MaxAdvertFlows + 1), dfaas.ErrInvalidAdvert},
		{"a name with a space", wire{WireVersion}.s("n1").s("edge 1").u(1).u(3000).s("127.0.0.1:9000").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"a name with markup", wire{WireVersion}.s("n1").s("<b>").u(1).u(3000).s("127.0.0.1:9000").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
		{"a name too long", wire{WireVersion}.s("n1").s(strings.Repeat("a", dfaas.MaxNodeNameLen+1)).u(1).u(3000).s("127.0.0.1:9000").u(0).u(0).u(0), dfaas.ErrInvalidAdvert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.raw)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	ok := v.head(0).u(1).s("n2").u(1).s("figlet").u(0).u(0).u(1).u(0).u(5)
	a, err := Decode(ok)
	require.NoError(t, err, "the builder's well-formed flow")
	assert.Equal(t, dfaas.Rate(0.005), a.Traffic["figlet"].Forwarded["n2"])

	// Version 2, the one before names, is still read: a node not upgraded
	// yet stays in the plans, nameless.
	old := wire{2}.s("n1").u(1).u(3000).s("127.0.0.1:9000").u(1).s("figlet").u(20000).u(4000).u(0).u(0)
	a, err = Decode(old)
	require.NoError(t, err)
	assert.Equal(t, testAdvert("n1", 1), a)
	// And an advert without a name is written in it, for those nodes.
	unnamed, err := Encode(testAdvert("n1", 1))
	require.NoError(t, err)
	assert.Equal(t, []byte(old), unnamed)
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

// TestGoneNodesAreForgotten: a node whose advert expired or was removed is
// remembered (its sequence number) for forgetNodesAfter, and at most
// maxGoneNodes are, the longest gone first forgotten.
func TestGoneNodesAreForgotten(t *testing.T) {
	tb := NewTable("self")
	require.NoError(t, tb.Put(testAdvert("left", 5), "", t0))
	require.NoError(t, tb.Put(testAdvert("expired", 5), "", t0))
	require.NoError(t, tb.Put(testAdvert("live", 5), "", t0))
	require.True(t, tb.Remove("left"))
	for now := t0; now.Before(t0.Add(forgetNodesAfter)); now = now.Add(time.Second) {
		require.NoError(t, tb.Put(testAdvert("live", uint64(10+now.Sub(t0)/time.Second)), "", now))
		tb.Adverts(now)
	}
	assert.True(t, tb.Known("left"), "remembered for a while")
	assert.ErrorIs(t, tb.Put(testAdvert("expired", 5), "", t0.Add(time.Minute)), dfaas.ErrStaleAdvert, "a replay within that time is stale")
	late := t0.Add(3*time.Second + forgetNodesAfter + time.Second)
	require.NoError(t, tb.Put(testAdvert("live", 1e6), "", late))
	got := tb.Adverts(late)
	assert.False(t, tb.Known("left"))
	assert.False(t, tb.Known("expired"))
	require.Len(t, got, 1)
	assert.Equal(t, dfaas.NodeID("live"), got[0].Node)
	assert.NoError(t, tb.Put(testAdvert("expired", 1), "", late), "back after being forgotten: starts afresh")

	// Many ids, each gone at once: the table keeps the latest maxGoneNodes.
	tb = NewTable("self")
	n := maxGoneNodes + 100
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		id := dfaas.NodeID("minted-" + strconv.Itoa(i))
		a := testAdvert(string(id), 1)
		require.NoError(t, tb.Put(a, "", at))
		require.True(t, tb.Remove(id))
	}
	tb.Adverts(t0.Add(time.Duration(n) * time.Millisecond))
	assert.False(t, tb.Known("minted-0"), "the longest gone forgotten first")
	assert.False(t, tb.Known("minted-99"))
	assert.True(t, tb.Known("minted-100"))
	assert.True(t, tb.Known(dfaas.NodeID("minted-"+strconv.Itoa(n-1))))
}

// TestAdvertTakenAgainOnANewStream: the advert a table last took of a node
// that is not live any more is taken once more as the first advert of a new
// stream (the followee writes its latest at once), never while live and
// never an older one.
func TestAdvertTakenAgainOnANewStream(t *testing.T) {
	tb := NewTable("self")
	raw, err := Encode(testAdvert("n", 5))
	require.NoError(t, err)
	_, err = tb.receive(raw, "n", t0, false)
	require.NoError(t, err)
	_, err = tb.receive(raw, "n", t0, true)
	assert.ErrorIs(t, err, dfaas.ErrStaleAdvert, "live: the same advert is stale")
	require.True(t, tb.Remove("n"))
	_, err = tb.receive(raw, "n", t0, false)
	assert.ErrorIs(t, err, dfaas.ErrStaleAdvert, "not on an old stream")
	old, err := Encode(testAdvert("n", 4))
	require.NoError(t, err)
	_, err = tb.receive(old, "n", t0, true)
	assert.ErrorIs(t, err, dfaas.ErrStaleAdvert, "never an older one")
	_, err = tb.receive(raw, "n", t0.Add(time.Second), true)
	require.NoError(t, err)
	assert.True(t, tb.Live("n"))
}
