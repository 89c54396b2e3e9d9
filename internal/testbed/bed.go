package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/internal/procstat"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

// Options of a run.
type Options struct {
	// Agent is the agent binary. Required (BuildAgent makes one).
	Agent string
	// Platform is the platform binary. Required (BuildPlatform makes
	// one).
	Platform string
	// Dir keeps the federation secret, the node keys and the agents' logs.
	// Default: a temporary directory, removed after the run.
	Dir string
	// Progress, if set, receives a line per second of the run.
	Progress io.Writer
}

// BuildAgent builds examples/agent into dir and returns its path. It runs
// the go command, so the working directory must be inside this module.
func BuildAgent(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, "agent", "github.com/dfaas-go/dfaas/examples/agent")
}

// build builds the command pkg into dir as name and returns its path.
func build(ctx context.Context, dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbed: building %s: %w: %s", name, err, b)
	}
	return out, nil
}

// agent is one node's agent process, as the testbed runs it.
type agent struct {
	i      int
	args   []string
	log    *os.File
	cmd    *exec.Cmd
	exited chan struct{}
	frozen bool
	cpu    time.Duration // of earlier processes of this node
	cpuNow time.Duration // of the current one, when last sampled
	rss    float64       // MiB, the largest seen
}

// bed is one run in progress.
type bed struct {
	s       Scenario
	opt     Options
	net     *network
	idx     map[string]int
	mu      sync.Mutex // guards the agents' processes, samples and cutOff
	agents  []*agent
	ledger  *ledger
	status  *watcher
	cutOff  []CutOff  // per removal, until the node held no connection with another (watchCutOff)
	started time.Time // the end of the warm-up: times in the scenario count from here
	plats   []*platform
	cg      *cpuGroups // nil without CPU budgets
	// capacity is, per second of the run, node and function, the
	// capacity the node's agent advertised (its latest state).
	capacity map[int]map[int]map[string]float64
	// beliefs are, likewise, what the agents' estimators believed.
	beliefs map[int]map[int]map[string]capacity.State
	cbs     *callbacks // the asynchronous calls' results; nil without async load
	admin   *admin     // the administrator, with Scenario.Admin
}

