package haproxy

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
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
	"go.opentelemetry.io/otel/trace"

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
	// Namespace, if set, is the functions' namespace on the platform: the
	// driver sends /function/<name>.<namespace> to it (OpenFaaS).
	Namespace string
	// Functions are the platform's own: counted from the start, and kept
	// when a plan stops naming them (others' counts start again when they
	// come back). A function is a map entry, never a reload.
	Functions []string
	// MaxPeers bounds the peers the forwarding backend holds, over all the
	// functions: a plan's shares to peers beyond it are left out. Default
	// 64.
	MaxPeers int
	// RouteSlots is how many routes (distinct sets of peers over the
	// functions) get a backend of their own, so that a forward retried
	// after a refusal or a failed connection goes to another peer of its
	// function's route, never to a peer the plan did not name for it.
	// Beyond them, a route shares the smallest slot that holds all its
	// peers (a retry may then go to one of those others), else goes to the
	// forwarding backend of every peer (Slots counts both). Default
	// DefaultRouteSlots; at most MaxRouteSlots.
	RouteSlots int
	// Timeout bounds one request to the platform or a peer. Default 30 s.
	Timeout time.Duration
	// MaxBody is the largest request body either listener takes: a
	// declared length over it is answered 413. Default 16 MiB. (HAProxy
	// cannot count a chunked body as it streams: the platform's own bound
	// holds there.)
	MaxBody int64
	// BodyTimeout bounds the wait for a request's body, as far as
	// HAProxy's request buffer holds it (about 16 KiB; 408 past it): most
	// function calls whole. Beyond a buffer the body streams to the
	// platform or peer, under Timeout's bound on silence only. Default 60 s.
	BodyTimeout time.Duration
	// Burst is how much forwarding a peer's cap lets through at once, as
	// time at the capped rate (at least two requests), as in the embedded
	// proxy. Default 100 ms.
	Burst time.Duration
	// Async, if set, is the host:port of the node's asynchronous calls
	// (package async): the user listener sends /async-function/... there.
	// Default none: 404.
	Async string
	// Dir holds the configuration, maps and socket. Default: a new temporary
	// directory, removed by Close.
	Dir string
	// TLS, if set, makes the federation's traffic mutual TLS (see Layout).
	TLS *proxy.TLS
	// Logger receives the driver's logs. Default slog.Default().
	Logger *slog.Logger
	// Tracer, if set, gets a span per request that arrives with a W3C
	// trace context (traceparent), on either listener: HAProxy 2.6 starts
	// no W3C spans (its OpenTracing filter needs a vendor's plugin), so
	// the driver makes them from its request log, after
	// the fact, as children of the caller's span (HAProxy forwards the
	// traceparent as it came: a forward's spans at the peer are siblings
	// of this node's). Default none.
	Tracer trace.TracerProvider

	testClock string // see Layout.testClock
}

