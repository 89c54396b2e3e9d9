// Command scalebench measures what one node's control loop and data plane
// cost as its functions and peers grow, on both data planes, side by side
// in one run: for each count of functions and of peers, the time the
// balancer takes to make a plan, the time to apply it and to read the data
// plane's counters (the work of every control tick), with functions coming
// and going at every tick, locally and at peers; the reloads that took;
// then, idle under a plan a second, the data plane's CPU, its memory and
// the servers HAProxy health-checks; and the CPU a request costs on the
// node. Needs haproxy on $PATH (Debian's package).
//
//	go run ./examples/scalebench
//	go run ./examples/scalebench -functions 1,100,1000 -peers 1,16,64 -ticks 20 -idle 10s
//
// Every peer is a listener on loopback that answers any request (HAProxy's
// health checks connect to it); demands move by up to 2% a tick; the platform is an in-process handler. The
// embedded data plane runs in this process, so its CPU and memory are the
// process's (the balancer's, the peers' and the platform's included); for
// HAProxy they are its worker's. Figures drift between runs and machines:
// compare the rows of one run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/internal/procstat"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scalebench:", err)
		os.Exit(1)
	}
}

type options struct {
	planes           []string
	functions, peers []int
	ticks, churn     int
	requests         int
	idle             time.Duration
	strategy         string
	// A federation of real agents: agents (0: none) with each of
	// agentFunctions, measured idle over window after settle.
	agents         int
	agentFunctions []int
	settle, window time.Duration
	// Churn under load: for churnFor (0: none), on a node of
	// churnFunctions whose plans name churnPeers.
	churnFor                   time.Duration
	churnFunctions, churnPeers int
}

