package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/embedded"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
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
	quiet := slog.New(slog.DiscardHandler)
	var stubs []*peerStub
	defer func() {
		for _, p := range stubs {
			_ = p.srv.Close()
		}
	}()
	var shares []dfaas.Share
	for i := range peers {
		p, err := startPeer()
		if err != nil {
			return r, err
		}
		stubs = append(stubs, p)
		shares = append(shares, dfaas.Share{Node: dfaas.NodeID(fmt.Sprintf("peer-%02d", i)), Addr: p.ln.Addr().String(), Weight: 1 / float64(peers), Cap: 1e6})
	}
	var localCalls atomic.Int64
	platform := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localCalls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "local")
	}), ReadHeaderTimeout: 5 * time.Second}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	go func() { _ = platform.Serve(pl) }()
	defer platform.Close()
	userAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	peerAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	var dp proxy.DataPlane
	var ha *haproxy.Driver
	switch plane {
	case "embedded":
		if dp, err = embedded.New(embedded.Config{Node: "a", UserAddr: userAddr, PeerAddr: peerAddr, Logger: quiet}, platform.Handler); err != nil {
			return r, err
		}
	case "haproxy":
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ha, err = haproxy.Start(sctx, haproxy.Config{Node: "a", UserAddr: userAddr, PeerAddr: peerAddr, Platform: pl.Addr().String(), Logger: quiet})
		cancel()
		if err != nil {
			return r, err
		}
		dp = ha
	}
	defer dp.Close()
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
