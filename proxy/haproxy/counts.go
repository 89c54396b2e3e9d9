package haproxy

import (
	"context"
	"encoding/csv"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// tableEntry is what a counting stick table holds for a key.
type tableEntry struct {
	requests uint64 // http_req_cnt: requests tracked since the entry was made
	current  uint64 // conn_cur: those still in progress (if the table stores it)
	busyUser uint64 // gpc0: user requests the platform answered 429 (if stored)
	busyPeer uint64 // gpc1: peer requests the platform answered 429 (if stored)
}

// tableCounts reads the entries of a stick table by key: those that
// counted a request (the others count nothing, and a node of a thousand
// functions mostly idle would have HAProxy print them all every tick).
func (d *Driver) tableCounts(table string) (map[string]tableEntry, error) {
	raw, err := d.rt.ExecuteRaw("show table " + table + " data.http_req_cnt gt 0")
	if err != nil {
		return nil, fmt.Errorf("haproxy: show table %s: %w", table, err)
	}
	return parseTable(raw), nil
}

// clearCounts drops the stick-table entries of functions the driver
// forgets, so that one coming back counts from nothing in every field, as
// the request log's counts do. An entry in use (a request in flight) stays,
// and its counts carry on.
func (d *Driver) clearCounts(fns []string) error {
	if len(fns) == 0 {
		return nil
	}
	fwd, err := d.tableCounts(tableFwd)
	if err != nil {
		return err
	}
	var cmds []string
	for _, fn := range fns {
		for _, t := range []string{tableArrivals, tableUser, tableTotal, tableSpill, tableRefused, tableBusy} {
			cmds = append(cmds, "clear table "+t+" key "+fn)
		}
		for key := range fwd {
			if strings.HasPrefix(key, fn+"/") {
				cmds = append(cmds, "clear table "+tableFwd+" key "+key)
			}
		}
	}
	_, err = d.batch(cmds) // an entry in use or gone already is no error
	return err
}

// parseTable reads the output of "show table": a line per entry, with
// key=... and name=value fields. Lines without a key are skipped.
func parseTable(raw string) map[string]tableEntry {
	out := map[string]tableEntry{}
	for _, line := range strings.Split(raw, "\n") {
		var key string
		var e tableEntry
		for _, f := range strings.Fields(line) {
			name, v, _ := strings.Cut(f, "=")
			switch name {
			case "key":
				key = v
			case "http_req_cnt":
				e.requests, _ = strconv.ParseUint(v, 10, 64)
			case "conn_cur":
				e.current, _ = strconv.ParseUint(v, 10, 64)
			case "gpc0":
				e.busyUser, _ = strconv.ParseUint(v, 10, 64)
			case "gpc1":
				e.busyPeer, _ = strconv.ParseUint(v, 10, 64)
			}
		}
		if key != "" {
			out[key] = e
		}
	}
	return out
}

// statRow is one line of "show stat".
type statRow map[string]string

func (r statRow) n(field string) uint64 {
	v, _ := strconv.ParseUint(r[field], 10, 64)
	return v
}

// stats reads "show stat" rows by proxy and server name.
func (d *Driver) stats() (map[[2]string]statRow, error) {
	raw, err := d.rt.ExecuteRaw("show stat")
	if err != nil {
		return nil, fmt.Errorf("haproxy: show stat: %w", err)
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(raw, "# ")))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, fmt.Errorf("haproxy: show stat: %v", err)
	}
	header := recs[0]
	out := map[[2]string]statRow{}
	for _, rec := range recs[1:] {
		row := statRow{}
		for i, v := range rec {
			if i < len(header) {
				row[header[i]] = v
			}
		}
		out[[2]string{row["pxname"], row["svname"]}] = row
	}
	return out, nil
}

// Counts implements proxy.Counter from HAProxy's own counters: stick-table
// request counts for arrivals, local executions (within the limit and
// beyond it), refusals and answers per peer, which a reloaded worker takes
// over from the old one. Latency, the local executions' latencies, the
// platform's 429s and failures, the forwards answered 5xx (HAProxy's own
// 503 included) and the retries come from HAProxy's request log; requests
// in flight are the local executions in progress.
func (d *Driver) Counts(ctx context.Context) (map[string]proxy.Counts, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("haproxy: counts: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("haproxy: counts: %w", dfaas.ErrClosed)
	}
	return d.counts()
}