func parse(args []string) (options, error) {
	fs := flag.NewFlagSet("scalebench", flag.ContinueOnError)
	planes := fs.String("proxies", "embedded,haproxy", "the data planes to measure")
	functions := fs.String("functions", "1,100,1000", "counts of functions on the node")
	peers := fs.String("peers", "1,16,64", "counts of peers")
	ticks := fs.Int("ticks", 20, "control ticks measured per row")
	churn := fs.Int("churn", 10, "functions replaced by new ones at every tick (as many at peers)")
	requests := fs.Int("requests", 10000, "requests a round of the CPU per request")
	idle := fs.Duration("idle", 10*time.Second, "the idle window per row (a plan applied a second)")
	strategy := fs.String("strategy", "nearest", "the balancing strategy: "+strings.Join(balance.Names(), ", "))
	agents := fs.Int("agents", 4, "then a federation of this many example agents on loopback (-faas local, the same functions everywhere), idle; 0: none")
	agentFunctions := fs.String("agent-functions", "100,1000", "counts of functions of the agents' federation")
	settle := fs.Duration("settle", 40*time.Second, "how long the agents run before they are measured")
	window := fs.Duration("window", 20*time.Second, "how long the idle agents are measured")
	churnFor := fs.Duration("churn-for", 0, "then, on each data plane, ten functions a second replaced under load for this long (the acceptance runs 10m); 0: none")
	churnFunctions := fs.Int("churn-functions", 1000, "with -churn-for: the node's functions")
	churnPeers := fs.Int("churn-peers", 16, "with -churn-for: the peers every forwarded function's plan names")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	o := options{planes: strings.Split(*planes, ","), ticks: *ticks, churn: *churn, requests: *requests, idle: *idle, strategy: *strategy,
		agents: *agents, settle: *settle, window: *window, churnFor: *churnFor, churnFunctions: *churnFunctions, churnPeers: *churnPeers}
	if o.churnFor < 0 || (o.churnFor > 0 && (o.churnFunctions < 11 || o.churnPeers < 1)) {
		return o, errors.New("-churn-for: not negative, with at least 11 functions and a peer")
	}
	if o.agents > 0 {
		var err error
		if o.agentFunctions, err = ints(*agentFunctions); err != nil {
			return o, fmt.Errorf("-agent-functions: %w", err)
		}
		if o.agents < 2 || o.window <= 0 {
			return o, errors.New("-agents: at least 2, with a positive -window")
		}
	}
	var err error
	if o.functions, err = ints(*functions); err != nil {
		return o, fmt.Errorf("-functions: %w", err)
	}
	if o.peers, err = ints(*peers); err != nil {
		return o, fmt.Errorf("-peers: %w", err)
	}
	for _, p := range o.planes {
		if p != "embedded" && p != "haproxy" {
			return o, fmt.Errorf("-proxies: unknown data plane %q", p)
		}
	}
	if o.ticks < 1 || o.churn < 0 || o.requests < 1 || o.idle < 0 {
		return o, errors.New("-ticks and -requests must be positive, -churn and -idle not negative")
	}
	return o, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive counts", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// row is one data plane at one count of functions and peers.
type row struct {
	plane            string
	functions, peers int
	plan, apply, cnt []time.Duration
	reloads          int
	idleCPU          float64 // the data plane's CPU share over the idle window
	rssMB            float64
	applyAll         time.Duration // the first plan's Apply: every route new
	checked          int           // servers HAProxy health-checks
	slots, unslotted int           // HAProxy's route backends in use, and functions without one
}

func run(args []string, out io.Writer) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	strategy, err := balance.ByName(o.strategy)
	if err != nil {
		return err
	}
	var rows []row
	for _, plane := range o.planes {
		for _, f := range o.functions {
			for _, p := range o.peers {
				r, err := measure(o, strategy, plane, f, p)
				if err != nil {
					return fmt.Errorf("%s, %d functions, %d peers: %w", plane, f, p, err)
				}
				rows = append(rows, r)
				fmt.Fprintf(os.Stderr, "done: %s %d functions %d peers\n", plane, f, p)
			}
		}
	}
	fmt.Fprintf(out, "%d ticks a row, %d functions replaced a tick (as many at peers), strategy %s; idle: a plan a second for %v\n", o.ticks, o.churn, o.strategy, o.idle)
	fmt.Fprintf(out, "%-9s %9s %5s  %17s  %9s  %17s  %17s  %7s  %8s  %7s  %7s  %9s\n", "proxy", "functions", "peers",
		"plan p50/p99 ms", "apply 1st", "apply p50/p99 ms", "counts p50/p99 ms", "reloads", "idle cpu", "rss MB", "checked", "slots")
	for _, r := range rows {
		slots := "-"
		if r.plane == "haproxy" {
			slots = fmt.Sprintf("%d/%d", r.slots, r.unslotted)
		}
		fmt.Fprintf(out, "%-9s %9d %5d  %8.2f/%8.2f  %9.2f  %8.2f/%8.2f  %8.2f/%8.2f  %7d  %7.1f%%  %7.1f  %7d  %9s\n", r.plane, r.functions, r.peers,
			ms(quantile(r.plan, 0.5)), ms(quantile(r.plan, 0.99)), ms(r.applyAll), ms(quantile(r.apply, 0.5)), ms(quantile(r.apply, 0.99)),
			ms(quantile(r.cnt, 0.5)), ms(quantile(r.cnt, 0.99)), r.reloads, 100*r.idleCPU, r.rssMB, r.checked, slots)
	}
	fmt.Fprintln(out, "apply 1st: the first plan, every route new; p50/p99 over the ticks after it. counts: no request runs meanwhile (idle tables). idle cpu and rss: HAProxy's worker alone, or the whole benchmark process for the embedded data plane. checked: servers HAProxy health-checks (every 10 s each). slots: HAProxy's route backends in use (a set of peers each) / functions without one of their own (sharing a larger route's, or on the backend of every peer), after the last tick.")
	fmt.Fprintf(out, "\nAn Agent's whole tick (the Monitor over the data plane and faas/local with the functions deployed, the forecaster, the balancer, Apply), the node's demand and its peers' adverts from the world above, %d ticks:\n", o.ticks)
	fmt.Fprintf(out, "%-9s %9s %5s  %17s\n", "proxy", "functions", "peers", "tick p50/p99 ms")
	for _, plane := range o.planes {
		for _, f := range o.functions {
			for _, p := range o.peers {
				tr, err := agentTicks(o, strategy, plane, f, p)
				if err != nil {
					return fmt.Errorf("%s, %d functions, %d peers, agent: %w", plane, f, p, err)
				}
				fmt.Fprintf(out, "%-9s %9d %5d  %8.2f/%8.2f\n", plane, f, p, ms(quantile(tr.ticks, 0.5)), ms(quantile(tr.ticks, 0.99)))
			}
		}
	}
	most, peersMost := slices.Max(o.functions), slices.Max(o.peers)
	fmt.Fprintf(out, "\nCPU per local request, %d requests from 4 clients a round, %d rounds in which the three take turns (medians):\n", o.requests, rounds)
	fmt.Fprintf(out, "%-9s  %12s  %12s  %20s  %s\n", "proxy", "direct us", "1 function", fmt.Sprintf("%d fn x %d peers", most, peersMost), "proxy's own cost at most / at 1 (range)")
	for _, plane := range o.planes {
		pr, err := perRequest(o, plane, most, peersMost)
		if err != nil {
			return fmt.Errorf("%s, per request: %w", plane, err)
		}
		fmt.Fprintf(out, "%-9s  %12.1f  %12.1f  %20.1f  %.3f (%.3f-%.3f)\n", plane, us(pr.direct), us(pr.one), us(pr.many), pr.ratio, pr.lo, pr.hi)
	}
	fmt.Fprintln(out, "direct: the platform without a proxy, in the same process; the proxy's own cost is a path's less direct's (embedded: the process's CPU, HAProxy: its worker's plus this process's client and platform).")
	if o.churnFor > 0 {
		fmt.Fprintf(out, "\nChurn under load: %d functions, each forwarded one's plan naming %d peers; ten of them replaced a second for %v while 4 clients call f0 (local) and f1-f9 (forwarded), which stay:\n", o.churnFunctions, o.churnPeers, o.churnFor)
		fmt.Fprintf(out, "%-9s  %8s  %10s  %8s  %9s  %7s  %17s\n", "proxy", "replaced", "served", "locally", "failed", "reloads", "apply p50/p99 ms")
		for _, plane := range o.planes {
			cr, err := churn(o, plane, o.churnFunctions, o.churnPeers)
			if err != nil {
				return fmt.Errorf("%s, churn: %w", plane, err)
			}
			fmt.Fprintf(out, "%-9s  %8d  %10d  %8d  %9d  %7d  %8.2f/%8.2f\n", plane, cr.replaced, cr.ok, cr.local, cr.failed, cr.reloads, ms(quantile(cr.apply, 0.5)), ms(quantile(cr.apply, 0.99)))
		}
	}
	if o.agents == 0 {
		return nil
	}
	var fed []fedRow
	for _, plane := range o.planes {
		for _, f := range o.agentFunctions {
			r, err := federation(context.Background(), o, plane, f)
			if err != nil {
				return fmt.Errorf("%d agents, %s, %d functions: %w", o.agents, plane, f, err)
			}
			fed = append(fed, r)
			fmt.Fprintf(os.Stderr, "done: %d agents %s %d functions\n", o.agents, plane, f)
		}
	}
	fmt.Fprintf(out, "\n%d example agents on loopback (-faas local, the same functions at every node), idle: measured over %v after %v\n", o.agents, o.window, o.settle)
	fmt.Fprintf(out, "%-9s %9s  %22s  %15s  %13s  %11s  %5s  %18s  %7s  %12s\n", "proxy", "functions", "cpu s (children, agents)", "haproxy rss MB", "agent rss MB", "peers in a's", "ticks", "tick p50/max ms", "reloads", "failed ticks")
	for _, r := range fed {
		fmt.Fprintf(out, "%-9s %9d  %10.1f, %10.1f  %15.1f  %13.1f  %7d of %d  %5d  %8.1f/%8.1f  %7d  %12d\n", r.plane, r.functions,
			r.haproxyCPU.Seconds(), r.agentCPU.Seconds(), r.haproxyRSS, r.agentRSS, r.peers, r.agents-1, r.ticks, ms(r.tickP50), ms(r.tickMax), r.reloadsLogged, r.failed)
	}
	fmt.Fprintln(out, "children: the agents' child processes (HAProxy's; none on the embedded data plane). peers in a's: the fewest peers the first agent's plan was made with (its /status) over five reads a second apart; ticks: the first agent's in the window; tick: the agents' latest, sampled ten times.")
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// peerStub is a peer's listener: it answers any request.
type peerStub struct {
	ln  net.Listener
	srv *http.Server
}

func startPeer() (*peerStub, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &peerStub{ln: ln}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "peer") }),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// world is the node's view at one tick: its functions, half of them over
// their capacity, and its peers' adverts, each with room for every
// function. Each tick replaces churn functions at the node and as many at
// the peers, and moves every demand by up to 2%, as forecasts of a steady
// load move.
type world struct {
	rng      *rand.Rand
	fns      []string
	peerFns  []string
	demand   map[string]dfaas.Rate   // the node's, per function
	peerLoad []map[string]dfaas.Rate // each peer's, per function
	next     int
	churn    int
	// localFixed keeps the node's functions (those of a real platform):
	// only the peers' come and go.
	localFixed bool
	addrs      []string
	peerNodes  []dfaas.NodeID
	rtt        map[dfaas.NodeID]time.Duration
}

