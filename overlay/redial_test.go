package overlay

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
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
	r.forget(p)
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

// quietNode starts a member that discovers nothing by itself.
func quietNode(t *testing.T, ctx context.Context) *Libp2p {
	t.Helper()
	o, err := NewLibp2p(ctx, Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", DiscoveryInterval: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = o.Close() })
	return o
}

// followingPair starts a and b, b with an advert, and connects a to b (a is
// not b's bootstrap peer: nothing but a's redialer dials b again); it
// returns once a has taken b's advert on its stream.
func followingPair(t *testing.T, ctx context.Context) (a, b *Libp2p) {
	t.Helper()
	a, b = quietNode(t, ctx), quietNode(t, ctx)
	require.NoError(t, b.Publish(ctx, advertOf(b, 1, 0)))
	require.NoError(t, a.host.Connect(ctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}))
	require.Eventually(t, func() bool { return a.table.Live(b.Self()) }, 10*time.Second, 10*time.Millisecond, "a follows b")
	return a, b
}

// TestOnlyLostFolloweesAreRedialled: a followee whose connection drops is
// redialled; one this node let go of first is not (the connection manager's
// trimming of it must stay done).
func TestOnlyLostFolloweesAreRedialled(t *testing.T) {
	for _, letGo := range []bool{false, true} {
		t.Run(map[bool]string{false: "lost", true: "let go"}[letGo], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a, b := followingPair(t, ctx)
			bid := b.host.ID()
			if letGo {
				a.hood.mu.Lock()
				a.hood.barred[bid] = bar{until: time.Now().Add(time.Hour), hard: true}
				a.hood.mu.Unlock()
				a.hood.unfollow(bid, "test")
				require.Eventually(t, func() bool { return !slices.Contains(a.Following(), b.Self()) },
					5*time.Second, 10*time.Millisecond)
			}
			require.NoError(t, b.host.Close()) // dead, not left: a redial would stay listed
			// Counted rather than looked up: b closes its connections
			// one after another, and a redial can reach it in between,
			// which ends that redial before a poll sees it.
			redialled := func() bool { return a.Stats().Redialled > 0 }
			if letGo {
				require.Never(t, redialled, time.Second, 10*time.Millisecond, "a peer let go of is redialled")
			} else {
				require.Eventually(t, redialled, 5*time.Second, 10*time.Millisecond, "a lost followee is not redialled")
			}
		})
	}
}

// TestReconnectionLiftsSoftBars: a peer left out after failed dials is
// followed again as soon as a connection to it comes up; one that refused
// the follow stays out.
func TestReconnectionLiftsSoftBars(t *testing.T) {
	for _, hard := range []bool{false, true} {
		t.Run(map[bool]string{false: "soft", true: "hard"}[hard], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a, b := followingPair(t, ctx)
			bid := b.host.ID()
			a.hood.mu.Lock()
			a.hood.barred[bid] = bar{until: time.Now().Add(time.Hour), hard: hard}
			a.hood.failed[bid] = 6
			a.hood.mu.Unlock()
			a.hood.unfollow(bid, "test")
			require.Eventually(t, func() bool {
				return !slices.Contains(a.Following(), b.Self()) && len(b.host.Network().ConnsToPeer(a.host.ID())) > 0
			}, 5*time.Second, 10*time.Millisecond)
			// Down and up again: b's dial, or one of the DHT's or a
			// redialer's if they are quicker.
			require.NoError(t, b.host.Network().ClosePeer(a.host.ID()))
			require.NoError(t, b.host.Connect(ctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}))
			following := func() bool { return slices.Contains(a.Following(), b.Self()) }
			if hard {
				require.Never(t, following, 2*time.Second, 10*time.Millisecond, "a hard bar was lifted")
			} else {
				require.Eventually(t, following, 2*time.Second, 10*time.Millisecond, "a soft bar outlived the reconnection")
			}
		})
	}
}

