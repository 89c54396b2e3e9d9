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
//     the plan's rate cap, from the routes map), and the function's route
//     backend sends the request there. Route backends (slots, made at
//     start: Config.RouteSlots) hold the peers of one route each, shared
//     by the functions of the same peers, and the slots map names each
//     function's; a function with none goes to the forwarding backend of
//     every peer. A function is map entries only. With every cap spent,
//     the request runs locally if the node has capacity beyond the limit,
//     else it gets 503 with Retry-After. A peer that refuses (425,
//     proxy.StatusRefused) or cannot be reached (the connection or TLS
//     handshake failed) is retried on another server of the route backend
//     (retry-on conn-failure 425, redispatch: the route's next peer in
//     turn); nothing else is retried: a request runs at most once. A
//     peer's health is checked once, on its server in the forwarding
//     backend, not once per function; five connection errors in a row on
//     any of its servers mark that server down (observe layer4), and
//     Driver.Ejected takes the peer out of the plans, so out of every
//     route. Hop markers sent by users are removed.
//   - The peer frontend takes forwarded requests (they carry a hop marker,
//     or get 400), serves them locally within the capacity map, and refuses
//     the rest with 425 and X-Dfaas-Refused. It never forwards. With TLS
//     (proxy.TLS) it admits only current members' certificates.
//
// Every Apply changes only runtime state: map entries (set/add map),
// route backends' servers added and deleted, and
// servers added to or deleted from the forwarding backend (a peer leaving
// every plan drains first: its server goes into maintenance and is
// deleted once its requests in flight have finished; Driver.AbortForwards
// cuts those of a peer the overlay declared down, answered 502). Functions
// and peers coming and going never reload HAProxy. Only a members list too
// large for the runtime API's buffer takes a seamless master-worker reload
// (Driver.Reloads counts them): the files carry the plan to the new worker
// and a peers section (the local peer, over a unix socket) carries the
// stick tables, so rates and counts go on. HAProxy teaches the tables only
// from a worker older than its resync period (5 s); for a younger one the
// driver carries the counts.
//
// Limits and capacities are whole requests per second (HAProxy's rate
// counters count requests); caps keep their fractions. HAProxy must be
// built with Lua.
//
// The Monitor's counters (Counts) come from the stick tables; the latency
// of user requests, the forwards answered 5xx and the retries from
// HAProxy's request log, which the driver receives on a unix datagram
// socket. The same log fires the driver's Trigger when a function first
// goes over its local limit under a plan, as the embedded proxy does.
package haproxy
