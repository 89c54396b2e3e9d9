// Package balance holds Balancer strategies. Each is a pure function from
// this node's State and its peers' live adverts to a Plan: no I/O, no clock,
// no hidden state, so the same strategy runs in unit tests, in a simulator
// and in a live agent.
package balance
