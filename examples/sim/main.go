// Command sim compares balancing strategies on simulated federations with
// the very code a live agent runs, against the optimum.
//
//	go run ./examples/sim                          # every strategy on every standard workload
//	go run ./examples/sim -strategies resilient,proportional -workloads hotspot-10,diurnal-100
//	go run ./examples/sim -trace demand.csv -capacities capacities.csv
//	go run ./examples/sim -json                    # one JSON array of rows
//	go run ./examples/sim -plot plots/             # served vs optimum per tick, one PNG per workload
//	go run ./examples/sim -forecasters last,ewma,holt,holt-winters:600   # forecast accuracy table
//	go run ./examples/sim -live 30s -workloads diurnal-100   # the same agents on real libp2p hosts, beside the simulator
//	go run ./examples/sim -capacity measured -workloads reference,drift-3   # nodes learn their capacities (faas/capacity) from modelled CPU
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/internal/sim"
)

type options struct {
	strategies      []string
	workloads       []string
	forecasters     []string
	forecaster      string
	trace           string
	capacities      string
	interval        time.Duration
	delay           time.Duration
	loss            float64
	seed            uint64
	json            bool
	plot            string
	neighbours      int
	membershipEvery time.Duration
	live            time.Duration
	measured        bool
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(2)
	}
	// The simulator allocates many short-lived adverts and plans: trading
	// memory for fewer collections makes it about a quarter faster.
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	strategies := fs.String("strategies", "all", "strategies to compare: all, or some of "+strings.Join(balance.Names(), ", "))
	workloads := fs.String("workloads", "all", "workloads: all (the standard set), scale (10000 nodes), or some of "+strings.Join(workloadNames(1), ", "))
	forecasters := fs.String("forecasters", "", "print forecast accuracy of these forecasters (e.g. last,ewma,holt,holt-winters:600) instead of the strategy table")
	fs.StringVar(&o.forecaster, "forecast", "last", "the agents' forecaster: last, ewma, holt or holt-winters:<period in ticks>")
	fs.StringVar(&o.trace, "trace", "", "replay this demand trace (CSV: time_s,node,function,rate) instead of the standard workloads")
	fs.StringVar(&o.capacities, "capacities", "", "node capacities for -trace (CSV: node,function,capacity)")
	fs.DurationVar(&o.interval, "interval", time.Second, "control tick (and trace resolution)")
	fs.DurationVar(&o.delay, "delay", 0, "delay of every advert (overrides the workload's)")
	fs.Float64Var(&o.loss, "loss", 0, "probability that an advert copy is lost (overrides the workload's)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the workloads and of advert losses")
	fs.DurationVar(&o.membershipEvery, "membership-every", 0, "with -live: run under a signed membership whose administrator publishes a new version this often (0: no administrator)")
	fs.IntVar(&o.neighbours, "neighbours", 0, "peers each node follows (0: the agent's default, overlay.DefaultNeighbours; -1: every peer, no neighbourhoods)")
	fs.DurationVar(&o.live, "live", 0, "run the workloads' control plane for this long on real libp2p agents in this process (one per node), beside the simulator's figures")
	fs.BoolVar(&o.json, "json", false, "print one JSON array of rows instead of the table")
	capacityMode := fs.String("capacity", "declared", "declared: nodes are told their capacities exactly; measured: each learns them, as an agent does, from a model of its CPU (10 ms calls)")
	fs.StringVar(&o.plot, "plot", "", "write served and optimum per tick, one PNG per workload, into this directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.strategies = list(*strategies)
	if *strategies == "all" {
		o.strategies = balance.Names()
	}
	for _, s := range o.strategies {
		if _, err := balance.ByName(s); err != nil {
			return o, err
		}
	}
	o.workloads = list(*workloads)
	switch *workloads {
	case "all":
		o.workloads = names(sim.Standard(o.seed))
	case "scale":
		o.workloads = names(sim.Scale(o.seed))
	}
	for _, w := range o.workloads {
		if !slices.Contains(workloadNames(o.seed), w) && o.trace == "" {
			return o, fmt.Errorf("unknown workload %q (known: %s)", w, strings.Join(workloadNames(o.seed), ", "))
		}
	}
	o.forecasters = list(*forecasters)
	for _, f := range append([]string{o.forecaster}, o.forecasters...) {
		if _, err := forecast.ByName(f); err != nil {
			return o, err
		}
	}
	if (o.trace == "") != (o.capacities == "") {
		return o, errors.New("-trace and -capacities go together")
	}
	if o.interval < time.Millisecond || o.delay < 0 || !(o.loss >= 0 && o.loss < 1) {
		return o, errors.New("-interval below 1ms, negative -delay, or -loss outside [0, 1)")
	}
	if o.neighbours < -1 {
		return o, errors.New("-neighbours below -1")
	}
	switch *capacityMode {
	case "declared":
	case "measured":
		o.measured = true
	default:
		return o, fmt.Errorf("-capacity %q: want declared or measured", *capacityMode)
	}
	return o, nil
}

