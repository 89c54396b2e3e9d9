// Command asyncbench measures how a backlog of asynchronous calls drains:
// a node whose capacity for a function is 10 req/s gets a burst of calls of
// 50 ms each (POST /async-function/work with an X-Callback-Url), once alone
// and once beside two idle peers of 20 and 30 req/s, and the table says how
// long each took until the last callback, where the calls ran, and whether
// every call was called back exactly once. Nodes are in this process (the
// embedded data plane, the in-process platform, an in-memory overlay), the
// capacities declared so that the runs compare the queue, not the
// estimator.
//
//	go run ./examples/asyncbench
//	go run ./examples/asyncbench -calls 2000 -data-planes embedded,haproxy
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/async"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "asyncbench:", err)
		os.Exit(1)
	}
}

type result struct {
	dataPlane string
	peers     bool
	took      time.Duration
	byNode    map[string]int
	once      bool
	requeued  uint64
}

func run(args []string) error {
	fs := flag.NewFlagSet("asyncbench", flag.ContinueOnError)
	calls := fs.Int("calls", 2000, "asynchronous calls made at once at node a")
	work := fs.Duration("work", 50*time.Millisecond, "how long a call takes")
	planes := fs.String("data-planes", "embedded", "data planes, comma-separated: embedded, haproxy (haproxy on $PATH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rows []result
	for _, dp := range strings.Split(*planes, ",") {
		for _, peers := range []bool{true, false} {
			r, err := drain(dp, peers, *calls, *work)
			if err != nil {
				return fmt.Errorf("%s: %w", dp, err)
			}
			rows = append(rows, r)
			fmt.Fprintf(os.Stderr, "done: %s, peers %v\n", dp, peers)
		}
	}
	fmt.Printf("%d asynchronous calls of %v at node a (10 req/s); peers b (20) and c (30) idle:\n", *calls, *work)
	fmt.Printf("%-9s %-12s %10s %8s %8s %8s %9s %10s\n", "proxy", "federation", "drained s", "at a", "at b", "at c", "requeued", "each once")
	for _, r := range rows {
		fed := "a alone"
		if r.peers {
			fed = "a, b, c"
		}
		fmt.Printf("%-9s %-12s %10.1f %8d %8d %8d %9d %10v\n", r.dataPlane, fed, r.took.Seconds(), r.byNode["a"], r.byNode["b"], r.byNode["c"], r.requeued, r.once)
	}
	fmt.Println("drained: from the first call to the last callback. requeued: attempts the data plane did not run for want of capacity (each went again).")
	return nil
}

// drain runs one row.
func drain(dp string, peers bool, calls int, work time.Duration) (result, error) {
	r := result{dataPlane: dp, peers: peers, byNode: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(calls)*200*time.Millisecond+time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "asyncbench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	handler := func(node, _ string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			time.Sleep(work)
			_, _ = io.WriteString(w, node)
		})
	}
	network := overlay.NewNetwork()
	platform := "runtime"
	if dp == "haproxy" {
		platform = "local"
	}
	build := func(name string, capacity dfaas.Rate) (*node.Node, error) {
		ov, err := network.Join(dfaas.NodeID(name))
		if err != nil {
			return nil, err
		}
		pf, err := node.OpenPlatform(ctx, platform, node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"work": capacity}, Handler: handler, Logger: quiet})
		if err != nil {
			return nil, err
		}
		return node.Build(ctx, node.Config{Overlay: ov, Platform: pf, DataPlane: dp, Interval: 200 * time.Millisecond, Logger: quiet,
			PlainPeers: true, DeclaredCapacity: true, AsyncQueue: filepath.Join(dir, name+".async"), AsyncCallbacks: async.AnyCallbacks})
	}
	a, err := build("a", 10)
	if err != nil {
		return r, err
	}
	defer a.Close()
	want := 0
	if peers {
		for name, c := range map[string]dfaas.Rate{"b": 20, "c": 30} {
			n, err := build(name, c)
			if err != nil {
				return r, err
			}
			defer n.Close()
		}
		want = 2
	}
	for len(a.Agent.Status().LastPlan.Functions["work"].Peers) != want || a.Agent.Status().LastPlan.Functions["work"].Capacity == 0 {
		if ctx.Err() != nil {
			return r, fmt.Errorf("a never planned with %d peers", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var mu sync.Mutex
	ids := map[string]int{}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		r.byNode[req.Header.Get(proxy.HeaderNode)]++
		ids[req.Header.Get(proxy.HeaderCallID)]++
		mu.Unlock()
	}))
	defer cb.Close()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	url := "http://" + a.DataPlane.UserAddr() + "/async-function/work"
	start := time.Now()
	for range calls {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		if err != nil {
			return r, err
		}
		req.Header.Set(async.HeaderCallback, cb.URL)
		resp, err := client.Do(req)
		if err != nil {
			return r, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return r, fmt.Errorf("a call answered %d", resp.StatusCode)
		}
	}
	for a.Async.Stats().Completed < uint64(calls) {
		if ctx.Err() != nil {
			return r, fmt.Errorf("%d of %d calls completed", a.Async.Stats().Completed, calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.took = time.Since(start)
	r.requeued = a.Async.Stats().Requeued
	time.Sleep(200 * time.Millisecond) // a repeat would show by now
	mu.Lock()
	defer mu.Unlock()
	r.once = len(ids) == calls
	for _, n := range ids {
		r.once = r.once && n == 1
	}
	return r, nil
}