func (c Config) withDefaults() Config {
	if c.Binary == "" {
		c.Binary = "haproxy"
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = 64
	}
	if c.RouteSlots == 0 {
		c.RouteSlots = DefaultRouteSlots
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Burst == 0 {
		c.Burst = 100 * time.Millisecond
	}
	if c.MaxBody == 0 {
		c.MaxBody = proxy.DefaultMaxBody
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = proxy.DefaultBodyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// layout is the configuration's layout in c.Dir.
func (c Config) layout() Layout {
	return Layout{Node: c.Node, UserAddr: c.UserAddr, PeerAddr: c.PeerAddr, LocalAddr: c.Platform,
		Socket: filepath.Join(c.Dir, "admin.sock"), LimitsMap: filepath.Join(c.Dir, "limits.map"),
		CapacityMap: filepath.Join(c.Dir, "capacity.map"), RoutesMap: filepath.Join(c.Dir, "routes.map"), SlotsMap: filepath.Join(c.Dir, "slots.map"),
		Namespace: c.Namespace, LogSocket: filepath.Join(c.Dir, "log.sock"), Lua: filepath.Join(c.Dir, "dfaas.lua"), PeersSocket: filepath.Join(c.Dir, "peers.sock"),
		MaxPeers: c.MaxPeers, RouteSlots: c.RouteSlots, Async: c.Async, Timeout: c.Timeout, MaxBody: c.MaxBody, BodyTimeout: c.BodyTimeout, Trace: c.Tracer != nil, testClock: c.testClock}
}

// Validate reports the first invalid field: what HAProxy's configuration
// could not take (an address without a port, a node id or a name that would
// break a line, a directory too deep for its sockets) or a negative bound.
// It does not look for the binary.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.MaxPeers < 0 || c.RouteSlots < 0 || c.Timeout < 0 || c.Burst < 0 || c.MaxBody < 0 || c.BodyTimeout < 0 {
		return fmt.Errorf("%w: haproxy: negative max peers, route slots, timeout, burst, max body or body timeout", dfaas.ErrInvalidConfig)
	}
	if c.Dir == "" {
		c.Dir = os.TempDir() + "/dfaas-haproxy-0123456789" // as long as MkdirTemp's
	}
	if err := c.layout().validate(); err != nil {
		return err
	}
	for _, fn := range c.Functions {
		// Names go into map keys: only DNS-1123 labels.
		if err := dfaas.ValidateFunctionName(fn); err != nil {
			return fmt.Errorf("haproxy: %w", err)
		}
	}
	if c.TLS != nil {
		return c.TLS.Validate()
	}
	return nil
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
	servers map[dfaas.NodeID]server // the forwarding backend's servers
	// functions are the functions counted: the platform's own and those
	// of the latest plan.
	functions []string
	reloads   int                          // since Start
	maps      map[string]map[string]string // map file -> key -> value, as set
	certLeaf  *x509.Certificate            // the TLS leaf HAProxy has, with TLS
	routes    map[string][]hop             // function -> its route as last set (see routeTolerance)
	slots     []routeSlot                  // the route backends, by number
	keys      map[string]keyed             // function -> its route's key as last made
	slotUse   SlotUse                      // what the latest Apply made of the route backends
	closed    bool

	logs    *net.UnixConn // HAProxy's request log: latency and trigger
	logDone chan struct{}
	logged  sync.Map // function -> *logState, for the functions of the plans
	trigger chan struct{}

	nodes    map[string]dfaas.NodeID // server name -> peer, for the servers a plan named in the last forgetPeersAfter
	named    sync.Map                // nodes, for the log reader (which must not wait for an Apply)
	tracer   trace.Tracer            // nil: no spans
	forwards proxy.Forwards          // from the request log
	wanted   map[string]time.Time    // server name -> when a plan last named it
	members  []byte                  // the peer listener's CA file as last set
	// outliers: peers HAProxy marked down, out of the plans for a back-off
	// (Consecutive 1: every mark-down is an ejection).
	outliers *proxy.Outliers
	base     map[string]proxy.Counts // what earlier workers' stick tables counted that the current one did not take over
	reported map[string]counted      // what Counts last reported (monotonic)
}

// Start writes the configuration, starts HAProxy in master-worker mode and
// connects to its runtime API.
func Start(ctx context.Context, cfg Config) (_ *Driver, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// One failure ejects: HAProxy marks a server down after failures in a
	// row (observe layer4), so the driver acts on the mark-down at once.
	outliers, err := proxy.NewOutliers(proxy.OutlierConfig{Consecutive: 1})
	if err != nil {
		return nil, err
	}
	if err := checkVersion(ctx, cfg.Binary); err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, log: cfg.Logger.With("component", "haproxy"), servers: map[dfaas.NodeID]server{}, functions: slices.Clone(cfg.Functions),
		maps: map[string]map[string]string{}, routes: map[string][]hop{}, slots: make([]routeSlot, cfg.RouteSlots), keys: map[string]keyed{}, trigger: make(chan struct{}, 1), nodes: map[string]dfaas.NodeID{}, wanted: map[string]time.Time{}, base: map[string]proxy.Counts{}, reported: map[string]counted{}, out: &lockedBuffer{}, exited: make(chan struct{}),
		outliers: outliers}
	if cfg.Tracer != nil {
		d.tracer = cfg.Tracer.Tracer(instrumentation)
	}
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
	d.layout = cfg.layout()
	if cfg.TLS != nil {
		if err := d.startTLS(); err != nil {
			return nil, err
		}
	}
	if err := d.writeConfig(); err != nil {
		return nil, err
	}
	for _, m := range []string{d.layout.LimitsMap, d.layout.CapacityMap, d.layout.RoutesMap, d.layout.SlotsMap} {
		if err := os.WriteFile(m, nil, 0o600); err != nil {
			return nil, fmt.Errorf("haproxy: %w", err)
		}
	}
	if err := os.WriteFile(d.layout.Lua, script, 0o600); err != nil {
		return nil, fmt.Errorf("haproxy: %w", err)
	}
	if d.logs, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: d.layout.LogSocket, Net: "unixgram"}); err != nil {
		return nil, fmt.Errorf("haproxy: log socket: %w", err)
	}
	d.logDone = make(chan struct{})
	go d.readLogs()
	d.cmd = exec.Command(cfg.Binary, "-W", "-db", "-f", d.configPath())
	// HAProxy goes when the process that drives it dies, however it dies:
	// no data plane outlives its agent (its workers leave with the master).
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
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

