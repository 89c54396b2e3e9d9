package overlay

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

func joinAll(t *testing.T, n *Network, ids ...dfaas.NodeID) map[dfaas.NodeID]*Memory {
	t.Helper()
	out := map[dfaas.NodeID]*Memory{}
	for _, id := range ids {
		m, err := n.Join(id)
		require.NoError(t, err)
		out[id] = m
	}
	return out
}

func nodes(ads []dfaas.Advert) []dfaas.NodeID {
	out := []dfaas.NodeID{}
	for _, a := range ads {
		out = append(out, a.Node)
	}
	return out
}

func TestMemoryNetwork(t *testing.T) {
	ctx := context.Background()
	clock := t0
	net := NewNetworkClock(func() time.Time { return clock })
	m := joinAll(t, net, "a", "b", "c")
	_, err := net.Join("a")
	assert.Error(t, err, "duplicate id")

	for i, id := range []dfaas.NodeID{"a", "b", "c"} {
		require.NoError(t, m[id].Publish(ctx, testAdvert(string(id), uint64(i+1))))
	}
	assert.Equal(t, []dfaas.NodeID{"b", "c"}, nodes(m["a"].Adverts(clock)))

	net.Disconnect("a", "b")
	assert.Equal(t, []dfaas.NodeID{"c"}, nodes(m["a"].Adverts(clock)))
	assert.Equal(t, []dfaas.NodeID{"c"}, nodes(m["b"].Adverts(clock)))
	select {
	case <-m["a"].Trigger():
	default:
		t.Fatal("peer down did not trigger")
	}
	require.NoError(t, m["b"].Publish(ctx, testAdvert("b", 10)))
	assert.Equal(t, []dfaas.NodeID{"c"}, nodes(m["a"].Adverts(clock)), "cut link carries nothing")

	net.Heal()
	require.NoError(t, m["b"].Publish(ctx, testAdvert("b", 11)))
	assert.Equal(t, []dfaas.NodeID{"b", "c"}, nodes(m["a"].Adverts(clock)))

	net.Partition([]dfaas.NodeID{"a"}, []dfaas.NodeID{"b", "c"})
	assert.Empty(t, m["a"].Adverts(clock))
	assert.Equal(t, []dfaas.NodeID{"c"}, nodes(m["b"].Adverts(clock)))
	net.Heal()

	// A silent peer expires after its TTL on the receiver's clock.
	require.NoError(t, m["b"].Publish(ctx, testAdvert("b", 12)))
	clock = clock.Add(4 * time.Second)
	assert.Empty(t, m["a"].Adverts(clock))

	require.NoError(t, m["c"].Publish(ctx, testAdvert("c", 20)))
	require.NoError(t, m["c"].Close())
	require.NoError(t, m["c"].Close(), "idempotent")
	assert.Empty(t, m["a"].Adverts(clock), "closed member left")
	assert.ErrorIs(t, m["c"].Publish(ctx, testAdvert("c", 21)), dfaas.ErrClosed)
}

func TestMemoryDropsBadAdverts(t *testing.T) {
	net := NewNetwork()
	m := joinAll(t, net, "a", "b")
	assert.Error(t, m["a"].Receive([]byte(`{"v":1,"node":"b"`), "b"))
	raw, err := Encode(testAdvert("c", 1))
	require.NoError(t, err)
	assert.ErrorIs(t, m["a"].Receive(raw, "b"), ErrSpoofed)
	assert.Equal(t, Stats{Malformed: 1, Spoofed: 1}, m["a"].Stats())
	assert.Error(t, m["b"].Publish(context.Background(), dfaas.Advert{Node: "b"}), "invalid advert is not sent")
}

func TestMemoryDelay(t *testing.T) {
	clock := t0
	net, err := NewNetworkWith(NetworkConfig{Now: func() time.Time { return clock }, Delay: 300 * time.Millisecond})
	require.NoError(t, err)
	m := joinAll(t, net, "a", "b")
	require.NoError(t, m["b"].Publish(context.Background(), testAdvert("b", 1)))
	assert.Empty(t, m["a"].Adverts(clock.Add(299*time.Millisecond)), "not yet arrived")
	got := m["a"].Adverts(clock.Add(300 * time.Millisecond))
	require.Len(t, got, 1)
	// The time-to-live runs from arrival.
	assert.Len(t, m["a"].Adverts(clock.Add(3299*time.Millisecond)), 1)
	assert.Empty(t, m["a"].Adverts(clock.Add(3300*time.Millisecond)))
}

