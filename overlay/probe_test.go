package overlay

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

// TestSilentPeerIsSuspect: a connected peer that stops answering probes (as
// a frozen process or a partition would: its TCP connection stays up) leaves
// the table within about a second, triggers a tick, and its adverts are
// ignored while it is silent; still silent, it loses its connection (and is
// redialled); once it answers, its adverts count again. The probes measure
// its round-trip time. SetOnSuspect's function hears of it.
func TestSilentPeerIsSuspect(t *testing.T) {
	a, b, seq := probedPair(t)
	ctx := context.Background()
	rtt, _ := a.RTT(b.Self())
	assert.Less(t, rtt, 250*time.Millisecond, "loopback")
	assert.Positive(t, a.host.Peerstore().LatencyEWMA(b.host.ID()), "recorded in the peerstore")
	drain(a)
	told := make(chan dfaas.NodeID, 4)
	a.SetOnSuspect(func(n dfaas.NodeID) { told <- n })

	evs, err := a.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	require.NoError(t, err)
	defer evs.Close()
	hungUp := make(chan struct{})
	go func() {
		for e := range evs.Out() {
			if ev := e.(event.EvtPeerConnectednessChanged); ev.Peer == b.host.ID() && ev.Connectedness != network.Connected {
				close(hungUp)
				return
			}
		}
	}()
	// b stops answering pings but stays connected.
	silencePings(b)
	silentAt := time.Now()
	require.Eventually(t, func() bool { return len(a.Adverts(time.Now())) == 0 }, 3*time.Second, 10*time.Millisecond,
		"a silent peer stayed in the table")
	t.Logf("silent peer left the table after %v", time.Since(silentAt))
	select {
	case <-a.Trigger():
	default:
		t.Error("a suspect peer did not trigger a tick")
	}
	suspectAt := time.Now()
	for range 5 {
		seq++
		require.NoError(t, b.Publish(ctx, advertOf(b, seq, 2)))
		time.Sleep(50 * time.Millisecond)
		assert.Empty(t, a.Adverts(time.Now()), "a silent peer's advert is ignored")
	}
	assert.Positive(t, a.Stats().Silent)
	select {
	case <-hungUp:
	case <-time.After(3 * time.Second):
		t.Error("a peer silent for long was not hung up on")
	}
	select {
	case n := <-told:
		assert.Equal(t, b.Self(), n, "the data plane is told (SetOnSuspect)")
		assert.GreaterOrEqual(t, time.Since(suspectAt), abortAfter-200*time.Millisecond, "told once silent for abortAfter, not at once")
	case <-time.After(abortAfter + 2*time.Second):
		t.Error("a peer silent for long was not told to SetOnSuspect's function")
	}

	// It answers again: its next advert counts.
	b.host.SetStreamHandler(ping.ID, ping.NewPingService(b.host).PingHandler)
	require.Eventually(t, func() bool {
		seq++
		require.NoError(t, b.Publish(ctx, advertOf(b, seq, 3)))
		ads := a.Adverts(time.Now())
		return len(ads) == 1 && ads[0].Node == b.Self()
	}, 5*time.Second, 100*time.Millisecond, "the peer answers again but stays out")
	_, ok := a.RTT(dfaas.NodeID("not a peer id"))
	assert.False(t, ok)
}

// silencePings makes o read the pings it gets and never echo them, while
// it stays connected (as a frozen process or a stalled connection would).
func silencePings(o *Libp2p) {
	o.host.SetStreamHandler(ping.ID, func(s network.Stream) {
		_, _ = io.Copy(io.Discard, s)
		_ = s.Reset()
	})
	for _, c := range o.host.Network().Conns() {
		for _, s := range c.GetStreams() {
			if s.Protocol() == ping.ID {
				_ = s.Reset()
			}
		}
	}
}

// drain empties an overlay's trigger.
func drain(o *Libp2p) {
	for {
		select {
		case <-o.Trigger():
		default:
			return
		}
	}
}

// TestTraffic: the bandwidth counter sees the overlay's bytes both ways.
func TestTraffic(t *testing.T) {
	a := startLibp2p(t)
	b := startLibp2p(t, a.Addrs()...)
	require.Eventually(t, func() bool {
		at, bt := a.Traffic(), b.Traffic()
		return at.BytesIn > 0 && at.BytesOut > 0 && bt.BytesIn > 0 && bt.BytesOut > 0
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return a.TrafficByProtocol()["/ipfs/ping/1.0.0"].BytesOut > 0 },
		5*time.Second, 20*time.Millisecond, "the probes are counted")
	var sum int64
	for _, s := range a.TrafficByProtocol() {
		sum += s.BytesOut
	}
	out := a.Traffic().BytesOut // read after: the total never trails the parts
	assert.GreaterOrEqual(t, out, sum)
	assert.Positive(t, sum)
	// The probes run every half second: after the first sample's second,
	// the rates have a span and see them.
	require.Eventually(t, func() bool {
		tr := a.Traffic()
		return tr.RateOut > 0 && tr.RateIn > 0 && a.TrafficByProtocol()["/ipfs/ping/1.0.0"].RateOut > 0
	}, 5*time.Second, 100*time.Millisecond, "rates are measured")
}

