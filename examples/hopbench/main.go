// Command hopbench measures what a node's data plane costs per request,
// side by side in one run, with wrk as an external load generator: a
// direct call to the platform, then one local hop and one forwarded hop
// through the embedded proxy and through HAProxy, the forwarded hop both in
// clear text and over the federation's TLS; and, to read those against,
// net/http's server before the same platform handler with none of dfaas's
// logic, and a forward built from net/http's stock parts
// (httputil.ReverseProxy over http.Transport). For each path it reports wrk's
// req/s, p50 and p99, and the CPU seconds the proxies spent per 10,000
// requests (the platform runs in a process of its own, so it is not
// counted). Needs wrk and haproxy on $PATH (Debian's packages).
//
// The paths take turns: each round loads every path once, for the
// duration split over the rounds, so that a machine whose speed drifts
// (a shared one, say) slows every path alike. Each row gives the median
// of its rounds, and its ratio to HAProxy's local path is the median of
// the ratios within a round, with their range.
//
//	go run ./examples/hopbench                      # 10 s per path in 5 rounds, 64 connections
//	go run ./examples/hopbench -duration 3s -rounds 1 -connections 4
//	go run ./examples/hopbench -paths embedded/local,haproxy/local
//
// Figures drift between runs and machines: compare the paths of one run.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas/openfaas"
	"github.com/dfaas-go/dfaas/internal/procstat"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/embedded"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
)

// profileDir, if set, receives a CPU profile per embedded path.
var profileDir string

// only, if not empty, names the paths to load; the others are skipped.
var only map[string]bool

// backendFlag makes the binary the platform stand-in: a Go HTTP server that
// answers at once. It runs as a child process so that its CPU is not the
// proxies'.
const backendFlag = "-serve-backend"

func main() {
	if len(os.Args) == 3 && os.Args[1] == backendFlag {
		serveBackend(os.Args[2])
		return
	}
	duration := flag.Duration("duration", 10*time.Second, "load per path, over all rounds")
	rounds := flag.Int("rounds", 5, "turns the paths take, each loaded for duration/rounds (at least 1 s) per round")
	conns := flag.Int("connections", 64, "wrk connections")
	flag.StringVar(&profileDir, "profile", "", "write a CPU profile of this process (the embedded proxies) per embedded path and round into this directory")
	paths := flag.String("paths", "", "comma-separated paths to load (default all), e.g. embedded/local,haproxy/local")
	flag.Parse()
	if *paths != "" {
		only = map[string]bool{}
		for _, p := range strings.Split(*paths, ",") {
			only[strings.TrimSpace(p)] = true
		}
	}
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "hopbench: -rounds must be at least 1")
		os.Exit(2)
	}
	rows, err := run(context.Background(), *duration, *rounds, *conns, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hopbench:", err)
		os.Exit(1)
	}
	printRows(os.Stdout, rows, *conns)
}

func serveBackend(addr string) {
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})}
	_ = srv.ListenAndServe()
}

// Row is one path's figures: of one wrk run, or the medians of its rounds.
type Row struct {
	Path        string
	ReqPerSec   float64
	P50, P99    time.Duration
	CPUPer10k   time.Duration // the proxies' CPU per 10,000 requests
	Requests    int
	Errors      int // wrk's socket errors and non-2xx answers
	Description string
	// Rounds are the path's rounds, in order.
	Rounds []Row
	// Ratio is the median over the rounds of the path's req/s over
	// haproxy/local's in the same round, and RatioMin and RatioMax their
	// range (zero without haproxy/local).
	Ratio, RatioMin, RatioMax float64
}

