package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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

	"github.com/dfaas-go/dfaas/faas/local"
)

// BuildPlatform builds the testbed's platform process (platformd) into dir
// and returns its path. It runs the go command, so the working directory
// must be inside this module.
func BuildPlatform(ctx context.Context, dir string) (string, error) {
	return build(ctx, dir, "platformd", "github.com/dfaas-go/dfaas/internal/testbed/platformd")
}

// platform is one node's FaaS platform process, in the node's CPU cgroup
// if it has one.
type platform struct {
	i     int
	cmd   *exec.Cmd
	addr  string // host:port
	group string // cgroup directory, or ""
	done  chan struct{}
	hog   *exec.Cmd
}

func (p *platform) url() string { return "http://" + p.addr }

// startPlatforms starts every node's platform process on the hub, each in
// a CPU cgroup of its own when the scenario gives budgets, and deploys the
// node's functions on it.
func (b *bed) startPlatforms(ctx context.Context) error {
	if b.s.budgets() {
		g, err := newCPUGroups()
		if err != nil {
			return err
		}
		b.cg = g
	}
	for i, n := range b.s.Nodes {
		p := &platform{i: i, done: make(chan struct{})}
		b.plats = append(b.plats, p)
		if b.cg != nil && b.budgeted(n.Name) {
			dir, err := b.cg.make(n.Name, n.CPU, b.s.CPUPeriod.D())
			if err != nil {
				return err
			}
			p.group = dir
		}
		if err := b.runPlatform(ctx, p); err != nil {
			return fmt.Errorf("testbed: platform of %s: %w", n.Name, err)
		}
		if err := b.deploy(ctx, p, n); err != nil {
			return err
		}
	}
	return nil
}

// budgeted reports whether node has a CPU budget at the start or by an
// event.
func (b *bed) budgeted(node string) bool {
	for _, n := range b.s.Nodes {
		if n.Name == node && n.CPU > 0 {
			return true
		}
	}
	for _, e := range b.s.Events {
		if (e.CPU != nil && e.CPU.Node == node) || (e.Hog != nil && e.Hog.Node == node) {
			return true
		}
	}
	return false
}

