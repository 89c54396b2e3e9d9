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
	"sync/atomic"
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
	// Namespace, if set, is the functions' namespace on the platform: the
	// driver sends /function/<name>.<namespace> to it (OpenFaaS).
	Namespace string
	// Functions get forwarding backends from the start; others are added
	// with a seamless reload when a plan first names them.
	Functions []string
	// MaxPeers bounds the peers of one function. Default 64.
	MaxPeers int
	// Timeout bounds one request to the platform or a peer. Default 30 s.
	Timeout time.Duration
	// Burst is how much forwarding a peer's grant lets through at once, as
	// time at the granted rate (at least two requests), as in the embedded
	// proxy. Default 100 ms.
	Burst time.Duration
	// Dir holds the configuration, maps and socket. Default: a new temporary
	// directory, removed by Close.
	Dir string
	// TLS, if set, makes the federation's traffic mutual TLS (see Layout).
	TLS *proxy.TLS
	// Logger receives the driver's logs. Default slog.Default().
	Logger *slog.Logger

	testClock string // see Layout.testClock
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
	maps    map[string]map[string]string       // map file -> key -> value, as set
	closed  bool

	logs    *net.UnixConn // HAProxy's request log: latency and trigger
	logDone chan struct{}
	logged  sync.Map // function -> *logState, for the functions of the plans
	trigger chan struct{}

	nodes   map[string]dfaas.NodeID // server name -> peer, for every server ever added
	members []byte                  // the peer listener's CA file as last set
	// outliers: peers HAProxy marked down, out of the plans for a back-off
	// (Consecutive 1: every mark-down is an ejection).
	outliers *proxy.Outliers
	base     map[string]proxy.Counts // what earlier workers' statistics counted
}

// logState is what the request log tells of a function.
type logState struct {
	latency proxy.LatencyHistogram
	// over is set by a user request over the local limit, and cleared by
	// every Apply. armed: the first such request fires the trigger; an
	// Apply arms it only if the function was not already over its limit, so
	// sustained overload does not fire a trigger every tick.
	over, armed atomic.Bool
}