// checkVersion makes sure the binary is HAProxy 2.6 or later: dynamic
// servers, replace-path and the Lua API the driver uses.
func checkVersion(ctx context.Context, binary string) error {
	out, err := exec.CommandContext(ctx, binary, "-v").Output()
	if err != nil {
		return fmt.Errorf("haproxy: %s -v: %w", binary, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	_, v, ok := strings.Cut(first, "version ")
	var major, minor int
	if ok {
		_, err = fmt.Sscanf(v, "%d.%d", &major, &minor)
	}
	if !ok || err != nil {
		return fmt.Errorf("haproxy: %s -v: no version in %q", binary, first)
	}
	if major < 2 || major == 2 && minor < 6 {
		return fmt.Errorf("%w: haproxy: %s is version %d.%d; the driver needs 2.6 or later", dfaas.ErrInvalidConfig, binary, major, minor)
	}
	return nil
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
			out := d.out.String()
			if strings.Contains(out, "lua-load") {
				out += "\n(the driver needs HAProxy built with Lua: `haproxy -vv` lists USE_LUA=1)"
			}
			return fmt.Errorf("haproxy: exited at start:\n%s", out)
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

// Trigger implements dfaas.Trigger: it fires when a function first goes
// over its local limit under a plan (seen in the request log, as the
// request ends), so that the agent plans again before its next tick.
func (d *Driver) Trigger() <-chan struct{} { return d.trigger }

// Close stops HAProxy and removes its directory if the driver made it.
func (d *Driver) Close() error {
	d.mu.Lock()
	worker := 0
	if !d.closed && d.rt != nil {
		if info, err := d.info(); err == nil {
			worker, _ = strconv.Atoi(info["Pid"])
		}
	}
	d.closed = true
	d.mu.Unlock()
	if d.cmd != nil && d.cmd.Process != nil {
		// A soft stop first: SIGUSR1 makes the worker stop listening, finish
		// the requests in flight and exit (at most 5 s are given); then
		// SIGTERM ends the master, which soft stops do not.
		_ = d.cmd.Process.Signal(syscall.SIGUSR1)
		for end := time.Now().Add(5 * time.Second); worker > 0 && time.Now().Before(end) && syscall.Kill(worker, 0) == nil; {
			time.Sleep(20 * time.Millisecond)
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.logs != nil {
		_ = d.logs.Close()
		<-d.logDone
	}
	if d.ownDir {
		return os.RemoveAll(d.cfg.Dir)
	}
	return nil
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
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

var (
	_ dfaas.ProxyDriver = (*Driver)(nil)
	_ dfaas.Trigger     = (*Driver)(nil)
)

// Forwards implements dfaas.ForwardMeter, from the request log: the time
// and outcome of each forward's final attempt.
func (d *Driver) Forwards(now time.Time) map[string]map[dfaas.NodeID]dfaas.ForwardHealth {
	return d.forwards.Health(now)
}

var _ dfaas.ForwardMeter = (*Driver)(nil)

// AbortForwards cuts the forwards in flight to peer, because the overlay
// declared it down (its probes unanswered: frozen or cut off; the node
// wires it to overlay.Libp2p.SetOnSuspect), instead of leaving them until
// timeout server (or until a frozen peer thaws). A forward is never sent
// elsewhere once sent: it may have run there. HAProxy answers a stream
// its runtime API cut with 502 (it cannot be told to answer 504, as the
// embedded data plane does). It does not block: the runtime API is
// reached from a goroutine of its own.
func (d *Driver) AbortForwards(peer dfaas.NodeID) {
	go func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.closed {
			return
		}
		// In the forwarding backend and in every route backend (whose
		// servers may outlive the forwarding backend's, draining).
		name := serverName(peer)
		var cmds []string
		if s, ok := d.servers[peer]; ok {
			cmds = append(cmds, fmt.Sprintf("shutdown sessions server %s/%s", backendForward, s.name))
		}
		for i, slot := range d.slots {
			if _, held := slot.servers[name]; held {
				cmds = append(cmds, fmt.Sprintf("shutdown sessions server %s/%s", slotName(i), name))
			}
		}
		if len(cmds) == 0 {
			return
		}
		outs, err := d.batch(cmds)
		for _, out := range outs {
			if err == nil && failed(out) {
				err = errors.New(out)
			}
		}
		if err != nil {
			d.log.Warn("forwards in flight to a peer declared down not cut", "peer", peer, "err", err)
			return
		}
		d.log.Info("forwards in flight to a peer declared down cut", "peer", peer)
	}()
}
