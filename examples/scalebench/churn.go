package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
)

// churnRow is a node of functions whose plans name peers, ten functions
// replaced a second for a while, under load.
type churnRow struct {
	plane             string
	functions, peers  int
	took              time.Duration
	replaced          int
	ok, failed, local int64
	reloads           int
	apply             []time.Duration
}

// churn runs the churn of issue 25's acceptance on plane: a node of
// functions (f0 runs locally, the others are forwarded to every peer),
// ten of the forwarded ones replaced by new ones a second - locally and
// at peers alike, as far as the node's plans go - for o.churnFor, while
// four clients call f0 and f1-f9, which stay.
func churn(o options, plane string, functions, peers int) (churnRow, error) {
	r := churnRow{plane: plane, functions: functions, peers: peers}
	ctx := context.Background()
	var localCalls atomic.Int64
	b, err := startBench(plane, okPlatform(func() { localCalls.Add(1) }), "", peers)
	if err != nil {
		return r, err
	}
	defer b.Close()
	dp, ha, userAddr, shares := b.dp, b.ha, b.userAddr, b.shares(1e6)
	plan := map[string]dfaas.FunctionPlan{"f0": {Limit: 1e6, Capacity: 1e6}}
	var forwarded []string // the replaceable ones, oldest first
	for i := 1; i < functions; i++ {
		name := fmt.Sprintf("f%d", i)
		plan[name] = dfaas.FunctionPlan{Peers: shares}
		if i >= 10 {
			forwarded = append(forwarded, name)
		}
	}
	if err := dp.Apply(ctx, dfaas.Plan{Functions: plan}); err != nil {
		return r, err
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var failures sync.Map // status or error -> count, for the report
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				fn := fmt.Sprintf("f%d", i%10) // f0 locally, f1-f9 at peers: never replaced
				resp, err := client.Post("http://"+userAddr+"/function/"+fn, "text/plain", strings.NewReader("x"))
				if err != nil {
					r.failedAdd(&failures, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					r.failedAdd(&failures, fmt.Sprintf("%d %s", resp.StatusCode, body))
					continue
				}
				atomic.AddInt64(&r.ok, 1)
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	for time.Since(start) < o.churnFor {
		<-tick.C
		// One of the oldest out, a new one in: ten a second.
		old := forwarded[0]
		forwarded = forwarded[1:]
		delete(plan, old)
		name := fmt.Sprintf("g%d", r.replaced)
		plan[name] = dfaas.FunctionPlan{Peers: shares}
		forwarded = append(forwarded, name)
		t0 := time.Now()
		if err := dp.Apply(ctx, dfaas.Plan{Functions: plan}); err != nil {
			tick.Stop()
			close(done)
			wg.Wait()
			return r, fmt.Errorf("apply: %w", err)
		}
		r.apply = append(r.apply, time.Since(t0))
		r.replaced++
	}
	tick.Stop()
	close(done)
	wg.Wait()
	r.took = time.Since(start)
	r.failed = atomic.LoadInt64(&r.failed)
	r.local = localCalls.Load()
	if ha != nil {
		r.reloads = ha.Reloads()
	}
	failures.Range(func(k, v any) bool {
		fmt.Fprintf(os.Stderr, "churn %s: %d x %v\n", plane, *v.(*int64), k)
		return true
	})
	return r, nil
}

// failedAdd counts a failed request by what went wrong.
func (r *churnRow) failedAdd(m *sync.Map, what string) {
	atomic.AddInt64(&r.failed, 1)
	v, _ := m.LoadOrStore(what, new(int64))
	atomic.AddInt64(v.(*int64), 1)
}
