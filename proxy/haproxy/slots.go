package haproxy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
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
// start (no reload), their servers added through the runtime API. A slot
// no route needs any more is freed, and its servers deleted once the
// functions have moved off it (after the Apply's map changes) and their
// forwards have finished; a freed slot is given a route again from the
// next Apply on.

// routeSlot is one route backend.
type routeSlot struct {
	// set is the route it serves (routeKey), "" while free; members are
	// its servers' names.
	set     string
	members map[string]bool
	servers map[string]slotServer // server name -> its server in the backend
	// freed: freed by the Apply under way, whose functions may still be
	// sent to it until the Apply's map changes land: no route takes it
	// before the next Apply.
	freed bool
	// freedAt is when it was freed last: it lingers (see
	// removeSlotServers) for lingerMax at most.
	freedAt time.Time
}

// lingerMax bounds how long a freed slot keeps its planned peers in its
// turn for the forwards it holds: a retry needs a second at most (the
// turn-around after a failed connection), and a forward's three tries with
// their connect timeouts about six. A stream held longer (a slow body, a
// long call) does not hold the slot away from other routes.
const lingerMax = 6 * time.Second

// lingering reports whether a slot no route names still has servers in
// its turn (see removeSlotServers).
func (s *routeSlot) lingering() bool {
	if s.set != "" {
		return false
	}
	for _, sv := range s.servers {
		if !sv.draining {
			return true
		}
	}
	return false
}

// slotServer is a peer's server in a route backend.
type slotServer struct {
	addr     string
	draining bool // out of the slot's route: in maintenance, deleted once its connections are gone
}