func workloadNames(seed uint64) []string {
	return names(append(sim.Standard(seed), sim.Scale(seed)...))
}

func names(scs []sim.Scenario) []string {
	var out []string
	for _, sc := range scs {
		out = append(out, sc.Name)
	}
	return out
}

// scenarios returns the workloads to run: the trace, or the chosen standard ones.
func scenarios(o options) ([]sim.Scenario, error) {
	if o.trace != "" {
		tf, err := os.Open(o.trace)
		if err != nil {
			return nil, err
		}
		defer tf.Close()
		rows, err := sim.ReadTrace(tf)
		if err != nil {
			return nil, err
		}
		cf, err := os.Open(o.capacities)
		if err != nil {
			return nil, err
		}
		defer cf.Close()
		caps, err := sim.ReadCapacities(cf)
		if err != nil {
			return nil, err
		}
		sc, err := sim.TraceScenario(filepath.Base(o.trace), rows, caps, o.interval)
		if err != nil {
			return nil, err
		}
		return []sim.Scenario{sc}, nil
	}
	var out []sim.Scenario
	for _, sc := range append(sim.Standard(o.seed), sim.Scale(o.seed)...) {
		if slices.Contains(o.workloads, sc.Name) {
			out = append(out, sc)
		}
	}
	return out, nil
}

// Row is one line of the comparison, as printed by -json.
type Row struct {
	Strategy             string  `json:"strategy"`
	Workload             string  `json:"workload"`
	Forecaster           string  `json:"forecaster"`
	ServedOverOptimum    float64 `json:"served_over_optimum"`
	RejectedPct          float64 `json:"rejected_pct"`
	ForwardedPct         float64 `json:"forwarded_pct"`
	MeanHops             float64 `json:"mean_hops"`
	MeanForwardRTTms     float64 `json:"mean_forward_rtt_ms"`
	RetriesPerForward    float64 `json:"retries_per_forward"`
	ControlMsgsPerNodeS  float64 `json:"control_msgs_per_node_s"`
	ControlBytesPerNodeS float64 `json:"control_bytes_per_node_s"`
	ProbeBytesPerNodeS   float64 `json:"probe_bytes_per_node_s"`
	ReactionS            float64 `json:"reaction_s"`
	ForecastMAE          float64 `json:"forecast_mae"`
	ForecastMAPE         float64 `json:"forecast_mape_pct"`
	// With -capacity measured: executions' p95 after the learning, the
	// executions given up, and how far advertised capacities were from
	// the truth.
	ExecP95ms      float64 `json:"exec_p95_ms,omitempty"`
	Timeouts       float64 `json:"timeouts,omitempty"`
	CapacityErrPct float64 `json:"capacity_err_pct,omitempty"`

	ticks []sim.TickResult
}

type job struct {
	sc         sim.Scenario
	strategy   string
	forecaster string
}

// runAll runs the jobs on every core; the rows come back in job order.
func runAll(ctx context.Context, o options, jobs []job) ([]Row, error) {
	rows := make([]Row, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rows[i], errs[i] = runOne(ctx, o, jobs[i])
			}
		}()
	}
	for i := range jobs {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	return rows, errors.Join(append(errs, ctx.Err())...)
}

