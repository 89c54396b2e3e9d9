package overlay

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// traffic is the host's bandwidth reporter: the stream bytes it read and
// wrote, in all and per protocol (libp2p counts stream payloads; the
// transport's own framing and encryption are not in it). libp2p's
// metrics.BandwidthCounter would do, but it meters rates with a process-wide
// goroutine that outlives every host; totals are all the overlay needs.
type traffic struct {
	in, out atomic.Int64
	mu      sync.Mutex
	proto   map[protocol.ID]*metrics.Stats
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
	t.mu.Unlock()
}

func (t *traffic) TrimIdle(time.Time) {}