// SlotUse is what the latest Apply made of the route backends.
type SlotUse struct {
	// Used is the route backends serving a route.
	Used int
	// Shared counts the functions whose route had no slot of its own and
	// shares the slot of a route that holds all its peers: a retry may go
	// to one of those others, which the plan did not name for it.
	Shared int
	// Unslotted counts the functions left on the forwarding backend of
	// every peer (no slot, nor one that holds all their peers): a retry
	// may go to any peer.
	Unslotted int
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
// could be had (nor one whose servers include the route's).
func (d *Driver) assignSlots(keys []string) (map[string]string, error) {
	count := map[string]int{}
	for _, k := range keys {
		if k != "" {
			count[k]++
		}
	}
	bySet := map[string]int{}
	free := 0
	for i := range d.slots {
		s := &d.slots[i]
		s.freed = false
		switch {
		case s.set == "":
			free++
		case count[s.set] > 0:
			bySet[s.set] = i
		default:
			s.set, s.members, s.freed, s.freedAt = "", nil, true, time.Now()
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
		if free == 0 {
			break
		}
		names, addrs := keyServers(k)
		i := d.freeSlot(names, addrs)
		if i < 0 {
			continue // the free slots hold one of its peers at another address, still draining
		}
		if err := d.fillSlot(i, names, addrs); err != nil {
			errs = append(errs, err)
			continue
		}
		s := &d.slots[i]
		s.set, s.members = k, make(map[string]bool, len(names))
		for _, name := range names {
			s.members[name] = true
		}
		bySet[k] = i
		free--
	}
	out := make(map[string]string, len(count))
	d.slotUse = SlotUse{Used: len(bySet)}
	for k, n := range count {
		i, ok := bySet[k]
		if !ok {
			if i = d.superset(k); i >= 0 {
				d.slotUse.Shared += n
			}
		}
		if i < 0 {
			d.slotUse.Unslotted += n
			continue
		}
		out[k] = slotName(i)
	}
	return out, errors.Join(errs...)
}

// freeSlot is the free slot (not freed by the Apply under way) that takes
// a route of names at addrs with the fewest servers to add; -1 if none
// can (those free hold one of its peers at another address, still
// draining).
func (d *Driver) freeSlot(names, addrs []string) int {
	best, bestAdds := -1, 0
	for i := range d.slots {
		s := &d.slots[i]
		if s.set != "" || s.freed || s.lingering() {
			continue
		}
		adds, ok := 0, true
		for j, name := range names {
			sv, held := s.servers[name]
			switch {
			case !held:
				adds++
			case sv.addr != addrs[j]:
				ok = false
			}
			if !ok {
				break
			}
		}
		if ok && (best < 0 || adds < bestAdds) {
			best, bestAdds = i, adds
			if adds == 0 {
				break
			}
		}
	}
	return best
}

// fillSlot makes slot i's servers the route of names at addrs: those it
// lacks added, and those still draining from an earlier route made ready
// again, in one batch of runtime commands. The servers of other peers it
// still holds are draining, out of the turn.
func (d *Driver) fillSlot(i int, names, addrs []string) error {
	s := &d.slots[i]
	if s.servers == nil {
		s.servers = map[string]slotServer{}
	}
	backend := slotName(i)
	type step struct {
		name, addr string
		cmds       int
	}
	var cmds []string
	var steps []step
	for j, name := range names {
		sv, held := s.servers[name]
		switch {
		case !held:
			cmds = append(cmds, fmt.Sprintf("add server %s/%s %s weight %d%s%s%s", backend, name, addrs[j], serverWeight, dynamicPool, slotHealth,
				d.layout.serverTLS(name)),
				fmt.Sprintf("enable server %s/%s", backend, name), fmt.Sprintf("enable health %s/%s", backend, name))
			steps = append(steps, step{name, addrs[j], 3})
		case sv.draining:
			cmds = append(cmds, fmt.Sprintf("set server %s/%s state ready", backend, name))
			steps = append(steps, step{name, addrs[j], 1})
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	outs, err := d.batch(cmds)
	errs := []error{err}
	k := 0
	for _, st := range steps {
		ok := k+st.cmds <= len(outs)
		for c := k; ok && c < k+st.cmds; c++ {
			if failed(outs[c]) {
				errs = append(errs, fmt.Errorf("haproxy: %s: %s", cmds[c], outs[c]))
				ok = false
			}
		}
		k += st.cmds
		switch {
		case ok:
			s.servers[st.name] = slotServer{addr: st.addr}
		case st.cmds == 3:
			// Half added: deleted, and added again next time.
			_, _ = d.batch([]string{fmt.Sprintf("set server %s/%s state maint", backend, st.name), fmt.Sprintf("del server %s/%s", backend, st.name)})
		}
	}
	return errors.Join(errs...)
}

// superset is the slot serving a route whose servers include all of
// key's (the fewest beyond them), or -1.
func (d *Driver) superset(key string) int {
	names, addrs := keyServers(key)
	best, extra := -1, 0
	for i := range d.slots {
		s := &d.slots[i]
		if s.set == "" || len(s.members) < len(names) || (best >= 0 && len(s.members)-len(names) >= extra) {
			continue
		}
		ok := true
		for j, name := range names {
			if !s.members[name] || s.servers[name].addr != addrs[j] {
				ok = false
				break
			}
		}
		if ok {
			best, extra = i, len(s.members)-len(names)
		}
	}
	return best
}

// removeSlotServers drains and deletes the route backends' servers out
// of their slot's route: those of a slot freed (its functions have moved
// by now), of a peer out of every plan (wanted: server name -> address) or
// at another address. A server with forwards in flight stays draining, in
// maintenance, until they finish.
//
// A freed slot keeps the servers of peers still planned (at the same
// address) in its turn while it holds forwards, for lingerMax at most: one
// whose connection failed waits up to a second (HAProxy's turn-around,
// when one server is left in the turn) before it goes to the next server,
// and with none left it would be answered 503 while a peer of its route
// had room. Such a slot takes no new route until they are gone.
func (d *Driver) removeSlotServers(wanted map[string]string) error {
	var errs []error
	var stats map[[2]string]statRow
	var statsErr error
	busy := func(backend string) bool {
		if stats == nil && statsErr == nil {
			if stats, statsErr = d.stats(); statsErr != nil {
				errs = append(errs, fmt.Errorf("haproxy: lingering route backends: %w", statsErr))
			}
		}
		if statsErr != nil {
			return true // kept (within lingerMax), and looked at again next Apply
		}
		return stats[[2]string{backend, "BACKEND"}].n("scur") > 0
	}
	now := time.Now()
	for i := range d.slots {
		s := &d.slots[i]
		backend := slotName(i)
		for name, sv := range s.servers {
			addr, ok := wanted[name]
			planned := ok && addr == sv.addr
			if planned && s.members[name] && !sv.draining {
				continue
			}
			if planned && s.set == "" && !sv.draining && now.Sub(s.freedAt) < lingerMax && busy(backend) {
				continue // lingering: see above
			}
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
				out[i] = append(out[i], Server{Name: name, Addr: sv.addr, Weight: serverWeight})
			}
		}
	}
	return out
}

// isSlot reports whether backend is a route backend.
func isSlot(backend string) bool { return strings.HasPrefix(backend, "route") }

// Slots reports what the latest Apply made of the route backends (see
// Config.RouteSlots).
func (d *Driver) Slots() SlotUse {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.slotUse
}