// TestDistanceIgnoresRetransmittedProbes: the RTT plans see is the lowest
// of the last ten probes: one answered late (a retransmission on a lossy
// link) does not make a peer look far; a longer route shows once ten
// probes have taken it.
func TestDistanceIgnoresRetransmittedProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := quietNode(t, ctx)
	p := peer.ID("followee")
	o.probes.mu.Lock()
	o.probes.ps[p] = &probeState{}
	o.probes.mu.Unlock()
	_, ok := o.probes.distance(p)
	assert.False(t, ok, "before the first answer")
	for range 5 {
		o.probes.record(p, 10*time.Millisecond, nil)
	}
	o.probes.record(p, 600*time.Millisecond, nil) // retransmitted
	d, ok := o.probes.distance(p)
	require.True(t, ok)
	assert.Equal(t, 10*time.Millisecond, d)
	ewma, _ := o.probes.rtt(p)
	assert.Greater(t, ewma, 100*time.Millisecond, "the EWMA (for probe timeouts) moved")
	for range rttWindow {
		o.probes.record(p, 50*time.Millisecond, nil)
	}
	d, _ = o.probes.distance(p)
	assert.Equal(t, 50*time.Millisecond, d, "a longer route")
}

// TestCleanCountsLateAndMissedProbes: Clean is the share of the latest
// ten probes answered within 150 ms of the lowest round trip, once five
// were sent: a retransmitted answer and a miss count against it, a
// scheduling delay does not, and clean probes wash them out.
func TestCleanCountsLateAndMissedProbes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := quietNode(t, ctx)
	p, err := peer.Decode("12D3KooWBxRdWHskYwKJzJQdrEgL1HwyZH71cpULPuRqUrAbyzsV")
	require.NoError(t, err)
	o.probes.mu.Lock()
	o.probes.ps[p] = &probeState{}
	o.probes.mu.Unlock()
	node := dfaas.NodeID(p.String())
	for range 4 {
		o.probes.record(p, 10*time.Millisecond, nil)
	}
	_, ok := o.Clean(node)
	assert.False(t, ok, "four probes are too few to tell")
	o.probes.record(p, 10*time.Millisecond, nil)
	c, ok := o.Clean(node)
	require.True(t, ok)
	assert.Equal(t, 1.0, c)
	o.probes.record(p, 260*time.Millisecond, nil)             // a retransmission
	o.probes.record(p, 0, errors.New("i/o deadline reached")) // a miss
	o.probes.record(p, 90*time.Millisecond, nil)              // a busy machine's delay
	c, _ = o.Clean(node)
	assert.Equal(t, 6.0/8, c)
	for range rttWindow {
		o.probes.record(p, 10*time.Millisecond, nil)
	}
	c, _ = o.Clean(node)
	assert.Equal(t, 1.0, c, "ten clean probes since")
	_, ok = o.Clean("not-a-peer-id")
	assert.False(t, ok)
}

// TestAbortWaitsLongerBehindALossyLink: a peer whose probes came late or
// not at all before it fell silent has its forwards cut lossyAbortAfter
// into the silence (TCP's back-off on a lossy link, not a frozen peer); a
// peer whose link was clean until its misses, abortAfter.
func TestAbortWaitsLongerBehindALossyLink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := quietNode(t, ctx)
	told := map[dfaas.NodeID]chan time.Time{}
	var ps []peer.ID
	for _, id := range []string{"12D3KooWBxRdWHskYwKJzJQdrEgL1HwyZH71cpULPuRqUrAbyzsV", "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"} {
		p, err := peer.Decode(id)
		require.NoError(t, err)
		ps = append(ps, p)
		told[dfaas.NodeID(p.String())] = make(chan time.Time, 1)
		o.probes.mu.Lock()
		o.probes.ps[p] = &probeState{}
		o.probes.mu.Unlock()
	}
	o.SetOnSuspect(func(n dfaas.NodeID) { told[n] <- time.Now() })
	clean, lossy := ps[0], ps[1]
	miss := errors.New("i/o deadline reached")
	for i := range rttWindow {
		if i == 5 { // one late probe: a link clean enough
			o.probes.record(clean, 260*time.Millisecond, nil)
		} else {
			o.probes.record(clean, 10*time.Millisecond, nil)
		}
		if i%3 == 2 { // three late in ten: a link losing about a tenth each way
			o.probes.record(lossy, 260*time.Millisecond, nil) // a retransmission
		} else {
			o.probes.record(lossy, 10*time.Millisecond, nil)
		}
	}
	for range o.cfg.SuspectAfter {
		o.probes.record(clean, 0, miss)
		o.probes.record(lossy, 0, miss)
	}
	silent := time.Now()
	select {
	case at := <-told[dfaas.NodeID(clean.String())]:
		assert.InDelta(t, abortAfter.Seconds(), at.Sub(silent).Seconds(), 0.5, "the clean link's peer, its own misses aside")
	case <-time.After(abortAfter + 2*time.Second):
		t.Fatal("the silent peer behind a clean link was not told")
	}
	select {
	case at := <-told[dfaas.NodeID(lossy.String())]:
		assert.InDelta(t, lossyAbortAfter.Seconds(), at.Sub(silent).Seconds(), 0.5, "the lossy link's peer")
	case <-time.After(lossyAbortAfter + 2*time.Second):
		t.Fatal("the silent peer behind a lossy link was not told")
	}
}

