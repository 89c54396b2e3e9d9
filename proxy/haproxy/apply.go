package haproxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// server is a peer's server in the forwarding backend.
type server struct {
	name, addr string
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

// serverWeight is every server's weight: the first attempt's peer is
// dfaas.lua's pick, per function; HAProxy's turn picks only a retry's.
const serverWeight = 1

// serverName is a peer's server name in the forwarding backend.
func serverName(node dfaas.NodeID) string {
	h := uint64(14695981039346656037)
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * 1099511628211
	}
	return "p" + strconv.FormatUint(h, 36)
}

// Apply implements dfaas.ProxyDriver through the runtime API only: the
// forwarding backend's servers (a peer new to every plan added, one no
// plan names drained and deleted), then each function's map entries: its
// limit, its capacity and its route (the peers' weights and caps
// dfaas.lua picks from). A function is nothing but map entries: one new to
// the node, locally or at a peer, takes no reload.
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
	if err := d.refreshCert(); err != nil {
		// The running worker keeps the leaf it had (valid for half a life
		// yet): a reload reads the file.
		d.log.Warn("TLS leaf not renewed through the runtime API: reloading", "err", err)
		if err := d.reload(ctx, "TLS leaf"); err != nil {
			d.log.Error("reload for the TLS leaf failed", "err", err)
		}
	}
	if err := d.refreshMembers(); err != nil {
		// The runtime API could not take the list (its buffer bounds a
		// command to 16 KiB: about 27 anchors): a reload reads the file.
		d.log.Warn("members list not updated through the runtime API: reloading", "err", err)
		if err := d.reload(ctx, "members list"); err != nil {
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
	names := make([]string, 0, len(plan.Functions))
	for name := range plan.Functions {
		if err := dfaas.ValidateFunctionName(name); err != nil {
			return fmt.Errorf("haproxy: apply: %w", err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		st, _ := d.logged.LoadOrStore(name, new(logState))
		st.(*logState).armed.Store(!st.(*logState).over.Swap(false))
	}
	// Functions that left the plan are no longer counted (the platform's
	// own stay): a peer naming fresh functions every tick costs map
	// entries, not a growing driver.
	var errs []error
	batch := &mapBatch{d: d}
	for _, name := range d.functions {
		if _, ok := plan.Functions[name]; !ok {
			// They answer 404 again (the limits map admits a function).
			batch.del(d.layout.LimitsMap, name)
			batch.del(d.layout.CapacityMap, name)
			batch.del(d.layout.RoutesMap, name)
			batch.del(d.layout.SlotsMap, name)
		}
	}
	errs = append(errs, batch.flush())
	// A function out of the plan whose entries HAProxy no longer holds
	// (else the next Apply removes them again) is forgotten, and its
	// counts start again from nothing when it comes back, the stick
	// tables' as the log's.
	var gone []string
	for _, name := range d.functions {
		_, planned := plan.Functions[name]
		if planned || slices.Contains(d.cfg.Functions, name) {
			continue
		}
		held := false
		for _, file := range []string{d.layout.LimitsMap, d.layout.CapacityMap, d.layout.RoutesMap, d.layout.SlotsMap} {
			_, in := d.maps[file][name]
			held = held || in
		}
		if !held {
			gone = append(gone, name)
		}
	}
	errs = append(errs, d.clearCounts(gone))
	for _, name := range gone {
		delete(d.base, name)
		delete(d.reported, name)
		d.logged.Delete(name)
	}
	// Every tick, at a thousand functions: a set, not a search per name.
	counted := make(map[string]bool, len(d.functions)+len(names))
	for _, name := range gone {
		counted[name] = true // not kept below
	}
	d.functions = slices.DeleteFunc(d.functions, func(fn string) bool {
		drop := counted[fn]
		counted[fn] = true
		return drop
	})
	for _, name := range names {
		if !counted[name] {
			counted[name] = true
			d.functions = append(d.functions, name)
		}
	}
	// Servers first: a route names only servers HAProxy holds.
	want := d.wantServers(plan, names)
	setting := map[string]pendingRoute{}
	errs = append(errs, d.addServers(want))
	addr := make(map[string]string, len(want))
	for _, w := range want {
		addr[w.name] = w.addr
	}
	// Each function's route, and the route backend of its set of peers
	// (servers there before a function is sent to it).
	routes := make([][]hop, len(names))
	keys := make([]string, len(names))
	for i, name := range names {
		if hops := d.hops(plan.Functions[name].Peers, want); len(hops) > 0 {
			routes[i], keys[i] = hops, d.routeKeyOf(name, hops)
		} else {
			delete(d.keys, name)
		}
	}
	for fn := range d.keys {
		if _, ok := plan.Functions[fn]; !ok {
			delete(d.keys, fn)
		}
	}
	backends, err := d.assignSlots(keys)
	errs = append(errs, err)
	for i, name := range names {
		fp := plan.Functions[name]
		// The limit last: the limits map admits a function (in order
		// within a batch).
		batch.set(d.layout.CapacityMap, name, strconv.Itoa(rate(fp.Capacity)))
		// The slot first: it holds every peer of the new route, and the
		// old route's picks fall back to its turn.
		if b := backends[keys[i]]; b != "" {
			batch.set(d.layout.SlotsMap, name, b)
		} else {
			batch.del(d.layout.SlotsMap, name)
		}
		switch hops := routes[i]; {
		case len(hops) == 0:
			batch.del(d.layout.RoutesMap, name)
		case near(d.routes[name], hops) && d.maps[d.layout.RoutesMap][name] != "":
			// Close enough to the route set: left as it is.
		default:
			entry := formatRoute(hops)
			batch.set(d.layout.RoutesMap, name, entry)
			setting[name] = pendingRoute{hops, entry}
		}
		batch.set(d.layout.LimitsMap, name, strconv.Itoa(rate(min(fp.Limit, fp.Capacity))))
	}
	errs = append(errs, batch.flush())
	// A route counts as set only once HAProxy took it; one HAProxy does
	// not hold is set in full next time.
	for name, r := range setting {
		if d.maps[d.layout.RoutesMap][name] == r.entry {
			d.routes[name] = r.hops
		} else {
			delete(d.routes, name)
		}
	}
	for name := range d.routes {
		if _, ok := d.maps[d.layout.RoutesMap][name]; !ok {
			delete(d.routes, name)
		}
	}
	// And removed last, once no route names them.
	errs = append(errs, d.removeSlotServers(addr), d.removeServers(want))
	return errors.Join(errs...)
}

// remember records a map entry as the driver's desired state.
func (d *Driver) remember(file, key, value string) {
	if d.maps[file] == nil {
		d.maps[file] = map[string]string{}
	}
	d.maps[file][key] = value
}

// wantServers is the servers the forwarding backend should hold: the
// usable peers of the plan's functions, at most MaxPeers of them, those
// with the most weight over all the functions first (then by id).
func (d *Driver) wantServers(plan dfaas.Plan, names []string) map[dfaas.NodeID]server {
	weight := map[dfaas.NodeID]float64{}
	addr := map[dfaas.NodeID]string{}
	valid := map[string]bool{} // an address is parsed once, not once per function
	for _, fn := range names {
		for _, p := range plan.Functions[fn].Peers {
			ok, seen := valid[p.Addr]
			if !seen {
				ok = dfaas.ValidateAddr(p.Addr) == nil
				valid[p.Addr] = ok
				if !ok {
					d.log.Warn("peer address ignored", "peer", p.Node, "addr", p.Addr)
				}
			}
			if !ok || !proxy.Weighed(p) {
				continue
			}
			if a, ok := addr[p.Node]; ok && a != p.Addr {
				continue // one address a peer: the first function's
			}
			addr[p.Node] = p.Addr
			weight[p.Node] += p.Weight
		}
	}
	ranked := slices.Collect(maps.Keys(weight))
	slices.SortFunc(ranked, func(a, b dfaas.NodeID) int {
		if c := cmp.Compare(weight[b], weight[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	want := map[dfaas.NodeID]server{}
	now := time.Now()
	for _, node := range ranked[:min(len(ranked), d.cfg.MaxPeers)] {
		name := serverName(node)
		want[node] = server{name: name, addr: addr[node]}
		d.nodes[name] = node
		d.named.Store(name, node)
		d.wanted[name] = now
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

// hop is one peer of a function's route: its server, weight, cap (req/s)
// and bucket depth (requests).
type hop struct {
	server, addr string
	weight, cap  float64
	burst        int
}

// pendingRoute is a route an Apply sets: taken once HAProxy holds entry.
type pendingRoute struct {
	hops  []hop
	entry string
}

// routeTolerance is how far (relative) a route's weights and caps may move
// before the driver sets it again: a plan's shares follow forecasts that
// move a little every tick, and at a thousand functions rewriting every
// route every tick costs HAProxy tens of milliseconds for nothing a
// request would notice.
const routeTolerance = 0.02

// hops is a function's route: its peers that want holds, in the plan's
// order.
func (d *Driver) hops(peers []dfaas.Share, want map[dfaas.NodeID]server) []hop {
	var out []hop
	for _, p := range peers {
		s, ok := want[p.Node]
		// want holds valid addresses only: the same address needs no parsing.
		if !ok || s.addr != p.Addr || !proxy.Weighed(p) || slices.ContainsFunc(out, func(h hop) bool { return h.server == s.name }) {
			continue // not held, not usable (wantServers said why), or named twice
		}
		c := min(p.Cap, proxy.MaxCap)
		out = append(out, hop{server: s.name, addr: s.addr, weight: p.Weight, cap: float64(c), burst: proxy.BucketDepth(c, d.cfg.Burst)})
	}
	return out
}

// near reports whether route b is a's within routeTolerance: the same
// servers in the same order and buckets, weights and caps close.
func near(a, b []hop) bool {
	if len(a) != len(b) {
		return false
	}
	close := func(x, y float64) bool { return math.Abs(x-y) <= routeTolerance*max(math.Abs(x), math.Abs(y)) }
	for i := range a {
		if a[i].server != b[i].server || a[i].burst != b[i].burst || !close(a[i].weight, b[i].weight) || !close(a[i].cap, b[i].cap) {
			return false
		}
	}
	return true
}

// formatRoute is a route's entry in the routes map: server:weight:rate:burst,
// comma-separated.
func formatRoute(hops []hop) string {
	b := make([]byte, 0, 32*len(hops))
	for i, h := range hops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, h.server...)
		b = append(b, ':')
		b = strconv.AppendFloat(b, h.weight, 'g', 6, 64)
		b = append(b, ':')
		b = strconv.AppendFloat(b, h.cap, 'g', 6, 64)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(h.burst), 10)
	}
	return string(b)
}

// route is a function's entry in the routes map for peers (see formatRoute).
func (d *Driver) route(peers []dfaas.Share, want map[dfaas.NodeID]server) string {
	return formatRoute(d.hops(peers, want))
}

// addServers adds the servers of want that the forwarding backend lacks,
// and makes ready again one that was draining. A peer whose address
// changed is replaced by removeServers, once no route names it.
func (d *Driver) addServers(want map[dfaas.NodeID]server) error {
	var errs []error
	for node, w := range want {
		s, ok := d.servers[node]
		switch {
		case !ok:
			errs = append(errs, d.addServer(node, w))
		case s.addr != w.addr:
		case s.draining: // back in a plan before its requests finished
			if err := d.rt.SetServerState(backendForward, s.name, "ready"); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: ready %s/%s: %w", backendForward, s.name, err))
				continue
			}
			s.draining = false
			d.servers[node] = s
		}
	}
	return errors.Join(errs...)
}

// removeServers drains and deletes the servers want does not hold (or
// holds at another address, added again once deleted). Their requests in
// flight finish first: a peer out of the plan for a moment, on a lossy
// link, still answers them; one declared down has them cut by
// AbortForwards.
func (d *Driver) removeServers(want map[dfaas.NodeID]server) error {
	var errs []error
	for node, s := range d.servers {
		w, ok := want[node]
		if ok && w.addr == s.addr {
			continue
		}
		if !s.draining {
			if err := d.rt.SetServerState(backendForward, s.name, "maint"); err != nil {
				errs = append(errs, fmt.Errorf("haproxy: maint %s/%s: %w", backendForward, s.name, err))
				continue
			}
			s.draining = true
			d.servers[node] = s
		}
		if err := d.rt.DeleteServer(backendForward, s.name); err != nil {
			if strings.Contains(err.Error(), "still has connections") {
				continue // still draining: the next Apply tries again
			}
			errs = append(errs, fmt.Errorf("haproxy: del server %s/%s: %w", backendForward, s.name, err))
			continue
		}
		delete(d.servers, node)
		if ok { // a new address: its route waits for the next plan
			errs = append(errs, d.addServer(node, w))
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

// addServer adds a peer's server to the forwarding backend.
func (d *Driver) addServer(node dfaas.NodeID, w server) (err error) {
	backend := backendForward
	if err := d.loadAnchor(node, w.name); err != nil {
		return err
	}
	if err := d.rt.AddServer(backend, w.name, fmt.Sprintf("%s weight %d%s%s%s", w.addr, serverWeight, dynamicPool, serverHealth, d.layout.serverTLS(w.name))); err != nil {
		return fmt.Errorf("haproxy: add server %s/%s: %w", backend, w.name, err)
	}
	// Recorded only once ready: a server left half-added (in maintenance,
	// or unchecked) is deleted, and the next Apply adds it again.
	defer func() {
		if err != nil {
			_ = d.rt.SetServerState(backend, w.name, "maint")
			_ = d.rt.DeleteServer(backend, w.name)
			return
		}
		d.servers[node] = w
	}()
	if err := d.rt.EnableServer(backend, w.name); err != nil {
		return fmt.Errorf("haproxy: enable server %s/%s: %w", backend, w.name, err)
	}
	// A server added at run time starts with its checks off.
	if _, err := d.rt.ExecuteRaw(fmt.Sprintf("enable health %s/%s", backend, w.name)); err != nil {
		return fmt.Errorf("haproxy: enable health %s/%s: %w", backend, w.name, err)
	}
	return nil
}
