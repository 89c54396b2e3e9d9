// Command demo runs the DFaaS reference scenario on loopback: N complete
// nodes (real libp2p overlay, embedded proxy, faas/local platform, Agent), with
// open-loop load from vegeta, and prints what each node served second by
// second.
//
//	go run ./examples/demo                       # 10/20/30 req/s nodes, 50 req/s to node 1
//	go run ./examples/demo -json                 # one JSON object instead of the table
//	go run ./examples/demo -plot served.png      # served rate per node over time
//	go run ./examples/demo -strategy all-local   # the no-forwarding baseline
//	go run ./examples/demo -dashboard 127.0.0.1:9100 -duration 2m  # watch it live in a browser
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/internal/scenario"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/proxy"
)

type options struct {
	capacities []dfaas.Rate
	rates      []dfaas.Rate
	duration   time.Duration
	interval   time.Duration
	strategy   string
	forecaster string
	overlay    string
	proxy      string
	haproxy    string
	plot       string
	dashboard  string
	json       bool
	verbose    bool
	// dashboardUp, if set, is told the live page's URL once it serves;
	// loadDone, when the load has ended.
	dashboardUp func(url string)
	loadDone    func()
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caps := fs.String("capacities", "10,20,30", "capacity of each node, req/s")
	rates := fs.String("rates", "50,0,0", "offered load at each node, req/s")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of the load")
	fs.DurationVar(&o.interval, "interval", time.Second, "agents' control tick")
	fs.StringVar(&o.strategy, "strategy", "proportional", "balancing strategy: "+strings.Join(balance.Names(), ", "))
	fs.StringVar(&o.forecaster, "forecast", "last", "forecaster: last, ewma, holt or holt-winters:<period in ticks>")
	fs.StringVar(&o.overlay, "overlay", "libp2p", "overlay: libp2p (real hosts on loopback) or memory")
	fs.StringVar(&o.proxy, "proxy", node.DefaultDataPlane, "data plane of every node: "+strings.Join(proxy.Names(), ", "))
	fs.StringVar(&o.haproxy, "haproxy", "", "with -proxy haproxy: the haproxy binary (default: haproxy on $PATH)")
	fs.StringVar(&o.plot, "plot", "", "write a PNG of the served rate per node over time to this file")
	fs.StringVar(&o.dashboard, "dashboard", "", "serve the live federation page of all the nodes at this address, e.g. 127.0.0.1:9100, during the load and after it until interrupted")
	fs.BoolVar(&o.json, "json", false, "print one JSON object with the results instead of the table")
	fs.BoolVar(&o.verbose, "v", false, "log the components to stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var err error
	if o.capacities, err = parseRates(*caps); err != nil {
		return o, fmt.Errorf("-capacities: %w", err)
	}
	if o.rates, err = parseRates(*rates); err != nil {
		return o, fmt.Errorf("-rates: %w", err)
	}
	if len(o.rates) != len(o.capacities) {
		return o, fmt.Errorf("-rates has %d values for %d nodes", len(o.rates), len(o.capacities))
	}
	if o.duration < time.Second {
		return o, fmt.Errorf("-duration %v: at least 1s", o.duration)
	}
	if _, err := balance.ByName(o.strategy); err != nil {
		return o, err
	}
	if _, err := forecast.ByName(o.forecaster); err != nil {
		return o, err
	}
	if !slices.Contains(proxy.Names(), o.proxy) {
		return o, fmt.Errorf("-proxy %q: want one of %s", o.proxy, strings.Join(proxy.Names(), ", "))
	}
	return o, nil
}

func parseRates(s string) ([]dfaas.Rate, error) {
	var out []dfaas.Rate
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v < 0 || v > 1e6 {
			return nil, fmt.Errorf("%q is not a rate in [0, 1e6]", f)
		}
		out = append(out, dfaas.Rate(v))
	}
	return out, nil
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	strategy, _ := balance.ByName(o.strategy)
	cfg := scenario.ClusterConfig{Capacities: o.capacities, Interval: o.interval, Strategy: strategy, Overlay: o.overlay,
		DataPlane: o.proxy, Binary: o.haproxy}
	cfg.Forecaster = func() dfaas.Forecaster { f, _ := forecast.ByName(o.forecaster); return f }
	if o.verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	c, err := scenario.StartCluster(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	formCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitFormed(formCtx); err != nil {
		return err
	}
	if o.dashboard != "" {
		stop, err := serveDashboard(o, c)
		if err != nil {
			return err
		}
		defer stop()
	}

	table := !o.json
	if table {
		fmt.Fprintf(stdout, "%d nodes formed a federation over %s with %s proxies; offering %s req/s for %v (strategy %s, tick %v)\n\n",
			len(c.Nodes), o.overlay, o.proxy, join(o.rates), o.duration, o.strategy, o.interval)
		fmt.Fprintf(stdout, "%6s", "t(s)")
		for i, n := range c.Nodes {
			fmt.Fprintf(stdout, "  node %s (cap %g)", n.Name, o.capacities[i])
		}
		fmt.Fprintln(stdout, "   served req/s (local + received)")
	}
	lc := scenario.LoadConfig{Rates: o.rates, Duration: o.duration}
	if table {
		lc.Progress = func(b int, served []float64) {
			fmt.Fprintf(stdout, "%6d", b+1)
			for i, s := range served {
				fmt.Fprintf(stdout, "  %*.1f", len(fmt.Sprintf("node %s (cap %g)", c.Nodes[i].Name, o.capacities[i])), s)
			}
			fmt.Fprintln(stdout)
		}
	}
	rep, err := scenario.Run(ctx, c, lc)
	if o.loadDone != nil {
		o.loadDone()
	}
	if err != nil {
		return err
	}
	if o.plot != "" {
		if err := plotServed(o.plot, rep); err != nil {
			return err
		}
	}
	if o.json {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printSummary(stdout, rep, o)
	}
	if o.dashboard != "" {
		// The page stays up, showing the federation idle, until interrupted.
		fmt.Fprintln(os.Stderr, "demo: the load is over; the live page stays up until interrupted (Ctrl-C)")
		<-ctx.Done()
	}
	return nil
}

// serveDashboard serves the live page for the whole federation at
// o.dashboard until stop: each node's own entry of its view, named as the
// table names it.
func serveDashboard(o options, c *scenario.Cluster) (stop func(), err error) {
	ln, err := net.Listen("tcp", o.dashboard)
	if err != nil {
		return nil, fmt.Errorf("-dashboard: %w", err)
	}
	view := func() node.View {
		views := make([]node.View, len(c.Nodes))
		for i, n := range c.Nodes {
			views[i] = n.View()
			for j := range views[i].Nodes {
				if views[i].Nodes[j].Self {
					views[i].Nodes[j].Name = "node " + n.Name
				}
			}
		}
		return node.MergeViews(views...)
	}
	srv := &http.Server{Handler: node.FederationHandler(view), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/"
	fmt.Fprintln(os.Stderr, "demo: live federation page at", url)
	if o.dashboardUp != nil {
		o.dashboardUp(url)
	}
	return func() { _ = srv.Close() }, nil
}

func join(rs []dfaas.Rate) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.FormatFloat(float64(r), 'g', -1, 64)
	}
	return strings.Join(parts, "/")
}

func printSummary(w io.Writer, rep scenario.Report, o options) {
	fmt.Fprintf(w, "\n%-6s %9s %8s %12s %13s %9s %9s %14s\n", "node", "capacity", "offered", "served_local", "forwarded_out", "received", "rejected", "steady req/s")
	for _, n := range rep.Nodes {
		fmt.Fprintf(w, "%-6s %9g %8g %12d %13d %9d %9d %14.1f\n", n.ID, n.Capacity, n.Offered, n.ServedLocal, n.ForwardedOut, n.Received, n.Rejected, n.SteadyServedRPS)
	}
	converged := fmt.Sprintf("converged after %.0f s", rep.ConvergenceS)
	if rep.ConvergenceS == 0 {
		converged = "converged within the first second"
	}
	fmt.Fprintf(w, "\nrequests %d; %s; rejected after convergence %d\n", rep.Requests, converged, rep.RejectedAfterConvergence)
	fmt.Fprintf(w, "latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", rep.Latency.P50, rep.Latency.P99, rep.Latency.Max)
	if o.plot != "" {
		fmt.Fprintf(w, "plot written to %s\n", o.plot)
	}
}
