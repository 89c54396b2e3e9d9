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
//     otherwise it goes to the function's forwarding backend, whose servers
//     are the plan's peers with the plan's weights. A peer that refuses (503)
//     or cannot be reached is retried on another server (retry-on,
//     redispatch). Hop markers sent by users are removed.
//   - The peer frontend takes forwarded requests (they carry a hop marker,
//     or get 400), serves them locally within the capacity map, and refuses
//     the rest with 503 and X-Dfaas-Refused. It never forwards.
//
// Every Apply changes only runtime state: map entries (set/add map),
// server weights, and servers added to or deleted from the forwarding
// backends. Rates are whole requests per second: HAProxy's rate counters
// count requests. Per-peer caps are enforced by the peers themselves, which
// refuse beyond their capacity.
package haproxy