// run starts the platform, two embedded proxies and two HAProxy drivers
// (clear text and TLS pairs), and loads the paths in turn, rounds times.
func run(ctx context.Context, duration time.Duration, rounds, conns int, logw io.Writer) ([]Row, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, errors.New("wrk not found: apt-get install wrk")
	}
	dir, err := os.MkdirTemp("", "hopbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "post.lua")
	if err := os.WriteFile(script, []byte("wrk.method = \"POST\"\nwrk.body = \"x\"\nwrk.headers[\"Content-Type\"] = \"text/plain\"\n"), 0o600); err != nil {
		return nil, err
	}

	backendAddr := freeAddr()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	backend := exec.Command(self, backendFlag, backendAddr)
	backend.Stderr = logw
	if err := backend.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = backend.Process.Kill(); _ = backend.Wait() }()
	if err := waitListening(backendAddr); err != nil {
		return nil, err
	}

	quiet := slog.New(slog.DiscardHandler)
	// The embedded proxies reach the platform as an agent with -faas
	// openfaas does: through faas/openfaas's reverse proxy.
	platform, err := openfaas.New(openfaas.Config{Gateway: "http://" + backendAddr, Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer platform.Close()
	rp := platform.Handler()
	unlimited := dfaas.FunctionPlan{Limit: 1e6, Capacity: 1e6}
	local := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}}
	forwardTo := func(node dfaas.NodeID, addr string) dfaas.Plan {
		return dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: node, Addr: addr, Weight: 1, Cap: 1e6}}}}}
	}
	ta, tb, err := tlsPair()
	if err != nil {
		return nil, err
	}

	// Embedded: a serves locally or forwards to b; ta forwards to tb over TLS.
	var emb []*embedded.Proxy
	defer func() {
		for _, p := range emb {
			_ = p.Close()
		}
	}()
	newEmb := func(node dfaas.NodeID, t *proxy.TLS) (*embedded.Proxy, error) {
		p, err := embedded.New(embedded.Config{Node: node, TLS: t, Logger: quiet}, rp)
		if err == nil {
			emb = append(emb, p)
		}
		return p, err
	}
	ea, err := newEmb("a", nil)
	if err != nil {
		return nil, err
	}
	eb, err := newEmb("b", nil)
	if err != nil {
		return nil, err
	}
	eta, err := newEmb(ta.Identity.Node(), ta)
	if err != nil {
		return nil, err
	}
	etb, err := newEmb(tb.Identity.Node(), tb)
	if err != nil {
		return nil, err
	}
	for _, p := range []*embedded.Proxy{ea, eb, etb} {
		if err := p.Apply(ctx, local); err != nil {
			return nil, err
		}
	}
	if err := eta.Apply(ctx, forwardTo(tb.Identity.Node(), etb.PeerAddr())); err != nil {
		return nil, err
	}

	// HAProxy: the same four.
	var drivers []*haproxy.Driver
	defer func() {
		for _, d := range drivers {
			_ = d.Close()
		}
	}()
	newHA := func(node dfaas.NodeID, t *proxy.TLS) (*haproxy.Driver, error) {
		d, err := haproxy.Start(ctx, haproxy.Config{Node: node, UserAddr: freeAddr(), PeerAddr: freeAddr(), Platform: backendAddr,
			Functions: []string{"figlet"}, TLS: t, Logger: quiet})
		if err == nil {
			drivers = append(drivers, d)
		}
		return d, err
	}
	ha, err := newHA("a", nil)
	if err != nil {
		return nil, err
	}
	hb, err := newHA("b", nil)
	if err != nil {
		return nil, err
	}
	hta, err := newHA(ta.Identity.Node(), ta)
	if err != nil {
		return nil, err
	}
	htb, err := newHA(tb.Identity.Node(), tb)
	if err != nil {
		return nil, err
	}
	for _, d := range []*haproxy.Driver{ha, hb, htb} {
		if err := d.Apply(ctx, local); err != nil {
			return nil, err
		}
	}
	if err := hta.Apply(ctx, forwardTo(tb.Identity.Node(), htb.PeerAddr())); err != nil {
		return nil, err
	}

	embCPU := func() time.Duration { return selfCPU() }
	// net/http's server in front of the handler the embedded proxy calls
	// (faas/openfaas's), with none of dfaas's logic; and a forward made
	// of net/http's stock parts in front of that: httputil.ReverseProxy
	// over a pooled http.Transport.
	bareLocal, err := serveBare(rp)
	if err != nil {
		return nil, err
	}
	defer bareLocal.Close()
	bareFwdTr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer bareFwdTr.CloseIdleConnections()
	bareNext := &url.URL{Scheme: "http", Host: bareLocal.addr}
	bareFwd, err := serveBare(&httputil.ReverseProxy{Transport: bareFwdTr,
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(bareNext) }})
	if err != nil {
		return nil, err
	}
	defer bareFwd.Close()
	haCPU := func(ds ...*haproxy.Driver) func() time.Duration {
		return func() time.Duration {
			var sum time.Duration
			for _, d := range ds {
				info, err := d.Info()
				if err != nil {
					continue
				}
				if pid, err := strconv.Atoi(info["Pid"]); err == nil {
					sum += procstat.CPU(pid)
				}
			}
			return sum
		}
	}
	paths := []struct {
		name, desc, url string
		setup           func() error
		cpu             func() time.Duration
	}{
		{"direct", "the platform, no proxy", "http://" + backendAddr + "/function/figlet", nil, nil},
		{"nethttp/local", "net/http's server and faas/openfaas's handler alone", "http://" + bareLocal.addr + "/function/figlet", nil, embCPU},
		{"nethttp/forward", "httputil.ReverseProxy and http.Transport before nethttp/local", "http://" + bareFwd.addr + "/function/figlet", nil, embCPU},
		{"embedded/local", "user port, run locally", "http://" + ea.UserAddr() + "/function/figlet",
			func() error { return ea.Apply(ctx, local) }, embCPU},
		{"embedded/forward", "user port, forwarded one hop in clear text", "http://" + ea.UserAddr() + "/function/figlet",
			func() error { return ea.Apply(ctx, forwardTo("b", eb.PeerAddr())) }, embCPU},
		{"embedded/forward-tls", "forwarded one hop over the federation's TLS", "http://" + eta.UserAddr() + "/function/figlet", nil, embCPU},
		{"haproxy/local", "user port, run locally", "http://" + ha.UserAddr() + "/function/figlet",
			func() error { return ha.Apply(ctx, local) }, haCPU(ha)},
		{"haproxy/forward", "user port, forwarded one hop in clear text", "http://" + ha.UserAddr() + "/function/figlet",
			func() error { return ha.Apply(ctx, forwardTo("b", hb.PeerAddr())) }, haCPU(ha, hb)},
		{"haproxy/forward-tls", "forwarded one hop over the federation's TLS", "http://" + hta.UserAddr() + "/function/figlet", nil, haCPU(hta, htb)},
	}
	per := max(time.Second, duration/time.Duration(rounds))
	var rows []Row
	for _, p := range paths {
		if only == nil || only[p.name] {
			rows = append(rows, Row{Path: p.name, Description: p.desc})
		}
	}
	var cpu = make([]time.Duration, len(rows))
	for round := range rounds {
		i := 0
		for _, p := range paths {
			if only != nil && !only[p.name] {
				continue
			}
			if p.setup != nil {
				if err := p.setup(); err != nil {
					return nil, fmt.Errorf("%s: %w", p.name, err)
				}
			}
			fmt.Fprintf(logw, "hopbench: round %d/%d: %s for %v ...\n", round+1, rounds, p.name, per)
			var before time.Duration
			if p.cpu != nil {
				before = p.cpu()
			}
			stop := func() {}
			if profileDir != "" && strings.HasPrefix(p.name, "embedded/") {
				f, err := os.Create(filepath.Join(profileDir, fmt.Sprintf("%s-%d.pprof", strings.ReplaceAll(p.name, "/", "-"), round+1)))
				if err != nil {
					return nil, err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return nil, err
				}
				stop = func() { pprof.StopCPUProfile(); _ = f.Close() }
			}
			row, err := runWrk(ctx, p.url, script, per, conns)
			stop()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			if p.cpu != nil {
				cpu[i] += p.cpu() - before
			}
			rows[i].Rounds = append(rows[i].Rounds, row)
			i++
		}
	}
	summarise(rows, cpu)
	return rows, nil
}

