package testbed

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is what a run's users saw, and what the federation did.
type Report struct {
	Scenario string       `json:"scenario"`
	Nodes    []NodeReport `json:"nodes"`
	// Lost counts requests that got no answer, or an error, and ran
	// nowhere, while the nodes their node could reach (within the
	// function's RTT budget, if the scenario sets one) had spare capacity
	// for their function: per second, at most the capacity those nodes left
	// unused in that second and in the seconds either side (less one
	// request per node: rates measured over whole seconds). Rejections
	// when the reachable federation was full are not lost.
	Lost int `json:"lost"`
	// LostAt counts the lost requests by the second they were sent in.
	LostAt map[int]int `json:"lost_at,omitempty"`
	// FailedBy counts the requests that got an error and ran nowhere, by
	// what their user saw: the status ("504"), "no answer in time" (the
	// load's client waits 10 s) or "connection error: " and its cause.
	FailedBy map[string]int `json:"failed_by,omitempty"`
	// Duplicated counts requests executed more than once.
	Duplicated int `json:"duplicated"`
	// Async is what became of the asynchronous calls (LoadSpec.Async),
	// which the other figures leave out; nil without any.
	Async *AsyncReport `json:"async,omitempty"`
	// Unanswered counts requests that ran but whose user got no answer or
	// an error: forwards in flight to a node that died (at most once: they
	// are not retried). They are not lost.
	Unanswered int `json:"unanswered"`
	// Forwards counts, per origin node, the requests each other node
	// executed for it.
	Forwards         map[string]map[string]int `json:"forwards"`
	ForwardLatencyMS Quantiles                 `json:"forward_latency_ms"`
	LocalLatencyMS   Quantiles                 `json:"local_latency_ms"`
	// ForwardLatencySettledMS is ForwardLatencyMS over the requests sent
	// from the scenario's settle on.
	ForwardLatencySettledMS Quantiles `json:"forward_latency_settled_ms"`
	// Detection is, per event, the time until every running agent's plan
	// reflected it (peers gone or back), in seconds; events the plans never
	// reflected during the run are missing.
	Detection []Detection `json:"detection_s"`
	// CutOff is, per removal of a member (the administrator's), how long
	// the removed node still held TCP connections with other nodes;
	// missing if it still held one 5 s on or when it stopped running.
	CutOff []CutOff `json:"cut_off,omitempty"`
	// AgentCPUSeconds is the agents' CPU time over the run, all nodes;
	// AgentRSSMB the largest resident memory of one agent.
	AgentCPUSeconds float64 `json:"agent_cpu_s"`
	// Retries counts forward attempts refused by or failed at a peer and
	// tried elsewhere, summed over the agents' data planes during the run.
	Retries int `json:"retries"`
	// ViewsCompletePct is the share of the status polls (about one a second,
	// from 3 s after the latest event) in which every running agent's plan
	// was made with every node it can reach: adverts reached everyone
	// within a tick.
	ViewsCompletePct float64 `json:"views_complete_pct"`
	// ControlBytesPerNodeS is what each agent's overlay sent per second
	// during the run (libp2p stream bytes: adverts, DHT, probes),
	// averaged over the agents that ran from start to end.
	ControlBytesPerNodeS float64  `json:"control_bytes_per_node_s"`
	AgentRSSMB           float64  `json:"agent_rss_mb"`
	Timeline             []Second `json:"timeline"`
	// Calibration is, per node and function of real cost, what its
	// platform did alone before the run.
	Calibration []Calibration `json:"calibration,omitempty"`
	// SettleS is when the nodes' figures of capacity and execution
	// latency start (the scenario's settle), in seconds of the run.
	SettleS float64 `json:"settle_s"`
}

