package overlay

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// authorLimits bounds the adverts accepted from each author: a token bucket
// per author, rate r and burst r (at least 1). Buckets of authors that went
// quiet are dropped once there are many, so the map stays as small as the
// set of recent authors.
type authorLimits struct {
	r       float64
	mu      sync.Mutex
	m       map[peer.ID]*rate.Limiter
	excess  map[peer.ID]*decaying // over-rate adverts a peer sent of its own
	dropped atomic.Uint64
}

// decaying is a counter that loses 10% a second.
type decaying struct {
	v    float64
	last time.Time
}

func (d *decaying) at(now time.Time) float64 {
	return d.v * math.Pow(0.9, now.Sub(d.last).Seconds())
}

// maxIdleAuthors is the map size beyond which full (idle) buckets go.
const maxIdleAuthors = 1024

func newAuthorLimits(r float64) *authorLimits {
	return &authorLimits{r: r, m: map[peer.ID]*rate.Limiter{}, excess: map[peer.ID]*decaying{}}
}

// allow reports whether an advert by author, delivered by from, is within
// the author's rate. An author that floods in person (from == author: honest
// relays never exceed the rate, as they validate first) also accumulates an
// excess that lowers its GossipSub score (penalty), so that a sustained
// flood is soon graylisted and dropped before any signature is checked.
func (l *authorLimits) allow(author, from peer.ID, now time.Time) bool {
	l.mu.Lock()
	lim := l.m[author]
	if lim == nil {
		if len(l.m) >= maxIdleAuthors {
			l.pruneLocked(now)
		}
		lim = rate.NewLimiter(rate.Limit(l.r), max(1, int(l.r)))
		l.m[author] = lim
	}
	ok := lim.AllowN(now, 1)
	if !ok && from == author {
		d := l.excess[author]
		if d == nil {
			if len(l.excess) >= maxIdleAuthors {
				l.pruneLocked(now)
			}
			d = &decaying{}
			l.excess[author] = d
		}
		d.v, d.last = d.at(now)+1, now
	}
	l.mu.Unlock()
	if !ok {
		l.dropped.Add(1)
	}
	return ok
}

// pruneLocked drops the buckets that are full again: their authors have
// been quiet long enough that forgetting them changes nothing.
func (l *authorLimits) pruneLocked(now time.Time) {
	for id, lim := range l.m {
		if lim.TokensAt(now) >= float64(lim.Burst()) {
			delete(l.m, id)
		}
	}
	for id, d := range l.excess {
		if d.at(now) < 1 {
			delete(l.excess, id)
		}
	}
}

// penalty is the application-specific GossipSub score of peer p: minus its
// decayed excess.
func (l *authorLimits) penalty(p peer.ID) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.excess[p]; d != nil {
		return -d.at(time.Now())
	}
	return 0
}

// forget drops the bucket of an author whose connection closed; its excess
// stays, to decay, so that reconnecting does not clear a flooder's record.
func (l *authorLimits) forget(author peer.ID) {
	l.mu.Lock()
	delete(l.m, author)
	l.mu.Unlock()
}

// scoreParams scores peers on the advert topic. Only misbehaviour counts:
// adverts a peer publishes beyond its advert rate (penalty, one point each,
// decaying by 10% a second); every invalid advert a peer delivers (rejected by the validator: hostile,
// spoofed, malformed) adds to a counter whose square, times -10, is the
// peer's score, decaying by 10% a second; broken promises of the gossip
// protocol (IWANTs not answered) cost the same way. A peer that delivers a
// handful of invalid adverts in a row falls below the thresholds: first its
// gossip, then its publishing, then everything it sends is ignored
// (graylisted) until the score decays back. Honest members never deliver
// invalid adverts (their relays validate first), so they keep score 0.
//
// IP colocation is not scored: members behind one NAT, and every test on
// loopback, share an address legitimately.
func scoreParams(topic string, penalty func(peer.ID) float64) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		SkipAtomicValidation:      true,
		AppSpecificScore:          penalty,
		AppSpecificWeight:         1,
		DecayInterval:             time.Second,
		DecayToZero:               0.01,
		RetainScore:               time.Minute,
		BehaviourPenaltyWeight:    -10,
		BehaviourPenaltyThreshold: 2,
		BehaviourPenaltyDecay:     0.9,
		Topics: map[string]*pubsub.TopicScoreParams{topic: {
			SkipAtomicValidation:           true,
			TopicWeight:                    1,
			TimeInMeshQuantum:              time.Second, // unweighted, but divides
			InvalidMessageDeliveriesWeight: -10,
			InvalidMessageDeliveriesDecay:  0.9,
		}},
	}
}

// scoreThresholds: 3 invalid adverts (-90) stop gossip with the peer, 5
// (-250) stop publishing to it, 7 (-490) graylist it.
func scoreThresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		SkipAtomicValidation: true,
		GossipThreshold:      -50,
		PublishThreshold:     -200,
		GraylistThreshold:    -400,
	}
}
