package proxy

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// The pick rule: how a data plane chooses the peer of a request it
// forwards. Every data plane implements it the same way (the embedded proxy
// with Pick itself, HAProxy in dfaas.lua), and the golden vectors in
// testdata/pick.json hold them to it:
//
//  1. The plan's peers with a usable share (Usable) take part, in the plan's
//     order; their fallback order is by decreasing Weight, ties in the
//     plan's order.
//  2. Each request advances smooth weighted round robin (nginx's) once over
//     the peers in fallback order: every peer's current value grows by its
//     weight, the largest (the first of equals) is chosen and loses the sum
//     of the weights.
//  3. The chosen peer is tried first, then the others in fallback order. A
//     peer is tried only if its Bucket gives a token at the request's
//     arrival: its Cap is how many requests per second it may be sent.
//  4. A new plan for the function keeps the round robin going: each peer
//     still in it keeps its current value, a new peer starts at zero, and
//     the values are shifted to sum to zero (Resume). Plans come every
//     tick; a round robin started afresh each time would never reach a
//     peer whose weight is less than one tick's requests' worth (a
//     degraded peer's probes).

// MaxCap is the largest Cap a data plane enforces: above it, a cap is no
// limit at all (a larger or infinite Cap counts as MaxCap).
const MaxCap = 1e9

// BucketDepth is the token bucket depth for rate r: the requests that arrive
// in window at that rate, and at least two, because a bucket of one wastes the
// tokens that accrue while it is full and so admits less than r when
// arrivals are out of phase with it. Zero rate admits nothing.
func BucketDepth(r dfaas.Rate, window time.Duration) int {
	if !(r > 0) {
		return 0
	}
	return max(2, int(math.Ceil(float64(min(r, MaxCap))*window.Seconds())))
}

// Usable reports whether a share can be forwarded to: a finite positive
// Weight, a positive Cap, and an address that is a plain host:port
// (dfaas.ValidateAddr). Data planes skip the others.
func Usable(s dfaas.Share) bool {
	return Weighed(s) && dfaas.ValidateAddr(s.Addr) == nil
}

// Weighed reports whether a share's Weight and Cap let it be forwarded to
// (Usable but for its address: for a data plane that checks an address
// once for all the functions that name it).
func Weighed(s dfaas.Share) bool {
	return s.Weight > 0 && !math.IsInf(s.Weight, 0) && s.Cap > 0
}

// Bucket is a token bucket holding a peer to its Cap. It starts full. It
// is safe for concurrent use, so that it can outlive a plan: the Picks of
// an old and a new plan may share it.
type Bucket struct {
	mu                  sync.Mutex
	rate, depth, tokens float64
	at                  time.Time
}

// NewBucket returns a full bucket at rate r (MaxCap at most) with
// BucketDepth(r, burst) tokens.
func NewBucket(r dfaas.Rate, burst time.Duration, now time.Time) *Bucket {
	b := &Bucket{at: now, tokens: math.Inf(1)}
	b.Set(r, burst)
	return b
}

// Set moves the bucket to rate r, keeping its tokens up to the new depth,
// so a new plan does not refill a cap already spent.
func (b *Bucket) Set(r dfaas.Rate, burst time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = 0
	if r > 0 {
		b.rate = float64(min(r, MaxCap))
	}
	b.depth = float64(BucketDepth(r, burst))
	b.tokens = min(b.tokens, b.depth)
}

// Take takes a token at now if the bucket holds one. Tokens accrue at the
// rate since the last Take, up to the depth; a clock that went back adds
// none.
func (b *Bucket) Take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = min(b.depth, b.tokens+elapsed*b.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Pick is the pick rule for one function under one plan. It is safe for
// concurrent use.
type Pick struct {
	order   []int // peers in fallback order, as indices of the plan's order
	weights []float64
	buckets []*Bucket

	mu      sync.Mutex // guards current
	current []float64  // smooth weighted round robin state, in fallback order
}

// NewPick returns the pick among peers with these weights and buckets,
// given in the plan's order (the indices Order and Next return). Every
// weight must be positive and finite (see Usable).
func NewPick(weights []float64, buckets []*Bucket) *Pick {
	p := &Pick{order: make([]int, len(weights)), weights: weights, buckets: buckets, current: make([]float64, len(weights))}
	for i := range p.order {
		p.order[i] = i
	}
	sort.SliceStable(p.order, func(a, b int) bool { return weights[p.order[a]] > weights[p.order[b]] })
	return p
}

// Order advances the round robin by one request and returns the peers to
// try for it: the round robin's choice first, then the others in fallback
// order. Take says whether each may be sent the request.
func (p *Pick) Order() []int {
	n := len(p.order)
	if n == 0 {
		return nil
	}
	p.mu.Lock()
	best, total := 0, 0.0
	for k, i := range p.order {
		p.current[k] += p.weights[i]
		total += p.weights[i]
		if p.current[k] > p.current[best] {
			best = k
		}
	}
	p.current[best] -= total
	p.mu.Unlock()
	out := make([]int, 0, n)
	out = append(out, p.order[best])
	for k, i := range p.order {
		if k != best {
			out = append(out, i)
		}
	}
	return out
}

// Resume carries prev's round robin over to p (rule 4): prevIndex gives,
// for each of p's peers in the plan's order, its index in prev's plan
// order, or -1 for a peer prev did not have. Call it before p is used.
func (p *Pick) Resume(prev *Pick, prevIndex []int) {
	if prev == nil || len(prevIndex) != len(p.weights) {
		return
	}
	prev.mu.Lock()
	kOf := make(map[int]int, len(prev.order)) // prev's plan index -> its fallback position
	for k, i := range prev.order {
		kOf[i] = k
	}
	sum := 0.0
	for k, i := range p.order {
		if j := prevIndex[i]; j >= 0 {
			if pk, ok := kOf[j]; ok {
				p.current[k] = prev.current[pk]
			}
		}
		sum += p.current[k]
	}
	prev.mu.Unlock()
	if n := len(p.current); n > 0 {
		for k := range p.current {
			p.current[k] -= sum / float64(n)
		}
	}
}

// Take takes a token from peer i's bucket at now.
func (p *Pick) Take(i int, now time.Time) bool { return p.buckets[i].Take(now) }

// Next applies the whole rule to one request arriving at now: the first
// peer of Order whose bucket has a token, which it takes, or -1.
func (p *Pick) Next(now time.Time) int {
	for _, i := range p.Order() {
		if p.buckets[i].Take(now) {
			return i
		}
	}
	return -1
}