// TestLateBootstrapPeerIsDialled: a bootstrap peer not up yet when this
// node starts (agents of a federation start together) is connected soon
// after it comes up, not at the next discovery round, even though another
// bootstrap peer answered at once.
func TestLateBootstrapPeerIsDialled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := func(key crypto.PrivKey, listen string, bootstrap []string) *Libp2p {
		cfg := Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", Bootstrap: bootstrap,
			DiscoveryInterval: time.Hour, PrivateKey: key}
		if listen != "" {
			cfg.ListenAddrs = []string{listen}
		}
		o, err := NewLibp2p(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = o.Close() })
		return o
	}
	early := start(nil, "", nil)
	lateKey, _, err := crypto.GenerateEd25519Key(nil)
	require.NoError(t, err)
	lateID, err := peer.IDFromPrivateKey(lateKey)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there yet
	lateAddr := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)
	node := start(nil, "", append(early.Addrs(), lateAddr+"/p2p/"+lateID.String()))
	require.Eventually(t, func() bool { return node.host.Network().Connectedness(early.host.ID()) == network.Connected },
		5*time.Second, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // the first dial to the late one has failed
	late := start(lateKey, lateAddr, nil)
	up := time.Now()
	require.Eventually(t, func() bool { return node.host.Network().Connectedness(late.host.ID()) == network.Connected },
		5*time.Second, 10*time.Millisecond, "the late bootstrap peer is left to discovery")
	t.Logf("connected %v after the late peer came up", time.Since(up))
}

// TestStaleFollowFailureDoesNotBar: a follow whose dial began before a
// connection to the peer came up (a healed partition: the old dial times
// out after the new connection is up) does not bar the peer, once per
// stable stream; a failure without a connection coming up does.
func TestStaleFollowFailureDoesNotBar(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, b := quietNode(t, ctx), quietNode(t, ctx)
	p := b.host.ID()
	require.NoError(t, o.host.Connect(ctx, peer.AddrInfo{ID: p, Addrs: b.host.Addrs()}))
	n := newNeighbourhood(o) // not running: only this test touches it
	gone, stop := context.WithCancel(ctx)
	stop() // the follow's NewStream fails at once, with the connection up
	attempt := func(connectionCameUp bool) (barred bool) {
		n.mu.Lock()
		n.pending[p] = true
		delete(n.barred, p)
		n.mu.Unlock()
		if connectionCameUp {
			n.reconnected(p)
		}
		n.follow(gone, p)
		n.mu.Lock()
		defer n.mu.Unlock()
		assert.Empty(t, n.pending)
		assert.Empty(t, n.upDuring)
		_, barred = n.barred[p]
		return barred
	}
	assert.True(t, attempt(false), "no connection came up: barred")
	assert.False(t, attempt(true), "a connection came up during the dial: tried again at once")
	assert.True(t, attempt(true), "once per stable stream only")
}

// TestMetMemberIsFollowedAtOnce: a member just identified asks for a round
// at once while there is room for it, and not when the neighbourhood is
// full or already follows it.
func TestMetMemberIsFollowedAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := NewLibp2p(ctx, Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", DiscoveryInterval: time.Hour, Neighbours: 2})
	require.NoError(t, err)
	defer o.Close()
	n := newNeighbourhood(o) // not running: only this test touches it
	nudged := func() bool {
		select {
		case <-n.rechoose:
			return true
		default:
			return false
		}
	}
	n.met("newcomer")
	assert.True(t, nudged(), "room for it")
	n.following["x"] = &followee{}
	n.met("x")
	assert.False(t, nudged(), "followed already")
	n.pending["y"] = true
	n.met("newcomer")
	assert.False(t, nudged(), "no room")
}

