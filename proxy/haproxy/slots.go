package haproxy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// HAProxy re-runs only its balancing algorithm when it retries a request
// on another server (option redispatch): use-server, which sends the
// first attempt to the peer dfaas.lua picked, is not evaluated again. In
// one backend of every peer, a forward the picked peer refused (425) or
// could not connect to went to the next peer in turn, one the plan did not
// name for the function, which refused it too while a peer of its route
// had room. So a function's forwards go to a route backend (a slot) whose
// servers are its route's peers: a retry goes to the next of them. The
// functions of one set of peers share a slot; slots are configured at
// start (no reload), their servers added through the runtime API, and a
// slot that changes route changes its servers' weights (weight 0 is out
// of the turn; use-server still reaches such a server).

// routeSlot is one route backend.
type routeSlot struct {
	// set is the route it serves (routeKey), "" while free.
	set     string
	servers map[string]slotServer // server name -> its server in the backend
	// freed: freed by the Apply under way, which gives it another route
	// only if no other slot is free (functions may still be sent to it
	// until the Apply's map changes land).
	freed bool
}

// slotServer is a peer's server in a route backend.
type slotServer struct {
	addr     string
	weight   int  // 1 in the slot's route, 0 out of it
	draining bool // out of every plan: in maintenance, deleted once its connections are gone
}

