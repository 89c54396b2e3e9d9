// Package dfaas is a library for Decentralized Function-as-a-Service on
// federated edge nodes.
//
// Every edge node runs an identical Agent beside its FaaS platform and its
// proxy. Agents form a peer-to-peer overlay, measure the node's load per
// function, forecast the next interval's demand, advertise their spare
// capacity (slack) or excess (deficit), and reconfigure the node's proxy so
// that an overloaded node transparently forwards its excess requests to the
// peers that have room.
//
// # Packages
//
// This package holds the five interfaces an Agent composes, the values they
// exchange and the named errors; it imports none of its subpackages.
//
//   - overlay: Overlay implementations. Libp2p (Kademlia DHT rendezvous,
//     adverts on streams from each node's nearest peers, probes) and an
//     in-memory Network.
//   - balance: Balancer strategies, pure functions from (State, adverts) to a
//     Plan. Proportional is the DFaaS paper's algorithm, Resilient ours,
//     Nearest (the default) Resilient with nearer peers first; Recalc,
//     Static, Random and AllLocal are baselines.
//   - forecast: Forecaster implementations: LastValue, EWMA, Holt,
//     HoltWinters.
//   - proxy: the data-plane contract (request semantics, headers, the pick
//     rule, counters, the DataPlane interface and its registry by name);
//     proxy/embedded is an in-process HTTP proxy, proxy/haproxy drives a
//     real HAProxy through its runtime API, proxy/proxytest holds the
//     contract's golden vectors.
//   - faas: the default Monitor, and Runtime, which executes Go handlers
//     in-process at a configured capacity. faas/openfaas is the OpenFaaS
//     backend (go-sdk); faas/local an OpenFaaS-compatible provider without
//     containers, the embedded default platform.
//   - node: builds a running node (overlay, platform, data plane, Monitor,
//     Agent) from a Config that names its parts.
//   - examples: the reference-scenario demo, a single-node agent and the
//     strategy comparison, which runs the Agent in a deterministic simulator.
//
// # One request
//
// A user calls the proxy's user listener at /function/<name>, the OpenFaaS
// path. While the function's local rate is under the plan's Limit, the
// request is executed on this node. Beyond it, the proxy picks a peer by
// weight among those whose rate cap is not exhausted and sends the request to
// that peer's peer listener with a hop marker; the peer executes it within
// its capacity or refuses it, and a refused or unreachable peer is skipped
// for the next one before the user sees anything. A forwarded request is
// never forwarded again. Only when no peer and no local capacity can take
// the request does the user get 503 with Retry-After.
//
// # One control tick
//
// Every Config.Interval (1 s by default), and at once when a function first
// crosses its local limit or a peer leaves (see Trigger), the Agent runs
// Monitor.Sample, then Forecaster.Observe and Predict, builds this node's
// State (capacity and predicted demand per function), publishes it as an
// Advert with a fresh sequence number and a time-to-live, asks the Balancer
// for a Plan over the peers' live adverts, and hands the Plan to
// ProxyDriver.Apply. A peer whose adverts expire, or whose connection drops,
// leaves every plan at the next tick.
package dfaas