func newWorld(functions int, peers []*peerStub, churn int) *world {
	w := &world{rng: rand.New(rand.NewPCG(1, 2)), churn: churn, demand: map[string]dfaas.Rate{}, rtt: map[dfaas.NodeID]time.Duration{}}
	for i := range functions {
		w.fns = append(w.fns, fmt.Sprintf("f%d", i))
	}
	w.peerFns = slices.Clone(w.fns)
	w.next = functions
	for i, p := range peers {
		id := dfaas.NodeID(fmt.Sprintf("peer-%02d", i))
		w.peerNodes = append(w.peerNodes, id)
		w.addrs = append(w.addrs, p.ln.Addr().String())
		w.rtt[id] = time.Duration(5+i%10) * time.Millisecond
		w.peerLoad = append(w.peerLoad, map[string]dfaas.Rate{})
	}
	return w
}

// walk moves a demand by up to 2%, or starts it in [lo, hi).
func (w *world) walk(m map[string]dfaas.Rate, fn string, lo, hi float64) dfaas.Rate {
	d, ok := m[fn]
	if !ok {
		d = dfaas.Rate(lo + (hi-lo)*w.rng.Float64())
	} else {
		d *= dfaas.Rate(1 + 0.04*(w.rng.Float64()-0.5))
	}
	m[fn] = d
	return d
}

