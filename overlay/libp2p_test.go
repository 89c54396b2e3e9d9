package overlay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
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
	// Followers choose whom to follow every second: publish until everyone has heard.
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

// rogue starts a bare libp2p host of the tests' federation that serves the
// advert protocol with serve, and connects it to victim, which will follow
// it.
func rogue(t *testing.T, victim *Libp2p, serve func(s network.Stream, self dfaas.NodeID)) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.PrivateNetwork(testSecret))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })
	self := dfaas.NodeID(h.ID().String())
	h.SetStreamHandler(followProtocol("dfaas-test"), func(s network.Stream) { serve(s, self) })
	require.NoError(t, h.Connect(context.Background(), peer.AddrInfo{ID: victim.host.ID(), Addrs: victim.host.Addrs()}))
	return h
}

// frame is an advert stream's frame around raw.
func frame(raw []byte) []byte { return append(binary.AppendUvarint(nil, uint64(len(raw))), raw...) }

// TestLibp2pDropsBadAdverts: a rogue followee writes malformed, replayed,
// older and spoofed adverts on its stream; each is dropped and counted,
// good ones in between are taken, and a spoofed one or an oversized frame
// ends the stream and takes the rogue out of the plans.
func TestLibp2pDropsBadAdverts(t *testing.T) {
	victim := startLibp2p(t)
	good := func(self dfaas.NodeID, seq uint64) []byte {
		raw, err := Encode(dfaas.Advert{Node: self, Seq: seq, TTL: time.Minute, Addr: "127.0.0.1:1",
			Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 10}}})
		require.NoError(t, err)
		return raw
	}
	spoofed, err := Encode(advertOf(victim, 99, 0)) // names the victim itself
	require.NoError(t, err)
	release := make(chan struct{})
	var rogueID dfaas.NodeID
	rogue(t, victim, func(s network.Stream, self dfaas.NodeID) {
		for _, raw := range [][]byte{good(self, 5), []byte("not an advert"), good(self, 5), good(self, 4), good(self, 6)} {
			if _, err := s.Write(frame(raw)); err != nil {
				return
			}
		}
		<-release
		_, _ = s.Write(frame(spoofed))
		_, _ = io.Copy(io.Discard, s)
	})
	require.Eventually(t, func() bool {
		s := victim.Stats()
		return s.Accepted == 2 && s.Malformed == 1 && s.Stale == 2
	}, 10*time.Second, 20*time.Millisecond, "drops not counted: %+v", victim.Stats())
	ads := victim.Adverts(time.Now())
	require.Len(t, ads, 1)
	assert.Equal(t, uint64(6), ads[0].Seq, "the newest good advert")
	rogueID = ads[0].Node
	close(release)
	require.Eventually(t, func() bool { return victim.Stats().Spoofed == 1 && len(victim.Adverts(time.Now())) == 0 },
		10*time.Second, 20*time.Millisecond, "a spoofing followee stayed: %+v", victim.Stats())
	time.Sleep(2 * chooseInterval)
	assert.NotContains(t, victim.Following(), rogueID, "and it is not followed again")

	rogue(t, victim, func(s network.Stream, self dfaas.NodeID) {
		_, _ = s.Write(frame(good(self, 1)))
		_, _ = s.Write(binary.AppendUvarint(nil, MaxAdvertBytes+1))
		_, _ = s.Write(make([]byte, 1024))
		_, _ = io.Copy(io.Discard, s)
	})
	require.Eventually(t, func() bool { return victim.Stats().Oversized == 1 && len(victim.Adverts(time.Now())) == 0 },
		10*time.Second, 20*time.Millisecond, "an oversized frame went unnoticed: %+v", victim.Stats())
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

// TestFollowersMakeRoom: a node full of followers takes a newcomer all the
// same: the follower from the busiest network is told to follow someone
// else (an empty frame) and hung up on, so no one can fill a node's places
// for good.
func TestFollowersMakeRoom(t *testing.T) {
	node := startWith(t, Libp2pConfig{Secret: testSecret, MaxFollowers: 1})
	ctx := context.Background()
	require.NoError(t, node.Publish(ctx, advertOf(node, 1, 0)))
	follow := func() network.Stream {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.PrivateNetwork(testSecret))
		require.NoError(t, err)
		t.Cleanup(func() { _ = h.Close() })
		require.NoError(t, h.Connect(ctx, peer.AddrInfo{ID: node.host.ID(), Addrs: node.host.Addrs()}))
		s, err := h.NewStream(ctx, node.host.ID(), followProtocol("dfaas-test"))
		require.NoError(t, err)
		return s
	}
	readFrame := func(s network.Stream) ([]byte, error) {
		if err := s.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return nil, err
		}
		r := bufio.NewReader(s)
		size, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		_, err = io.ReadFull(r, buf)
		return buf, err
	}
	first := follow()
	raw, err := readFrame(first) // reading opens the stream (lazy negotiation)
	require.NoError(t, err)
	a, err := Decode(raw)
	require.NoError(t, err, "a follower gets the latest advert at once")
	assert.Equal(t, node.Self(), a.Node)

	second := follow()
	type frame struct {
		raw []byte
		err error
	}
	got := make(chan frame, 1)
	go func() { raw, err := readFrame(second); got <- frame{raw, err} }()
	raw, err = readFrame(first)
	require.NoError(t, err)
	assert.Empty(t, raw, "the first is told to make room")
	f := <-got
	require.NoError(t, f.err)
	_, err = Decode(f.raw)
	require.NoError(t, err, "and the newcomer is served")
	assert.Equal(t, 1, node.Followers())
	assert.Equal(t, uint64(1), node.Stats().Evicted)
}
