// Package haproxy is the production ProxyDriver: a real HAProxy process (2.6
// or later, master-worker mode) that follows the agent's plans through its
// runtime API, with no reload for routine changes.
//
// The driver writes haproxy.cfg once, from a typed generator, with the same
// request semantics as the embedded proxy:
//
//   - The user frontend takes /function/<name>. A function missing from the
//     limits map answers 404. A request is served locally while the
//     function's locally admitted rate (a stick table of the local requests,
//     1 s sliding window) is under the limit in the limits map, and the
//     node's total (local plus peer requests) under the capacity map;
//     otherwise dfaas.lua (Script) picks a peer by smooth weighted round
//     robin among those whose cap is not spent (a token bucket per peer at
//     the plan's rate cap, from the routes map), and the function's
//     forwarding backend sends the request there. With every cap spent,
//     the request runs locally if the node has capacity beyond the limit,
//     else it gets 503 with Retry-After. A peer that refuses (425,
//     proxy.StatusRefused) or cannot be reached (the connection or TLS
//     handshake failed) is retried on another server (retry-on conn-failure
//     425, redispatch); nothing else is retried: a request runs at most
//     once. Five connection errors in a row mark a server down (observe
//     layer4); Driver.Ejected reports it. Hop markers sent by users are
//     removed.
//   - The peer frontend takes forwarded requests (they carry a hop marker,
//     or get 400), serves them locally within the capacity map, and refuses
//     the rest with 425 and X-Dfaas-Refused. It never forwards. With TLS
//     (proxy.TLS) it admits only current members' certificates.
//
// A function new to the configuration takes a seamless master-worker
// reload: the files carry the plan to the new worker and a peers section
// (the local peer, over a unix socket) carries the stick tables, so rates and
// counts go on. HAProxy teaches the tables only from a worker older than its
// resync period (5 s); for a younger one the driver carries the counts.
//
// Every Apply changes only runtime state: map entries (set/add map),
// server weights, and servers added to or deleted from the forwarding
// backends (a peer leaving the plan drains first: its server goes into
// maintenance and is deleted once its requests in flight have finished;
// Driver.AbortForwards cuts those of a peer the overlay declared down,
// answered 502). Limits and capacities are whole requests per second (HAProxy's
// rate counters count requests); caps keep their fractions. HAProxy must
// be built with Lua.
//
// The Monitor's counters (Counts) come from the stick tables and the
// forwarding backends' statistics; the latency of user requests from
// HAProxy's request log, which the driver receives on a unix datagram
// socket. The same log fires the driver's Trigger when a function first
// goes over its local limit under a plan, as the embedded proxy does.
package haproxy