// summarise fills each row from its rounds: medians of req/s, p50 and p99,
// the sums of requests and errors, CPU per 10k requests over all rounds,
// and the ratios to haproxy/local round by round.
func summarise(rows []Row, cpu []time.Duration) {
	var base []Row
	for _, r := range rows {
		if r.Path == "haproxy/local" {
			base = r.Rounds
		}
	}
	for i := range rows {
		r := &rows[i]
		var rps, p50, p99, ratios []float64
		for k, rd := range r.Rounds {
			rps, p50, p99 = append(rps, rd.ReqPerSec), append(p50, float64(rd.P50)), append(p99, float64(rd.P99))
			r.Requests += rd.Requests
			r.Errors += rd.Errors
			if k < len(base) && base[k].ReqPerSec > 0 {
				ratios = append(ratios, rd.ReqPerSec/base[k].ReqPerSec)
			}
		}
		r.ReqPerSec, r.P50, r.P99 = median(rps), time.Duration(median(p50)), time.Duration(median(p99))
		if cpu[i] > 0 && r.Requests > 0 {
			r.CPUPer10k = cpu[i] * 10000 / time.Duration(r.Requests)
		}
		if len(ratios) > 0 {
			r.Ratio = median(ratios)
			r.RatioMin, r.RatioMax = slices.Min(ratios), slices.Max(ratios)
		}
	}
}