func TestMemoryLossIsSeededAndCounted(t *testing.T) {
	received := func(seed uint64) []int {
		net, err := NewNetworkWith(NetworkConfig{Loss: 0.5, Seed: seed})
		require.NoError(t, err)
		m := joinAll(t, net, "a", "b", "c")
		var got []int
		for seq := uint64(1); seq <= 50; seq++ {
			require.NoError(t, m["a"].Publish(context.Background(), testAdvert("a", seq)))
			got = append(got, int(m["b"].Stats().Accepted), int(m["c"].Stats().Accepted))
		}
		st := net.Stats()
		assert.Equal(t, uint64(100), st.Sent)
		assert.InDelta(t, 50, st.Lost, 20)
		assert.Equal(t, st.Sent-st.Lost, m["b"].Stats().Accepted+m["c"].Stats().Accepted)
		assert.Positive(t, st.Bytes)
		return got
	}
	assert.Equal(t, received(7), received(7), "same seed, same losses")
	assert.NotEqual(t, received(7), received(8))
}

func TestNetworkConfigValidate(t *testing.T) {
	for _, c := range []NetworkConfig{{Delay: -1}, {Loss: 1}, {Loss: -0.1}} {
		_, err := NewNetworkWith(c)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "%+v", c)
		assert.ErrorIs(t, c.Validate(), dfaas.ErrInvalidConfig, "%+v", c)
	}
}

func TestMemoryDirectCopies(t *testing.T) {
	net, err := NewNetworkWith(NetworkConfig{Direct: true})
	require.NoError(t, err)
	m := joinAll(t, net, "a", "b")
	ad := testAdvert("a", 1)
	require.NoError(t, m["a"].Publish(context.Background(), ad))
	ad.Functions["figlet"] = dfaas.FunctionState{Capacity: 99} // the sender's map, changed after publishing
	got := m["b"].Adverts(time.Now())
	require.Len(t, got, 1)
	assert.Equal(t, dfaas.Rate(20), got[0].Functions["figlet"].Capacity)
	assert.Positive(t, net.Stats().Bytes)
}

// TestMemoryNeighbourhoods: with Neighbours set, a member hears only the
// peers it follows - its nearest - and the network carries one copy per
// follower, not per member.
func TestMemoryNeighbourhoods(t *testing.T) {
	ctx := context.Background()
	// RTTs double with every step apart, so that each is its own band.
	pos := map[dfaas.NodeID]int{"a": 0, "b": 1, "c": 2, "d": 5, "e": 6}
	net, err := NewNetworkWith(NetworkConfig{Now: func() time.Time { return t0 }, Neighbours: 2,
		RTT: func(x, y dfaas.NodeID) time.Duration {
			d := pos[x] - pos[y]
			return time.Millisecond << max(d, -d)
		}})
	require.NoError(t, err)
	m := joinAll(t, net, "a", "b", "c", "d", "e")
	for id, member := range m {
		require.NoError(t, member.Publish(ctx, testAdvert(string(id), 1)))
	}
	want := map[dfaas.NodeID][]dfaas.NodeID{"a": {"b", "c"}, "b": {"a", "c"}, "c": {"a", "b"}, "d": {"c", "e"}, "e": {"c", "d"}}
	for id, follows := range want {
		assert.Equal(t, follows, net.Follows(id), id)
		assert.Equal(t, follows, nodes(m[id].Adverts(t0)), id)
	}
	assert.Equal(t, uint64(5*2), net.Stats().Sent, "one copy per follower")

	// c leaves: its followers choose again.
	require.NoError(t, m["c"].Close())
	assert.Equal(t, []dfaas.NodeID{"b", "d"}, net.Follows("a"))
	assert.Equal(t, []dfaas.NodeID{"b", "e"}, net.Follows("d"))

	_, err = NewNetworkWith(NetworkConfig{Neighbours: -1})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
}