// Run runs a scenario and reports what its users saw. It needs Check to
// pass. Everything it made (namespaces, bridge, processes, rules) is gone
// when it returns.
func Run(ctx context.Context, s Scenario, opt Options) (_ *Report, err error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.withDefaults()
	if err := Check(); err != nil {
		return nil, err
	}
	if opt.Agent == "" || opt.Platform == "" {
		return nil, errors.New("testbed: no agent or platform binary (see BuildAgent, BuildPlatform)")
	}
	if opt.Dir == "" {
		if opt.Dir, err = os.MkdirTemp("", "dfaas-testbed-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(opt.Dir)
	}
	b := &bed{s: s, opt: opt, idx: map[string]int{}, ledger: newLedger(), capacity: map[int]map[int]map[string]float64{},
		beliefs: map[int]map[int]map[string]capacity.State{}}
	names := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		names[i], b.idx[n.Name] = n.Name, i
	}
	if b.net, err = newNetwork(names); err != nil {
		return nil, err
	}
	defer b.net.close()
	for i := range names {
		for j := range names {
			if i != j {
				if err := b.net.connect(i, j); err != nil {
					return nil, err
				}
			}
		}
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			l := s.linkOf(names[i], names[j])
			if err := b.net.delay(i, j, l.RTT.D(), l.Jitter.D()); err != nil {
				return nil, err
			}
			if l.Loss > 0 {
				if err := b.net.setLoss(i, j, l.Loss); err != nil {
					return nil, err
				}
			}
		}
	}
	defer b.stopPlatforms()
	if err := b.startPlatforms(ctx); err != nil {
		return nil, err
	}
	calibration, err := b.calibrate(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.prepareAgents(); err != nil {
		return nil, err
	}
	defer b.stopAll()
	for _, a := range b.agents {
		if err := b.start(a); err != nil {
			return nil, err
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i := range b.agents {
		if err := b.waitReady(readyCtx, i); err != nil {
			return nil, fmt.Errorf("testbed: node %s: %w (log: %s)", names[i], err, b.agents[i].log.Name())
		}
	}
	if b.admin != nil {
		if err := b.publishMembership(ctx, -1); err != nil {
			return nil, err
		}
	}
	select {
	case <-time.After(s.Warmup.D()):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if slices.ContainsFunc(s.Load, func(l LoadSpec) bool { return l.Async }) {
		if b.cbs, err = startCallbacks(b.net.hub()); err != nil {
			return nil, err
		}
		defer b.cbs.close()
	}
	b.started = time.Now()
	if b.cbs != nil {
		b.cbs.started = b.started
	}
	b.status = newWatcher(b)
	statusCtx, stopStatus := context.WithCancel(ctx)
	defer stopStatus()
	go b.status.run(statusCtx)
	b.ledger.begin(b.started)
	sentBefore, triesBefore := b.overlaySent()
	results := b.load(ctx)
	var evErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		evErr = b.events(ctx)
	}()
	b.progress(ctx)
	sentAfter, triesAfter := b.overlaySent()
	elapsed := time.Since(b.started)
	<-done
	res := <-results
	stopStatus()
	b.sampleAgents()
	if evErr != nil {
		return nil, evErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := b.report(res)
	r.Calibration = calibration
	var sent int64
	var nodes int
	for i, after := range sentAfter {
		if before, ok := sentBefore[i]; ok && after >= before {
			sent += after - before
			nodes++
		}
	}
	if nodes > 0 {
		r.ControlBytesPerNodeS = float64(sent) / float64(nodes) / elapsed.Seconds()
	}
	for i, after := range triesAfter {
		if before, ok := triesBefore[i]; ok && after >= before {
			r.Retries += int(after - before)
		}
	}
	r.ViewsCompletePct = b.status.completePct()
	return r, nil
}

// overlaySent reads, from every running agent's /status, the bytes its
// overlay has sent and its data plane's failed forward tries (retried).
func (b *bed) overlaySent() (map[int]int64, map[int]uint64) {
	out, tries := map[int]int64{}, map[int]uint64{}
	for i := range b.agents {
		if !b.running(i) {
			continue
		}
		resp, err := adminClient.Get(b.adminURL(i) + "/status")
		if err != nil {
			continue
		}
		var st node.Status
		err = json.NewDecoder(resp.Body).Decode(&st)
		_ = resp.Body.Close()
		if err != nil {
			continue
		}
		if st.OverlayTraffic != nil && st.OverlayTraffic.BytesOut > 0 {
			out[i] = st.OverlayTraffic.BytesOut
		}
		if st.CountersError == "" {
			var t uint64
			for _, c := range st.Counters {
				t += c.FailedTries
			}
			tries[i] = t
		}
	}
	return out, tries
}

// prepareAgents writes the federation secret and the node keys, and the
// command line of every agent: each knows every other as a bootstrap peer.
func (b *bed) prepareAgents() error {
	secret := filepath.Join(b.opt.Dir, "federation.key")
	if _, err := overlay.GenerateSecret(secret); err != nil {
		return err
	}
	if b.s.Admin {
		if err := b.prepareAdmin(); err != nil {
			return err
		}
	}
	addrs := make([]string, len(b.s.Nodes))
	keys := make([]string, len(b.s.Nodes))
	for i, n := range b.s.Nodes {
		keys[i] = filepath.Join(b.opt.Dir, n.Name+".key")
		k, _, err := overlay.LoadOrCreateKey(keys[i])
		if err != nil {
			return err
		}
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			return err
		}
		addrs[i] = fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", b.net.ip(i), portP2P, id)
	}
	for i, n := range b.s.Nodes {
		var boot []string
		for j, a := range addrs {
			if j != i {
				boot = append(boot, a)
			}
		}
		ip := b.net.ip(i)
		args := []string{"-faas", "openfaas", "-gateway", b.plats[i].url(), "-capacity", b.s.Capacity, "-name", n.Name,
			"-user", net.JoinHostPort(ip, strconv.Itoa(portUser)), "-peer", net.JoinHostPort(ip, strconv.Itoa(portPeer)),
			"-admin", net.JoinHostPort(ip, strconv.Itoa(portAdmin)), "-listen", fmt.Sprintf("/ip4/%s/tcp/%d", ip, portP2P),
			"-secret", secret, "-key", keys[i], "-interval", b.s.Interval.D().String(), "-proxy", b.s.Proxy}
		if len(boot) > 0 {
			args = append(args, "-bootstrap", strings.Join(boot, ","))
		}
		if b.s.Strategy != "" {
			args = append(args, "-strategy", b.s.Strategy)
		}
		if b.admin != nil {
			args = append(args, "-admins", b.admin.file)
		}
		if b.s.LeafLifetime > 0 {
			args = append(args, "-leaf-lifetime", b.s.LeafLifetime.D().String())
		}
		f, err := os.OpenFile(filepath.Join(b.opt.Dir, n.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		b.agents = append(b.agents, &agent{i: i, args: args, log: f})
	}
	return nil
}

// start starts a node's agent process in its namespace.
func (b *bed) start(a *agent) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.cmd != nil {
		select {
		case <-a.exited:
		default:
			return fmt.Errorf("testbed: %s is running", b.s.Nodes[a.i].Name)
		}
		a.cpu, a.cpuNow = a.cpu+a.cpuNow, 0
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", b.net.ns[a.i], b.opt.Agent}, a.args...)...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	// A group of its own: a crash or a freeze takes the whole node (its
	// HAProxy too), and nothing outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	a.cmd, a.exited, a.frozen = cmd, make(chan struct{}), false
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(a.exited)
	return nil
}

// running reports whether node i's agent runs and is not frozen.
func (b *bed) running(i int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.agents[i]
	if a.cmd == nil || a.frozen {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to node i's agent (group: to its whole process group,
// as a machine that crashes or freezes); frozen says whether it is frozen
// after.
func (b *bed) signal(i int, sig syscall.Signal, frozen, group bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	a := b.agents[i]
	if a.cmd == nil || a.cmd.Process == nil {
		return fmt.Errorf("testbed: %s never started", b.s.Nodes[i].Name)
	}
	b.sampleAgent(a)
	a.frozen = frozen
	if group {
		return syscall.Kill(-a.cmd.Process.Pid, sig)
	}
	return a.cmd.Process.Signal(sig)
}

// stopAll kills every agent and waits for it.
func (b *bed) stopAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range b.agents {
		if a.cmd != nil && a.cmd.Process != nil {
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL) // the agent and whatever it started
			<-a.exited
		}
		_ = a.log.Close()
	}
}

func (b *bed) adminURL(i int) string {
	return "http://" + net.JoinHostPort(b.net.ip(i), strconv.Itoa(portAdmin))
}

var adminClient = &http.Client{Timeout: 500 * time.Millisecond}

// waitReady waits until node i's agent has applied a plan.
func (b *bed) waitReady(ctx context.Context, i int) error {
	for {
		resp, err := adminClient.Get(b.adminURL(i) + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-b.agents[i].exited:
			return errors.New("the agent exited")
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// events runs the scenario's events at their times.
func (b *bed) events(ctx context.Context) error {
	for k, e := range b.s.Events {
		select {
		case <-time.After(time.Until(b.started.Add(e.At.D()))):
		case <-ctx.Done():
			return nil
		}
		held := -1 // the connections of a node removed, before its removal
		if e.Remove != "" {
			if n, err := b.net.linkConns(b.idx[e.Remove]); err == nil {
				held = n
			}
		}
		at := time.Now()
		if err := b.apply(k, e); err != nil {
			return fmt.Errorf("testbed: event %d (%s): %w", k, e.Name(), err)
		}
		b.status.appliedAt(k, at)
		b.status.event(k, at)
		if e.Remove != "" {
			go b.watchCutOff(ctx, k, b.idx[e.Remove], at, held)
		}
		if b.opt.Progress != nil {
			fmt.Fprintf(b.opt.Progress, "t=%6.2fs %s (%s)\n", at.Sub(b.started).Seconds(), e.Name(), at.UTC().Format("15:04:05.000"))
		}
	}
	return nil
}

func (b *bed) apply(k int, e EventSpec) error {
	switch {
	case e.Kill != "":
		return b.signal(b.idx[e.Kill], syscall.SIGKILL, false, true)
	case e.Stop != "":
		return b.signal(b.idx[e.Stop], syscall.SIGTERM, false, false) // the agent drains, then stops its data plane
	case e.Freeze != "":
		return b.signal(b.idx[e.Freeze], syscall.SIGSTOP, true, true)
	case e.Thaw != "":
		return b.signal(b.idx[e.Thaw], syscall.SIGCONT, false, true)
	case e.Start != "":
		return b.start(b.agents[b.idx[e.Start]])
	case e.Partition != nil:
		var groups [][]int
		for _, g := range e.Partition {
			var ids []int
			for _, n := range g {
				ids = append(ids, b.idx[n])
			}
			groups = append(groups, ids)
		}
		return b.net.partition(groups)
	case e.Heal:
		return b.net.heal()
	case e.Loss != nil:
		return b.net.setLoss(b.idx[e.Loss.Between[0]], b.idx[e.Loss.Between[1]], e.Loss.Loss)
	case e.Delay != nil:
		return b.net.delay(b.idx[e.Delay.Between[0]], b.idx[e.Delay.Between[1]], e.Delay.RTT.D(), e.Delay.Jitter.D())
	case e.CPU != nil:
		return b.setCPU(b.idx[e.CPU.Node], e.CPU.Cores)
	case e.Hog != nil:
		return b.startHog(b.idx[e.Hog.Node], e.Hog.Threads)
	case e.Unhog != "":
		return b.stopHog(b.idx[e.Unhog])
	case e.Remove != "" || e.Add != "":
		return b.publishMembership(context.Background(), k)
	}
	return nil
}

// watchCutOff times how long node i, removed by event k at at, still
// holds connections with other nodes: until none in three polls in a row,
// 50 ms apart, for up to 5 s or until it stops running.
func (b *bed) watchCutOff(ctx context.Context, k, i int, at time.Time, held int) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var none time.Time // since when it held none
	zeros := 0
	for time.Since(at) < 5*time.Second && b.running(i) {
		n, err := b.net.linkConns(i)
		switch {
		case err != nil || n > 0:
			zeros = 0
		case zeros == 0:
			zeros, none = 1, time.Now()
		default:
			zeros++
		}
		if zeros == 3 {
			b.mu.Lock()
			b.cutOff = append(b.cutOff, CutOff{Event: b.s.Events[k].Name(), Held: held, Seconds: none.Sub(at).Seconds()})
			b.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// result is one user request and what became of it.
type result struct {
	origin   int // the node whose user port took it
	function string
	id       string
	at       time.Duration // since the start
	latency  time.Duration
	code     int    // 0: no answer
	err      string // the client's error, if any
	async    bool   // an asynchronous call (AsyncReport)
}

// load starts the scenario's load at its times and returns, once all of it
// has finished, every request's result.
func (b *bed) load(ctx context.Context) <-chan []result {
	out := make(chan []result, 1)
	var mu sync.Mutex
	var all []result
	var wg sync.WaitGroup
	for k, l := range b.s.Load {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(time.Until(b.started.Add(l.From.D()))):
			case <-ctx.Done():
				return
			}
			origin := b.idx[l.Node]
			path := "/function/"
			if l.Async {
				path = "/async-function/"
			}
			url := "http://" + net.JoinHostPort(b.net.ip(origin), strconv.Itoa(portUser)) + path + l.Function
			var n uint64
			var tmu sync.Mutex
			targeter := func(t *vegeta.Target) error {
				tmu.Lock()
				n++
				id := fmt.Sprintf("%s-%d-%d", l.Node, k, n)
				tmu.Unlock()
				t.Method, t.URL, t.Body = http.MethodPost, url, []byte(id)
				t.Header = http.Header{headerID: {id}}
				if l.Async {
					t.Header.Set("X-Call-Id", id)
					t.Header.Set("X-Callback-Url", b.cbs.url)
				}
				return nil
			}
			// The transport records every request by its id, answered or
			// not (vegeta's results keep no request).
			rec := &recorder{base: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}, bed: b,
				origin: origin, function: l.Function, async: l.Async}
			atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Timeout: 10 * time.Second, Transport: rec}), vegeta.MaxBody(1024))
			pace := vegeta.ConstantPacer{Freq: int(math.Round(l.Rate * 1000)), Per: 1000 * time.Second}
			stop := context.AfterFunc(ctx, func() { atk.Stop() })
			defer stop()
			for range atk.Attack(targeter, pace, (l.To - l.From).D(), fmt.Sprint(k)) {
			}
			rec.base.CloseIdleConnections()
			mu.Lock()
			all = append(all, rec.results()...)
			mu.Unlock()
		}()
	}
	go func() {
		wg.Wait()
		out <- all
	}()
	return out
}

// headerID carries a request's id (also its body, which the function
// records).
const headerID = "X-Testbed-Id"

// recorder is the load's HTTP transport: it records each request's id,
// start, latency to the answer's header and status, or its error.
type recorder struct {
	base     *http.Transport
	bed      *bed
	origin   int
	function string
	async    bool
	mu       sync.Mutex
	recs     []result
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := r.base.RoundTrip(req)
	q := result{origin: r.origin, function: r.function, id: req.Header.Get(headerID), at: start.Sub(r.bed.started), latency: time.Since(start), async: r.async}
	if err != nil {
		q.err = err.Error()
	} else {
		q.code = resp.StatusCode
	}
	r.mu.Lock()
	r.recs = append(r.recs, q)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) results() []result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// progress prints a line per second until the run's end.
func (b *bed) progress(ctx context.Context) {
	end := b.started.Add(b.s.Duration.D())
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			b.sampleAgents()
			b.recordCapacities(int(now.Sub(b.started) / time.Second))
			if b.opt.Progress != nil {
				sec := int(now.Sub(b.started) / time.Second)
				fmt.Fprintf(b.opt.Progress, "t=%3ds executions %s%s\n", sec, b.ledger.second(sec-1, b.s.Nodes), b.capacities(sec))
			}
		}
	}
}

// recordCapacities records, for second sec, the capacity every running
// agent advertises for each function and what its estimators believe.
func (b *bed) recordCapacities(sec int) {
	sts := b.statuses()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, st := range sts {
		if b.capacity[sec] == nil {
			b.capacity[sec] = map[int]map[string]float64{}
			b.beliefs[sec] = map[int]map[string]capacity.State{}
		}
		b.capacity[sec][i] = map[string]float64{}
		for fn, f := range st.State.Functions {
			b.capacity[sec][i][fn] = float64(f.Capacity)
		}
		b.beliefs[sec][i] = st.Capacity
	}
}

// statuses asks every running agent for its /status, at once; those that
// do not answer are missing.
func (b *bed) statuses() map[int]node.Status {
	out := map[int]node.Status{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range b.agents {
		if !b.running(i) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := adminClient.Get(b.adminURL(i) + "/status")
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var st node.Status
			if json.NewDecoder(resp.Body).Decode(&st) != nil {
				return
			}
			mu.Lock()
			out[i] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// capacities says, for the progress line, the capacity each node
// advertised in second sec for the functions of real cost ("" without
// any).
func (b *bed) capacities(sec int) string {
	if len(b.s.Work) == 0 {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for i, n := range b.s.Nodes {
		var c, full float64
		var phase string
		for fn := range b.s.Work {
			c += b.capacity[sec][i][fn]
			st := b.beliefs[sec][i][fn]
			full += float64(st.Full)
			phase = st.Phase
		}
		parts = append(parts, fmt.Sprintf("%s=%.1f(%s full %.0f)", n.Name, c, phase, full))
	}
	return " capacity " + strings.Join(parts, " ")
}

// sampleAgents records the agents' CPU and memory.
func (b *bed) sampleAgents() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range b.agents {
		b.sampleAgent(a)
	}
}

// sampleAgent is sampleAgents for one agent; b.mu is held.
func (b *bed) sampleAgent(a *agent) {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.exited:
		return
	default:
	}
	a.rss = max(a.rss, procstat.RSSMiB(a.cmd.Process.Pid))
	a.cpuNow = procstat.CPU(a.cmd.Process.Pid)
}

// ledger records every execution on the platforms: which node ran which
// request, when, for how long and with what status.
type ledger struct {
	mu    sync.Mutex
	start time.Time
	runs  map[string][]int               // request id -> the nodes that executed it
	per   map[int]map[int]map[string]int // second -> node -> function -> executions
	execs []execution
}

// execution is one call a platform ran.
type execution struct {
	node   int
	fn, id string
	end    time.Time
	took   time.Duration
	status int
}

func newLedger() *ledger {
	return &ledger{runs: map[string][]int{}, per: map[int]map[int]map[string]int{}, start: time.Now()}
}

// begin sets the time seconds count from.
func (l *ledger) begin(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.start = t
}

// ran records a platform's line "ran <unix ns> <function> <µs> <status>
// <id>" of node i; other lines are skipped.
func (l *ledger) ran(i int, line string) {
	f := strings.Fields(line)
	if len(f) != 6 || f[0] != "ran" {
		return
	}
	ns, err1 := strconv.ParseInt(f[1], 10, 64)
	us, err2 := strconv.ParseInt(f[3], 10, 64)
	status, err3 := strconv.Atoi(f[4])
	if err1 != nil || err2 != nil || err3 != nil {
		return
	}
	e := execution{node: i, fn: f[2], id: f[5], end: time.Unix(0, ns), took: time.Duration(us) * time.Microsecond, status: status}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.execs = append(l.execs, e)
	if status == http.StatusTooManyRequests {
		return // the platform refused it: it did not run
	}
	l.runs[e.id] = append(l.runs[e.id], i)
	sec := int(math.Floor(e.end.Sub(l.start).Seconds()))
	if l.per[sec] == nil {
		l.per[sec] = map[int]map[string]int{}
	}
	if l.per[sec][i] == nil {
		l.per[sec][i] = map[string]int{}
	}
	l.per[sec][i][e.fn]++
}

// durations are the platform times of the executions whose id starts with
// prefix.
func (l *ledger) durations(prefix string) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Duration
	for _, e := range l.execs {
		if strings.HasPrefix(e.id, prefix) {
			out = append(out, e.took)
		}
	}
	return out
}

// second summarises the executions of one second of the run.
func (l *ledger) second(sec int, nodes []NodeSpec) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for i, n := range nodes {
		var c int
		for _, v := range l.per[sec][i] {
			c += v
		}
		parts = append(parts, fmt.Sprintf("%s=%d", n.Name, c))
	}
	return strings.Join(parts, " ")
}

// watcher polls the agents' /status and times how long each event took to
// show in the plans.
type watcher struct {
	b       *bed
	mu      sync.Mutex
	pending map[int]time.Time // event -> when it happened, until detected
	found   []Detection
	applied int       // events applied so far
	last    time.Time // when the latest was
	// Views polled away from events (3 s after the last at least), and
	// those in which every running node saw every node it can reach.
	polls, complete int
}

func newWatcher(b *bed) *watcher { return &watcher{b: b, pending: map[int]time.Time{}} }

func (w *watcher) event(k int, at time.Time) {
	if e := w.b.s.Events[k]; e.Loss != nil || e.Delay != nil || e.CPU != nil || e.Hog != nil || e.Unhog != "" {
		return // nothing for the plans' peers to reflect
	}
	w.mu.Lock()
	w.pending[k] = at
	w.mu.Unlock()
}

// applied records that event k happened at at.
func (w *watcher) appliedAt(k int, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.applied, w.last = k+1, at
}

// detections returns the events detected so far.
func (w *watcher) detections() []Detection {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.found)
}