type server struct {
	name, addr string
	weight     int // HAProxy's, for redispatches
	share      float64
	grant      dfaas.Rate
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
	if cfg.Burst == 0 {
		cfg.Burst = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := checkVersion(ctx, cfg.Binary); err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, log: cfg.Logger.With("component", "haproxy"), servers: map[string]map[dfaas.NodeID]server{},
		maps: map[string]map[string]string{}, trigger: make(chan struct{}, 1), nodes: map[string]dfaas.NodeID{}, base: map[string]proxy.Counts{}, out: &lockedBuffer{}, exited: make(chan struct{}),
		outliers: proxy.NewOutliers(proxy.OutlierConfig{Consecutive: 1})}
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
		CapacityMap: filepath.Join(cfg.Dir, "capacity.map"), RoutesMap: filepath.Join(cfg.Dir, "routes.map"),
		Namespace: cfg.Namespace, LogSocket: filepath.Join(cfg.Dir, "log.sock"), Lua: filepath.Join(cfg.Dir, "dfaas.lua"), PeersSocket: filepath.Join(cfg.Dir, "peers.sock"), Functions: slices.Clone(cfg.Functions),
		MaxPeers: cfg.MaxPeers, Timeout: cfg.Timeout, testClock: cfg.testClock}
	if cfg.TLS != nil {
		if err := d.startTLS(); err != nil {
			return nil, err
		}
	}
	if err := d.writeConfig(); err != nil {
		return nil, err
	}
	for _, m := range []string{d.layout.LimitsMap, d.layout.CapacityMap, d.layout.RoutesMap} {
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

// startTLS writes the files of the federation's TLS: this node's
// certificate and key (0600), the current members' anchors and the anchor
// directory.
func (d *Driver) startTLS() error {
	t := &TLS{CertFile: filepath.Join(d.cfg.Dir, "node.pem"), MembersFile: filepath.Join(d.cfg.Dir, "members.pem"),
		AnchorDir: filepath.Join(d.cfg.Dir, "anchors")}
	pem, err := d.cfg.TLS.Identity.PEM()
	if err != nil {
		return err
	}
	if err := writeFile(t.CertFile, pem); err != nil {
		return err
	}
	if err := os.MkdirAll(t.AnchorDir, 0o700); err != nil {
		return fmt.Errorf("haproxy: tls: %w", err)
	}
	d.layout.TLS = t
	members, err := d.membersPEM()
	if err != nil {
		return err
	}
	d.members = members
	return writeFile(t.MembersFile, members)
}

// membersPEM is the peer listener's CA file for the current members. This
// node's own anchor is always in it, so that it is never empty.
func (d *Driver) membersPEM() ([]byte, error) {
	return proxy.AnchorsPEM(append([]dfaas.NodeID{d.cfg.Node}, d.cfg.TLS.Members()...)...)
}

// refreshMembers makes the peer listener's CA file hold the current
// members: on disk for the next reload, and in the running worker through
// the runtime API (new handshakes only: established connections stay).
func (d *Driver) refreshMembers() error {
	if d.layout.TLS == nil {
		return nil
	}
	members, err := d.membersPEM()
	if err != nil {
		return err
	}
	if bytes.Equal(members, d.members) {
		return nil
	}
	if err := writeFile(d.layout.TLS.MembersFile, members); err != nil {
		return err
	}
	d.members = members // on disk: a reload takes it whatever happens next
	return d.setCAFile(d.layout.TLS.MembersFile, members)
}

// loadAnchor makes the anchor of a peer's server available: on disk for
// reloads, and loaded in the running worker for a runtime "add server".
// An anchor's content depends on the node only, so one loaded under the
// server's name is already right.
func (d *Driver) loadAnchor(node dfaas.NodeID, name string) error {
	if d.layout.TLS == nil {
		return nil
	}
	pem, err := proxy.AnchorsPEM(node)
	if err != nil {
		return err
	}
	path := d.layout.TLS.AnchorFile(name)
	if err := writeFile(path, pem); err != nil {
		return err
	}
	if _, err := d.rt.GetCAFile(path); err == nil {
		return nil
	}
	if err := d.rt.NewCAFile(path); err != nil {
		return fmt.Errorf("haproxy: new ca-file %s: %w", path, err)
	}
	return d.setCAFile(path, pem)
}

func (d *Driver) setCAFile(path string, pem []byte) error {
	if err := d.rt.SetCAFile(path, string(pem)); err != nil {
		_ = d.rt.AbortCAFile(path)
		return fmt.Errorf("haproxy: set ca-file %s: %w", path, err)
	}
	if err := d.rt.CommitCAFile(path); err != nil {
		_ = d.rt.AbortCAFile(path)
		return fmt.Errorf("haproxy: commit ca-file %s: %w", path, err)
	}
	return nil
}

// writeFile replaces path's content atomically with a new file of mode
// 0600 (never an existing file's mode, never through a symlink).
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("haproxy: %w", err)
	}
	return nil
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