// runPlatform starts p's process and reads its ledger lines until it ends.
func (b *bed) runPlatform(ctx context.Context, p *platform) error {
	// Echoes run at their label (the platform enforces it); functions of
	// real cost at what their CPU allows, whatever their label says.
	cmd := exec.Command(b.opt.Platform, "-listen", net.JoinHostPort(b.net.hub(), "0"), "-node", b.s.Nodes[p.i].Name,
		"-enforce="+strconv.FormatBool(len(b.s.Work) == 0))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(b.opt.Dir, b.s.Nodes[p.i].Name+".platform.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the process has its own descriptor
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd = cmd
	if p.group != "" {
		if err := b.cg.add(p.group, cmd.Process.Pid); err != nil {
			return err
		}
	}
	lines := bufio.NewScanner(out)
	listening := make(chan string, 1)
	go func() {
		defer close(p.done)
		for lines.Scan() {
			line := lines.Text()
			if addr, ok := strings.CutPrefix(line, "listening "); ok {
				listening <- addr
				continue
			}
			b.ledger.ran(p.i, line)
		}
		_ = cmd.Wait()
	}()
	select {
	case p.addr = <-listening:
		return nil
	case <-p.done:
		return errors.New("the platform exited (see the node's log)")
	case <-time.After(10 * time.Second):
		return errors.New("the platform did not listen within 10 s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deploy deploys node n's functions on p: those with a Work cost as
// dfaas/cpu, the others as the echo that records itself.
func (b *bed) deploy(ctx context.Context, p *platform, n NodeSpec) error {
	for _, fn := range slices.Sorted(maps.Keys(n.Functions)) {
		labels := map[string]string{}
		if l, ok := n.Label(fn); ok {
			labels[local.LabelMaxRate] = strconv.FormatFloat(l, 'f', -1, 64)
		}
		if d, ok := b.s.MaxRTT[fn]; ok {
			labels[local.LabelMaxRTT] = d.D().String()
		}
		spec := map[string]any{"service": fn, "image": "dfaas/testbed", "labels": labels}
		if cost, ok := b.s.Work[fn]; ok {
			spec["image"] = "dfaas/cpu"
			spec["envVars"] = map[string]string{local.EnvCost: cost.D().String()}
		}
		raw, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url()+"/system/functions", strings.NewReader(string(raw)))
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("testbed: deploying %s on %s: %s: %s", fn, n.Name, resp.Status, body)
		}
	}
	return nil
}

// stopPlatforms ends the platform processes and hogs, and removes the
// cgroups.
func (b *bed) stopPlatforms() {
	for _, p := range b.plats {
		for _, c := range []*exec.Cmd{p.cmd, p.hog} {
			if c != nil && c.Process != nil {
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			}
		}
		if p.cmd != nil {
			<-p.done
		}
		if p.hog != nil {
			_ = p.hog.Wait()
		}
	}
	if b.cg != nil {
		b.cg.close()
	}
}

// setCPU changes node i's CPU budget.
func (b *bed) setCPU(i int, cores float64) error {
	p := b.plats[i]
	if p.group == "" {
		return fmt.Errorf("testbed: %s has no CPU cgroup", b.s.Nodes[i].Name)
	}
	return b.cg.setQuota(p.group, cores, b.s.CPUPeriod.D())
}

// startHog starts a CPU hog of threads threads in node i's cgroup.
func (b *bed) startHog(i, threads int) error {
	p := b.plats[i]
	if p.group == "" || p.hog != nil {
		return fmt.Errorf("testbed: %s has no CPU cgroup, or a hog already", b.s.Nodes[i].Name)
	}
	cmd := exec.Command(b.opt.Platform, "-hog", strconv.Itoa(threads))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	p.hog = cmd
	return b.cg.add(p.group, cmd.Process.Pid)
}

// stopHog stops node i's hog.
func (b *bed) stopHog(i int) error {
	p := b.plats[i]
	if p.hog == nil {
		return fmt.Errorf("testbed: %s has no hog", b.s.Nodes[i].Name)
	}
	_ = syscall.Kill(-p.hog.Process.Pid, syscall.SIGKILL)
	_ = p.hog.Wait()
	p.hog = nil
	return nil
}

// Calibration is what a node's platform does with a function of real
// cost, measured before the run, alone: the unloaded service time (calls
// one at a time) and the most it runs a second (calls two at a time).
type Calibration struct {
	Node     string  `json:"node"`
	Function string  `json:"function"`
	CPU      float64 `json:"cpu"`
	// UnloadedP50MS and UnloadedP95MS are the platform's own time for a
	// call alone.
	UnloadedP50MS float64 `json:"unloaded_p50_ms"`
	UnloadedP95MS float64 `json:"unloaded_p95_ms"`
	// Saturated is the calls a second the platform ran with two always
	// waiting: its capacity with no latency objective.
	Saturated float64 `json:"saturated"`
}

// calibrate measures every node's functions of real cost, all nodes at
// once.
func (b *bed) calibrate(ctx context.Context) ([]Calibration, error) {
	var mu sync.Mutex
	var out []Calibration
	var wg sync.WaitGroup
	errs := make(chan error, len(b.plats)*max(1, len(b.s.Work)))
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	for i, n := range b.s.Nodes {
		for fn := range b.s.Work {
			if _, ok := n.Functions[fn]; !ok {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := b.calibrateOne(ctx, client, i, fn)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				out = append(out, c)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	close(errs)
	slices.SortFunc(out, func(x, y Calibration) int { return strings.Compare(x.Node+x.Function, y.Node+y.Function) })
	return out, <-errs
}

func (b *bed) calibrateOne(ctx context.Context, client *http.Client, i int, fn string) (Calibration, error) {
	n := b.s.Nodes[i]
	c := Calibration{Node: n.Name, Function: fn, CPU: n.CPU}
	call := func(id string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.plats[i].url()+"/function/"+fn, strings.NewReader(id))
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("testbed: calibrating %s on %s: %s", fn, n.Name, resp.Status)
		}
		return nil
	}
	// Alone: one at a time, a pause between, the platform's own times.
	prefix := fmt.Sprintf("cal-%s-%s-", n.Name, fn)
	for k := range 12 {
		if err := call(fmt.Sprintf("%s1-%d", prefix, k)); err != nil {
			return c, err
		}
		time.Sleep(30 * time.Millisecond)
	}
	alone := b.ledger.durations(prefix + "1-")
	c.UnloadedP50MS, c.UnloadedP95MS = quantileMS(alone, 0.5), quantileMS(alone, 0.95)
	// Saturated: two callers back to back for two seconds.
	var ran int
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(2 * time.Second)
	var first error
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(stop); k++ {
				err := call(fmt.Sprintf("%s2-%d-%d", prefix, w, k))
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					ran++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	c.Saturated = float64(ran) / 2
	return c, first
}
