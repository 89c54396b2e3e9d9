package proxy

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dfaas-go/dfaas"
)

// function is the state of one function that outlives plans: its limiters
// keep their tokens and its counters keep counting when a plan changes.
type function struct {
	limit    *rate.Limiter // user requests executed locally
	capacity *rate.Limiter // all local executions
	caps     map[dfaas.NodeID]*rate.Limiter
	counts   *counters
	// refusing is set when a user request exceeds the local limit, and
	// cleared by every Apply.
	refusing atomic.Bool
}

// newFunction starts a function's state with full token buckets for fp.
func newFunction(fp dfaas.FunctionPlan, window time.Duration, now time.Time) *function {
	return &function{limit: setLimiter(nil, min(fp.Limit, fp.Capacity), window, now),
		capacity: setLimiter(nil, fp.Capacity, window, now),
		caps:     map[dfaas.NodeID]*rate.Limiter{}, counts: newCounters()}
}

// route is the immutable routing of one function under one plan (the
// limiters it points to are shared and internally synchronised).
type route struct {
	fn    *function
	peers []peer
	// armed: the first request over the local limit fires the proxy's
	// trigger. A route is armed only if its function was not already over
	// its limit before the plan was applied, so sustained overload does not
	// fire a trigger every tick.
	armed atomic.Bool

	mu      sync.Mutex // guards current
	current []float64  // smooth weighted round robin state
}

type peer struct {
	node   dfaas.NodeID
	addr   string
	weight float64
	cap    *rate.Limiter
	sent   *atomic.Uint64
}

// BucketDepth is the token bucket depth for rate r: the requests that arrive
// in window at that rate, and at least two, because a bucket of one wastes the
// tokens that accrue while it is full and so admits less than r when
// arrivals are out of phase with it. Zero rate admits nothing.
func BucketDepth(r dfaas.Rate, window time.Duration) int {
	if r <= 0 {
		return 0
	}
	return max(2, int(math.Ceil(float64(r)*window.Seconds())))
}

// setLimiter moves l to rate r keeping its tokens, or creates it.
func setLimiter(l *rate.Limiter, r dfaas.Rate, window time.Duration, now time.Time) *rate.Limiter {
	if l == nil {
		return rate.NewLimiter(rate.Limit(r), BucketDepth(r, window))
	}
	l.SetLimitAt(now, rate.Limit(r))
	l.SetBurstAt(now, BucketDepth(r, window))
	return l
}

// order returns the indices of the peers to try: first the one smooth
// weighted round robin picks, then the others by decreasing weight.
func (r *route) order() []int {
	n := len(r.peers)
	if n == 0 {
		return nil
	}
	r.mu.Lock()
	best, total := -1, 0.0
	for i, p := range r.peers {
		r.current[i] += p.weight
		total += p.weight
		if best < 0 || r.current[i] > r.current[best] {
			best = i
		}
	}
	r.current[best] -= total
	r.mu.Unlock()
	out := make([]int, 0, n)
	out = append(out, best)
	for i := range r.peers { // peers are sorted by decreasing weight
		if i != best {
			out = append(out, i)
		}
	}
	return out
}

// newRoute builds the routing of fp over fn's persistent state.
func newRoute(fn *function, fp dfaas.FunctionPlan, window time.Duration, now time.Time) *route {
	setLimiter(fn.limit, min(fp.Limit, fp.Capacity), window, now)
	setLimiter(fn.capacity, fp.Capacity, window, now)
	r := &route{fn: fn}
	for _, s := range fp.Peers {
		if s.Weight <= 0 || s.Cap <= 0 || s.Addr == "" {
			continue
		}
		fn.caps[s.Node] = setLimiter(fn.caps[s.Node], s.Cap, window, now)
		r.peers = append(r.peers, peer{node: s.Node, addr: s.Addr, weight: s.Weight, cap: fn.caps[s.Node], sent: fn.counts.peer(s.Node)})
	}
	sort.SliceStable(r.peers, func(i, j int) bool { return r.peers[i].weight > r.peers[j].weight })
	r.current = make([]float64, len(r.peers))
	r.armed.Store(!fn.refusing.Swap(false))
	return r
}