// rate turns a plan's rate into HAProxy's whole requests per second: 0 for
// a negative or undefined rate, and no more than proxy.MaxCap.
func rate(r dfaas.Rate) int {
	if !(r > 0) {
		return 0
	}
	return int(math.Round(float64(min(r, proxy.MaxCap))))
}

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
// entries, then each function's servers (added, reweighted, removed) and
// route (the peers' weights and grants dfaas.lua picks from). Functions new
// to the configuration are added with one seamless reload.
func (d *Driver) Apply(ctx context.Context, plan dfaas.Plan) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("haproxy: apply: %w", dfaas.ErrClosed)
	}
	select {
	case <-d.exited:
		return fmt.Errorf("haproxy: apply: the haproxy process exited:\n%s", tail(d.out.String(), 2000))
	default:
	}
	if err := d.refreshMembers(); err != nil {
		// The runtime API could not take the list (its buffer bounds a
		// command to 16 KiB: about 27 anchors): a reload reads the file.
		d.log.Warn("members list not updated through the runtime API: reloading", "err", err)
		if err := d.reload(ctx, nil); err != nil {
			d.log.Error("reload for the members list failed", "err", err)
		}
	}
	var added []string
	for name := range plan.Functions {
		if err := dfaas.ValidateFunctionName(name); err != nil {
			return fmt.Errorf("haproxy: apply: %w", err)
		}
		st, _ := d.logged.LoadOrStore(name, new(logState))
		st.(*logState).armed.Store(!st.(*logState).over.Swap(false))
		if !slices.Contains(d.layout.Functions, name) {
			added = append(added, name)
		}
	}
	// Functions that left the plan leave the configuration at the next
	// reload (the platform's own, prepared at start, stay): a peer naming
	// fresh functions every tick costs one reload a tick, not a growing
	// configuration.
	var removed []string
	for _, name := range d.layout.Functions {
		if _, ok := plan.Functions[name]; !ok && !slices.Contains(d.cfg.Functions, name) {
			removed = append(removed, name)
		}
	}
	if len(added) > 0 || len(removed) > 0 {
		// The whole plan goes into the files the new worker starts from:
		// runtime commands could still reach the old worker while it stops.
		previous := slices.Clone(d.layout.Functions)
		d.layout.Functions = append(slices.DeleteFunc(d.layout.Functions, func(fn string) bool { return slices.Contains(removed, fn) }), added...)
		for _, name := range removed {
			delete(d.servers, name)
			delete(d.base, name)
			d.logged.Delete(name)
			for _, file := range []string{d.layout.LimitsMap, d.layout.CapacityMap, d.layout.RoutesMap} {
				delete(d.maps[file], name)
			}
		}
		for _, name := range d.layout.Functions {
			fp, ok := plan.Functions[name]
			want := d.wantServers(fp.Peers)
			d.servers[name] = want
			if !ok {
				for _, file := range []string{d.layout.LimitsMap, d.layout.CapacityMap, d.layout.RoutesMap} {
					delete(d.maps[file], name)
				}
				continue
			}
			d.remember(d.layout.CapacityMap, name, strconv.Itoa(rate(fp.Capacity)))
			d.remember(d.layout.LimitsMap, name, strconv.Itoa(rate(min(fp.Limit, fp.Capacity))))
			if r := d.route(fp.Peers, want); r != "" {
				d.remember(d.layout.RoutesMap, name, r)
			} else {
				delete(d.maps[d.layout.RoutesMap], name)
			}
		}
		if err := d.reload(ctx, added); err != nil {
			// The next plan tries again.
			d.layout.Functions = previous
			return err
		}
		return nil
	}
	var errs []error
	for name, fp := range plan.Functions {
		errs = append(errs, d.setMap(d.layout.CapacityMap, name, strconv.Itoa(rate(fp.Capacity))),
			d.setMap(d.layout.LimitsMap, name, strconv.Itoa(rate(min(fp.Limit, fp.Capacity)))))
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
func (d *Driver) remember(file, key, value string) {
	if d.maps[file] == nil {
		d.maps[file] = map[string]string{}
	}
	d.maps[file][key] = value
}

func (d *Driver) setMap(file, key, value string) error {
	if old, ok := d.maps[file][key]; ok && old == value {
		return nil
	}
	name := filepath.Base(file) // client-native resolves map names in the maps directory
	if err := d.rt.SetMapEntry(name, key, value); err != nil {
		if err := d.rt.AddMapEntry(name, key, value); err != nil {
			return fmt.Errorf("haproxy: map %s %s=%s: %w", name, key, value, err)
		}
	}
	d.remember(file, key, value)
	return nil
}

// delMap removes a map entry the driver set.
func (d *Driver) delMap(file, key string) error {
	if _, ok := d.maps[file][key]; !ok {
		return nil
	}
	delete(d.maps[file], key)
	if _, err := d.rt.ExecuteRaw("del map " + file + " " + key); err != nil {
		return fmt.Errorf("haproxy: del map %s %s: %w", filepath.Base(file), key, err)
	}
	return nil
}

// usable reports whether a share can be routed to (proxy.Usable); an
// address that is not a plain host:port never reaches HAProxy.
func (d *Driver) usable(p dfaas.Share) bool {
	if err := dfaas.ValidateAddr(p.Addr); err != nil {
		d.log.Warn("peer address ignored", "peer", p.Node, "err", err)
		return false
	}
	return proxy.Usable(p)
}

// wantServers is the servers a function's forwarding backend should hold.
func (d *Driver) wantServers(peers []dfaas.Share) map[dfaas.NodeID]server {
	want := map[dfaas.NodeID]server{}
	for _, p := range peers {
		if len(want) >= d.cfg.MaxPeers || !d.usable(p) {
			continue
		}
		want[p.Node] = server{name: serverName(p.Node), addr: p.Addr, weight: weight(p.Weight), share: p.Weight, grant: min(p.Cap, proxy.MaxCap)}
		d.nodes[serverName(p.Node)] = p.Node
	}
	return want
}

// route is a function's entry in the routes map: the peers of want as
// server:weight:rate:burst, comma-separated in the plan's order.
func (d *Driver) route(peers []dfaas.Share, want map[dfaas.NodeID]server) string {
	var parts []string
	seen := map[dfaas.NodeID]bool{}
	for _, p := range peers {
		s, ok := want[p.Node]
		if !ok || seen[p.Node] {
			continue
		}
		seen[p.Node] = true
		parts = append(parts, fmt.Sprintf("%s:%s:%s:%d", s.name, strconv.FormatFloat(s.share, 'g', 6, 64),
			strconv.FormatFloat(float64(s.grant), 'g', 6, 64), proxy.BucketDepth(s.grant, d.cfg.Burst)))
	}
	return strings.Join(parts, ",")
}

// applyPeers makes a function's forwarding backend hold exactly the peers,
// and its route pick among them: servers are added before the route names
// them and deleted after it stops naming them.
func (d *Driver) applyPeers(fn string, peers []dfaas.Share) error {
	backend := forwardBackend(fn)
	have := d.servers[fn]
	if have == nil {
		have = map[dfaas.NodeID]server{}
		d.servers[fn] = have
	}
	want := d.wantServers(peers)
	var errs []error
	for node, w := range want {
		s, ok := have[node]
		switch {
		case ok && s.addr != w.addr:
			continue // replaced below, once the route no longer names it
		case !ok:
			errs = append(errs, d.addServer(fn, node, w))
		case s != w:
			if s.weight != w.weight {
				if err := d.rt.SetServerWeight(backend, w.name, strconv.Itoa(w.weight)); err != nil {
					errs = append(errs, fmt.Errorf("haproxy: weight %s/%s: %w", backend, w.name, err))
					continue
				}
			}
			have[node] = w
		}
	}
	if r := d.route(peers, want); r != "" {
		errs = append(errs, d.setMap(d.layout.RoutesMap, fn, r))
	} else {
		errs = append(errs, d.delMap(d.layout.RoutesMap, fn))
	}
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
		if w, ok := want[node]; ok { // a new address
			errs = append(errs, d.addServer(fn, node, w))
		}
	}
	return errors.Join(errs...)
}

