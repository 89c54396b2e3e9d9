package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haproxytech/client-native/v6/runtime"
	"github.com/haproxytech/client-native/v6/runtime/options"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Config configures a Driver. Node, UserAddr, PeerAddr and Platform are
// required; the zero value of the other fields means their default.
type Config struct {
	// Binary is the haproxy executable. Default "haproxy" on $PATH.
	Binary string
	// Node is this node's overlay id.
	Node dfaas.NodeID
	// UserAddr and PeerAddr are the listeners' host:port (a concrete port).
	UserAddr, PeerAddr string
	// Platform is the FaaS platform's host:port (the OpenFaaS gateway).
	Platform string
	// Functions get forwarding backends from the start; others are added
	// with a seamless reload when a plan first names them.
	Functions []string
	// MaxPeers bounds the peers of one function. Default 64.
	MaxPeers int
	// Timeout bounds one request to the platform or a peer. Default 30 s.
	Timeout time.Duration
	// Dir holds the configuration, maps and socket. Default: a new temporary
	// directory, removed by Close.
	Dir string
	// TLS, if set, makes the federation's traffic mutual TLS (see Layout).
	TLS *TLS
	// Logger receives the driver's logs. Default slog.Default().
	Logger *slog.Logger
}

// Driver runs one HAProxy process and applies plans to it. It implements
// dfaas.ProxyDriver and is safe for concurrent use.
type Driver struct {
	cfg    Config
	log    *slog.Logger
	layout Layout
	ownDir bool

	cmd    *exec.Cmd
	exited chan struct{}
	out    *lockedBuffer

	mu      sync.Mutex // serialises Apply
	rt      runtime.Runtime
	servers map[string]map[dfaas.NodeID]server // per function: the peers configured
	maps    map[string]map[string]int          // map file -> key -> value, as set
	closed  bool

	base       map[string]proxy.Counts // what earlier workers counted
	lastCounts map[string]proxy.Counts
}

type server struct {
	name, addr string
	weight     int
}

// Start writes the configuration, starts HAProxy in master-worker mode and
// connects to its runtime API.
func Start(ctx context.Context, cfg Config) (_ *Driver, err error) {
	if cfg.Binary == "" {
		cfg.Binary = "haproxy"
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = 64
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Driver{cfg: cfg, log: cfg.Logger.With("component", "haproxy"), servers: map[string]map[dfaas.NodeID]server{},
		maps: map[string]map[string]int{}, base: map[string]proxy.Counts{}, out: &lockedBuffer{}, exited: make(chan struct{})}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "dfaas-haproxy-"); err != nil {
			return nil, fmt.Errorf("haproxy: %w", err)
		}
		d.ownDir = true
		d.cfg.Dir = cfg.Dir
	}
	defer func() {
		if err != nil {
			_ = d.Close()
		}
	}()
	d.layout = Layout{Node: cfg.Node, UserAddr: cfg.UserAddr, PeerAddr: cfg.PeerAddr, LocalAddr: cfg.Platform,
		Socket: filepath.Join(cfg.Dir, "admin.sock"), LimitsMap: filepath.Join(cfg.Dir, "limits.map"),
		CapacityMap: filepath.Join(cfg.Dir, "capacity.map"), Functions: slices.Clone(cfg.Functions),
		MaxPeers: cfg.MaxPeers, Timeout: cfg.Timeout, TLS: cfg.TLS}
	if err := d.writeConfig(); err != nil {
		return nil, err
	}
	for _, m := range []string{d.layout.LimitsMap, d.layout.CapacityMap} {
		if err := os.WriteFile(m, nil, 0o600); err != nil {
			return nil, fmt.Errorf("haproxy: %w", err)
		}
	}
	d.cmd = exec.Command(cfg.Binary, "-W", "-db", "-f", d.configPath())
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("haproxy: start %s: %w", cfg.Binary, err)
	}
	go func() {
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	if err := d.connect(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Driver) configPath() string { return filepath.Join(d.cfg.Dir, "haproxy.cfg") }

func (d *Driver) writeConfig() error {
	text, err := d.layout.Render()
	if err != nil {
		return err
	}
	tmp := d.configPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	return os.Rename(tmp, d.configPath())
}

// connect waits for the worker's runtime socket and opens the client.
func (d *Driver) connect(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", d.layout.Socket); err == nil {
			c.Close()
			rt, err := runtime.New(ctx, options.Socket(d.layout.Socket), options.MapsDir(d.cfg.Dir))
			if err != nil {
				return fmt.Errorf("haproxy: runtime client: %w", err)
			}
			d.rt = rt
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("haproxy: exited at start:\n%s", d.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy: runtime socket not up after 10s:\n%s", d.out.String())
		}
	}
}

