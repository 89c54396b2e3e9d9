// Package embedded is the embedded data plane: an in-process Go HTTP proxy
// per node, with the request semantics of package proxy. It is registered
// as the data plane "embedded".
//
// The user listener takes OpenFaaS-style requests, /function/<name>[/...],
// so existing clients work unchanged. A request is executed locally while the
// function's local rate is under the plan's Limit (and the node's Capacity);
// beyond it the request goes to a peer chosen by the pick rule (proxy.Pick).
// A peer that refuses or that the request provably did not reach is
// skipped and the next one tried (then beyond their Cap); after the request
// was sent, a failure is answered 502 or 504 (at most once). Peers that
// keep failing are ejected (proxy.Outliers). Only when no peer and no local
// capacity can take the request does the user get 503 with Retry-After.
//
// The peer listener takes requests forwarded by other nodes. They carry a
// hop marker and are executed locally within the node's Capacity, never
// forwarded again; over capacity they are refused with proxy.StatusRefused
// (425) and the X-Dfaas-Refused header, which tells the forwarder to try
// another peer. With TLS (proxy.TLS) it admits current members only.
// Hop markers on the user listener are stripped: a user cannot bypass
// admission by claiming to be a peer.
//
// Both listeners are net/http servers. Forwards leave over kept-alive
// connections (one pool per peer with TLS), each exchange on its request's
// goroutine: net/http writes the request and parses the answer, without
// http.Transport's read and write loops, which cost a third of the CPU of
// a hop (see internal/h1pool and examples/hopbench).
package embedded