// tick moves the world on and returns the node's state and adverts.
func (w *world) tick(now time.Time) (dfaas.State, []dfaas.Advert) {
	for range min(w.churn, len(w.fns)-1) {
		if !w.localFixed {
			// f0 stays: it serves the requests that measure the CPU.
			i := 1 + w.rng.IntN(len(w.fns)-1)
			delete(w.demand, w.fns[i])
			w.fns[i] = fmt.Sprintf("g%d", w.next)
		}
		w.peerFns[w.rng.IntN(len(w.peerFns))] = fmt.Sprintf("g%d", w.next+1)
		w.next += 2
	}
	self := dfaas.State{Node: "a", Time: now, RTT: w.rtt, Functions: map[string]dfaas.FunctionState{}}
	for i, fn := range w.fns {
		st := dfaas.FunctionState{Capacity: 20, Demand: w.walk(w.demand, fn, 10, 30)}
		if i == 0 {
			st = dfaas.FunctionState{Capacity: 1e6, Demand: 1}
		}
		self.Functions[fn] = st
	}
	adverts := make([]dfaas.Advert, 0, len(w.peerNodes))
	for i, id := range w.peerNodes {
		a := dfaas.Advert{Node: id, Seq: uint64(now.UnixNano()), TTL: 10 * time.Second, Addr: w.addrs[i], Functions: map[string]dfaas.FunctionState{}}
		load := map[string]dfaas.Rate{}
		for _, fn := range append(slices.Clone(w.fns), w.peerFns...) {
			if _, ok := a.Functions[fn]; !ok {
				a.Functions[fn] = dfaas.FunctionState{Capacity: 20, Demand: w.walk(w.peerLoad[i], fn, 0, 5)}
				load[fn] = w.peerLoad[i][fn]
			}
		}
		w.peerLoad[i] = load // functions gone from both are forgotten
		adverts = append(adverts, a)
	}
	return self, adverts
}

