package testbed

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// callbacks receives the results of asynchronous calls (LoadSpec.Async) on
// the testbed's own address on the bridge, which every node reaches: each
// call's id (its X-Call-Id, the testbed's request id) with how many
// callbacks it got, when the first came and its X-Function-Status.
type callbacks struct {
	srv     *http.Server
	url     string
	started time.Time
	mu      sync.Mutex
	got     map[string]*callback
}

type callback struct {
	n      int
	at     time.Duration
	status string
}

func startCallbacks(host string) (*callbacks, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("testbed: callback listener: %w", err)
	}
	c := &callbacks{url: "http://" + l.Addr().String() + "/done", got: map[string]*callback{}}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		id := r.Header.Get("X-Call-Id")
		c.mu.Lock()
		defer c.mu.Unlock()
		cb := c.got[id]
		if cb == nil {
			cb = &callback{at: time.Since(c.started), status: r.Header.Get("X-Function-Status")}
			c.got[id] = cb
		}
		cb.n++
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(l) }()
	return c, nil
}

func (c *callbacks) close() { _ = c.srv.Close() }

// AsyncReport is what became of a run's asynchronous calls.
type AsyncReport struct {
	// Accepted calls (202); Refused, answered otherwise (the queue full,
	// an unknown function, no answer).
	Accepted int `json:"accepted"`
	Refused  int `json:"refused"`
	// CalledBack: accepted calls whose result reached the callback;
	// CalledBackTwice those of them that reached it more than once;
	// Missing: accepted calls with no callback by the run's end.
	CalledBack      int `json:"called_back"`
	CalledBackTwice int `json:"called_back_twice"`
	Missing         int `json:"missing"`
	// NotOK counts callbacks whose function status was not 200.
	NotOK int `json:"not_ok"`
	// RanTwice counts accepted calls executed more than once (at least
	// once allows it only across a crash).
	RanTwice int `json:"ran_twice"`
	// RanAt counts the accepted calls by the node that ran them.
	RanAt map[string]int `json:"ran_at"`
	// DrainedS is when the last first callback came, in seconds from the
	// run's start.
	DrainedS float64 `json:"drained_s"`
}

// asyncReport sums up the asynchronous results of res (the others are
// left to report).
func (b *bed) asyncReport(res []result) *AsyncReport {
	if b.cbs == nil {
		return nil
	}
	r := &AsyncReport{RanAt: map[string]int{}}
	b.cbs.mu.Lock()
	defer b.cbs.mu.Unlock()
	b.ledger.mu.Lock()
	defer b.ledger.mu.Unlock()
	for _, q := range res {
		if !q.async {
			continue
		}
		if q.code != http.StatusAccepted {
			r.Refused++
			continue
		}
		r.Accepted++
		if runs := b.ledger.runs[q.id]; len(runs) > 0 {
			r.RanAt[b.s.Nodes[runs[0]].Name]++
			if len(runs) > 1 {
				r.RanTwice++
			}
		}
		cb := b.cbs.got[q.id]
		if cb == nil {
			r.Missing++
			continue
		}
		r.CalledBack++
		if cb.n > 1 {
			r.CalledBackTwice++
		}
		if cb.status != "200" {
			r.NotOK++
		}
		r.DrainedS = max(r.DrainedS, cb.at.Seconds())
	}
	return r
}