// completePct is the share of quiet-time polls in which every running node
// saw every node it can reach, in percent (-1 without such polls).
func (w *watcher) completePct() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.polls == 0 {
		return -1
	}
	return 100 * float64(w.complete) / float64(w.polls)
}

func (w *watcher) run(ctx context.Context) {
	var lastSample time.Time
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		empty := len(w.pending) == 0
		sample := time.Since(w.last) > 3*time.Second && time.Since(lastSample) >= time.Second
		k := w.applied - 1
		w.mu.Unlock()
		if sample {
			lastSample = time.Now()
		}
		if empty && !sample {
			continue
		}
		views := w.views()
		now := time.Now()
		if sample {
			ok := w.whole(k, views)
			w.mu.Lock()
			w.polls++
			if ok {
				w.complete++
			}
			w.mu.Unlock()
		}
		w.mu.Lock()
		for k, at := range w.pending {
			if w.whole(k, views) {
				w.found = append(w.found, Detection{Event: w.b.s.Events[k].Name(), Seconds: now.Sub(at).Seconds()})
				delete(w.pending, k)
			}
		}
		w.mu.Unlock()
	}
}

// views asks every running agent which peers its latest plan was made
// with.
func (w *watcher) views() map[int][]string {
	out := map[int][]string{}
	for i, st := range w.b.statuses() {
		peers := make([]string, len(st.Peers))
		for j, p := range st.Peers {
			peers[j] = string(p)
		}
		out[i] = peers
	}
	return out
}