// counts reads the current worker's counters and adds what earlier
// workers counted that it did not take over.
func (d *Driver) counts() (map[string]proxy.Counts, error) {
	tables, err := d.readTables()
	if err != nil {
		return nil, err
	}
	tc := d.tableCountsByFunction(tables)
	out := map[string]proxy.Counts{}
	for _, fn := range d.functions {
		c := tc[fn].Add(d.base[fn])
		if v, ok := d.logged.Load(fn); ok {
			st := v.(*logState)
			c.Latency, c.Executions, c.Solo = st.latency.Snapshot(), st.executions.Snapshot(), st.solo.Snapshot()
			c.Busy, c.Failed = st.busy.Load(), st.failed.Load()
			c.Rejected += st.rejected.Load()
			c.FailedTries += st.retried.Load()
			c.Occupied = time.Duration(st.occupied.Load())
			c.Statuses = st.statuses.Snapshot()
		}
		out[fn] = d.monotonic(fn, c)
	}
	return out, nil
}

// monotonic holds ServedLocal and ReceivedIn to at least what the driver
// reported before. Both are request counts less the requests the platform
// answered 429, and those are counted when the answer comes: in between,
// a request already counted as executed is then counted as rejected or
// refused instead. Held up, the counters never run backwards (which a
// Monitor would take for a restart) and are exact once the requests in
// question are answered.
func (d *Driver) monotonic(fn string, c proxy.Counts) proxy.Counts {
	last := d.reported[fn]
	c.ServedLocal = max(c.ServedLocal, last.ServedLocal)
	c.ReceivedIn = max(c.ReceivedIn, last.ReceivedIn)
	d.reported[fn] = counted{ServedLocal: c.ServedLocal, ReceivedIn: c.ReceivedIn}
	return c
}

// counted is what the driver last reported of a function's counters that
// monotonic holds up.
type counted struct{ ServedLocal, ReceivedIn uint64 }

// countTables are the stick tables that count requests, in the order they
// are read. No read sees all of them at one instant, and ReceivedIn is
// st_total less st_user and st_spill, so st_total is read first: a local
// request is tracked in st_user or st_spill before st_total, so one that
// arrives between the reads is counted as local and not yet executed (a
// receipt counted late), never as received (a receipt monotonic would
// then hold for good).
var countTables = []string{tableTotal, tableArrivals, tableUser, tableSpill, tableRefused, tableBusy, tableFwd}

// readTables reads the request counts of every counting table.
func (d *Driver) readTables() (map[string]map[string]tableEntry, error) {
	tables := map[string]map[string]tableEntry{}
	for _, t := range countTables {
		n, err := d.tableCounts(t)
		if err != nil {
			return nil, err
		}
		tables[t] = n
	}
	return tables, nil
}

// tableCountsByFunction is what the stick tables count per function.
func (d *Driver) tableCountsByFunction(tables map[string]map[string]tableEntry) map[string]proxy.Counts {
	out := map[string]proxy.Counts{}
	for _, fn := range d.functions {
		local := tables[tableUser][fn].requests + tables[tableSpill][fn].requests
		total := tables[tableTotal][fn]
		// Requests the platform answered 429 did not run: rejected if a
		// user's, refused if a peer's.
		c := proxy.Counts{Arrivals: tables[tableArrivals][fn].requests, ServedLocal: sub(local, total.busyUser),
			Rejected: total.busyUser + tables[tableBusy][fn].requests, Refused: tables[tableRefused][fn].requests + total.busyPeer,
			InFlight: int64(total.current), Forwarded: map[dfaas.NodeID]uint64{}}
		if total.requests > local {
			c.ReceivedIn = sub(total.requests-local, total.busyPeer)
		}
		out[fn] = c
	}
	for key, e := range tables[tableFwd] {
		fn, srv, _ := strings.Cut(key, "/")
		c, ok := out[fn]
		if !ok {
			continue
		}
		c.ForwardedOut += e.requests
		if node, ok := d.nodes[srv]; ok {
			c.Forwarded[node] += e.requests
		}
		out[fn] = c
	}
	return out
}