// dynamicPool gives a server added through the runtime API the idle
// connection pool a server in the configuration has by default: HAProxy
// 2.6 gives dynamic servers none (pool-max-conn 0, purge delay 0), which
// made every forward a new connection to the peer, and with TLS a full
// handshake.
const dynamicPool = " pool-max-conn -1 pool-purge-delay 5s"

// addServer adds a peer's server to a function's forwarding backend.
func (d *Driver) addServer(fn string, node dfaas.NodeID, w server) error {
	backend := forwardBackend(fn)
	if err := d.loadAnchor(node, w.name); err != nil {
		return err
	}
	if err := d.rt.AddServer(backend, w.name, fmt.Sprintf("%s weight %d%s%s%s", w.addr, w.weight, dynamicPool, serverHealth, d.layout.serverTLS(w.name))); err != nil {
		return fmt.Errorf("haproxy: add server %s/%s: %w", backend, w.name, err)
	}
	d.servers[fn][node] = w
	if err := d.rt.EnableServer(backend, w.name); err != nil {
		return fmt.Errorf("haproxy: enable server %s/%s: %w", backend, w.name, err)
	}
	// A server added at run time starts with its checks off.
	if _, err := d.rt.ExecuteRaw(fmt.Sprintf("enable health %s/%s", backend, w.name)); err != nil {
		return fmt.Errorf("haproxy: enable health %s/%s: %w", backend, w.name, err)
	}
	return nil
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
		for node, sv := range peers {
			if d.layout.TLS != nil {
				pem, err := proxy.AnchorsPEM(node)
				if err != nil {
					return err
				}
				if err := writeFile(d.layout.TLS.AnchorFile(sv.name), pem); err != nil {
					return err
				}
			}
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
			fmt.Fprintf(&b, "%s %s\n", k, v)
		}
		if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
			return fmt.Errorf("haproxy: reload: %w", err)
		}
	}
	before, err := d.info()
	if err != nil {
		return err
	}
	// The new worker's statistics start at zero: keep the old worker's. Its
	// stick tables pass over through the local peer, unless it is younger
	// than HAProxy's resync period (5 s): keep their counts too then.
	preTables, tablesErr := d.readTables()
	preStats, statsErr := d.stats()
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
	kept := map[string]bool{} // functions that left the configuration start again
	for _, fn := range d.layout.Functions {
		kept[fn] = true
	}
	if statsErr == nil {
		for fn, c := range d.statCounts(preStats) {
			if kept[fn] {
				d.base[fn] = c.Add(d.base[fn])
			}
		}
	}
	if tablesErr == nil && !d.learned() {
		d.log.Debug("haproxy: stick tables not taken over, counts carried by the driver")
		for fn, c := range d.tableCountsByFunction(preTables) {
			if kept[fn] {
				d.base[fn] = c.Add(d.base[fn])
			}
		}
	}
	d.log.Info("haproxy reloaded", "functions", added)
	return nil
}