func runOne(ctx context.Context, o options, j job) (Row, error) {
	strategy, err := balance.ByName(j.strategy)
	if err != nil {
		return Row{}, err
	}
	res, err := sim.Run(ctx, sim.Config{Scenario: j.sc, Strategy: strategy, Interval: o.interval, Delay: o.delay, Loss: o.loss, Seed: o.seed,
		Neighbours: o.neighbours, Measured: o.measured,
		Forecaster: func() dfaas.Forecaster { f, _ := forecast.ByName(j.forecaster); return f }})
	if err != nil {
		return Row{}, err
	}
	r := Row{Strategy: j.strategy, Workload: j.sc.Name, Forecaster: j.forecaster, ServedOverOptimum: res.ServedOverOptimum,
		RejectedPct: res.RejectedPct, ForwardedPct: res.ForwardedPct, MeanHops: res.MeanHops,
		ControlMsgsPerNodeS: res.ControlMsgsPerNodeS, ControlBytesPerNodeS: res.ControlBytesPerNodeS, ProbeBytesPerNodeS: res.ProbeBytesPerNodeS,
		ReactionS: res.ReactionS, MeanForwardRTTms: res.MeanForwardRTTms, ForecastMAE: res.ForecastMAE, ForecastMAPE: res.ForecastMAPE, ticks: res.Ticks,
		ExecP95ms: res.ExecP95ms, Timeouts: res.Timeouts, CapacityErrPct: res.CapacityErrPct}
	if res.Forwarded > 0 {
		r.RetriesPerForward = res.Retried / res.Forwarded
	}
	return r, nil
}

func run(ctx context.Context, o options, w io.Writer) error {
	scs, err := scenarios(o)
	if err != nil {
		return err
	}
	if o.live > 0 {
		return runLive(ctx, o, scs, w)
	}
	var jobs []job
	for _, sc := range scs {
		if len(o.forecasters) > 0 {
			for _, f := range o.forecasters {
				jobs = append(jobs, job{sc: sc, strategy: "resilient", forecaster: f})
			}
			continue
		}
		for _, s := range o.strategies {
			jobs = append(jobs, job{sc: sc, strategy: s, forecaster: o.forecaster})
		}
	}
	start := time.Now()
	rows, err := runAll(ctx, o, jobs)
	if err != nil {
		return err
	}
	if o.plot != "" {
		if err := plotAll(o.plot, rows); err != nil {
			return err
		}
	}
	switch {
	case o.json:
		if rows == nil {
			rows = []Row{}
		}
		return json.NewEncoder(w).Encode(rows)
	case len(o.forecasters) > 0:
		printForecasts(w, rows)
	case o.measured:
		printMeasured(w, rows)
	default:
		printTable(w, rows)
	}
	fmt.Fprintf(w, "\n%d runs in %.1f s (seed %d). served/opt: served over the most any routing could serve; bytes/n/s: adverts a node sends, probe b/n/s: its pings and echoes; reaction: s from an overload's onset until that node rejects at most 1%% of its demand, or nothing more could be served (-1: not while it lasted).\n",
		len(rows), time.Since(start).Seconds(), o.seed)
	return nil
}

func printTable(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-24s %-13s %10s %9s %9s %6s %8s %9s %10s %10s %9s %8s\n",
		"workload", "strategy", "served/opt", "rejected%", "forward%", "hops", "retries", "msgs/n/s", "bytes/n/s", "probe b/n/s", "reaction", "fwd rtt")
	last := ""
	for _, r := range rows {
		if r.Workload != last && last != "" {
			fmt.Fprintln(w)
		}
		last = r.Workload
		rtt := "-"
		if r.MeanForwardRTTms > 0 {
			rtt = fmt.Sprintf("%.1f", r.MeanForwardRTTms)
		}
		fmt.Fprintf(w, "%-24s %-13s %10.4f %9.2f %9.2f %6.2f %8.3f %9.0f %10.0f %10.0f %9.1f %8s\n",
			r.Workload, r.Strategy, r.ServedOverOptimum, r.RejectedPct, r.ForwardedPct, r.MeanHops, r.RetriesPerForward,
			r.ControlMsgsPerNodeS, r.ControlBytesPerNodeS, r.ProbeBytesPerNodeS, r.ReactionS, rtt)
	}
}

