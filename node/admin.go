package node

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/overlay"
)

// Status is what a node's /status answers: who it is, where it listens,
// and what its agent last saw and planned.
type Status struct {
	Node      dfaas.NodeID   `json:"node"`
	Name      string         `json:"name,omitempty"` // Config.Name
	UserAddr  string         `json:"user_addr"`
	PeerAddr  string         `json:"peer_addr"`
	Overlay   []string       `json:"overlay_addrs,omitempty"` // libp2p multiaddrs, with /p2p/<id>
	Ticks     uint64         `json:"ticks"`
	Failures  uint64         `json:"tick_failures"`
	LastTick  time.Time      `json:"last_tick"`
	LastError string         `json:"last_error,omitempty"`
	Peers     []dfaas.NodeID `json:"peers"` // the federation the latest plan was made with
	// PeerNames are the names the peers with live adverts give themselves
	// (those that give one).
	PeerNames map[dfaas.NodeID]string `json:"peer_names,omitempty"`
	State     dfaas.State             `json:"state"`
	Plan      dfaas.Plan              `json:"plan"`
	// Overlay counters (libp2p only): adverts accepted and dropped by
	// reason, and the bytes the overlay received and sent since it started.
	Adverts *overlay.Stats `json:"adverts,omitempty"`
	// OverlayTraffic is what the overlay's streams carried, with its rates
	// over the last overlay.RateWindow; OverlayProtocols splits it by
	// libp2p protocol.
	OverlayTraffic   *overlay.Traffic           `json:"overlay_traffic,omitempty"`
	OverlayProtocols map[string]overlay.Traffic `json:"overlay_protocols,omitempty"`
	// RTT is the round-trip time to each peer the overlay measured
	// (nanoseconds in JSON).
	RTT map[dfaas.NodeID]time.Duration `json:"rtt_ns,omitempty"`
	// Clean is, per peer, the share of the overlay's latest probes to it
	// answered without a retransmission's delay (dfaas.State.Clean).
	Clean map[dfaas.NodeID]float64 `json:"clean,omitempty"`
	// Counters are the data plane's counters per function since it
	// started; CountersError says why they are missing, if they are.
	Counters      map[string]FunctionCounts `json:"counters,omitempty"`
	CountersError string                    `json:"counters_error,omitempty"`
	// Capacity is, per function, what its capacity estimator believes
	// (learned capacity, ceiling, service time, objective and the latest
	// latency, its phase and last cut); absent when capacities are
	// declared.
	Capacity map[string]capacity.State `json:"capacity,omitempty"`
	// Local is, per function, what the latest tick saw of its local
	// executions: their latency over its window (nanoseconds in JSON) and
	// how many were in progress.
	Local map[string]faas.Observed `json:"local,omitempty"`
}

// FunctionCounts is one function's data-plane counters (proxy.Counts).
type FunctionCounts struct {
	Arrivals     uint64                  `json:"arrivals"`
	ServedLocal  uint64                  `json:"served_local"`
	ForwardedOut uint64                  `json:"forwarded_out"`
	ReceivedIn   uint64                  `json:"received_in"`
	Rejected     uint64                  `json:"rejected"`
	Refused      uint64                  `json:"refused"`
	FailedTries  uint64                  `json:"failed_tries"`
	InFlight     int64                   `json:"in_flight"`
	Forwarded    map[dfaas.NodeID]uint64 `json:"forwarded,omitempty"`
	// Busy and Failed are the local executions the platform answered 429,
	// and 502-504.
	Busy   uint64 `json:"busy"`
	Failed uint64 `json:"failed"`
}

// Status reports the node's status now; ctx bounds reading the data
// plane's counters.
func (n *Node) Status(ctx context.Context) Status {
	st := n.Agent.Status()
	out := Status{Node: n.Overlay.Self(), Name: n.name, PeerNames: n.peerNames(), UserAddr: n.DataPlane.UserAddr(), PeerAddr: n.DataPlane.PeerAddr(),
		Ticks: st.Ticks, Failures: st.Failures, LastTick: st.LastTick, Peers: st.PeerNodes,
		State: st.LastState, Plan: st.LastPlan}
	if out.Peers == nil {
		out.Peers = []dfaas.NodeID{}
	}
	if st.LastErr != nil {
		out.LastError = st.LastErr.Error()
	}
	if o, ok := n.Overlay.(*overlay.Libp2p); ok {
		out.Overlay = o.Addrs()
		s := o.Stats()
		out.Adverts = &s
		tr := o.Traffic()
		out.OverlayTraffic = &tr
		out.OverlayProtocols = o.TrafficByProtocol()
	}
	out.RTT, out.Clean = st.LastState.RTT, st.LastState.Clean
	counts, err := n.DataPlane.Counts(ctx)
	if err != nil {
		out.CountersError = err.Error()
	}
	for fn, c := range counts {
		if out.Counters == nil {
			out.Counters = map[string]FunctionCounts{}
		}
		out.Counters[fn] = FunctionCounts{Arrivals: c.Arrivals, ServedLocal: c.ServedLocal, ForwardedOut: c.ForwardedOut,
			ReceivedIn: c.ReceivedIn, Rejected: c.Rejected, Refused: c.Refused, FailedTries: c.FailedTries, InFlight: c.InFlight,
			Forwarded: c.Forwarded, Busy: c.Busy, Failed: c.Failed}
	}
	out.Capacity = n.Monitor.Estimates()
	out.Local = n.Monitor.Observed()
	return out
}

// peerNames returns the names of the peers with live adverts, for those
// that give one; nil if none does.
func (n *Node) peerNames() map[dfaas.NodeID]string {
	var names map[dfaas.NodeID]string
	for _, ad := range n.Overlay.Adverts(time.Now()) {
		if ad.Name != "" {
			if names == nil {
				names = map[dfaas.NodeID]string{}
			}
			names[ad.Node] = ad.Name
		}
	}
	return names
}

// Ready reports whether the node has applied a plan: its agent ran a tick
// that succeeded. The reason says what it waits for otherwise.
func (n *Node) Ready() (ok bool, reason string) {
	st := n.Agent.Status()
	switch {
	case st.Draining:
		return false, "draining: leaving the federation"
	case st.Ticks == 0:
		return false, "no control tick has run yet"
	case st.LastErr != nil:
		return false, "the last control tick failed: " + st.LastErr.Error()
	}
	return true, ""
}

// AdminHandler serves the node's operator endpoints, for a listener of
// their own (never the user or the peer port):
//
//	/healthz  200 while the process serves
//	/readyz   200 once a plan is applied (Ready), else 503 with the reason
//	/status   the node's Status as JSON
//	/metrics  Prometheus metrics: the node's (Collector), Go's and the process's
//	/         the live federation page, drawn from /federation (FederationHandler)
func (n *Node) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", FederationHandler(n.View))
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// A few scrapes at a time: each reads the data plane's counters (over
	// HAProxy's runtime socket, under the lock plans are applied with).
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 2}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, reason := n.Ready(); !ok {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st := n.Status(ctx)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	return mux
}