// whole reports whether every running node's view is what it should be
// after event k (k < 0: before any): every running node it can reach, and
// no other.
func (w *watcher) whole(k int, views map[int][]string) bool {
	b := w.b
	ids := b.ids()
	reach := func(i, j int) bool { // should i's plan include j now?
		return b.expectedUp(k, j) && !b.cut(k, i, j)
	}
	for i := range b.agents {
		if !b.expectedUp(k, i) || !b.running(i) {
			continue // a node on its way out (or not back yet) has no say
		}
		view, ok := views[i]
		if !ok {
			return false // no answer: not known yet
		}
		for j := range b.agents {
			if j == i {
				continue
			}
			if slices.Contains(view, ids[j]) != reach(i, j) {
				return false
			}
		}
	}
	return true
}

// expectedUp reports whether, after event k, node j should be in the
// federation: not killed, stopped or frozen since it last started or
// thawed.
func (b *bed) expectedUp(k, j int) bool {
	if !b.memberAfter(k, j) {
		return false
	}
	up, name := true, b.s.Nodes[j].Name
	for _, e := range b.s.Events[:max(0, k+1)] {
		switch name {
		case e.Kill, e.Stop, e.Freeze:
			up = false
		case e.Start, e.Thaw:
			up = true
		}
	}
	return up
}

// cut reports whether, after event k, a partition separates i and j.
func (b *bed) cut(k, i, j int) bool {
	if k < 0 {
		return false
	}
	var groups [][]string
	for _, e := range b.s.Events[:k+1] {
		switch {
		case e.Partition != nil:
			groups = e.Partition
		case e.Heal:
			groups = nil
		}
	}
	gi, gj := -1, -1
	for g, members := range groups {
		if slices.Contains(members, b.s.Nodes[i].Name) {
			gi = g
		}
		if slices.Contains(members, b.s.Nodes[j].Name) {
			gj = g
		}
	}
	return gi >= 0 && gj >= 0 && gi != gj
}

// ids are the nodes' overlay ids, from their key files.
func (b *bed) ids() []string {
	out := make([]string, len(b.s.Nodes))
	for i, n := range b.s.Nodes {
		k, _, err := overlay.LoadOrCreateKey(filepath.Join(b.opt.Dir, n.Name+".key"))
		if err != nil {
			continue
		}
		if id, err := peer.IDFromPrivateKey(k); err == nil {
			out[i] = id.String()
		}
	}
	return out
}
