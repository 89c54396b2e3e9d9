// Package faas holds the FaaS platform side of a node: Runtime, an embedded
// platform that executes Go handlers in-process at a configured capacity,
// and Monitor, the default dfaas.Monitor, which turns a data plane's
// counters and a platform's capacities into per-function rates.
package faas