// TestAnsweredPeerIsNotSuspect: a peer that misses its probes while the
// data plane has answers from it (a libp2p connection stalled on a lossy
// link) stays in the table and keeps its connection; once the data plane
// has none either, it is suspect at the next miss.
func TestAnsweredPeerIsNotSuspect(t *testing.T) {
	cfg := Libp2pConfig{Secret: testSecret, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond}
	a := startWith(t, cfg)
	cfg.Bootstrap = a.Addrs()
	b := startWith(t, cfg)
	var answering atomic.Bool
	answering.Store(true)
	a.SetAnswered(func(n dfaas.NodeID) time.Time {
		if n == b.Self() && answering.Load() {
			return time.Now()
		}
		return time.Time{}
	})
	ctx := context.Background()
	seq := uint64(0)
	publish := func() {
		seq++
		require.NoError(t, b.Publish(ctx, advertOf(b, seq, 1)))
	}
	require.Eventually(t, func() bool {
		publish()
		return len(a.Adverts(time.Now())) == 1
	}, 20*time.Second, 100*time.Millisecond, "b's advert at a")

	silencePings(b)
	// Six probe timeouts: a silent peer is suspect after two, hung up on
	// after four.
	for end := time.Now().Add(6 * 500 * time.Millisecond); time.Now().Before(end); {
		publish()
		time.Sleep(100 * time.Millisecond)
		require.Len(t, a.Adverts(time.Now()), 1, "a peer whose forwards are answered stays")
	}
	assert.Positive(t, a.Stats().Excused)
	assert.Equal(t, network.Connected, a.host.Network().Connectedness(b.host.ID()), "and keeps its connection")

	answering.Store(false)
	require.Eventually(t, func() bool {
		publish()
		return len(a.Adverts(time.Now())) == 0
	}, 3*time.Second, 50*time.Millisecond, "no answers either: suspect")
}

// TestBriefSilenceIsNotAborted: a peer suspect for a moment (its probes
// stalled, as on a lossy link) that answers again within abortAfter is not
// told to SetOnSuspect's function: its forwards were only slow.
func TestBriefSilenceIsNotAborted(t *testing.T) {
	a, b, _ := probedPair(t)
	told := make(chan dfaas.NodeID, 4)
	a.SetOnSuspect(func(n dfaas.NodeID) { told <- n })
	silencePings(b)
	require.Eventually(t, func() bool { return len(a.Adverts(time.Now())) == 0 }, 3*time.Second, 10*time.Millisecond, "suspect")
	b.host.SetStreamHandler(ping.ID, ping.NewPingService(b.host).PingHandler) // answers again at once
	select {
	case n := <-told:
		t.Errorf("%s was told though it answered again within abortAfter", n)
	case <-time.After(abortAfter + time.Second):
	}
}

// probedPair starts a and b, b bootstrapped from a, both probing every
// 100 ms, and returns once a holds b's advert and has measured its RTT,
// with the sequence number of b's last advert.
func probedPair(t *testing.T) (a, b *Libp2p, seq uint64) {
	t.Helper()
	cfg := Libp2pConfig{Secret: testSecret, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond}
	a = startWith(t, cfg)
	cfg.Bootstrap = a.Addrs()
	b = startWith(t, cfg)
	require.Eventually(t, func() bool {
		seq++
		require.NoError(t, b.Publish(context.Background(), advertOf(b, seq, 1)))
		_, measured := a.RTT(b.Self())
		return len(a.Adverts(time.Now())) == 1 && measured
	}, 20*time.Second, 100*time.Millisecond, "b's advert and RTT at a")
	return a, b, seq
}
