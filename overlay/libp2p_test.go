package overlay

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

// testSecret is the federation secret of the tests' federation.
var testSecret = pnet.PSK(bytes.Repeat([]byte{7}, SecretBytes))

func startLibp2p(t *testing.T, bootstrap ...string) *Libp2p {
	t.Helper()
	return startWith(t, Libp2pConfig{Bootstrap: bootstrap, Secret: testSecret})
}

// startWith starts an overlay from cfg with the tests' namespace and a fast
// discovery interval.
func startWith(t *testing.T, cfg Libp2pConfig) *Libp2p {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.DiscoveryInterval, cfg.Namespace = 200*time.Millisecond, "dfaas-test"
	o, err := NewLibp2p(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = o.Close() })
	return o
}

func advertOf(o *Libp2p, seq uint64, demand dfaas.Rate) dfaas.Advert {
	return dfaas.Advert{Node: o.Self(), Seq: seq, TTL: 3 * time.Second, Addr: "127.0.0.1:1",
		Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 10, Demand: demand}}}
}

// TestLibp2pFederation: three agents find each other through the DHT
// rendezvous from a single bootstrap peer, adverts propagate, newer adverts
// replace older ones, and a node that stops leaves the others' tables.
func TestLibp2pFederation(t *testing.T) {
	a := startLibp2p(t)
	b := startLibp2p(t, a.Addrs()...)
	c := startLibp2p(t, a.Addrs()...)
	all := []*Libp2p{a, b, c}

	// b and c only know a: they must find each other through the DHT.
	require.Eventually(t, func() bool {
		return b.host.Network().Connectedness(c.host.ID()) == network.Connected
	}, 20*time.Second, 50*time.Millisecond, "b and c did not meet through the rendezvous")

	ctx := context.Background()
	seq := uint64(0)
	publishAll := func(demand dfaas.Rate) {
		seq++
		for _, o := range all {
			require.NoError(t, o.Publish(ctx, advertOf(o, seq, demand)))
		}
	}
	// GossipSub forms its mesh on a heartbeat: publish until everyone has heard.
	require.Eventually(t, func() bool {
		publishAll(1)
		for _, o := range all {
			if len(o.Adverts(time.Now())) != 2 {
				return false
			}
		}
		return true
	}, 20*time.Second, 200*time.Millisecond, "adverts did not propagate")

	publishAll(7)
	require.Eventually(t, func() bool {
		for _, ad := range a.Adverts(time.Now()) {
			if ad.Functions["figlet"].Demand != 7 {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond, "newer advert did not replace the older one")
	for _, ad := range a.Adverts(time.Now()) {
		assert.NotEqual(t, a.Self(), ad.Node)
	}

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	assert.Error(t, c.Publish(ctx, advertOf(c, seq+1, 0)))
	require.Eventually(t, func() bool {
		for _, o := range []*Libp2p{a, b} {
			for _, ad := range o.Adverts(time.Now()) {
				if ad.Node == c.Self() {
					return false
				}
			}
		}
		return true
	}, 3*time.Second, 20*time.Millisecond, "stopped node stayed in the tables")
	select {
	case <-a.Trigger():
	default:
		t.Error("peer leaving did not trigger a tick")
	}
	assert.Zero(t, a.Stats().Malformed+a.Stats().Spoofed)
}

// TestLibp2pDropsBadAdverts: a rogue GossipSub member on the topic sends
// malformed, oversized, spoofed and replayed adverts; every one is dropped
// and counted, and the node keeps working.
func TestLibp2pDropsBadAdverts(t *testing.T) {
	victim := startLibp2p(t)
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.PrivateNetwork(testSecret)) // a rogue member: it holds the secret
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMaxMessageSize(4*MaxAdvertBytes))
	require.NoError(t, err)
	topic, err := ps.Join("/dfaas-test/adverts/1")
	require.NoError(t, err)
	t.Cleanup(func() { _ = topic.Close() })
	require.NoError(t, h.Connect(ctx, peer.AddrInfo{ID: victim.host.ID(), Addrs: victim.host.Addrs()}))
	require.Eventually(t, func() bool { return len(topic.ListPeers()) == 1 }, 10*time.Second, 20*time.Millisecond)

	self := dfaas.NodeID(h.ID().String())
	good := func(seq uint64) []byte {
		raw, err := Encode(dfaas.Advert{Node: self, Seq: seq, TTL: 3 * time.Second, Addr: "127.0.0.1:1",
			Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 10}}})
		require.NoError(t, err)
		return raw
	}
	require.NoError(t, topic.Publish(ctx, good(5)))
	require.Eventually(t, func() bool { return victim.Stats().Accepted == 1 }, 10*time.Second, 20*time.Millisecond)

	spoofed, err := Encode(advertOf(victim, 99, 0)) // claims to be the victim itself
	require.NoError(t, err)
	for _, raw := range [][]byte{
		[]byte("not an advert"),
		[]byte(`{"v":1,"node":"` + strings.Repeat("x", MaxAdvertBytes) + `"}`),
		spoofed,
		good(5), // replay
		good(4), // older
	} {
		require.NoError(t, topic.Publish(ctx, raw))
	}
	require.Eventually(t, func() bool {
		s := victim.Stats()
		return s.Malformed == 1 && s.Oversized == 1 && s.Spoofed == 1 && s.Stale == 2
	}, 10*time.Second, 20*time.Millisecond, "drops not counted: %+v", victim.Stats())
	require.NoError(t, topic.Publish(ctx, good(6)))
	require.Eventually(t, func() bool { return victim.Stats().Accepted == 2 }, 10*time.Second, 20*time.Millisecond)
	ads := victim.Adverts(time.Now())
	require.Len(t, ads, 1)
	assert.Equal(t, uint64(6), ads[0].Seq)
}

