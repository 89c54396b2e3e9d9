package faas

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Function is a Go function deployed on a Runtime.
type Function struct {
	// Name is a DNS-1123 label, as in OpenFaaS.
	Name string
	// Handler serves the function's requests. It sees the OpenFaaS path
	// /function/<name>[/...].
	Handler http.Handler
	// Capacity, if set, is the most invocations per second the runtime
	// executes, and the capacity it declares for the function; beyond it
	// the runtime answers 429. Zero: no limit, Undeclared (the function's
	// cost and the machine bound it, and the node measures it).
	// It is measured as the data planes measure a node's capacity
	// (proxy.Window: up to a second's worth at once, no more over any
	// second), with a tenth more (capacityMargin), so that the runtime
	// refuses nothing a data plane admitted for it. With a stricter measure
	// (it was a token bucket half a second deep) a burst the data plane
	// admitted reached its users as 429.
	Capacity dfaas.Rate
	// Work, if set, is how long each invocation holds the runtime before the
	// handler runs, to model a function's service time.
	Work time.Duration
}

// capacityMargin is how much more than its Capacity a function takes in
// any second: a data plane that admits exactly the Capacity calls the
// runtime after a delay that varies from request to request, so the
// runtime's second and the data plane's do not start together, and a
// request admitted at the end of one could find the other's full. The
// local provider (faas/local, EnforceMaxRate) keeps the same margin.
const capacityMargin = 1.1

// Runtime is an embedded FaaS platform. It implements http.Handler (the
// local target of a proxy) and Platform. Its functions may have a real
// cost (CPU, CPUPerKiB) or model one (Work). It is safe for concurrent use.
type Runtime struct {
	mu  sync.RWMutex
	fns map[string]*deployed
}

type deployed struct {
	Function
	limiter     *proxy.Window
	invocations atomic.Uint64
	throttled   atomic.Uint64
}

// NewRuntime returns a runtime with no functions.
func NewRuntime() *Runtime { return &Runtime{fns: map[string]*deployed{}} }

// Deploy adds a function or replaces the one of the same name.
func (rt *Runtime) Deploy(f Function) error {
	if err := dfaas.ValidateFunctionName(f.Name); err != nil {
		return fmt.Errorf("faas: deploy: %w", err)
	}
	if f.Handler == nil || !(f.Capacity >= 0) || math.IsInf(float64(f.Capacity), 0) || f.Work < 0 {
		return fmt.Errorf("faas: deploy %s: %w: nil handler, bad capacity %v or negative work", f.Name, dfaas.ErrInvalidConfig, f.Capacity)
	}
	d := &deployed{Function: f}
	if f.Capacity > 0 {
		d.limiter = proxy.NewWindow(f.Capacity*capacityMargin, time.Now())
	}
	rt.mu.Lock()
	rt.fns[f.Name] = d
	rt.mu.Unlock()
	return nil
}

// Remove deletes a function; it reports whether it was deployed.
func (rt *Runtime) Remove(name string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	_, ok := rt.fns[name]
	delete(rt.fns, name)
	return ok
}

// Functions lists the deployed function names, sorted.
func (rt *Runtime) Functions() []string {
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	out := make([]string, 0, len(rt.fns))
	for n := range rt.fns {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Capacities implements Platform.
func (rt *Runtime) Capacities(ctx context.Context) (map[string]dfaas.Rate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	out := make(map[string]dfaas.Rate, len(rt.fns))
	for n, d := range rt.fns {
		out[n] = d.Capacity
		if d.Capacity == 0 {
			out[n] = Undeclared
		}
	}
	return out, nil
}

// Invocations returns how many times a function ran and how many calls the
// runtime refused with 429, since it was deployed.
func (rt *Runtime) Invocations(name string) (ran, throttled uint64) {
	rt.mu.RLock()
	d := rt.fns[name]
	rt.mu.RUnlock()
	if d == nil {
		return 0, 0
	}
	return d.invocations.Load(), d.throttled.Load()
}

// ServeHTTP executes /function/<name> requests: 404 for unknown functions,
// 429 over a declared capacity.
func (rt *Runtime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := proxy.FunctionName(r.URL.Path)
	rt.mu.RLock()
	d := rt.fns[name]
	rt.mu.RUnlock()
	if !ok || d == nil {
		http.Error(w, "function not found", http.StatusNotFound)
		return
	}
	if d.limiter != nil && !d.limiter.Take(time.Now()) {
		d.throttled.Add(1)
		http.Error(w, "function over capacity", http.StatusTooManyRequests)
		return
	}
	d.invocations.Add(1)
	if d.Work > 0 {
		t := time.NewTimer(d.Work)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	d.Handler.ServeHTTP(w, r)
}

// HandlerFunc adapts a function of the classic OpenFaaS shape (request body
// in, response body out) to an http.Handler. An error becomes a 500.
func HandlerFunc(f func(ctx context.Context, body []byte) ([]byte, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, err := f(r.Context(), body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(out)
	})
}

var (
	_ http.Handler = (*Runtime)(nil)
	_ Platform     = (*Runtime)(nil)
)