// NodeReport counts one node's requests. Offered = ServedLocal +
// ForwardedOut + Rejected + Failed.
type NodeReport struct {
	Name         string `json:"name"`
	Offered      int    `json:"offered"`
	ServedLocal  int    `json:"served_local"`
	ForwardedOut int    `json:"forwarded_out"`
	Received     int    `json:"received"` // executed here for other nodes' users
	Rejected     int    `json:"rejected"` // answered 503 or 429
	Failed       int    `json:"failed"`   // no answer, or another error status
	// From the scenario's settle on: Capacity is the mean capacity the
	// node's agent advertised, summed over the functions of real cost
	// (Work); Executed counts the executions of them that ended on the
	// node's platform, Exec their platform time, and Timeouts those the
	// platform answered 5xx.
	Capacity float64   `json:"capacity"`
	Executed int       `json:"executed"`
	Exec     Quantiles `json:"exec_ms"`
	Timeouts int       `json:"timeouts"`
	// OfferedAfter, RejectedAfter and FailedAfter count the node's user
	// requests sent from the settle on, and those of them rejected or
	// failed; UserP95MS is their latency's 95th percentile as the users
	// saw it (answered ones).
	OfferedAfter  int     `json:"offered_after"`
	RejectedAfter int     `json:"rejected_after"`
	FailedAfter   int     `json:"failed_after"`
	UserP95MS     float64 `json:"user_p95_ms"`
	// OverObjectiveS counts the seconds from the settle on whose
	// executions' p95 (of the functions of real cost) was over the latency
	// objective the node's estimator held them to in that second, and
	// LongestOverS the most of them in a row.
	OverObjectiveS int `json:"over_objective_s"`
	LongestOverS   int `json:"longest_over_s"`
}

// Quantiles of a latency distribution, in milliseconds.
type Quantiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Detection is how long the plans took to reflect an event.
type Detection struct {
	Event   string  `json:"event"`
	Seconds float64 `json:"seconds"`
}

// CutOff is how long a removed member still held TCP connections with
// other nodes (libp2p's, the data planes' peer ports, either way).
type CutOff struct {
	Event string `json:"event"`
	// Held is how many it held when the removal was published; Seconds,
	// the time until it held none.
	Held    int     `json:"held"`
	Seconds float64 `json:"seconds"`
}

// Second is one second of the run: per node, the requests offered at it and
// what became of them, and the executions it ran.
type Second struct {
	T     int                   `json:"t"`
	Nodes map[string]SecondNode `json:"nodes"`
}

// SecondNode is one node's second.
type SecondNode struct {
	Offered  int `json:"offered"`
	OK       int `json:"ok"`
	Rejected int `json:"rejected"`
	Failed   int `json:"failed"`
	Executed int `json:"executed"`
	// Received counts the requests sent in the second that the node ran
	// for another node's users.
	Received int `json:"received"`
	// Capacity is what the node's agent advertised in the second, summed
	// over the functions of real cost; ExecP95MS the platform time's 95th
	// percentile of the executions of them that ended in it.
	Capacity  float64 `json:"capacity"`
	ExecP95MS float64 `json:"exec_p95_ms"`
}

func quantiles(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return float64(ds[max(0, i)]) / float64(time.Millisecond)
	}
	return Quantiles{N: len(ds), P50: q(0.5), P95: q(0.95), P99: q(0.99), Max: q(1)}
}

// quantileMS is the q quantile of ds in milliseconds (0 without any).
func quantileMS(ds []time.Duration, q float64) float64 {
	return quantiles(slices.Clone(ds)).at(q)
}

func (x Quantiles) at(q float64) float64 {
	switch q {
	case 0.5:
		return x.P50
	case 0.95:
		return x.P95
	case 0.99:
		return x.P99
	}
	return x.Max
}