// median of xs (the mean of the middle two for an even count), or 0.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// bare is a plain net/http server on a loopback port.
type bare struct {
	srv  *http.Server
	addr string
}

func serveBare(h http.Handler) (*bare, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &bare{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, addr: l.Addr().String()}
	go func() { _ = b.srv.Serve(l) }()
	return b, nil
}

func (b *bare) Close() { _ = b.srv.Close() }

// tlsPair makes two identities that count each other as members.
func tlsPair() (*proxy.TLS, *proxy.TLS, error) {
	var out [2]*proxy.TLS
	for i := range out {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		id, err := proxy.NewIdentity(k)
		if err != nil {
			return nil, nil, err
		}
		out[i] = &proxy.TLS{Identity: id}
	}
	members := func() []dfaas.NodeID { return []dfaas.NodeID{out[0].Identity.Node(), out[1].Identity.Node()} }
	out[0].Members, out[1].Members = members, members
	return out[0], out[1], nil
}

var (
	reqPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	quantile  = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	requests  = regexp.MustCompile(`([0-9]+) requests in`)
	errorsRe  = regexp.MustCompile(`Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)`)
	non2xx    = regexp.MustCompile(`Non-2xx or 3xx responses: ([0-9]+)`)
)

// runWrk loads url and parses wrk's report.
func runWrk(ctx context.Context, url, script string, d time.Duration, conns int) (Row, error) {
	threads := min(2, conns)
	out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", max(1, int(d.Seconds()))), "--latency", "-s", script, url).CombinedOutput()
	if err != nil {
		return Row{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

func parseWrk(out string) (Row, error) {
	var r Row
	m := reqPerSec.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	for _, q := range quantile.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(q[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[q[3]]
		d := time.Duration(v * float64(unit))
		if q[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if m := requests.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.Atoi(m[1])
	}
	if m := errorsRe.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
	}
	if m := non2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.Errors += n
	}
	return r, nil
}

func printRows(w io.Writer, rows []Row, conns int) {
	rounds := 0
	if len(rows) > 0 {
		rounds = len(rows[0].Rounds)
	}
	fmt.Fprintf(w, "wrk, %d connections, POST with a 1-byte body; medians of %d rounds\n", conns, rounds)
	fmt.Fprintf(w, "%-22s %10s %9s %9s %14s %7s  %s\n", "path", "req/s", "p50 ms", "p99 ms", "cpu s / 10k", "errors", "x haproxy/local (range)")
	for _, r := range rows {
		cpu := "-"
		if r.CPUPer10k > 0 {
			cpu = fmt.Sprintf("%.3f", r.CPUPer10k.Seconds())
		}
		ratio := ""
		if r.Ratio > 0 && r.Path != "direct" {
			ratio = fmt.Sprintf("%.2fx (%.2f-%.2f)", r.Ratio, r.RatioMin, r.RatioMax)
		}
		fmt.Fprintf(w, "%-22s %10.0f %9.3f %9.3f %14s %7d  %s\n", r.Path, r.ReqPerSec, ms(r.P50), ms(r.P99), cpu, r.Errors, ratio)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// selfCPU is this process's CPU time: the embedded proxies' (the platform
// and wrk run in processes of their own).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(addr string) error {
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return nil
		}
	}
	return fmt.Errorf("the backend did not listen on %s", addr)
}
