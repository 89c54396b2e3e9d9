package proxy

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// StatusCount is how many answers had one status, and their total time.
type StatusCount struct {
	Count uint64
	Time  time.Duration
}

// Statuses counts a function's user requests by the status they were
// answered, with their time from arrival to the end of the answer: what
// an OpenFaaS gateway reports as gateway_function_invocation_total and
// gateway_functions_seconds. It is safe for concurrent use and lock-free
// once a status was seen; the zero value is ready. Statuses outside
// 100-999 are not counted, so it holds at most 900 entries.
type Statuses struct {
	m sync.Map // int -> *statusCounter
}

type statusCounter struct {
	n  atomic.Uint64
	ns atomic.Int64
}

// Observe counts an answer of status that took took.
func (s *Statuses) Observe(status int, took time.Duration) {
	if status < 100 || status > 999 {
		return
	}
	v, ok := s.m.Load(status)
	if !ok {
		v, _ = s.m.LoadOrStore(status, &statusCounter{})
	}
	c := v.(*statusCounter)
	c.ns.Add(int64(max(took, 0)))
	c.n.Add(1)
}

// Snapshot returns the counts so far, nil if none.
func (s *Statuses) Snapshot() map[int]StatusCount {
	var out map[int]StatusCount
	s.m.Range(func(k, v any) bool {
		if out == nil {
			out = map[int]StatusCount{}
		}
		c := v.(*statusCounter)
		out[k.(int)] = StatusCount{Count: c.n.Load(), Time: time.Duration(c.ns.Load())}
		return true
	})
	return out
}

// addStatuses returns the sum of a and b, per status.
func addStatuses(a, b map[int]StatusCount) map[int]StatusCount {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := maps.Clone(a)
	if out == nil {
		out = map[int]StatusCount{}
	}
	for k, v := range b {
		o := out[k]
		out[k] = StatusCount{Count: o.Count + v.Count, Time: o.Time + v.Time}
	}
	return out
}

// subStatuses returns what c counted since old, per status (a count below
// old's was reset in between: all of it is new, as Delta).
func subStatuses(c, old map[int]StatusCount) map[int]StatusCount {
	if len(c) == 0 {
		return nil
	}
	out := make(map[int]StatusCount, len(c))
	for k, v := range c {
		o, ok := old[k]
		if !ok || v.Count < o.Count {
			out[k] = v
			continue
		}
		out[k] = StatusCount{Count: v.Count - o.Count, Time: max(v.Time-o.Time, 0)}
	}
	return out
}
