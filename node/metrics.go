package node

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dfaas-go/dfaas/overlay"
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
		"The function's capacity on this node (the platform's dfaas.maxrate).", []string{"function"}, nil)
	descDemand = prometheus.NewDesc("dfaas_function_demand_rps",
		"The forecast of the function's user requests at this node, as advertised.", []string{"function"}, nil)
	descLimit = prometheus.NewDesc("dfaas_plan_limit_rps",
		"The plan's local limit for user requests.", []string{"function"}, nil)
	descPeerCap = prometheus.NewDesc("dfaas_plan_peer_cap_rps",
		"The most the plan lets this node send a peer.", []string{"function", "peer"}, nil)
	descPeers = prometheus.NewDesc("dfaas_peers",
		"Peers the latest plan was made with.", nil, nil)
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
	descCountersUp = prometheus.NewDesc("dfaas_dataplane_up",
		"1 if the data plane's counters could be read for this scrape, else 0.", nil, nil)
)

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
		descDropped, descOverlayBytes, descFollowing, descFollowers, descEvicted, descCountersUp} {
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
		buckets := make(map[float64]uint64, len(latencyBuckets))
		for _, b := range latencyBuckets {
			buckets[b] = k.Latency.AtMost(time.Duration(b * float64(time.Second)))
		}
		ch <- prometheus.MustNewConstHistogram(descDuration, k.Latency.Count(), k.Latency.Sum().Seconds(), buckets, fn)
	}

	st := c.n.Agent.Status()
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
	for peer, rtt := range st.LastState.RTT {
		gauge(descRTT, rtt.Seconds(), string(peer))
	}
	counter(descTicks, float64(st.Ticks))
	counter(descTickFailures, float64(st.Failures))
	gauge(descTickDuration, st.LastTickDuration.Seconds())

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
		in, out := o.Traffic()
		counter(descOverlayBytes, float64(in), "in")
		counter(descOverlayBytes, float64(out), "out")
	}
}
