package node

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
)

// latencyBuckets are the request-duration histogram's bounds, in seconds:
// the data planes' own histograms are finer (proxy.Latencies) and are
// folded into these.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

var (
	descRequests = prometheus.NewDesc("dfaas_requests_total",
		"Requests by what became of them: user requests served locally, forwarded (answered by a peer) or rejected; peer requests received (executed here) or refused.",
		[]string{"function", "outcome"}, nil)
	descForwarded = prometheus.NewDesc("dfaas_forwarded_total",
		"User requests a peer answered, per peer.", []string{"function", "peer"}, nil)
	descRetries = prometheus.NewDesc("dfaas_forward_retries_total",
		"Forward attempts refused by or failed at a peer, then tried elsewhere.", []string{"function"}, nil)
	descInFlight = prometheus.NewDesc("dfaas_in_flight_requests",
		"Requests being executed locally now.", []string{"function"}, nil)
	descDuration = prometheus.NewDesc("dfaas_request_duration_seconds",
		"Latency of user requests at this node, from arrival to the end of the response (the sum is estimated from the data plane's buckets).",
		[]string{"function"}, nil)
	descCapacity = prometheus.NewDesc("dfaas_function_capacity_rps",
		"The function's capacity on this node, as advertised: measured (within the platform's dfaas.maxrate), or the label itself with declared capacities.",
		[]string{"function"}, nil)
	descExecutions = prometheus.NewDesc("dfaas_execution_duration_seconds",
		"Latency of local executions of every origin, from the hand-over to the platform to the end of its answer.", []string{"function"}, nil)
	descPlatform = prometheus.NewDesc("dfaas_platform_answers_total",
		"Local executions the platform answered 429 (busy) or 502-504 (failed).", []string{"function", "answer"}, nil)
	descCeiling = prometheus.NewDesc("dfaas_capacity_ceiling_rps",
		"What the node ran of the function at its last overload, per second (its measured limit); 0 before one.", []string{"function"}, nil)
	descBusyRate = prometheus.NewDesc("dfaas_capacity_busy_rate_rps",
		"What the platform runs of the function per second of busy time (Little's law); 0 before it was busy enough to tell.", []string{"function"}, nil)
	descService = prometheus.NewDesc("dfaas_capacity_service_seconds",
		"The function's unloaded service time: the median latency of recent executions that ran alone.", []string{"function"}, nil)
	descObjective = prometheus.NewDesc("dfaas_capacity_objective_seconds",
		"The latency objective the capacity is measured against, at its quantile.", []string{"function", "quantile"}, nil)
	descCuts = prometheus.NewDesc("dfaas_capacity_cut_timestamp_seconds",
		"When the capacity was last cut for an overload (Unix time), by reason; absent before the first.", []string{"function", "reason"}, nil)
	descDemand = prometheus.NewDesc("dfaas_function_demand_rps",
		"The forecast of the function's user requests at this node, as advertised.", []string{"function"}, nil)
	descLimit = prometheus.NewDesc("dfaas_plan_limit_rps",
		"The plan's local limit for user requests.", []string{"function"}, nil)
	descPeerCap = prometheus.NewDesc("dfaas_plan_peer_cap_rps",
		"The most the plan lets this node send a peer.", []string{"function", "peer"}, nil)
	descPeers = prometheus.NewDesc("dfaas_peers",
		"Peers the latest plan was made with.", nil, nil)
	descFwdLatency = prometheus.NewDesc("dfaas_peer_forward_latency_seconds",
		"A peak-EWMA of the time the peer took to answer this node's forwards of the function (to its response headers), over the last 30 s of forwards.",
		[]string{"function", "peer"}, nil)
	descFwdSuccess = prometheus.NewDesc("dfaas_peer_forward_success_ratio",
		"An EWMA of the share of forward attempts to the peer that did not fail (refusals for capacity are not failures), over the last 30 s of forwards.",
		[]string{"function", "peer"}, nil)
	descRTT = prometheus.NewDesc("dfaas_peer_rtt_seconds",
		"Round-trip time to a peer, measured by the overlay's probes.", []string{"peer"}, nil)
	descTicks = prometheus.NewDesc("dfaas_ticks_total",
		"Control ticks run.", nil, nil)
	descTickFailures = prometheus.NewDesc("dfaas_tick_failures_total",
		"Control ticks that returned an error.", nil, nil)
	descTickDuration = prometheus.NewDesc("dfaas_tick_duration_seconds",
		"How long the latest control tick took.", nil, nil)
	descAdverts = prometheus.NewDesc("dfaas_adverts_accepted_total",
		"Peer adverts accepted.", nil, nil)
	descDropped = prometheus.NewDesc("dfaas_adverts_dropped_total",
		"Peer adverts dropped, by reason.", []string{"reason"}, nil)
	descOverlayBytes = prometheus.NewDesc("dfaas_overlay_bytes_total",
		"Bytes the overlay sent and received (libp2p stream payloads).", []string{"direction"}, nil)
	descFollowing = prometheus.NewDesc("dfaas_overlay_following",
		"Peers this node follows: whose adverts it hears.", nil, nil)
	descFollowers = prometheus.NewDesc("dfaas_overlay_followers",
		"Peers that follow this node: who hears its adverts.", nil, nil)
	descEvicted = prometheus.NewDesc("dfaas_overlay_followers_evicted_total",
		"Followers told to make room for a newcomer (the node had MaxFollowers).", nil, nil)
	descRedialled = prometheus.NewDesc("dfaas_overlay_redials_total",
		"Lost peers dialled again soon and often: followees lost against this node's will (a crash, a partition) and bootstrap peers.", nil, nil)
	descAsyncCalls = prometheus.NewDesc("dfaas_async_calls_total",
		"Asynchronous calls by what became of them: accepted (202), completed (run, the callback sent or tried), requeued (went again: no capacity anywhere, or the platform refused), refused (429: the queue full), callback_failed (given up after its tries).",
		[]string{"outcome"}, nil)
	descAsyncBacklog = prometheus.NewDesc("dfaas_async_backlog_calls",
		"Asynchronous calls waiting or in progress.", []string{"function"}, nil)
	descAsyncOldest = prometheus.NewDesc("dfaas_async_oldest_wait_seconds",
		"How long the oldest waiting asynchronous call of the function has waited.", []string{"function"}, nil)
	descNodeInfo = prometheus.NewDesc("dfaas_node_info",
		"Always 1: names this node (its id and the name it advertises, empty without one), for joins.", []string{"node", "name"}, nil)
	descPeerInfo = prometheus.NewDesc("dfaas_peer_info",
		"Always 1 per peer with a live advert that gives a name: its id and that name, for joins with the per-peer series.",
		[]string{"peer", "name"}, nil)
	// The OpenFaaS gateway's names, so that its dashboards and alerts see
	// the calls users make at this node (docs/openfaas.md).
	descGatewayInvocations = prometheus.NewDesc("gateway_function_invocation_total",
		"User requests by the status answered (the node's own 503 and 413 included), by the OpenFaaS gateway's name.",
		[]string{"function_name", "code"}, nil)
	descGatewayStarted = prometheus.NewDesc("gateway_function_invocation_started",
		"User requests that arrived, by the OpenFaaS gateway's name.", []string{"function_name"}, nil)
	descGatewaySeconds = prometheus.NewDesc("gateway_functions_seconds",
		"Time of user requests from arrival to the end of the answer, per status, by the OpenFaaS gateway's name: sum and count only (dfaas_request_duration_seconds has the buckets).",
		[]string{"function_name", "code"}, nil)
	descCountersUp = prometheus.NewDesc("dfaas_dataplane_up",
		"1 if the data plane's counters could be read for this scrape, else 0.", nil, nil)
)