func measure(o options, strategy dfaas.Balancer, plane string, functions, peers int) (r row, err error) {
	r = row{plane: plane, functions: functions, peers: peers}
	b, err := startBench(plane, okPlatform(nil), "", peers)
	if err != nil {
		return r, err
	}
	defer b.Close()
	dp, ha, stubs := b.dp, b.ha, b.peers
	ctx := context.Background()

	w := newWorld(functions, stubs, o.churn)
	var plan dfaas.Plan
	for tick := range o.ticks + 1 {
		self, adverts := w.tick(time.Now())
		t0 := time.Now()
		plan = strategy.Plan(self, adverts)
		t1 := time.Now()
		if err := dp.Apply(ctx, plan); err != nil {
			return r, fmt.Errorf("apply: %w", err)
		}
		t2 := time.Now()
		if _, err := dp.Counts(ctx); err != nil {
			return r, fmt.Errorf("counts: %w", err)
		}
		t3 := time.Now()
		if tick == 0 {
			r.applyAll = t2.Sub(t1)
			continue
		}
		r.plan, r.apply, r.cnt = append(r.plan, t1.Sub(t0)), append(r.apply, t2.Sub(t1)), append(r.cnt, t3.Sub(t2))
	}
	if ha != nil {
		r.reloads = ha.Reloads()
		if r.checked, err = ha.Checked(); err != nil {
			return r, err
		}
		use := ha.Slots()
		r.slots, r.unslotted = use.Used, use.Shared+use.Unslotted
	}

	// Idle: the same plan applied and the counters read once a second, as
	// an agent with nothing changing does.
	pid := os.Getpid()
	if ha != nil {
		info, err := ha.Info()
		if err != nil {
			return r, err
		}
		if pid, err = strconv.Atoi(info["Pid"]); err != nil {
			return r, fmt.Errorf("haproxy's pid %q: %w", info["Pid"], err)
		}
	}
	cpu0, t0 := cpuTime(pid), time.Now()
	for end := time.Now().Add(o.idle); time.Now().Before(end); {
		time.Sleep(time.Second)
		if err := dp.Apply(ctx, plan); err != nil {
			return r, fmt.Errorf("apply: %w", err)
		}
		if _, err := dp.Counts(ctx); err != nil {
			return r, fmt.Errorf("counts: %w", err)
		}
	}
	if span := time.Since(t0); o.idle > 0 {
		r.idleCPU = float64(cpuTime(pid)-cpu0) / float64(span)
	}
	r.rssMB = rss(pid)
	if ha == nil {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		r.rssMB = float64(m.HeapInuse) / (1 << 20)
	}

	return r, nil
}