// learned reports whether the current worker took the stick tables over
// from the worker before it: its local peer's resync finished, fully or in
// part.
func (d *Driver) learned() bool {
	raw, err := d.rt.ExecuteRaw("show peers")
	return err == nil && resynced(raw)
}

// resynced reads the first flags of "show peers": the peers section's.
func resynced(raw string) bool {
	_, rest, ok := strings.Cut(raw, " flags=0x")
	if !ok {
		return false
	}
	hex, _, _ := strings.Cut(rest, " ")
	flags, err := strconv.ParseUint(hex, 16, 32)
	const localFinished, localPartial = 0x100, 0x400 // PEERS_F_RESYNC_LOCAL*
	return err == nil && flags&(localFinished|localPartial) != 0
}

var _ proxy.DataPlane = (*Driver)(nil)

// Peers returns the peers a function's forwards may go to now: those its
// route names whose servers its backend (its route backend, else the
// forwarding backend) holds, as HAProxy reports them, out of maintenance.
func (d *Driver) Peers(fn string) ([]dfaas.NodeID, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.stats()
	if err != nil {
		return nil, err
	}
	route := d.maps[d.layout.RoutesMap][fn]
	backend := d.maps[d.layout.SlotsMap][fn]
	if backend == "" {
		backend = backendForward
	}
	var out []dfaas.NodeID
	for _, part := range strings.Split(route, ",") {
		name, _, _ := strings.Cut(part, ":")
		row, ok := st[[2]string{backend, name}]
		if node, known := d.nodes[name]; ok && known && !strings.HasPrefix(row["status"], "MAINT") {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Checked is how many servers HAProxy health-checks now, as its statistics
// report them: one per peer in the forwarding backend, whatever the
// functions (each every 10 s while up, every 2 s while down), and a route
// backend's server while forwards marked it down (every 2 s, until it
// accepts connections again; up, its check is hourly).
func (d *Driver) Checked() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := d.stats()
	if err != nil {
		return 0, err
	}
	n := 0
	for key, row := range st {
		if key[1] == "BACKEND" || key[1] == "FRONTEND" || row["check_status"] == "" {
			continue
		}
		if key[0] == backendForward || strings.HasPrefix(row["status"], "DOWN") {
			n++
		}
	}
	return n, nil
}

// Reloads is how many seamless reloads the driver made since Start: only
// for what the runtime API could not take (a members list too large for
// its buffer), never for functions or peers.
func (d *Driver) Reloads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reloads
}

// Ejected implements dfaas.PeerHealth. HAProxy marks a peer's server down
// after connection errors in a row (observe layer4) and stops using it at
// once; the driver then ejects the peer from the plans for a time that
// doubles with every ejection in a row (proxy.Outliers), so that the plans
// give its share to the others. When the time is up the peer is planned
// again as a probe: if HAProxy marks it down again it goes out for twice
// as long, if it serves it is healthy again.
func (d *Driver) Ejected() []dfaas.NodeID {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	now := time.Now()
	if st, err := d.stats(); err == nil {
		down, up := map[dfaas.NodeID]bool{}, map[dfaas.NodeID]bool{}
		for key, row := range st {
			node, ok := d.nodes[key[1]]
			if !ok || key[0] != backendForward && !isSlot(key[0]) {
				continue
			}
			if strings.HasPrefix(row["status"], "DOWN") {
				down[node] = true
			} else {
				up[node] = true
			}
		}
		for node := range down {
			if d.outliers.Usable(node, now) {
				d.outliers.Failure(node, now)
				d.log.Info("peer ejected", "peer", node)
			}
		}
		for node := range up {
			if !down[node] && d.outliers.Usable(node, now) {
				d.outliers.Success(node)
			}
		}
	}
	return d.outliers.Ejected(now)
}

var _ dfaas.PeerHealth = (*Driver)(nil)

// sub is a-b, or 0 if b is larger.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
