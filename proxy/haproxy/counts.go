package haproxy

import (
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// tableCounts reads the request counts per key of a stick table.
func (d *Driver) tableCounts(table string) (map[string]uint64, error) {
	raw, err := d.rt.ExecuteRaw("show table " + table)
	if err != nil {
		return nil, fmt.Errorf("haproxy: show table %s: %w", table, err)
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(raw, "\n") {
		var key string
		var cnt uint64
		for _, f := range strings.Fields(line) {
			switch {
			case strings.HasPrefix(f, "key="):
				key = strings.TrimPrefix(f, "key=")
			case strings.HasPrefix(f, "http_req_cnt="):
				cnt, _ = strconv.ParseUint(strings.TrimPrefix(f, "http_req_cnt="), 10, 64)
			}
		}
		if key != "" {
			out[key] = cnt
		}
	}
	return out, nil
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
// request counts for arrivals and local executions (within the limit and
// beyond it), and the forwarding
// backends' statistics for forwarded and rejected requests. The counts
// carry over reloads. Latency and in-flight counts are not measured.
func (d *Driver) Counts() map[string]proxy.Counts {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.counts()
	if err != nil {
		d.log.Warn("reading counters failed", "err", err)
		return d.lastCounts
	}
	d.lastCounts = cur
	return cur
}

// counts reads the current worker's counters and adds what earlier workers
// counted.
func (d *Driver) counts() (map[string]proxy.Counts, error) {
	arrivals, err := d.tableCounts(tableArrivals)
	if err != nil {
		return nil, err
	}
	user, err := d.tableCounts(tableUser)
	if err != nil {
		return nil, err
	}
	total, err := d.tableCounts(tableTotal)
	if err != nil {
		return nil, err
	}
	spill, err := d.tableCounts(tableSpill)
	if err != nil {
		return nil, err
	}
	st, err := d.stats()
	if err != nil {
		return nil, err
	}
	out := map[string]proxy.Counts{}
	for _, fn := range d.layout.Functions {
		local := user[fn] + spill[fn]
		c := proxy.Counts{Arrivals: arrivals[fn], ServedLocal: local, Forwarded: map[dfaas.NodeID]uint64{}}
		if total[fn] > local {
			c.ReceivedIn = total[fn] - local
		}
		be := st[[2]string{forwardBackend(fn), "BACKEND"}]
		answered := be.n("hrsp_1xx") + be.n("hrsp_2xx") + be.n("hrsp_3xx") + be.n("hrsp_4xx")
		c.ForwardedOut = answered
		c.Rejected = be.n("hrsp_5xx") + be.n("hrsp_other")
		c.FailedTries = be.n("wretr") + be.n("wredis")
		for node, sv := range d.servers[fn] {
			row := st[[2]string{forwardBackend(fn), sv.name}]
			c.Forwarded[node] = row.n("hrsp_1xx") + row.n("hrsp_2xx") + row.n("hrsp_3xx") + row.n("hrsp_4xx")
		}
		if base, ok := d.base[fn]; ok {
			c = c.Add(base)
		}
		out[fn] = c
	}
	return out, nil
}

var _ proxy.Counter = (*Driver)(nil)
