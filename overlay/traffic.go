package overlay

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Traffic is what the overlay's streams carried, in all or over one
// protocol: payload bytes since the host started, and their rates over the
// last RateWindow.
type Traffic struct {
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
	RateIn   float64 `json:"rate_in_bps"`  // bytes per second
	RateOut  float64 `json:"rate_out_bps"` // bytes per second
}

// RateWindow is the span Traffic's rates are measured over: the totals are
// sampled every second, and a rate is the growth from the oldest sample
// within the window to now.
const RateWindow = 10 * time.Second

// traffic is the host's bandwidth reporter: the stream bytes it read and
// wrote, in all and per protocol (libp2p counts stream payloads; the
// transport's own framing and encryption are not in it). libp2p's
// metrics.BandwidthCounter would do, but it meters rates with a process-wide
// goroutine that outlives every host; the overlay samples its own totals
// in one of its goroutines instead (sample), and stops it with the host.
type traffic struct {
	in, out atomic.Int64
	mu      sync.Mutex
	proto   map[protocol.ID]*metrics.Stats
	samples []trafficSample // oldest first, at most one per second over RateWindow
}

// trafficSample is the totals at one instant.
type trafficSample struct {
	at      time.Time
	in, out int64
	proto   map[protocol.ID]metrics.Stats
}

var _ metrics.Reporter = (*traffic)(nil)

func newTraffic() *traffic { return &traffic{proto: map[protocol.ID]*metrics.Stats{}} }

func (t *traffic) LogSentMessage(n int64) { t.out.Add(n) }
func (t *traffic) LogRecvMessage(n int64) { t.in.Add(n) }

func (t *traffic) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	t.mu.Lock()
	t.of(p).TotalOut += n
	t.mu.Unlock()
}

func (t *traffic) LogRecvMessageStream(n int64, p protocol.ID, _ peer.ID) {
	t.mu.Lock()
	t.of(p).TotalIn += n
	t.mu.Unlock()
}

// of returns protocol p's counters; t.mu is held.
func (t *traffic) of(p protocol.ID) *metrics.Stats {
	s := t.proto[p]
	if s == nil {
		s = &metrics.Stats{}
		t.proto[p] = s
	}
	return s
}

// sample records the totals at now and forgets samples older than
// RateWindow but the newest of them (the base of the rates).
func (t *traffic) sample(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := trafficSample{at: now, in: t.in.Load(), out: t.out.Load(), proto: make(map[protocol.ID]metrics.Stats, len(t.proto))}
	for p, st := range t.proto {
		s.proto[p] = *st
	}
	t.samples = append(t.samples, s)
	drop := 0
	for drop+1 < len(t.samples) && now.Sub(t.samples[drop+1].at) >= RateWindow {
		drop++
	}
	t.samples = append(t.samples[:0], t.samples[drop:]...)
}

// runSampler samples the totals every second until done closes.
func (t *traffic) runSampler(done <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	t.sample(time.Now())
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			t.sample(now)
		}
	}
}

// perSecond is the growth from then to now, per second of span; 0 over
// less than a second (the first second after the start), which would
// report a burst as a rate.
func perSecond(now, then int64, span time.Duration) float64 {
	if span < time.Second || now < then {
		return 0
	}
	return float64(now-then) / span.Seconds()
}

// totals returns the totals and their rates at now, in all and per protocol.
func (t *traffic) totals(now time.Time) (all Traffic, byProto map[protocol.ID]Traffic) {
	t.mu.Lock()
	defer t.mu.Unlock()
	all = Traffic{BytesIn: t.in.Load(), BytesOut: t.out.Load()}
	byProto = make(map[protocol.ID]Traffic, len(t.proto))
	var base trafficSample
	if len(t.samples) > 0 {
		base = t.samples[0]
	}
	span := now.Sub(base.at)
	if base.at.IsZero() {
		span = 0
	}
	all.RateIn, all.RateOut = perSecond(all.BytesIn, base.in, span), perSecond(all.BytesOut, base.out, span)
	for p, s := range t.proto {
		b := base.proto[p]
		byProto[p] = Traffic{BytesIn: s.TotalIn, BytesOut: s.TotalOut,
			RateIn: perSecond(s.TotalIn, b.TotalIn, span), RateOut: perSecond(s.TotalOut, b.TotalOut, span)}
	}
	return all, byProto
}

func (t *traffic) GetBandwidthForPeer(peer.ID) metrics.Stats { return metrics.Stats{} }

func (t *traffic) GetBandwidthForProtocol(p protocol.ID) metrics.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.proto[p]; s != nil {
		return *s
	}
	return metrics.Stats{}
}

func (t *traffic) GetBandwidthTotals() metrics.Stats {
	return metrics.Stats{TotalIn: t.in.Load(), TotalOut: t.out.Load()}
}

func (t *traffic) GetBandwidthByPeer() map[peer.ID]metrics.Stats { return map[peer.ID]metrics.Stats{} }

func (t *traffic) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[protocol.ID]metrics.Stats, len(t.proto))
	for p, s := range t.proto {
		out[p] = *s
	}
	return out
}

func (t *traffic) Reset() {
	t.in.Store(0)
	t.out.Store(0)
	t.mu.Lock()
	t.proto = map[protocol.ID]*metrics.Stats{}
	t.samples = nil
	t.mu.Unlock()
}

func (t *traffic) TrimIdle(time.Time) {}
