package proxy

import (
	"strings"

	"github.com/dfaas-go/dfaas"
)

// Header names of the federation protocol between data planes. Every data
// plane sets and reads them the same way, so nodes on different data planes
// forward to each other.
const (
	// HeaderHop marks a forwarded request with its hop count (always 1: a
	// forwarded request is never forwarded again). A peer listener requires
	// it; a user listener removes it.
	HeaderHop = "X-Dfaas-Hop"
	// HeaderFrom names the node that forwarded a request. A user listener
	// removes it.
	HeaderFrom = "X-Dfaas-From"
	// HeaderRefused on a peer listener's answer says the peer did not
	// execute the request, so the forwarder may try another peer. Its value
	// is the reason: RefusedCapacity or RefusedUnknown.
	HeaderRefused = "X-Dfaas-Refused"
)

// Values of HeaderRefused.
const (
	// RefusedCapacity: the peer has no capacity left for the function now
	// (503, with Retry-After).
	RefusedCapacity = "capacity"
	// RefusedUnknown: the peer does not serve the function (404).
	RefusedUnknown = "unknown"
)

// FunctionName returns the function an OpenFaaS-style path names:
// /function/<name> or /function/<name>/<rest>, where name is a DNS-1123
// label (dfaas.ValidateFunctionName).
func FunctionName(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/function/")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	if dfaas.ValidateFunctionName(name) != nil {
		return "", false
	}
	return name, true
}
