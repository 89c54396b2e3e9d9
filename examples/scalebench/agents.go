package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fedRow is one federation of real agent processes on loopback, idle.
type fedRow struct {
	plane                 string
	agents, functions     int
	haproxyCPU, agentCPU  time.Duration // over the window, all processes together
	haproxyRSS, agentRSS  float64       // MB: HAProxy's processes together, the largest agent
	peers                 int           // in the first agent's plan: the fewest of five reads
	ticks                 uint64        // the first agent's ticks over the window
	tickP50, tickMax      time.Duration // the agents' latest tick, sampled after the window
	window, settle        time.Duration
	reloadsLogged, failed int // HAProxy reloads and failed ticks in the agents' logs
}

// federation starts n example agents (each -faas local with the same
// functions, on plane), lets them settle, and measures them idle.
func federation(ctx context.Context, o options, plane string, functions int) (fedRow, error) {
	r := fedRow{plane: plane, agents: o.agents, functions: functions, window: o.window, settle: o.settle}
	dir, err := os.MkdirTemp("", "dfaas-scalebench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "agent")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/agent").CombinedOutput(); err != nil {
		return r, fmt.Errorf("build the agent (run from the repository's root): %v\n%s", err, out)
	}
	fns := make([]string, functions)
	for i := range fns {
		fns[i] = fmt.Sprintf("f%d=10", i)
	}
	secret := filepath.Join(dir, "fed.key")
	var cmds []*exec.Cmd
	var admins []string
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range cmds {
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = c.Process.Kill()
				<-done
			}
		}
	}()
	// Every agent's four ports, held until all are chosen so that no two
	// are the same.
	addrs, err := freeAddrs(4 * o.agents)
	if err != nil {
		return r, err
	}
	var bootstrap string
	for i := range o.agents {
		key := filepath.Join(dir, fmt.Sprintf("n%d.key", i))
		_, port, _ := strings.Cut(addrs[4*i], ":")
		listen := "/ip4/127.0.0.1/tcp/" + port
		args := []string{"-name", fmt.Sprintf("n%d", i), "-key", key, "-secret", secret, "-listen", listen,
			"-faas", "local", "-proxy", plane, "-functions", strings.Join(fns, ","),
			"-user", addrs[4*i+1], "-peer", addrs[4*i+2], "-admin", addrs[4*i+3]}
		admins = append(admins, addrs[4*i+3])
		if i == 0 {
			out, err := exec.CommandContext(ctx, bin, "-key", key, "-secret", secret, "-print-id").Output()
			if err != nil {
				return r, fmt.Errorf("agent -print-id: %w", err)
			}
			bootstrap = listen + "/p2p/" + strings.TrimSpace(string(out))
		} else {
			args = append(args, "-bootstrap", bootstrap)
		}
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
		if err != nil {
			return r, err
		}
		defer log.Close()
		c := exec.Command(bin, args...)
		c.Stdout, c.Stderr = log, log
		if err := c.Start(); err != nil {
			return r, err
		}
		cmds = append(cmds, c)
	}
	select {
	case <-time.After(o.settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	// An agent that stopped says why in its log.
	logTail := func() string {
		var b strings.Builder
		for i := range cmds {
			raw, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			fmt.Fprintf(&b, "\nn%d: %s", i, strings.Join(lines[max(0, len(lines)-3):], "\n    "))
		}
		return b.String()
	}
	ticks0, _, err := status(admins[0])
	if err != nil {
		return r, fmt.Errorf("%w%s", err, logTail())
	}
	agents0, haproxy0 := cpuOfTrees(cmds)
	time.Sleep(o.window)
	agents1, haproxy1 := cpuOfTrees(cmds)
	r.agentCPU, r.haproxyCPU = agents1-agents0, haproxy1-haproxy0
	ticks1, _, err := status(admins[0])
	if err != nil {
		return r, err
	}
	r.ticks = ticks1 - ticks0
	// The peers of the first agent's plan, read five times a second apart
	// (after the window: /status is large at a thousand functions): the
	// fewest.
	r.peers = o.agents
	for range 5 {
		_, peers, err := status(admins[0])
		if err != nil {
			return r, err
		}
		r.peers = min(r.peers, peers)
		time.Sleep(time.Second)
	}
	for _, c := range cmds {
		r.agentRSS = max(r.agentRSS, rss(c.Process.Pid))
		for _, pid := range descendants(c.Process.Pid) {
			r.haproxyRSS += rss(pid)
		}
	}
	// The latest tick's duration, from each agent's metrics, a sample a
	// second (after the window: scraping costs the agent CPU).
	var durs []time.Duration
	for range 10 {
		for _, admin := range admins {
			if d, err := tickDuration(admin); err == nil {
				durs = append(durs, d)
			}
		}
		time.Sleep(time.Second)
	}
	r.tickP50, r.tickMax = quantile(durs, 0.5), quantile(durs, 1)
	for i := range cmds {
		raw, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
		r.reloadsLogged += strings.Count(string(raw), "haproxy reloaded")
		r.failed += strings.Count(string(raw), "tick failed")
	}
	return r, nil
}

// freeAddrs returns n distinct free loopback addresses.
func freeAddrs(n int) ([]string, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]string, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out[i] = l.Addr().String()
	}
	return out, nil
}

// status reads an agent's ticks and the peers of its latest plan.
func status(admin string) (uint64, int, error) {
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var st struct {
		Ticks uint64   `json:"ticks"`
		Peers []string `json:"peers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, 0, fmt.Errorf("%s/status: %w", admin, err)
	}
	return st.Ticks, len(st.Peers), nil
}

// tickDuration reads dfaas_tick_duration_seconds from an agent's metrics.
func tickDuration(admin string) (time.Duration, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "dfaas_tick_duration_seconds "); ok {
			s, err := strconv.ParseFloat(v, 64)
			return time.Duration(s * float64(time.Second)), err
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0, fmt.Errorf("%s/metrics: no dfaas_tick_duration_seconds", admin)
}

// cpuOfTrees is the CPU time the agents have used, and their descendants
// (HAProxy's master and workers, the platforms' processes).
func cpuOfTrees(cmds []*exec.Cmd) (agents, children time.Duration) {
	for _, c := range cmds {
		agents += cpuTime(c.Process.Pid)
		for _, pid := range descendants(c.Process.Pid) {
			children += cpuTime(pid)
		}
	}
	return agents, children
}

// descendants lists the processes below pid.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
