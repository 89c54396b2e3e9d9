package dfaas

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// NodeID identifies an agent on the overlay. The libp2p overlay uses the
// string form of the host's peer ID.
type NodeID string

// Rate is a request rate in requests per second.
type Rate float64

// MaxRate is the largest rate a federation member may advertise: a
// capacity or demand above it is refused as absurd, so that no advert can
// turn a balancer's sums into infinities.
const MaxRate Rate = 1e9

// valid reports whether r is a finite, non-negative rate.
func (r Rate) valid() bool { return r >= 0 && !math.IsInf(float64(r), 0) && !math.IsNaN(float64(r)) }

// inRange reports whether r is a valid rate no larger than MaxRate.
func (r Rate) inRange() bool { return r.valid() && r <= MaxRate }

// Latency holds latency quantiles over a sample window. Zero means no data.
type Latency struct {
	P50 time.Duration `json:"p50_ns"`
	P95 time.Duration `json:"p95_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// FunctionSample is what a Monitor observed for one function over a window.
type FunctionSample struct {
	// Capacity is the rate the node can execute (r_max): measured from its
	// local executions, within what the FaaS platform declares, or as the
	// platform declares it.
	Capacity Rate
	// Arrivals is the rate of user requests that reached this node (r_loc).
	Arrivals Rate
	// ServedLocal is the rate of user requests executed on this node.
	ServedLocal Rate
	// ForwardedOut is the rate of user requests forwarded to peers.
	ForwardedOut Rate
	// ReceivedIn is the rate of requests forwarded by peers and executed here.
	ReceivedIn Rate
	// Rejected is the rate of user requests answered 503 or lost.
	Rejected Rate
	// InFlight is the number of requests being executed at sample time.
	InFlight int
	// Latency of user requests, as seen by this node's proxy.
	Latency Latency
	// Executions is the latency of the function's local executions, of
	// every origin, from the data plane's hand-over to the platform to the
	// end of its answer.
	Executions Latency
	// MaxRTT is the farthest, in round-trip time, the function's requests
	// may be forwarded, from the platform (label dfaas.maxrtt); zero if it
	// sets none.
	MaxRTT time.Duration
	// Forwarded splits ForwardedOut by the peer that answered; nil when
	// nothing was forwarded.
	Forwarded map[NodeID]Rate
}

// Sample is one Monitor observation of every function on the node.
type Sample struct {
	Time      time.Time
	Window    time.Duration
	Functions map[string]FunctionSample
}

// FunctionState is the local view of one function that a Balancer plans on.
type FunctionState struct {
	Capacity Rate `json:"capacity"` // r_max: what this node can execute
	Demand   Rate `json:"demand"`   // r_loc: predicted user arrivals at this node
}

// Slack is the spare capacity r_ext = max(0, r_max - r_loc).
func (f FunctionState) Slack() Rate { return max(0, f.Capacity-f.Demand) }

// Deficit is the excess r_fwd = max(0, r_loc - r_max).
func (f FunctionState) Deficit() Rate { return max(0, f.Demand-f.Capacity) }

// Overloaded reports whether predicted demand exceeds capacity.
func (f FunctionState) Overloaded() bool { return f.Demand > f.Capacity }

// State is this node's view of itself at one control tick.
type State struct {
	Node      NodeID                   `json:"node"`
	Time      time.Time                `json:"time"`
	Functions map[string]FunctionState `json:"functions"`
	// RTT is the round-trip time to each peer as this node measured it (an
	// Overlay that is an RTTMeter); a peer missing has none measured yet.
	// It is not advertised.
	RTT map[NodeID]time.Duration `json:"rtt_ns,omitempty"`
	// Forwards is, per function and peer, what this node measured of its
	// forwards (a ProxyDriver that is a ForwardMeter); missing: nothing
	// measured lately. It is not advertised.
	Forwards map[string]map[NodeID]ForwardHealth `json:"forwards,omitempty"`
	// Clean is, per peer, the share of this node's latest probes to it
	// answered without a retransmission's delay (an Overlay that is a
	// LinkMeter): below 1 on a link that loses packets, before any forward
	// crossed it. A peer missing has too few probes yet. It is not
	// advertised.
	Clean map[NodeID]float64 `json:"clean,omitempty"`
	// MaxRTT is, per function, the farthest in round-trip time its
	// requests may be forwarded (FunctionSample.MaxRTT); a function missing
	// has the Balancer's default. It is not advertised.
	MaxRTT map[string]time.Duration `json:"max_rtt_ns,omitempty"`
}

// Advert is what a node tells its peers at every control tick.
type Advert struct {
	Node NodeID
	// Name is the node's name for people (a host name, "edge-rome-1"):
	// shown beside its id in operators' views. It may be empty, and it is
	// not unique: nothing but Node identifies a node. See ValidateNodeName.
	Name string
	// Seq increases with every advert of a node, also across restarts; a
	// receiver ignores an advert whose Seq is not above the last one it took.
	Seq uint64
	// TTL is how long after receipt the advert stays valid.
	TTL time.Duration
	// Addr is the host:port of the node's proxy peer listener.
	Addr string
	// Functions is the node's state per function.
	Functions map[string]FunctionState
	// Traffic is what the node's data plane did per function over its
	// last window, for operators' views of the federation; balancers do not
	// plan on it. A function may be missing.
	Traffic map[string]Traffic
}

// Traffic is what a node's data plane did for one function over a window,
// in requests per second.
type Traffic struct {
	// Served is the rate of requests executed on the node: its own users'
	// and those peers forwarded to it.
	Served Rate
	// Rejected is the rate of the node's user requests that no node
	// executed.
	Rejected Rate
	// Forwarded is, per peer, the rate of the node's user requests it
	// executed; nil when none was forwarded.
	Forwarded map[NodeID]Rate
}

// Bounds an Advert must respect to be accepted.
const (
	MaxAdvertFunctions = 1024
	// MaxAdvertFlows bounds the flows an advert's Traffic lists, over all
	// its functions.
	MaxAdvertFlows = 64
	MaxAdvertTTL   = 10 * time.Minute
	maxNodeIDLen   = 128
	maxAddrLen     = 256
)

// Validate checks the advert's fields and bounds.
func (a Advert) Validate() error {
	switch {
	case ValidateNodeID(a.Node) != nil:
		return fmt.Errorf("%w: %w", ErrInvalidAdvert, ValidateNodeID(a.Node))
	case a.TTL < time.Millisecond:
		return fmt.Errorf("%w: ttl %v under a millisecond", ErrInvalidAdvert, a.TTL)
	case a.TTL <= 0 || a.TTL > MaxAdvertTTL:
		return fmt.Errorf("%w: ttl %v out of (0, %v]", ErrInvalidAdvert, a.TTL, MaxAdvertTTL)
	case ValidateAddr(a.Addr) != nil:
		return fmt.Errorf("%w: %w", ErrInvalidAdvert, ValidateAddr(a.Addr))
	case ValidateNodeName(a.Name) != nil:
		return fmt.Errorf("%w: %w", ErrInvalidAdvert, ValidateNodeName(a.Name))
	case len(a.Functions) > MaxAdvertFunctions:
		return fmt.Errorf("%w: %d functions", ErrInvalidAdvert, len(a.Functions))
	}
	for name, f := range a.Functions {
		if err := ValidateFunctionName(name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidAdvert, err)
		}
		if !f.Capacity.valid() || !f.Demand.valid() || f.Capacity > MaxRate || f.Demand > MaxRate {
			return fmt.Errorf("%w: function %s: rates %v/%v outside [0, %v]", ErrInvalidAdvert, name, f.Capacity, f.Demand, MaxRate)
		}
	}
	if len(a.Traffic) > MaxAdvertFunctions {
		return fmt.Errorf("%w: traffic of %d functions", ErrInvalidAdvert, len(a.Traffic))
	}
	flows := 0
	for name, t := range a.Traffic {
		if err := ValidateFunctionName(name); err != nil {
			return fmt.Errorf("%w: traffic: %w", ErrInvalidAdvert, err)
		}
		if !t.Served.inRange() || !t.Rejected.inRange() {
			return fmt.Errorf("%w: traffic of %s: rates %v/%v outside [0, %v]", ErrInvalidAdvert, name, t.Served, t.Rejected, MaxRate)
		}
		flows += len(t.Forwarded)
		if flows > MaxAdvertFlows {
			return fmt.Errorf("%w: traffic: over %d flows", ErrInvalidAdvert, MaxAdvertFlows)
		}
		for peer, r := range t.Forwarded {
			if err := ValidateNodeID(peer); err != nil {
				return fmt.Errorf("%w: traffic of %s: flow to %w", ErrInvalidAdvert, name, err)
			}
			if !r.inRange() {
				return fmt.Errorf("%w: traffic of %s: flow at %v", ErrInvalidAdvert, name, r)
			}
		}
	}
	return nil
}

// ValidateAddr checks that addr is host:port and nothing more: the host an
// IP address (IPv6 in brackets, no zone) or a DNS name, the port a decimal
// number from 1 to 65535. Nothing else - no path, query, fragment, user
// info, whitespace or control character - can pass, so an address that
// passes is safe to place in a URL or a proxy's configuration.
func ValidateAddr(addr string) error {
	if addr == "" || len(addr) > maxAddrLen {
		return fmt.Errorf("%w: address of length %d", ErrInvalidAddr, len(addr))
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalidAddr, addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || port[0] == '0' {
		return fmt.Errorf("%w: %q: port must be 1-65535", ErrInvalidAddr, addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return fmt.Errorf("%w: %q: zoned address", ErrInvalidAddr, addr)
		}
		if ip.IsUnspecified() {
			return fmt.Errorf("%w: %q: unspecified address, which nobody can reach", ErrInvalidAddr, addr)
		}
		return nil
	}
	if !validDNSName(host) {
		return fmt.Errorf("%w: %q: host is neither an IP address nor a DNS name", ErrInvalidAddr, addr)
	}
	return nil
}

// validDNSName reports whether host is a DNS name: dot-separated labels of
// 1 to 63 letters, digits and inner hyphens, at most 253 bytes in all.
func validDNSName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if label == 0 || host[i-1] == '-' {
				return false
			}
			label = 0
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && label > 0:
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return label > 0 && host[len(host)-1] != '-'
}

// ValidateFunctionName checks that name is a DNS-1123 label, as OpenFaaS
// requires: 1 to 63 lowercase letters, digits and '-', starting and ending
// with a letter or digit.
func ValidateFunctionName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("%w: %q has length %d", ErrInvalidName, name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(name)-1) {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return nil
}

// ValidateNodeID checks that id is 1 to 128 bytes of printable ASCII
// without spaces, as the string form of a libp2p peer id is.
func ValidateNodeID(id NodeID) error {
	if len(id) == 0 || len(id) > maxNodeIDLen {
		return fmt.Errorf("node id of length %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("node id %q: byte %#x", id, id[i])
		}
	}
	return nil
}

// MaxNodeNameLen bounds a node's name.
const MaxNodeNameLen = 63

// ValidateNodeName checks a node's name: empty, or at most MaxNodeNameLen
// letters, digits, '.', '-' and '_' (a host name fits). Names travel in
// adverts and end up in logs, metrics labels and web pages, so nothing
// that could mean something there (spaces, quotes, markup, control
// characters) passes.
func ValidateNodeName(name string) error {
	if len(name) > MaxNodeNameLen {
		return fmt.Errorf("node name of %d bytes, over %d", len(name), MaxNodeNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("node name %q: %q is not a letter, digit, '.', '-' or '_'", name, c)
		}
	}
	return nil
}

// Share is a peer's part of a function's forwarded traffic.
type Share struct {
	Node NodeID `json:"node"`
	Addr string `json:"addr"` // host:port of the peer's proxy peer listener
	// Weight is the relative part of forwarded requests this peer receives.
	Weight float64 `json:"weight"`
	// Cap is the most this node may send the peer, in req/s. Zero means the
	// peer takes nothing.
	//
	// Data planes skip a share whose Weight or Cap is not a finite positive
	// number, or whose Addr is not a plain host:port (proxy.Usable).
	Cap Rate `json:"cap"`
}

// FunctionPlan is how one function is served.
type FunctionPlan struct {
	// Limit is the rate of user requests admitted for local execution
	// first. Beyond it they go to Peers; those no peer takes still run
	// locally while Capacity has room (so Limit 0 forwards first, it does
	// not forbid local execution), and are rejected after that.
	Limit Rate `json:"limit"`
	// Capacity is the rate of all local executions (user requests plus
	// requests from peers) this node admits.
	Capacity Rate `json:"capacity"`
	// Peers receive user requests beyond Limit, chosen by Weight among those
	// whose Cap is not exhausted, in order of preference for retries.
	Peers []Share `json:"peers"`
}

// Plan is a Balancer's decision for every function the federation serves.
type Plan struct {
	// Time is when the plan was made: the Agent sets it to the tick's time
	// (a Balancer need not). Nothing routes by it; it is for status and logs.
	Time      time.Time               `json:"time"`
	Functions map[string]FunctionPlan `json:"functions"`
}