// UserAddr is the user listener's host:port.
func (d *Driver) UserAddr() string { return d.cfg.UserAddr }

// PeerAddr is the peer listener's host:port, to advertise.
func (d *Driver) PeerAddr() string { return d.cfg.PeerAddr }

// Info returns HAProxy's "show info" fields, e.g. Pid and Uptime_sec.
func (d *Driver) Info() (map[string]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info()
}

func (d *Driver) info() (map[string]string, error) {
	raw, err := d.rt.ExecuteRaw("show info")
	if err != nil {
		return nil, fmt.Errorf("haproxy: show info: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(raw, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// rate turns a plan's rate into HAProxy's whole requests per second.
func rate(r dfaas.Rate) int { return int(math.Round(float64(max(0, r)))) }

// weight turns a plan's weight into HAProxy's 1..256 scale.
func weight(w float64) int { return max(1, min(256, int(math.Round(w*256)))) }

// serverName is a peer's server name in a forwarding backend.
func serverName(node dfaas.NodeID) string {
	h := uint64(14695981039346656037)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * 1099511628211
	}
	return "p" + strconv.FormatUint(h, 36)
}

// Apply implements dfaas.ProxyDriver through the runtime API only: map
// entries, then each function's servers (added, reweighted, removed).
// Functions new to the configuration are added with one seamless reload.
func (d *Driver) Apply(ctx context.Context, plan dfaas.Plan) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("haproxy: apply: %w", dfaas.ErrClosed)
	}
	var added []string
	for name := range plan.Functions {
		if err := dfaas.ValidateFunctionName(name); err != nil {
			return fmt.Errorf("haproxy: apply: %w", err)
		}
		if !slices.Contains(d.layout.Functions, name) {
			added = append(added, name)
		}
	}
	if len(added) > 0 {
		// The whole plan goes into the files the new worker starts from:
		// runtime commands could still reach the old worker while it stops.
		d.layout.Functions = append(d.layout.Functions, added...)
		for _, name := range d.layout.Functions {
			fp, ok := plan.Functions[name]
			d.servers[name] = d.wantServers(fp.Peers)
			if !ok {
				delete(d.maps[d.layout.LimitsMap], name)
				delete(d.maps[d.layout.CapacityMap], name)
				continue
			}
			d.remember(d.layout.CapacityMap, name, rate(fp.Capacity))
			d.remember(d.layout.LimitsMap, name, rate(min(fp.Limit, fp.Capacity)))
		}
		return d.reload(ctx, added)
	}
	var errs []error
	for name, fp := range plan.Functions {
		errs = append(errs, d.setMap(d.layout.CapacityMap, name, rate(fp.Capacity)), d.setMap(d.layout.LimitsMap, name, rate(min(fp.Limit, fp.Capacity))))
		errs = append(errs, d.applyPeers(name, fp.Peers))
	}
	// Functions gone from the plan answer 404 again.
	for _, name := range d.layout.Functions {
		if _, ok := plan.Functions[name]; !ok {
			errs = append(errs, d.delMap(d.layout.LimitsMap, name), d.delMap(d.layout.CapacityMap, name), d.applyPeers(name, nil))
		}
	}
	return errors.Join(errs...)
}

// remember records a map entry as the driver's desired state.
func (d *Driver) remember(file, key string, value int) {
	if d.maps[file] == nil {
		d.maps[file] = map[string]int{}
	}
	d.maps[file][key] = value
}

func (d *Driver) setMap(file, key string, value int) error {
	d.remember(file, key, value)
	v := strconv.Itoa(value)
	name := filepath.Base(file) // client-native resolves map names in the maps directory
	if err := d.rt.SetMapEntry(name, key, v); err == nil {
		return nil
	}
	if err := d.rt.AddMapEntry(name, key, v); err != nil {
		return fmt.Errorf("haproxy: map %s %s=%s: %w", filepath.Base(file), key, v, err)
	}
	return nil
}

func (d *Driver) delMap(file, key string) error {
	delete(d.maps[file], key)
	if _, err := d.rt.ExecuteRaw("del map " + file + " " + key); err != nil {
		return fmt.Errorf("haproxy: del map %s %s: %w", filepath.Base(file), key, err)
	}
	return nil
}

