package proxy

import (
	"net/http"
	"runtime/debug"
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
	// HeaderRefused on a peer listener's refusal (StatusRefused) says why:
	// RefusedCapacity or RefusedUnknown.
	HeaderRefused = "X-Dfaas-Refused"
)

// Header names an OpenFaaS gateway sets, which both data planes set the
// same way on their user listener, so that clients, functions and logs
// that read them see the same through dfaas as through a gateway alone.
const (
	// HeaderCallID identifies a call. A user listener keeps a caller's;
	// without one it makes one (a UUID), sends it on with the request (to
	// the local platform or a peer, whose platform keeps it) and answers
	// with it, as the gateway does.
	HeaderCallID = "X-Call-Id"
	// HeaderStartTime is when the call reached the user listener, in
	// nanoseconds since the Unix epoch: answered on every response of the
	// user listener, in place of the platform's (the gateway behind a node
	// sets its own, later).
	HeaderStartTime = "X-Start-Time"
	// HeaderNode names the node that ran the call (its NodeID), on every
	// answer a platform gave: the node itself, or the peer a call was
	// forwarded to. Absent from the data plane's own answers (404, 503).
	HeaderNode = "X-Dfaas-Node"
	// HeaderRejected marks a user listener's own answer to a call that ran
	// nowhere: RefusedCapacity on its 503 (no capacity for the function in
	// the federation now), RefusedUnknown on its 404 (no plan names the
	// function). A platform's or peer's answer never carries it (the data
	// planes remove it), so a client may send such a call again without
	// running it twice (package async does).
	HeaderRejected = "X-Dfaas-Rejected"
	// HeaderServedBy names the software that answered: the gateway's
	// openfaas-ce/<version> on what a gateway answered, ServedBy on a
	// user listener's own answers that stand in for the gateway's (an
	// asynchronous call's 202).
	HeaderServedBy = "X-Served-By"
)

// ServedBy is dfaas's HeaderServedBy: dfaas/ and the version of the module
// the binary was built with ("(devel)" when built in its own work tree).
var ServedBy = "dfaas/" + moduleVersion()

func moduleVersion() string {
	const module = "github.com/dfaas-go/dfaas"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if bi.Main.Path == module {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			return d.Version
		}
	}
	return "unknown"
}

// StatusRefused is the status of a peer listener's refusal: the peer did
// not execute the request, so the forwarder may try another peer. It is
// 425 (Too Early), a status functions do not answer and one HAProxy's
// retry-on can name; a peer listener that gets 425 from its platform
// answers 502 instead, so that 425 between peers always means "not
// executed". A platform's 429 (Too Many Requests) is not a refusal: OpenFaaS
// answers it when a function's max_inflight is reached, but a function may
// answer it too, after doing work, and the two cannot be told apart. It
// goes back to the user, never retried (at most once), and counts as
// Rejected where the user arrived and as Refused on the peer that ran it
// (or did not). No other answer is retried: once a request has been sent, a
// reset, a timeout or any other status goes back to the user (at most once).
const StatusRefused = http.StatusTooEarly

// hopByHop are the headers that apply to one connection only (RFC 9110 7.6.1).
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// RemoveHopByHop deletes from h the headers that apply to one connection
// only: the standard ones and those its Connection header names. A proxy
// calls it on what it passes on, both ways.
func RemoveHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			delete(h, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
}

// Values of HeaderRefused.
const (
	// RefusedCapacity: the peer has no capacity left for the function now
	// (with Retry-After).
	RefusedCapacity = "capacity"
	// RefusedUnknown: the peer does not serve the function.
	RefusedUnknown = "unknown"
	// RefusedMember: the forwarder is no member of the peer's federation
	// now (removed from the membership, or out of the overlay); the peer
	// closes the connection after this answer.
	RefusedMember = "member"
)

// FunctionName returns the function an OpenFaaS-style path names:
// /function/<name> or /function/<name>/<rest>, where name is a DNS-1123
// label (dfaas.ValidateFunctionName). A data plane passes the path as it
// came (url.URL.RawPath when set, else Path): /function%2fother/x and
// /function/ech%6f name no function.
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

// HasDotSegment reports whether path (decoded, as in url.URL.Path) has a
// "." or ".." segment. Data planes refuse such a request (400) on both
// ports: a platform that cleans it (OpenFaaS's gateway does) would run
// another path than the /function/<name> the node admitted, counted and
// forwarded; /function/f/..%2f..%2fsystem%2ffunctions would reach the
// gateway's API.
func HasDotSegment(path string) bool {
	if !strings.Contains(path, "/.") {
		return false
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