// routeKey is a route's set of peers: its servers' names and addresses,
// sorted.
func routeKey(hops []hop) string {
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = h.server + "=" + h.addr
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// keyed is a function's routeKey as last made, and the servers (in the
// route's order) and addresses it was made from: a route that names the
// same keeps it, with no string built or sorted (a thousand a tick).
type keyed struct {
	servers, addrs []string
	key            string
}

// routeKeyOf is fn's routeKey for hops, from d.keys when its servers
// and their addresses are those it was made from.
func (d *Driver) routeKeyOf(fn string, hops []hop) string {
	k, ok := d.keys[fn]
	same := ok && len(k.servers) == len(hops)
	for i := 0; same && i < len(hops); i++ {
		same = k.servers[i] == hops[i].server && k.addrs[i] == hops[i].addr
	}
	if same {
		return k.key
	}
	k = keyed{servers: make([]string, len(hops)), addrs: make([]string, len(hops)), key: routeKey(hops)}
	for i, h := range hops {
		k.servers[i], k.addrs[i] = h.server, h.addr
	}
	d.keys[fn] = k
	return k.key
}

// keyServers splits a routeKey into server names and addresses.
func keyServers(key string) (names, addrs []string) {
	for _, part := range strings.Split(key, ",") {
		name, addr, _ := strings.Cut(part, "=")
		names, addrs = append(names, name), append(addrs, addr)
	}
	return names, addrs
}

// assignSlots gives the routes of keys (the functions' routeKeys; ""
// for none) their slots, configuring a free slot for a route that has
// none, the routes of the most functions first. It returns each route's
// backend: a slot's name, or "" for the forwarding backend when no slot
// could be had (nor one whose servers include the route's: a retry may
// then go to a peer the plan did not name, as it would in the forwarding
// backend).
func (d *Driver) assignSlots(keys []string) (map[string]string, error) {
	count := map[string]int{}
	for _, k := range keys {
		if k != "" {
			count[k]++
		}
	}
	bySet := map[string]int{}
	for i := range d.slots {
		s := &d.slots[i]
		s.freed = false
		switch {
		case s.set == "":
		case count[s.set] > 0:
			bySet[s.set] = i
		default:
			s.set, s.freed = "", true
		}
	}
	var missing []string
	for k := range count {
		if _, ok := bySet[k]; !ok {
			missing = append(missing, k)
		}
	}
	slices.SortFunc(missing, func(a, b string) int {
		if c := cmp.Compare(count[b], count[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	var errs []error
	for _, k := range missing {
		names, addrs := keyServers(k)
		i := d.freeSlot(names, addrs)
		if i < 0 {
			break // none left
		}
		if err := d.fillSlot(i, names, addrs); err != nil {
			errs = append(errs, err)
			continue
		}
		d.slots[i].set = k
		bySet[k] = i
	}
	out := make(map[string]string, len(count))
	d.unslotted = 0
	for k, n := range count {
		i, ok := bySet[k]
		if !ok {
			i = d.superset(k)
		}
		if i < 0 {
			d.unslotted += n
			continue
		}
		out[k] = slotName(i)
	}
	return out, errors.Join(errs...)
}

// freeSlot is the free slot that takes a route of names at addrs with
// the fewest changes (servers to add, then weights to set), one freed by
// the Apply under way last; -1 if none can (none free, or those free hold
// one of its servers at another address or draining).
func (d *Driver) freeSlot(names, addrs []string) int {
	best, bestCost := -1, 0
	for i := range d.slots {
		s := &d.slots[i]
		if s.set != "" {
			continue
		}
		cost, ok := 0, true
		for j, name := range names {
			sv, held := s.servers[name]
			switch {
			case !held:
				cost += 1 << 20
			case sv.draining || sv.addr != addrs[j]:
				ok = false
			case sv.weight == 0:
				cost++
			}
		}
		for name, sv := range s.servers {
			if sv.weight != 0 && !slices.Contains(names, name) {
				cost++
			}
		}
		if s.freed {
			cost += 1 << 40
		}
		if ok && (best < 0 || cost < bestCost) {
			best, bestCost = i, cost
		}
	}
	return best
}

// fillSlot makes slot i's turn the route of names at addrs: their servers
// added or given weight 1, the others weight 0.
func (d *Driver) fillSlot(i int, names, addrs []string) error {
	s := &d.slots[i]
	if s.servers == nil {
		s.servers = map[string]slotServer{}
	}
	for j, name := range names {
		if _, held := s.servers[name]; !held {
			if err := d.addSlotServer(i, name, addrs[j]); err != nil {
				return err
			}
		}
	}
	var cmds, changed []string
	var weights []int
	for name, sv := range s.servers {
		want := 0
		if slices.Contains(names, name) {
			want = serverWeight
		}
		if sv.draining || sv.weight == want {
			continue
		}
		cmds = append(cmds, fmt.Sprintf("set server %s/%s weight %d", slotName(i), name, want))
		changed, weights = append(changed, name), append(weights, want)
	}
	if len(cmds) == 0 {
		return nil
	}
	outs, err := d.batch(cmds)
	var errs []error
	errs = append(errs, err)
	for j, out := range outs {
		if failed(out) {
			errs = append(errs, fmt.Errorf("haproxy: %s: %s", cmds[j], out))
			continue
		}
		sv := s.servers[changed[j]]
		sv.weight = weights[j]
		s.servers[changed[j]] = sv
	}
	return errors.Join(errs...)
}

// addSlotServer adds a peer's server to route backend i, in its turn.
func (d *Driver) addSlotServer(i int, name, addr string) (err error) {
	backend := slotName(i)
	if err := d.rt.AddServer(backend, name, fmt.Sprintf("%s weight %d%s%s%s", addr, serverWeight, dynamicPool, slotHealth, d.layout.serverTLS(name))); err != nil {
		return fmt.Errorf("haproxy: add server %s/%s: %w", backend, name, err)
	}
	defer func() {
		if err != nil {
			_ = d.rt.SetServerState(backend, name, "maint")
			_ = d.rt.DeleteServer(backend, name)
			return
		}
		d.slots[i].servers[name] = slotServer{addr: addr, weight: serverWeight}
	}()
	if err := d.rt.EnableServer(backend, name); err != nil {
		return fmt.Errorf("haproxy: enable server %s/%s: %w", backend, name, err)
	}
	if _, err := d.rt.ExecuteRaw(fmt.Sprintf("enable health %s/%s", backend, name)); err != nil {
		return fmt.Errorf("haproxy: enable health %s/%s: %w", backend, name, err)
	}
	return nil
}

// superset is the slot serving a route whose servers include all of
// key's (the fewest beyond them), or -1.
func (d *Driver) superset(key string) int {
	names, addrs := keyServers(key)
	best, extra := -1, 0
	for i := range d.slots {
		s := &d.slots[i]
		if s.set == "" {
			continue
		}
		ok := true
		for j, name := range names {
			if sv, held := s.servers[name]; !held || sv.weight == 0 || sv.draining || sv.addr != addrs[j] {
				ok = false
				break
			}
		}
		if n := strings.Count(s.set, ",") + 1 - len(names); ok && (best < 0 || n < extra) {
			best, extra = i, n
		}
	}
	return best
}

// removeSlotServers drains and deletes the route backends' servers of
// peers out of every plan (wanted: server name -> address; a server at
// another address goes too).
func (d *Driver) removeSlotServers(wanted map[string]string) error {
	var errs []error
	for i := range d.slots {
		s := &d.slots[i]
		for name, sv := range s.servers {
			if addr, ok := wanted[name]; ok && addr == sv.addr {
				continue
			}
			backend := slotName(i)
			if !sv.draining {
				if err := d.rt.SetServerState(backend, name, "maint"); err != nil {
					errs = append(errs, fmt.Errorf("haproxy: maint %s/%s: %w", backend, name, err))
					continue
				}
				sv.draining = true
				s.servers[name] = sv
			}
			if err := d.rt.DeleteServer(backend, name); err != nil {
				if strings.Contains(err.Error(), "still has connections") {
					continue // the next Apply tries again
				}
				errs = append(errs, fmt.Errorf("haproxy: del server %s/%s: %w", backend, name, err))
				continue
			}
			delete(s.servers, name)
		}
	}
	return errors.Join(errs...)
}

// slotServers is the route backends' servers for a configuration: each
// slot's, but those draining (a reloaded worker never has them).
func (d *Driver) slotServers() [][]Server {
	out := make([][]Server, len(d.slots))
	for i, s := range d.slots {
		for name, sv := range s.servers {
			if !sv.draining {
				out[i] = append(out[i], Server{Name: name, Addr: sv.addr, Weight: sv.weight})
			}
		}
	}
	return out
}

// isSlot reports whether backend is a route backend.
func isSlot(backend string) bool { return strings.HasPrefix(backend, "route") }

// Slots reports the route backends in use (a route each) and how many
// functions the latest Apply routed through the forwarding backend of
// every peer, for want of a route backend (see Config.RouteSlots): their
// retries may go to peers the plan did not name for them.
func (d *Driver) Slots() (used, unslotted int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.slots {
		if s.set != "" {
			used++
		}
	}
	return used, d.unslotted
}