// TestFlakyFolloweeBacksOff: a followee whose stream (and connection) is
// lost once is redialled and followed again at once; lost again early, it
// backs off and is not redialled, so a member dropping its connection at
// will cannot make this node dial and follow it in a loop.
func TestFlakyFolloweeBacksOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b := followingPair(t, ctx)
	following := func() bool { return slices.Contains(a.Following(), b.Self()) }

	flakyIs := func(k int) func() bool {
		return func() bool {
			a.hood.mu.Lock()
			defer a.hood.mu.Unlock()
			return a.hood.flaky[b.host.ID()] == k
		}
	}
	require.NoError(t, b.host.Network().ClosePeer(a.host.ID())) // first loss
	require.Eventually(t, flakyIs(1), 5*time.Second, time.Millisecond)
	require.Eventually(t, following, 3*time.Second, 10*time.Millisecond, "a first loss is redialled and followed again")
	// Its first advert read (a stream reset before that is a refusal).
	require.Eventually(t, func() bool { return a.table.Live(b.Self()) }, 3*time.Second, time.Millisecond)

	require.NoError(t, b.host.Network().ClosePeer(a.host.ID())) // lost again, early
	require.Eventually(t, flakyIs(2), 5*time.Second, time.Millisecond)
	a.hood.mu.Lock()
	flaky, bar := a.hood.flaky[b.host.ID()], a.hood.barred[b.host.ID()]
	a.hood.mu.Unlock()
	a.redial.mu.Lock()
	redialled := a.redial.lost[b.host.ID()] != nil
	a.redial.mu.Unlock()
	require.Equal(t, 2, flaky, "bar %+v until %v", bar, time.Until(bar.until))
	assert.False(t, redialled, "not redialled")
	assert.False(t, bar.hard)
	assert.Greater(t, time.Until(bar.until), 700*time.Millisecond, "barred twice as long")
	assert.Never(t, following, 600*time.Millisecond, 10*time.Millisecond)
}

// TestALeaveIsLoggedAsOne: a member that closes tells its followers, which
// log a leave with its name (not a reset stream) and do not redial it; a
// member that crashes is still lost, and redialled.
func TestALeaveIsLoggedAsOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var log logBuffer
	a := startWith(t, Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", DiscoveryInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	b, err := NewLibp2p(ctx, Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", DiscoveryInterval: time.Hour, PrivateKey: key})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	ad := advertOf(b, 1, 0)
	ad.Name = "edge-b"
	require.NoError(t, b.Publish(ctx, ad))
	require.NoError(t, a.host.Connect(ctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}))
	require.Eventually(t, func() bool { return a.table.Live(b.Self()) }, 10*time.Second, 10*time.Millisecond, "a follows b")
	assert.Equal(t, "edge-b", a.table.Name(b.Self()))

	start := time.Now()
	require.NoError(t, b.Close())
	assert.Less(t, time.Since(start), 2*time.Second, "a leave waits for its followers a moment only")
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "peer left") }, 5*time.Second, 10*time.Millisecond)
	out := log.String()
	assert.Contains(t, out, "peer_name=edge-b")
	assert.Contains(t, out, `why="it left the federation"`)
	assert.NotContains(t, out, "reset")
	a.redial.mu.Lock()
	assert.Nil(t, a.redial.lost[b.host.ID()], "a member that left is not redialled")
	a.redial.mu.Unlock()
	assert.Equal(t, "edge-b", a.table.Name(b.Self()), "its name is remembered after it left")

	// Back (a restart, the same identity): followed again as soon as it
	// connects, though it left a moment ago.
	back, err := NewLibp2p(ctx, Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", DiscoveryInterval: time.Hour, PrivateKey: key})
	require.NoError(t, err)
	t.Cleanup(func() { _ = back.Close() })
	require.NoError(t, back.Publish(ctx, advertOf(back, 2, 0)))
	require.NoError(t, a.host.Connect(ctx, peer.AddrInfo{ID: back.host.ID(), Addrs: back.host.Addrs()}))
	require.Eventually(t, func() bool { return a.table.Live(back.Self()) }, 3*time.Second, 10*time.Millisecond,
		"a member back after a leave is followed again at once")
}