// printMeasured is the table of runs whose nodes learned their capacities.
func printMeasured(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-24s %-13s %10s %9s %9s %9s %9s %10s\n", "workload", "strategy", "served/opt", "rejected%", "forward%", "exec p95", "timeouts", "cap err %")
	last := ""
	for _, r := range rows {
		if r.Workload != last && last != "" {
			fmt.Fprintln(w)
		}
		last = r.Workload
		fmt.Fprintf(w, "%-24s %-13s %10.4f %9.2f %9.2f %7.0fms %9.0f %10.1f\n", r.Workload, r.Strategy, r.ServedOverOptimum, r.RejectedPct,
			r.ForwardedPct, r.ExecP95ms, r.Timeouts, r.CapacityErrPct)
	}
	fmt.Fprintln(w, "\nmeasured: every node learns its capacities from its executions (faas/capacity) on a model of its CPU; exec p95 and cap err %: after the first 15 s, the executions' 95th percentile latency and the mean distance of the advertised capacities from the true ones.")
}

func printForecasts(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-24s %-18s %9s %9s %10s\n", "workload", "forecaster", "MAE req/s", "MAPE %", "served/opt")
	for _, r := range rows {
		fmt.Fprintf(w, "%-24s %-18s %9.3f %9.2f %10.4f\n", r.Workload, r.Forecaster, r.ForecastMAE, r.ForecastMAPE, r.ServedOverOptimum)
	}
}

// LiveRow is one line of the -live table, as printed by -json.
type LiveRow struct {
	sim.LiveResult
	Strategy             string  `json:"strategy"`
	SimBytesPerNodeS     float64 `json:"sim_bytes_per_node_s"` // adverts and probes
	SimServedOverOptimum float64 `json:"sim_served_over_optimum"`
}

// runLive runs each workload's agents on real libp2p hosts for o.live,
// with the first strategy, and the simulator on the same workload.
func runLive(ctx context.Context, o options, scs []sim.Scenario, w io.Writer) error {
	var rows []LiveRow
	for _, sc := range scs {
		strategy := o.strategies[0]
		newBalancer := func() dfaas.Balancer { b, _ := balance.ByName(strategy); return b }
		res, err := sim.Live(ctx, sim.LiveConfig{Scenario: sc, Strategy: newBalancer, Interval: o.interval, Duration: o.live, Neighbours: o.neighbours,
			MembershipEvery: o.membershipEvery})
		if err != nil {
			return err
		}
		simRes, err := sim.Run(ctx, sim.Config{Scenario: sc, Strategy: newBalancer(), Interval: o.interval, Seed: o.seed, Neighbours: o.neighbours})
		if err != nil {
			return err
		}
		rows = append(rows, LiveRow{LiveResult: res, Strategy: strategy, SimBytesPerNodeS: simRes.ControlBytesPerNodeS + simRes.ProbeBytesPerNodeS,
			SimServedOverOptimum: simRes.ServedOverOptimum})
	}
	if o.json {
		return json.NewEncoder(w).Encode(rows)
	}
	fmt.Fprintf(w, "%-20s %-10s %6s %8s %10s %10s %10s %8s %8s %7s %7s %7s %7s %11s\n", "workload", "strategy", "agents", "formed s",
		"bytes/n/s", "adverts", "sim b/n/s", "prop p50", "prop p99", "ticks/s", "churn/s", "cpu s", "rss MB", "stop->gone")
	for _, r := range rows {
		fmt.Fprintf(w, "%-20s %-10s %6d %8.1f %10.0f %10.0f %10.0f %7.1fms %7.1fms %7.2f %7.2f %7.1f %7.0f %4d ticks\n", r.Scenario, r.Strategy, r.Agents,
			r.FormedS, r.BytesPerNodeS, r.AdvertBytesPerNodeS, r.SimBytesPerNodeS, r.PropagationP50MS, r.PropagationP99MS,
			r.TicksPerS, r.ChurnPerS, r.CPUSeconds, r.RSSMB, r.DetectionTicks)
		var parts []string
		for _, p := range slices.Sorted(maps.Keys(r.ByProtocol)) {
			parts = append(parts, fmt.Sprintf("%s %.0f", p, r.ByProtocol[p]))
		}
		fmt.Fprintf(w, "%-20s   by protocol, bytes/n/s: %s\n", "", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "\nlive: %v per workload of real agents on libp2p hosts on loopback in this process; bytes/n/s: what a host sent per second, every protocol; adverts: the advert streams alone; sim b/n/s: the simulator's adverts and probes for the same workload; stop->gone: ticks until a stopped node left every plan.\n", o.live)
	return nil
}