func TestLibp2pConfigValidate(t *testing.T) {
	bad := []Libp2pConfig{
		{ListenAddrs: []string{"not a multiaddr"}},
		{Bootstrap: []string{"/ip4/127.0.0.1/tcp/1"}}, // no /p2p/ id
		{Namespace: "Has Spaces"},
		{DiscoveryInterval: time.Microsecond},
		{Secret: testSecret[:16]},
		{Secret: testSecret, Insecure: true},
		{Secret: testSecret, MaxAdvertRate: -1},
		{Secret: testSecret, MaxAdvertRate: math.Inf(1)},
	}
	for _, c := range bad {
		if c.Secret == nil && !c.Insecure {
			c.Insecure = true // so that only the field under test is wrong
		}
		assert.ErrorIs(t, c.Validate(), dfaas.ErrInvalidConfig, "%+v", c)
	}
	err := Libp2pConfig{}.Validate()
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "no secret and not Insecure")
	assert.ErrorContains(t, err, "secret")
	assert.NoError(t, Libp2pConfig{Secret: testSecret}.Validate())
	assert.NoError(t, Libp2pConfig{Insecure: true}.Validate())
}

// TestValidatorStopsStaleAdverts: the topic validator accepts an author's
// newer advert and ignores an older or equal one, so that stale adverts
// (replays) go no further than the first honest node; invalid ones are
// rejected (which lowers the sender's score).
func TestValidatorStopsStaleAdverts(t *testing.T) {
	o := startLibp2p(t)
	author := startLibp2p(t)
	msg := func(seq uint64) *pubsub.Message {
		raw, err := Encode(advertOf(author, seq, 0))
		require.NoError(t, err)
		return &pubsub.Message{Message: &pb.Message{From: []byte(author.host.ID()), Data: raw}}
	}
	ctx := context.Background()
	from := author.host.ID()
	require.Equal(t, pubsub.ValidationAccept, o.validate(ctx, from, msg(5)))
	require.NoError(t, o.table.Put(advertOf(author, 5, 0), author.Self(), time.Now()))
	assert.Equal(t, pubsub.ValidationIgnore, o.validate(ctx, from, msg(5)), "a replay")
	assert.Equal(t, pubsub.ValidationIgnore, o.validate(ctx, from, msg(4)), "an older one")
	assert.Equal(t, pubsub.ValidationAccept, o.validate(ctx, from, msg(6)))
	bad := &pubsub.Message{Message: &pb.Message{From: []byte(author.host.ID()), Data: []byte("not json")}}
	assert.Equal(t, pubsub.ValidationReject, o.validate(ctx, from, bad))
	spoofed, err := Encode(advertOf(o, 9, 0)) // signed by author, names o
	require.NoError(t, err)
	assert.Equal(t, pubsub.ValidationReject, o.validate(ctx, from, &pubsub.Message{Message: &pb.Message{From: []byte(author.host.ID()), Data: spoofed}}))
}

// TestDeliveryAfterDeparture: an advert validated before its author's
// connection dropped but delivered after the peer left the table is not
// taken: it would keep a dead peer in the plans until its TTL ran out.
func TestDeliveryAfterDeparture(t *testing.T) {
	a := startLibp2p(t)
	b := startLibp2p(t, a.Addrs()...)
	ctx := context.Background()
	seq := uint64(0)
	require.Eventually(t, func() bool {
		seq++
		require.NoError(t, b.Publish(ctx, advertOf(b, seq, 1)))
		return len(a.Adverts(time.Now())) == 1
	}, 20*time.Second, 100*time.Millisecond, "b's advert did not reach a")
	seq++
	assert.True(t, a.deliver(advertOf(b, seq, 2), b.host.ID()), "a live peer's newer advert is taken")

	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return len(a.Adverts(time.Now())) == 0 },
		3*time.Second, 10*time.Millisecond, "b stayed in a's table")
	before := a.Stats().Departed
	seq++
	assert.False(t, a.deliver(advertOf(b, seq, 3), b.host.ID()), "an advert of a departed peer is not taken")
	assert.Empty(t, a.Adverts(time.Now()))
	assert.Equal(t, before+1, a.Stats().Departed, "and it is counted")
}
