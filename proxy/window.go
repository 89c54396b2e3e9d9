package proxy

import (
	"math"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// AdmissionWindow is the window over which every data plane measures a
// node's Capacity (all its local executions): it runs up to a window's
// worth at once, and no more than that in any window, HAProxy with the 1 s
// sliding rate of its stick tables, the embedded proxy with a Window. A
// helper therefore takes a bunch of forwards up to a second of its
// capacity, not only what arrives spread out (on a lossy link the retries
// of a failed peer's requests come together), and a node that meets a
// burst executes its Capacity in the first second, not more.
const AdmissionWindow = time.Second

// Window is an admission limit measured as HAProxy measures a stick
// table's request rate: the admissions of the current period of length
// AdmissionWindow, plus those of the period before weighted by the part of
// it that still lies within the last AdmissionWindow. A request is
// admitted while that estimate is below the limit, so the limit holds over
// any second. A token bucket a second deep does not: kept full by a load
// at exactly its rate (a node serving its Limit leaves its Capacity bucket
// full), it lets a whole second's worth through on top, and a node of
// capacity 10 ran 17 in one second of the lossy testbed scenario. It is
// safe for concurrent use.
type Window struct {
	mu         sync.Mutex
	limit      float64   // admissions per AdmissionWindow
	start      time.Time // of the current period
	curr, prev float64   // admissions in the current and the previous period
}

// NewWindow returns a Window at rate r (MaxCap at most; zero or less
// admits nothing) with no admissions yet.
func NewWindow(r dfaas.Rate, now time.Time) *Window {
	w := &Window{start: now}
	w.Set(r)
	return w
}

// Set moves the window to rate r, keeping what it counted: a new plan
// does not forget the admissions of the last second.
func (w *Window) Set(r dfaas.Rate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limit = 0
	if r > 0 {
		w.limit = float64(min(r, MaxCap)) * AdmissionWindow.Seconds()
	}
}

// Take admits one request at now if the estimate is below the limit.
func (w *Window) Take(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.room(now) {
		return false
	}
	w.curr++
	return true
}

// Rate is the estimate at now, in requests per AdmissionWindow.
func (w *Window) Rate(now time.Time) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rotate(now)
	return w.estimate(now)
}

// room rotates the periods to now and reports whether the estimate is
// below the limit. w.mu is held.
func (w *Window) room(now time.Time) bool {
	w.rotate(now)
	return w.estimate(now) < w.limit
}

// rotate moves the current period forward to hold now. A clock that went
// back rotates nothing.
func (w *Window) rotate(now time.Time) {
	elapsed := now.Sub(w.start)
	if elapsed < AdmissionWindow {
		return
	}
	periods := elapsed / AdmissionWindow
	if periods == 1 {
		w.prev = w.curr
	} else {
		w.prev = 0
	}
	w.curr = 0
	w.start = w.start.Add(periods * AdmissionWindow)
}

// estimate is curr plus the part of prev still within a window of now.
func (w *Window) estimate(now time.Time) float64 {
	into := min(max(now.Sub(w.start), 0), AdmissionWindow)
	left := 1 - float64(into)/float64(AdmissionWindow)
	return w.curr + math.Max(0, w.prev*left)
}