// folded is a data plane's histogram in latencyBuckets.
func folded(h proxy.Latencies) map[float64]uint64 {
	buckets := make(map[float64]uint64, len(latencyBuckets))
	for _, b := range latencyBuckets {
		buckets[b] = h.AtMost(time.Duration(b * float64(time.Second)))
	}
	return buckets
}

// cutReason is a cut's reason as a label of a few values: "refused" (the
// platform's 429s), "failed" (its 502-504s) or "latency".
func cutReason(reason string) string {
	switch {
	case strings.Contains(reason, "refused"):
		return "refused"
	case strings.Contains(reason, "failed"):
		return "failed"
	}
	return "latency"
}

// collector turns a node's state into Prometheus metrics at every scrape:
// the data plane's counters (exactly what the Monitor reads), the agent's
// latest state and plan, and the overlay's counters.
type collector struct{ n *Node }

// Collector returns the node's metrics, for a registry of the caller's.
// AdminHandler serves them on /metrics.
func (n *Node) Collector() prometheus.Collector { return collector{n} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descForwarded, descRetries, descInFlight, descDuration, descCapacity,
		descDemand, descLimit, descPeerCap, descPeers, descRTT, descTicks, descTickFailures, descTickDuration, descAdverts,
		descDropped, descOverlayBytes, descFollowing, descFollowers, descEvicted, descRedialled, descCountersUp, descExecutions, descPlatform,
		descCeiling, descBusyRate, descService, descObjective, descCuts, descNodeInfo, descPeerInfo, descFwdLatency, descFwdSuccess,
		descGatewayInvocations, descGatewayStarted, descGatewaySeconds, descAsyncCalls, descAsyncBacklog, descAsyncOldest} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.n.DataPlane.Counts(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	gauge(descCountersUp, up)
	// Only the functions this node serves or plans get series: a member
	// naming fresh functions at every advert must not grow the label's
	// values without end (a plan holds a bounded number of functions only
	// peers run, and forgets them when they go).
	st := c.n.Agent.Status()
	for fn := range counts {
		_, served := st.LastState.Functions[fn]
		_, planned := st.LastPlan.Functions[fn]
		if !served && !planned {
			delete(counts, fn)
		}
	}
	for fn, k := range counts {
		for outcome, v := range map[string]uint64{"local": k.ServedLocal, "forwarded": k.ForwardedOut, "rejected": k.Rejected,
			"received": k.ReceivedIn, "refused": k.Refused} {
			counter(descRequests, float64(v), fn, outcome)
		}
		for peer, v := range k.Forwarded {
			counter(descForwarded, float64(v), fn, string(peer))
		}
		counter(descRetries, float64(k.FailedTries), fn)
		gauge(descInFlight, float64(k.InFlight), fn)
		ch <- prometheus.MustNewConstHistogram(descDuration, k.Latency.Count(), k.Latency.Sum().Seconds(), folded(k.Latency), fn)
		ch <- prometheus.MustNewConstHistogram(descExecutions, k.Executions.Count(), k.Executions.Sum().Seconds(), folded(k.Executions), fn)
		counter(descPlatform, float64(k.Busy), fn, "busy")
		counter(descPlatform, float64(k.Failed), fn, "failed")
		counter(descGatewayStarted, float64(k.Arrivals), fn)
		for status, sc := range k.Statuses {
			code := strconv.Itoa(status)
			counter(descGatewayInvocations, float64(sc.Count), fn, code)
			ch <- prometheus.MustNewConstHistogram(descGatewaySeconds, sc.Count, sc.Time.Seconds(), nil, fn, code)
		}
	}
	for fn, e := range c.n.Monitor.Estimates() {
		gauge(descCeiling, float64(e.Ceiling), fn)
		gauge(descBusyRate, float64(e.Full), fn)
		gauge(descService, e.Service.Seconds(), fn)
		if e.Objective > 0 {
			gauge(descObjective, e.Objective.Seconds(), fn, strconv.FormatFloat(e.Quantile, 'g', -1, 64))
		}
		if !e.Cut.IsZero() {
			gauge(descCuts, float64(e.Cut.UnixNano())/1e9, fn, cutReason(e.Reason))
		}
	}

	for fn, f := range st.LastState.Functions {
		gauge(descCapacity, float64(f.Capacity), fn)
		gauge(descDemand, float64(f.Demand), fn)
	}
	for fn, fp := range st.LastPlan.Functions {
		gauge(descLimit, float64(fp.Limit), fn)
		for _, s := range fp.Peers {
			gauge(descPeerCap, float64(s.Cap), fn, string(s.Node))
		}
	}
	gauge(descPeers, float64(len(st.PeerNodes)))
	gauge(descNodeInfo, 1, string(c.n.Overlay.Self()), c.n.name)
	for peer, name := range c.n.peerNames() { // one per live advert: bounded as the peers are
		gauge(descPeerInfo, 1, string(peer), name)
	}
	for fn, peers := range st.LastState.Forwards { // the plans' functions and peers of the last 30 s
		for peer, h := range peers {
			gauge(descFwdLatency, h.Latency.Seconds(), fn, string(peer))
			gauge(descFwdSuccess, h.Success, fn, string(peer))
		}
	}
	for peer, rtt := range st.LastState.RTT {
		gauge(descRTT, rtt.Seconds(), string(peer))
	}
	counter(descTicks, float64(st.Ticks))
	counter(descTickFailures, float64(st.Failures))
	gauge(descTickDuration, st.LastTickDuration.Seconds())

	if q := c.n.Async; q != nil {
		s := q.Stats()
		for outcome, v := range map[string]uint64{"accepted": s.Accepted, "completed": s.Completed, "requeued": s.Requeued,
			"refused": s.Refused, "callback_failed": s.CallbacksFailed} {
			counter(descAsyncCalls, float64(v), outcome)
		}
		for fn, b := range q.Backlogs() {
			gauge(descAsyncBacklog, float64(b.Calls), fn)
			gauge(descAsyncOldest, b.Oldest.Seconds(), fn)
		}
	}

	if o, ok := c.n.Overlay.(*overlay.Libp2p); ok {
		s := o.Stats()
		counter(descAdverts, float64(s.Accepted))
		for reason, v := range map[string]uint64{"malformed": s.Malformed, "oversized": s.Oversized, "stale": s.Stale,
			"spoofed": s.Spoofed, "expired": s.Expired, "flooded": s.Flooded,
			"silent": s.Silent} {
			counter(descDropped, float64(v), reason)
		}
		gauge(descFollowing, float64(len(o.Following())))
		gauge(descFollowers, float64(o.Followers()))
		counter(descEvicted, float64(s.Evicted))
		counter(descRedialled, float64(s.Redialled))
		tr := o.Traffic()
		counter(descOverlayBytes, float64(tr.BytesIn), "in")
		counter(descOverlayBytes, float64(tr.BytesOut), "out")
	}
}