// readLogs reads HAProxy's request log until the socket closes: per user
// request, "<function> <µs> <1 if admitted within the local limit>". Lines
// of other shapes or for functions no plan named (HAProxy's own notices, for
// one) are skipped.
func (d *Driver) readLogs() {
	defer close(d.logDone)
	buf := make([]byte, 512)
	for {
		n, err := d.logs.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // no hot loop on a lasting error
			continue
		}
		fn, took, local, ok := parseLogLine(string(buf[:n]))
		if !ok {
			continue
		}
		v, known := d.logged.Load(fn)
		if !known {
			continue
		}
		st := v.(*logState)
		st.latency.Observe(took)
		if !local {
			st.over.Store(true)
			if st.armed.CompareAndSwap(true, false) {
				select {
				case d.trigger <- struct{}{}:
				default:
				}
			}
		}
	}
}

// parseLogLine reads one request log line: "<function> <µs> <1 if
// admitted within the local limit, else ->".
func parseLogLine(line string) (fn string, took time.Duration, local, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return "", 0, false, false
	}
	us, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || us < 0 || us > int64(time.Hour/time.Microsecond) {
		return "", 0, false, false
	}
	return f[0], time.Duration(us) * time.Microsecond, f[2] == "1", true
}

// Trigger implements dfaas.Trigger: it fires when a function first goes
// over its local limit under a plan (seen in the request log, as the
// request ends), so that the agent plans again before its next tick.
func (d *Driver) Trigger() <-chan struct{} { return d.trigger }

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
