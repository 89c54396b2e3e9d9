package haproxy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

type server struct {
	name, addr string
	weight     int // HAProxy's, for redispatches
	share      float64
	cap        dfaas.Rate
	// draining: out of the plan, in maintenance, and deleted once its
	// requests in flight have finished (HAProxy deletes no server that
	// still has connections).
	draining bool
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
// route (the peers' weights and caps dfaas.lua picks from). Functions new
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
	defer func() {
		now := time.Now()
		d.forgetPeers(now)
		d.outliers.Forget(func(n dfaas.NodeID) bool {
			for _, fp := range plan.Functions {
				for _, s := range fp.Peers {
					if s.Node == n {
						return true
					}
				}
			}
			return false
		}, now)
	}()
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
			delete(d.reported, name) // it starts again
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
	if proxy.Usable(p) {
		return true
	}
	if err := dfaas.ValidateAddr(p.Addr); err != nil {
		d.log.Warn("peer address ignored", "peer", p.Node, "err", err)
	}
	return false
}

// wantServers is the servers a function's forwarding backend should hold.
func (d *Driver) wantServers(peers []dfaas.Share) map[dfaas.NodeID]server {
	want := map[dfaas.NodeID]server{}
	for _, p := range peers {
		if len(want) >= d.cfg.MaxPeers || !d.usable(p) {
			continue
		}
		want[p.Node] = server{name: serverName(p.Node), addr: p.Addr, weight: weight(p.Weight), share: p.Weight, cap: min(p.Cap, proxy.MaxCap)}
		d.nodes[serverName(p.Node)] = p.Node
		d.named.Store(serverName(p.Node), p.Node)
		d.wanted[serverName(p.Node)] = time.Now()
	}
	return want
}

// forgetPeersAfter is how long the driver keeps naming the forwards of a
// peer no plan names (its per-peer counts, dfaas_forwarded_total's peer
// label): one that comes back soon keeps counting, and a federation whose
// members come and go does not grow them without end.
const forgetPeersAfter = 10 * time.Minute

// forgetPeers drops the peers no plan named for forgetPeersAfter at now;
// their forwards still count in ForwardedOut.
func (d *Driver) forgetPeers(now time.Time) {
	for name, at := range d.wanted {
		if now.Sub(at) > forgetPeersAfter {
			delete(d.wanted, name)
			delete(d.nodes, name)
			d.named.Delete(name)
		}
	}
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
			strconv.FormatFloat(float64(s.cap), 'g', 6, 64), proxy.BucketDepth(s.cap, d.cfg.Burst)))
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
		case s.draining: // back in the plan before its requests finished
			if err := d.rt.SetServerWeight(backend, w.name, strconv.Itoa(w.weight)); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: weight %s/%s: %w", backend, w.name, err))
				continue
			}
			if err := d.rt.SetServerState(backend, w.name, "ready"); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: ready %s/%s: %w", backend, w.name, err))
				continue
			}
			have[node] = w
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
		if w, ok := want[node]; ok && w.addr == s.addr && !s.draining {
			continue
		}
		// Drain, then delete: the requests in flight finish first (a peer
		// out of the plan for a moment, on a lossy link, still answers
		// them; one declared down has them cut by AbortForwards).
		if !s.draining {
			if err := d.rt.SetServerState(backend, s.name, "maint"); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: maint %s/%s: %w", backend, s.name, err))
				continue
			}
			s.draining = true
			have[node] = s
		}
		if err := d.rt.DeleteServer(backend, s.name); err != nil {
			if strings.Contains(err.Error(), "still has connections") {
				continue // still draining: the next Apply tries again
			}
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
