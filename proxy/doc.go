// Package proxy is the data-plane contract: what every ProxyDriver that an
// agent runs (a DataPlane) does with a request, and the words they share.
// Implementations live in their own packages - proxy/embedded (an
// in-process Go proxy) and proxy/haproxy (a real HAProxy process) - and
// register themselves by name (Register); binaries and tests open them with
// Open. proxy/proxytest is the conformance suite every data plane passes.
//
// A data plane has two listeners.
//
// The user listener takes OpenFaaS-style requests, /function/<name>[/...]
// (FunctionName, read from the path as it came: /function%2fother/echo or
// /function/ech%6f name no function), so existing clients work unchanged.
// A function missing from the plan answers 404; a path with a "." or ".." segment, however
// encoded, answers 400 on both listeners (HasDotSegment): a platform that
// cleans paths would run another one. It removes the hop markers (HeaderHop,
// HeaderFrom) a user may have set. A request is executed locally while the
// function's locally admitted rate is under the plan's Limit and all local
// executions under its Capacity. Beyond that it is forwarded to a peer
// chosen by the pick rule (Pick: smooth weighted round robin among the
// plan's peers whose Cap is not spent), with HeaderHop set to 1 and
// HeaderFrom to the node. A peer that refuses (StatusRefused) or cannot be
// reached (the connection or TLS handshake fails: nothing was sent) is
// skipped and another tried. A request is executed at most once: after it
// was sent, a reset or a timeout is answered 502 or 504, never retried.
// When a peer refused, failed or is ejected, the other peers are tried
// beyond their Cap too: they hold their own capacity. Peers whose forwards
// fail or are refused several times in a row are ejected (Outliers) for a
// back-off and probed back in; a data plane reports them
// (dfaas.PeerHealth), and the Agent plans without them. When no peer takes
// it the request runs locally if Capacity is left beyond the Limit;
// otherwise the user gets 503 with Retry-After.
//
// The peer listener takes only forwarded requests (HeaderHop set, else 400)
// and executes them locally within the Capacity, never forwarding them
// again; beyond it they are refused: StatusRefused with Retry-After and
// HeaderRefused RefusedCapacity. A function it does not serve is refused
// with RefusedUnknown. A platform's 429 is passed on, never retried: it
// counts as Refused on the peer and as Rejected where the user arrived,
// locally executed or forwarded (see StatusRefused).
//
// The Capacity is measured alike on every data plane (AdmissionWindow):
// up to a second of it at once, and no more than that over any second,
// HAProxy with the sliding rate of its stick tables, the embedded proxy
// with a Window computed the same way, so a helper takes a burst of
// forwards up to a second's worth. The Limit differs only in bursts:
// HAProxy measures it the same way, so a burst runs locally up to a
// second's worth of it at once; the embedded proxy spreads it with a token
// bucket a Burst deep (100 ms by default), so an overloaded node runs its
// share interleaved with its forwards. The pick among peers (Pick,
// dfaas.lua) is the same token-bucket rule on both, each peer's Cap a
// Burst deep so that a sender spreads its forwards, held to golden vectors
// (proxytest.PickVectors).
//
// Counts (Counter) are monotonic per function: arrivals, executions by
// origin, forwards per peer, rejections, refusals, retries, requests in
// flight and a latency histogram of user requests, for a Monitor.
package proxy