// report computes the run's report from the clients' results and the
// platforms' ledger.
func (b *bed) report(res []result) *Report {
	s := b.s
	r := &Report{Scenario: s.Name, Forwards: map[string]map[string]int{}, Detection: b.status.detections()}
	b.mu.Lock()
	r.CutOff = slices.Clone(b.cutOff)
	b.mu.Unlock()
	if r.Detection == nil {
		r.Detection = []Detection{}
	}
	nodes := make([]NodeReport, len(s.Nodes))
	for i, n := range s.Nodes {
		nodes[i].Name = n.Name
	}
	seconds := int(math.Ceil(s.Duration.D().Seconds())) + 1
	timeline := make([][]SecondNode, seconds+10)
	for t := range timeline {
		timeline[t] = make([]SecondNode, len(s.Nodes))
	}
	b.ledger.mu.Lock()
	for _, runs := range b.ledger.runs {
		if len(runs) > 1 {
			r.Duplicated++
		}
	}
	for sec, per := range b.ledger.per {
		if sec < 0 || sec >= len(timeline) {
			continue
		}
		for i, fns := range per {
			for _, c := range fns {
				timeline[sec][i].Executed += c
			}
		}
	}
	settle := b.started.Add(b.s.Settle.D())
	r.SettleS = b.s.Settle.D().Seconds()
	execs := make([][]time.Duration, len(s.Nodes))
	perSec := map[[2]int][]time.Duration{}
	for _, e := range b.ledger.execs {
		if _, work := s.Work[e.fn]; !work || e.end.Before(b.started) {
			continue
		}
		sec := int(e.end.Sub(b.started) / time.Second)
		perSec[[2]int{sec, e.node}] = append(perSec[[2]int{sec, e.node}], e.took)
		if e.end.Before(settle) {
			continue
		}
		if e.status >= 500 {
			nodes[e.node].Timeouts++
		}
		if e.status != http.StatusTooManyRequests {
			execs[e.node] = append(execs[e.node], e.took)
		}
	}
	b.ledger.mu.Unlock()
	for i := range nodes {
		nodes[i].Exec = quantiles(execs[i])
		nodes[i].Executed = len(execs[i])
	}
	for k, ds := range perSec {
		if k[0] >= 0 && k[0] < len(timeline) {
			timeline[k[0]][k[1]].ExecP95MS = quantileMS(ds, 0.95)
		}
	}
	b.mu.Lock()
	run := make([]int, len(nodes))
	for sec := int(b.s.Settle.D().Seconds()); sec < len(timeline); sec++ {
		for i := range nodes {
			var obj float64
			for fn := range s.Work {
				if o := b.beliefs[sec][i][fn].Objective; o > 0 {
					obj = float64(o) / float64(time.Millisecond)
				}
			}
			if obj > 0 && timeline[sec][i].ExecP95MS > obj {
				nodes[i].OverObjectiveS++
				run[i]++
				nodes[i].LongestOverS = max(nodes[i].LongestOverS, run[i])
			} else {
				run[i] = 0
			}
		}
	}
	b.mu.Unlock()
	b.mu.Lock()
	var capSecs int
	for sec, per := range b.capacity {
		if sec < 0 || sec >= len(timeline) {
			continue
		}
		counted := float64(sec) >= b.s.Settle.D().Seconds()
		if counted {
			capSecs++
		}
		for i, fns := range per {
			for fn, c := range fns {
				if _, work := s.Work[fn]; work {
					timeline[sec][i].Capacity += c
					if counted {
						nodes[i].Capacity += c
					}
				}
			}
		}
	}
	b.mu.Unlock()
	for i := range nodes {
		if capSecs > 0 {
			nodes[i].Capacity /= float64(capSecs)
		}
	}

	var fwdLat, localLat, fwdSettled []time.Duration
	type cell struct {
		sec, origin int
		function    string
	}
	unserved := map[cell]int{}
	users := make([][]time.Duration, len(nodes))
	r.Async = b.asyncReport(res)
	for _, q := range res {
		if q.async {
			continue // in r.Async
		}
		o := &nodes[q.origin]
		o.Offered++
		if after := q.at >= b.s.Settle.D(); after {
			o.OfferedAfter++
			switch {
			case q.code >= 200 && q.code < 300:
				users[q.origin] = append(users[q.origin], q.latency)
			case q.code == 503 || q.code == 429:
				o.RejectedAfter++
			default:
				o.FailedAfter++
			}
		}
		sec := max(0, int(q.at/time.Second))
		if sec >= len(timeline) {
			sec = len(timeline) - 1
		}
		tn := &timeline[sec][q.origin]
		tn.Offered++
		switch {
		case q.code >= 200 && q.code < 300:
			tn.OK++
			exec, ok := b.executor(q.id)
			switch {
			case !ok:
				o.Failed++ // answered, but no platform ran it: should not happen
			case exec == q.origin:
				o.ServedLocal++
				localLat = append(localLat, q.latency)
			default:
				o.ForwardedOut++
				nodes[exec].Received++
				if r.Forwards[o.Name] == nil {
					r.Forwards[o.Name] = map[string]int{}
				}
				r.Forwards[o.Name][s.Nodes[exec].Name]++
				fwdLat = append(fwdLat, q.latency)
				if q.at >= b.s.Settle.D() {
					fwdSettled = append(fwdSettled, q.latency)
				}
				timeline[sec][exec].Received++
			}
		case q.code == 503 || q.code == 429:
			o.Rejected++
			tn.Rejected++
			unserved[cell{sec, q.origin, q.function}]++
		default:
			o.Failed++
			tn.Failed++
			if _, ran := b.executor(q.id); ran {
				r.Unanswered++
			} else {
				unserved[cell{sec, q.origin, q.function}]++
				saw := strconv.Itoa(q.code)
				switch {
				case q.code != 0:
				case strings.Contains(q.err, "Timeout") || strings.Contains(q.err, "deadline"):
					saw = "no answer in time"
				default: // the error's last part: "EOF", "connection reset by peer"
					cause := q.err
					if i := strings.LastIndex(cause, ": "); i >= 0 {
						cause = cause[i+2:]
					}
					saw = "connection error: " + cause
				}
				if r.FailedBy == nil {
					r.FailedBy = map[string]int{}
				}
				r.FailedBy[saw]++
			}
		}
	}
	for c, n := range unserved {
		spare := b.spare(c.origin, c.function, c.sec)
		for _, s := range []int{c.sec - 1, c.sec + 1} {
			if s >= 0 {
				spare = min(spare, b.spare(c.origin, c.function, s))
			}
		}
		if lost := min(n, spare); lost > 0 {
			r.Lost += lost
			if r.LostAt == nil {
				r.LostAt = map[int]int{}
			}
			r.LostAt[c.sec] += lost
		}
	}
	for i := range nodes {
		nodes[i].UserP95MS = quantileMS(users[i], 0.95)
	}
	r.Nodes = nodes
	r.ForwardLatencyMS, r.LocalLatencyMS = quantiles(fwdLat), quantiles(localLat)
	r.ForwardLatencySettledMS = quantiles(fwdSettled)
	for t := 0; t < seconds; t++ {
		sec := Second{T: t, Nodes: map[string]SecondNode{}}
		for i, n := range s.Nodes {
			sec.Nodes[n.Name] = timeline[t][i]
		}
		r.Timeline = append(r.Timeline, sec)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, a := range b.agents {
		r.AgentCPUSeconds += (a.cpu + a.cpuNow).Seconds()
		r.AgentRSSMB = max(r.AgentRSSMB, a.rss)
	}
	return r
}

// executor is the node that ran request id (the first, if several did).
func (b *bed) executor(id string) (int, bool) {
	b.ledger.mu.Lock()
	defer b.ledger.mu.Unlock()
	runs := b.ledger.runs[id]
	if len(runs) == 0 {
		return 0, false
	}
	return runs[0], true
}

// spare is how many more requests of function the nodes origin could reach
// (up for the whole second, on its side of any partition, within the
// function's RTT budget if the scenario sets one) could have run in second
// sec: their capacity (the label, or else what the node advertised) less
// what they ran, less one per node.
func (b *bed) spare(origin int, function string, sec int) int {
	from, to := b.started.Add(time.Duration(sec)*time.Second), b.started.Add(time.Duration(sec+1)*time.Second)
	var capacity float64
	var ran, nodes int
	b.mu.Lock()
	advertised := b.capacity[sec]
	b.mu.Unlock()
	b.ledger.mu.Lock()
	defer b.ledger.mu.Unlock()
	for j, n := range b.s.Nodes {
		if !b.upDuring(j, from, to) || b.cutDuring(origin, j, from, to) {
			continue
		}
		if budget, ok := b.s.MaxRTT[function]; ok && j != origin && b.s.linkOf(b.s.Nodes[origin].Name, n.Name).RTT > budget {
			continue
		}
		if l, ok := n.Label(function); ok {
			capacity += l
		} else {
			capacity += advertised[j][function] // what the node measured, and said
		}
		ran += b.ledger.per[sec][j][function]
		nodes++
	}
	return max(0, int(math.Floor(capacity))-ran-nodes)
}

// upDuring reports whether node j's agent ran, unfrozen, from from to to,
// by the scenario's events.
func (b *bed) upDuring(j int, from, to time.Time) bool {
	name := b.s.Nodes[j].Name
	last := -1 // the latest event at or before from
	for k, e := range b.s.Events {
		at := b.started.Add(e.At.D())
		switch {
		case !at.After(from):
			last = k
		case at.Before(to) && slices.Contains([]string{e.Kill, e.Stop, e.Freeze, e.Start, e.Thaw}, name):
			return false // changed within the second
		}
	}
	return b.expectedUp(last, j)
}

// cutDuring reports whether a partition separated i and j at any time
// from from to to.
func (b *bed) cutDuring(i, j int, from, to time.Time) bool {
	if i == j {
		return false
	}
	for k, e := range b.s.Events {
		at := b.started.Add(e.At.D())
		if !at.Before(to) {
			break
		}
		end := b.started.Add(b.s.Duration.D())
		for _, later := range b.s.Events[k+1:] {
			if later.Heal || later.Partition != nil {
				end = b.started.Add(later.At.D())
				break
			}
		}
		if e.Partition != nil && end.After(from) && b.cut(k, i, j) {
			return true
		}
	}
	return false
}

// Print writes a report for people: per node, then the totals.
func Print(w io.Writer, r *Report) {
	fmt.Fprintf(w, "scenario %s\n", r.Scenario)
	fmt.Fprintf(w, "%-8s %8s %8s %8s %8s %8s %8s\n", "node", "offered", "local", "fwd out", "received", "rejected", "failed")
	for _, n := range r.Nodes {
		fmt.Fprintf(w, "%-8s %8d %8d %8d %8d %8d %8d\n", n.Name, n.Offered, n.ServedLocal, n.ForwardedOut, n.Received, n.Rejected, n.Failed)
	}
	var fw []string
	for from, to := range r.Forwards {
		for n, c := range to {
			fw = append(fw, fmt.Sprintf("%s->%s %d", from, n, c))
		}
	}
	slices.Sort(fw)
	fmt.Fprintf(w, "forwards: %s\n", strings.Join(fw, ", "))
	fmt.Fprintf(w, "lost %d, duplicated %d, unanswered %d, retries %d\n", r.Lost, r.Duplicated, r.Unanswered, r.Retries)
	if a := r.Async; a != nil {
		fmt.Fprintf(w, "async: accepted %d, refused %d, called back %d (twice %d, status not 200 %d), missing %d, ran twice %d, ran at %v, drained at %.1f s\n",
			a.Accepted, a.Refused, a.CalledBack, a.CalledBackTwice, a.NotOK, a.Missing, a.RanTwice, a.RanAt, a.DrainedS)
	}
	fmt.Fprintf(w, "latency ms: local p50 %.1f p99 %.1f max %.0f (n=%d), forwarded p50 %.1f p99 %.1f max %.0f (n=%d)\n",
		r.LocalLatencyMS.P50, r.LocalLatencyMS.P99, r.LocalLatencyMS.Max, r.LocalLatencyMS.N,
		r.ForwardLatencyMS.P50, r.ForwardLatencyMS.P99, r.ForwardLatencyMS.Max, r.ForwardLatencyMS.N)
	if r.ViewsCompletePct >= 0 {
		fmt.Fprintf(w, "plans made with every reachable node in %.0f%% of the quiet-time polls\n", r.ViewsCompletePct)
	}
	for _, d := range r.Detection {
		fmt.Fprintf(w, "detected %-30s in %.2f s\n", d.Event, d.Seconds)
	}
	for _, d := range r.CutOff {
		fmt.Fprintf(w, "%s: its %d connections with other nodes gone in %.2f s\n", d.Event, d.Held, d.Seconds)
	}
	fmt.Fprintf(w, "agents: %.1f CPU s in all, largest RSS %.0f MiB, overlay sent %.0f B/s per node\n",
		r.AgentCPUSeconds, r.AgentRSSMB, r.ControlBytesPerNodeS)
	for _, c := range r.Calibration {
		fmt.Fprintf(w, "calibration %s %s (cpu %g): alone p50 %.1f ms p95 %.1f ms, saturated %.1f req/s\n",
			c.Node, c.Function, c.CPU, c.UnloadedP50MS, c.UnloadedP95MS, c.Saturated)
	}
	if len(r.Calibration) > 0 {
		fmt.Fprintf(w, "from %.0f s on: %-8s %9s %9s %9s %9s %8s %8s %9s %9s %9s\n", r.SettleS, "node", "capacity", "executed", "exec p50", "exec p95",
			"timeouts", "offered", "rejected", "user p95", "over obj (in a row)")
		for _, n := range r.Nodes {
			fmt.Fprintf(w, "           %-8s %9.1f %9d %9.1f %9.1f %8d %8d %9d %9.1f %4ds/%2ds\n", n.Name, n.Capacity, n.Executed, n.Exec.P50, n.Exec.P95,
				n.Timeouts, n.OfferedAfter, n.RejectedAfter+n.FailedAfter, n.UserP95MS, n.OverObjectiveS, n.LongestOverS)
		}
	}
}

// Compare writes reports side by side, from each one's settle on: per
// scenario, what its nodes served, rejected and failed of the requests
// sent, the users' p95, and each node's capacity and executions' p95.
func Compare(w io.Writer, reports []*Report) {
	fmt.Fprintf(w, "%-24s %9s %9s %9s %9s %9s  %s\n", "scenario", "served/s", "rejected", "failed", "user p95", "timeouts", "per node: capacity, exec p95 ms")
	for _, r := range reports {
		var offered, rejected, failed, timeouts, served int
		var p95 float64
		var nodes []string
		for _, n := range r.Nodes {
			offered += n.OfferedAfter
			rejected += n.RejectedAfter
			failed += n.FailedAfter
			timeouts += n.Timeouts
			served += n.Executed
			p95 = max(p95, n.UserP95MS)
			nodes = append(nodes, fmt.Sprintf("%s %.1f %.0f", n.Name, n.Capacity, n.Exec.P95))
		}
		secs := float64(len(r.Timeline)-1) - r.SettleS
		pct := func(n int) string {
			if offered == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(offered))
		}
		fmt.Fprintf(w, "%-24s %9.1f %9s %9s %9.0f %9d  %s\n", r.Scenario, float64(served)/max(1, secs), pct(rejected), pct(failed), p95, timeouts,
			strings.Join(nodes, ", "))
	}
}

// Share is the share of the forwards sent in seconds [from, to) of the run
// that node ran; 0 if none was forwarded.
func (r *Report) Share(node string, from, to int) float64 {
	var at, all int
	for _, sec := range r.Timeline {
		if sec.T < from || sec.T >= to {
			continue
		}
		for name, n := range sec.Nodes {
			all += n.Received
			if name == node {
				at += n.Received
			}
		}
	}
	if all == 0 {
		return 0
	}
	return float64(at) / float64(all)
}