// cpuTime is the CPU time (user and system) the process pid has used: for
// this process, to the microsecond (getrusage); for another, to the clock
// tick (internal/procstat).
func cpuTime(pid int) time.Duration {
	if pid == os.Getpid() {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return procstat.CPU(pid)
}

// rss is the resident memory of the process pid, in MiB.
func rss(pid int) float64 { return procstat.RSSMiB(pid) }

// rounds is how many times perRequest's three paths take turns.
const rounds = 5

// perRequestRow is the CPU a local request costs: straight to the platform,
// through a data plane with one function, and with many functions whose
// plans name many peers.
type perRequestRow struct {
	direct, one, many time.Duration
	ratio, lo, hi     float64 // (many - direct) / (one - direct): median and range over the rounds
}

// perRequest measures, on one node of plane, the CPU of a local request
// with a plan of one function and with one of functions (f0 and others
// forwarded to peers), the paths taking turns round after round.
func perRequest(o options, plane string, functions, peers int) (perRequestRow, error) {
	var pr perRequestRow
	platform := okPlatform(nil)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return pr, err
	}
	srv := &http.Server{Handler: platform, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(pl) }()
	defer srv.Close()
	b, err := startBench(plane, platform, pl.Addr().String(), peers)
	if err != nil {
		return pr, err
	}
	defer b.Close()
	dp, userAddr, shares := b.dp, b.userAddr, b.shares(10)
	ctx := context.Background()
	pid := os.Getpid()
	if b.ha != nil {
		info, err := b.ha.Info()
		if err != nil {
			return pr, err
		}
		if pid, err = strconv.Atoi(info["Pid"]); err != nil {
			return pr, err
		}
	}
	one := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"f0": {Limit: 1e6, Capacity: 1e6}}}
	many := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"f0": {Limit: 1e6, Capacity: 1e6}}}
	for i := 1; i < functions; i++ {
		many.Functions[fmt.Sprintf("f%d", i)] = dfaas.FunctionPlan{Limit: 10, Capacity: 20, Peers: shares}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	// cpu is the CPU per request of n requests to url: the process pid's,
	// and this process's too when pid is another (the client and the
	// platform run here).
	cpu := func(url string) (time.Duration, error) {
		self := os.Getpid()
		c0, s0 := cpuTime(pid), cpuTime(self)
		var failed atomic.Int64
		var left atomic.Int64
		left.Store(int64(o.requests))
		done := make(chan struct{})
		for range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				for left.Add(-1) >= 0 {
					resp, err := client.Post(url, "text/plain", strings.NewReader("x"))
					if err != nil {
						failed.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed.Add(1)
					}
				}
			}()
		}
		for range 4 {
			<-done
		}
		if n := failed.Load(); n > 0 {
			return 0, fmt.Errorf("%d of %d requests to %s failed", n, o.requests, url)
		}
		used := cpuTime(pid) - c0
		if pid != self {
			used += cpuTime(self) - s0
		}
		return used / time.Duration(o.requests), nil
	}
	var direct, ones, manys []time.Duration
	var ratios []float64
	for range rounds {
		d, err := cpu("http://" + pl.Addr().String() + "/function/f0")
		if err != nil {
			return pr, err
		}
		if err := dp.Apply(ctx, one); err != nil {
			return pr, err
		}
		c1, err := cpu("http://" + userAddr + "/function/f0")
		if err != nil {
			return pr, err
		}
		if err := dp.Apply(ctx, many); err != nil {
			return pr, err
		}
		cn, err := cpu("http://" + userAddr + "/function/f0")
		if err != nil {
			return pr, err
		}
		direct, ones, manys = append(direct, d), append(ones, c1), append(manys, cn)
		if c1 > d {
			ratios = append(ratios, float64(cn-d)/float64(c1-d))
		}
	}
	pr.direct, pr.one, pr.many = quantile(direct, 0.5), quantile(ones, 0.5), quantile(manys, 0.5)
	if len(ratios) > 0 {
		slices.Sort(ratios)
		pr.ratio, pr.lo, pr.hi = ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1]
	}
	return pr, nil
}