// wantServers is the servers a function's forwarding backend should hold.
func (d *Driver) wantServers(peers []dfaas.Share) map[dfaas.NodeID]server {
	want := map[dfaas.NodeID]server{}
	for _, p := range peers {
		if p.Weight <= 0 || p.Cap <= 0 || len(want) >= d.cfg.MaxPeers {
			continue
		}
		if _, _, err := net.SplitHostPort(p.Addr); err != nil || strings.ContainsAny(p.Addr, " \t\n") {
			d.log.Warn("peer address ignored", "peer", p.Node, "addr", p.Addr)
			continue
		}
		want[p.Node] = server{name: serverName(p.Node), addr: p.Addr, weight: weight(p.Weight)}
	}
	return want
}

// applyPeers makes a function's forwarding backend hold exactly the peers.
func (d *Driver) applyPeers(fn string, peers []dfaas.Share) error {
	backend := forwardBackend(fn)
	have := d.servers[fn]
	if have == nil {
		have = map[dfaas.NodeID]server{}
		d.servers[fn] = have
	}
	want := d.wantServers(peers)
	var errs []error
	for node, s := range have {
		if w, ok := want[node]; ok && w.addr == s.addr {
			continue
		}
		// Drain, then delete: requests in flight finish first.
		_ = d.rt.SetServerState(backend, s.name, "maint")
		_, _ = d.rt.ExecuteRaw(fmt.Sprintf("shutdown sessions server %s/%s", backend, s.name))
		if err := d.rt.DeleteServer(backend, s.name); err != nil {
			errs = append(errs, fmt.Errorf("haproxy: del server %s/%s: %w", backend, s.name, err))
			continue
		}
		delete(have, node)
	}
	for node, w := range want {
		s, ok := have[node]
		switch {
		case !ok:
			if err := d.rt.AddServer(backend, w.name, fmt.Sprintf("%s weight %d%s", w.addr, w.weight, d.layout.serverTLS())); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: add server %s/%s: %w", backend, w.name, err))
				continue
			}
			if err := d.rt.EnableServer(backend, w.name); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: enable server %s/%s: %w", backend, w.name, err))
			}
			have[node] = w
		case s.weight != w.weight:
			if err := d.rt.SetServerWeight(backend, w.name, strconv.Itoa(w.weight)); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: weight %s/%s: %w", backend, w.name, err))
				continue
			}
			have[node] = w
		}
	}
	return errors.Join(errs...)
}

// reload adds functions to the configuration with a seamless reload: the
// master starts a new worker, which takes over the listening sockets, and
// the old worker finishes its requests. The configuration and map files
// carry the runtime state over.
func (d *Driver) reload(ctx context.Context, added []string) error {
	// The new worker starts from the files: write the desired state into
	// them, so it serves the current plan from its first request.
	d.layout.Servers = map[string][]Server{}
	for fn, peers := range d.servers {
		for _, sv := range peers {
			d.layout.Servers[fn] = append(d.layout.Servers[fn], Server{Name: sv.name, Addr: sv.addr, Weight: sv.weight})
		}
		slices.SortFunc(d.layout.Servers[fn], func(a, b Server) int { return strings.Compare(a.Name, b.Name) })
	}
	if err := d.writeConfig(); err != nil {
		return err
	}
	for file, entries := range d.maps {
		var b strings.Builder
		for k, v := range entries {
			fmt.Fprintf(&b, "%s %d\n", k, v)
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("haproxy: reload: %w", err)
		}
	}
	before, err := d.info()
	if err != nil {
		return err
	}
	// The new worker's counters start at zero: keep the old worker's.
	if counts, err := d.counts(); err == nil {
		d.base = counts
	}
	deadline := time.Now().Add(10 * time.Second)
	var signalled time.Time
	for {
		// A master still starting up may miss the signal: repeat it.
		if time.Since(signalled) > 500*time.Millisecond {
			if err := d.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
				return fmt.Errorf("haproxy: reload: %w", err)
			}
			signalled = time.Now()
		}
		if info, err := d.info(); err == nil && info["Pid"] != before["Pid"] {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy: reload: no new worker after 10s:\n%s", d.out.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Let the old worker finish, so that the next runtime commands reach
	// the new one only (it may take longer with slow requests in flight: the
	// files hold the state either way).
	if old, err := strconv.Atoi(before["Pid"]); err == nil {
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && syscall.Kill(old, 0) == nil; {
			time.Sleep(10 * time.Millisecond)
		}
	}
	d.log.Info("haproxy reloaded", "functions", added)
	return nil
}

// Close stops HAProxy and removes its directory if the driver made it.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.ownDir {
		return os.RemoveAll(d.cfg.Dir)
	}
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var _ dfaas.ProxyDriver = (*Driver)(nil)
