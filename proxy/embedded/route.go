package embedded

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// function is the state of one function that outlives plans: its limit,
// capacity and caps keep what they counted, and its counters keep
// counting, when a plan changes.
type function struct {
	name string
	// limit spreads the user requests executed locally: a token bucket a
	// Burst deep, so that a node overloaded from one moment to the next
	// runs its share interleaved with its forwards, and does not spend a
	// second's worth at once and then forward everything beyond its
	// peers' caps.
	limit *rate.Limiter
	// capacity holds all local executions to the Capacity over any second
	// (proxy.AdmissionWindow), as HAProxy's stick tables do: a helper takes
	// a bunch of forwards, retries say, up to a second of it.
	capacity *proxy.Window
	caps     map[dfaas.NodeID]*proxy.Bucket // per peer, across plans; the map is guarded by the Proxy's mu
	counts   *counters
	// refusing is set when a user request exceeds the local limit, and
	// cleared by every Apply.
	refusing atomic.Bool
}

// newFunction starts a function's state for fp: a full limit bucket window
// (the proxy's Burst) deep, and a capacity Window with nothing admitted yet.
func newFunction(name string, fp dfaas.FunctionPlan, window time.Duration, now time.Time) *function {
	return &function{name: name, limit: setLimiter(nil, min(fp.Limit, fp.Capacity), window, now),
		capacity: proxy.NewWindow(fp.Capacity, now),
		caps:     map[dfaas.NodeID]*proxy.Bucket{}, counts: newCounters()}
}

// route is the immutable routing of one function under one plan (the
// limiters it points to are shared and internally synchronised).
type route struct {
	fn    *function
	peers []peer      // in the plan's order
	pick  *proxy.Pick // over peers
	// armed: the first request over the local limit fires the proxy's
	// trigger. A route is armed only if its function was not already over
	// its limit before the plan was applied, so sustained overload does not
	// fire a trigger every tick.
	armed atomic.Bool
}

type peer struct {
	node dfaas.NodeID
	addr string
	sent *atomic.Uint64
}

// setLimiter moves l to rate r keeping its tokens, or creates it.
func setLimiter(l *rate.Limiter, r dfaas.Rate, window time.Duration, now time.Time) *rate.Limiter {
	if l == nil {
		return rate.NewLimiter(rate.Limit(r), proxy.BucketDepth(r, window))
	}
	l.SetLimitAt(now, rate.Limit(r))
	l.SetBurstAt(now, proxy.BucketDepth(r, window))
	return l
}

// newRoute builds the routing of fp over fn's persistent state; the limit
// and the peers' Caps are window (the proxy's Burst) deep. The round robin
// goes on from prev's, the function's route under the previous plan (nil:
// none).
func newRoute(fn *function, fp dfaas.FunctionPlan, window time.Duration, now time.Time, prev *route) *route {
	setLimiter(fn.limit, min(fp.Limit, fp.Capacity), window, now)
	fn.capacity.Set(fp.Capacity)
	r := &route{fn: fn}
	var weights []float64
	var buckets []*proxy.Bucket
	seen := map[dfaas.NodeID]bool{}
	for _, s := range fp.Peers {
		if !proxy.Usable(s) || seen[s.Node] {
			continue
		}
		seen[s.Node] = true
		b, ok := fn.caps[s.Node]
		if ok {
			b.Set(s.Cap, window)
		} else {
			b = proxy.NewBucket(s.Cap, window, now)
			fn.caps[s.Node] = b
		}
		r.peers = append(r.peers, peer{node: s.Node, addr: s.Addr, sent: fn.counts.peer(s.Node, now)})
		weights, buckets = append(weights, s.Weight), append(buckets, b)
	}
	for node := range fn.caps { // peers that left the plan
		if !seen[node] {
			delete(fn.caps, node)
		}
	}
	fn.counts.prune(now)
	r.pick = proxy.NewPick(weights, buckets)
	if prev != nil {
		was := make(map[dfaas.NodeID]int, len(prev.peers))
		for j, pr := range prev.peers {
			was[pr.node] = j
		}
		prevIndex := make([]int, len(r.peers))
		for i, pr := range r.peers {
			prevIndex[i] = -1
			if j, ok := was[pr.node]; ok {
				prevIndex[i] = j
			}
		}
		r.pick.Resume(prev.pick, prevIndex)
	}
	r.armed.Store(!fn.refusing.Swap(false))
	return r
}
