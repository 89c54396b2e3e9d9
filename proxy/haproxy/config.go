package haproxy

import (
	_ "embed"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Layout is what the generated configuration refers to.
type Layout struct {
	// Node is this node's id, sent to peers in X-Dfaas-From.
	Node dfaas.NodeID
	// UserAddr, PeerAddr and LocalAddr are host:port: the user listener,
	// the peer listener, and the FaaS platform (the gateway).
	UserAddr, PeerAddr, LocalAddr string
	// Socket is the runtime API's unix socket; LimitsMap, CapacityMap,
	// RoutesMap and SlotsMap are the map files the configuration loads; Lua
	// is the script that picks peers (dfaas.lua, see Script); PeersSocket is
	// where a reloaded worker takes the stick tables over from the old one.
	Socket, LimitsMap, CapacityMap, RoutesMap, SlotsMap, Lua, PeersSocket string
	// LogSocket, if set, is a unix datagram socket that receives a line per
	// request of either listener (see logFormat).
	LogSocket string
	// Namespace, if set, is the functions' namespace on the platform:
	// requests reach it as /function/<name>.<namespace> (OpenFaaS's path for
	// a namespace), else as /function/<name>.
	Namespace string
	// Servers are the peers the forwarding backend starts with (a reload
	// keeps the ones the runtime API added). There is one forwarding
	// backend, with a server per peer, whatever the functions: a function
	// is a map entry, so functions come and go through the runtime API
	// alone, and a peer's health is checked once, not once per function.
	Servers []Server
	// MaxPeers bounds the servers of the forwarding backend.
	MaxPeers int
	// Async, if set, is where the user listener sends /async-function/...
	// (host:port of the node's asynchronous calls); else such paths are
	// answered 404.
	Async string
	// RouteSlots is how many route backends the configuration holds
	// (route0, route1, ...): a function's forwards go to the one SlotsMap
	// names, whose servers are the peers of its route (shared by the
	// functions of the same peers), so that a retry stays on the route.
	// A function the map does not name goes to the forwarding backend.
	// Slots holds the route backends' servers at start (a reload keeps
	// the ones the runtime API added).
	RouteSlots int
	Slots      [][]Server
	// Timeout bounds a request to the platform or a peer.
	Timeout time.Duration
	// MaxBody is the largest declared request body either listener takes
	// (413 past it); BodyTimeout bounds the wait for a body as far as the
	// request buffer holds it (408 past it). See Config: 0 means its
	// default.
	MaxBody     int64
	BodyTimeout time.Duration
	// TLS, if set, is the federation's mutual TLS bound to node identity
	// (see proxy.Identity): the peer listener accepts only clients whose
	// certificate verifies against a current member's anchor, and each
	// forward verifies its peer against that peer's anchor only.
	TLS *TLS
	// Trace adds each request's trace context (a valid traceparent only),
	// the server that answered it and, on the peer listener, the node it
	// came from to the request log (see traceFormat).
	Trace bool
	// testClock, set only by tests, names a request header whose value
	// (microseconds) dfaas.lua takes as the arrival time.
	testClock string
}

//go:embed dfaas.lua
var script []byte

// Script returns dfaas.lua, the Lua program that a Layout's Lua names: the
// weighted choice among peers with per-peer caps.
func Script() []byte { return slices.Clone(script) }

// TLS holds the files of the federation's mutual TLS.
type TLS struct {
	// CertFile is this node's certificate and its private key, in one PEM
	// file (proxy.Identity.PEM).
	CertFile string
	// MembersFile holds the anchors of the current members (and this
	// node's), PEM: the peer listener's CA file.
	MembersFile string
	// MembersMap names the current members (and this node): every request
	// on the peer listener is refused (425, proxy.RefusedMember) and its
	// connection closed unless its client certificate's anchor is one of
	// them, so that a member removed loses the connections it kept alive
	// at its next request. Optional (Render leaves the check out without
	// it).
	MembersMap string
	// AnchorDir holds each peer server's anchor as <server name>.pem: the
	// server's CA file.
	AnchorDir string
}

// AnchorFile is the CA file of the server named server.
func (t TLS) AnchorFile(server string) string { return filepath.Join(t.AnchorDir, server+".pem") }

// logFormat is the request log's line, from both listeners: the listener
// ("user" or "peer"), the function, microseconds from the request's headers to the end of its
// answer, "1" if a user request was admitted within the local limit, how it
// ran ("u" locally within the limit, "s" locally beyond it, "p" a peer's
// request run here; else not run here), the status answered, the
// function's local executions in progress as it started, itself included,
// and its local executions begun by then and by the end (st_total's count:
// the same if none began meanwhile), the server that answered (a peer's
// server name, the platform's, or <NOSRV>) and its response time in ms
// (%Tr: from the connection to its response headers; -1 if none came), the
// peer dfaas.lua picked for a forward, the attempts retried (%rc: "+" before
// it if one went to another server) and the ms from the request's headers
// to its final attempt (%Tw: the earlier attempts' time, a connection that
// never came up included; HAProxy starts it after the body's wait). A
// variable not set prints as "-".
const logFormat = "%f %[var(txn.fn)] %[date(0,us),sub(txn.t0)] %[var(txn.local)] %[var(txn.exec)] %ST %[var(txn.cur)] %[var(txn.began)] %[sc1_http_req_cnt] %s %Tr %[var(txn.peer)] %rc %Tw"

// traceFormat follows logFormat when a Layout traces: the request's
// traceparent if it is a valid one (anything else would let a caller
// lengthen or break the line) and the node a peer's request came from.
const traceFormat = " %[var(txn.tp)] %[var(txn.from)]"

// Only valid values go into the log (see traceFormat): version 00, and a
// node id as ValidateNodeID allows it.
const (
	traceparentRE = `^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`
	nodeIDRE      = `^[!-~]{1,128}$`
)

// logFormatOf is the request log's format of l.
func (l Layout) logFormatOf() string {
	if l.Trace {
		return logFormat + traceFormat
	}
	return logFormat
}

// serverHealth is the forwarding backend's servers' health: the peer's
// check, a TCP connection every 10 s while up (one server per peer: the
// cost grows with peers, not functions), and every 2 s while down; and
// outlier detection: five connection errors in a row observed on forwards
// (refused, reset, TLS handshake failed) mark it down at once, and a check
// 2 s later (fastinter) brings it back up once it accepts connections
// again.
const serverHealth = " check inter 10s fastinter 2s downinter 2s fall 3 rise 1" + observed

// slotHealth is a route backend's servers' health: outlier detection on
// its forwards as serverHealth's, and a check only to bring a server
// marked down back up (HAProxy observes only a server with a check; an
// hourly one costs nothing). A peer's state is the forwarding backend's
// server's, checked every 10 s: Ejected takes a peer any of its servers
// marked down out of the plans, and so out of every route.
const slotHealth = " check inter 1h fastinter 2s downinter 2s fall 3 rise 1" + observed

const observed = " observe layer4 error-limit 5 on-error mark-down"

// Route slots (Layout.RouteSlots).
const (
	// DefaultRouteSlots: a function's route is a set of peers, and the
	// functions of one set share a slot, so slots count the distinct sets
	// of a plan (a few, where nodes host the same functions). An empty
	// route backend costs HAProxy about 14 KB.
	DefaultRouteSlots = 256
	MaxRouteSlots     = 4096
)

// slotName is the name of route backend k.
func slotName(k int) string { return "route" + strconv.Itoa(k) }

// serverTLS is the server-line suffix for mutual TLS with the server named
// server, or "".
func (l Layout) serverTLS(server string) string {
	if l.TLS == nil {
		return ""
	}
	return fmt.Sprintf(" ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2", l.TLS.CertFile, l.TLS.AnchorFile(server))
}

// Server is one peer in the forwarding backend.
type Server struct {
	Name, Addr string
	Weight     int
}

// Backend names.
const (
	backendLocal   = "local"
	backendForward = "forward"     // every function's forwards: a server per peer
	backendAsync   = "async"       // the node's asynchronous calls (Layout.Async)
	tableArrivals  = "st_arrivals" // user requests, per function
	tableUser      = "st_user"     // locally admitted user requests, per function
	tableTotal     = "st_total"    // all local executions, per function
	tableSpill     = "st_spill"    // user requests executed locally beyond the limit
	tableRefused   = "st_refused"  // peer requests refused, per function
	tableBusy      = "st_busy"     // forwards a peer answered 429, per function
	tableFwd       = "st_fwd"      // user requests a peer answered, per function/server
	peersSection   = "dfaas"       // the local peer: stick tables outlive reloads
)

// maxSocketPath is the longest unix socket path Linux takes (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

const noCapacity = "no capacity for this function in the federation"

func (l Layout) validate() error {
	for _, a := range []string{l.UserAddr, l.PeerAddr, l.LocalAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: haproxy: address %q: %w", dfaas.ErrInvalidConfig, a, err)
		}
	}
	if l.Async != "" && (dfaas.ValidateAddr(l.Async) != nil || !configWord(l.Async)) {
		return fmt.Errorf("%w: haproxy: async address %q", dfaas.ErrInvalidConfig, l.Async)
	}
	paths := []string{l.Socket, l.LimitsMap, l.CapacityMap, l.RoutesMap, l.SlotsMap, l.Lua, l.PeersSocket}
	if l.LogSocket != "" {
		paths = append(paths, l.LogSocket)
	}
	if l.TLS != nil {
		paths = append(paths, l.TLS.CertFile, l.TLS.MembersFile, l.TLS.AnchorDir)
		if l.TLS.MembersMap != "" {
			paths = append(paths, l.TLS.MembersMap)
		}
	}
	for _, p := range paths {
		if p == "" || !configWord(p) {
			return fmt.Errorf("%w: haproxy: path %q", dfaas.ErrInvalidConfig, p)
		}
	}
	for _, p := range []string{l.Socket, l.PeersSocket, l.LogSocket} {
		if len(p) > maxSocketPath {
			return fmt.Errorf("%w: haproxy: unix socket path %q longer than %d bytes: use a shorter directory", dfaas.ErrInvalidConfig, p, maxSocketPath)
		}
	}
	if !configWord(string(l.Node)) || l.Node == "" {
		return fmt.Errorf("%w: haproxy: node id %q", dfaas.ErrInvalidConfig, l.Node)
	}
	if l.Namespace != "" {
		if err := dfaas.ValidateFunctionName(l.Namespace); err != nil {
			return fmt.Errorf("%w: haproxy: namespace: %w", dfaas.ErrInvalidConfig, err)
		}
	}
	servers := slices.Clone(l.Servers)
	for _, slot := range l.Slots {
		servers = append(servers, slot...)
	}
	for _, sv := range servers {
		if _, _, err := net.SplitHostPort(sv.Addr); err != nil || !configWord(sv.Addr) || !configWord(sv.Name) || sv.Weight < 0 || sv.Weight > 256 {
			return fmt.Errorf("%w: haproxy: server %q %q weight %d", dfaas.ErrInvalidConfig, sv.Name, sv.Addr, sv.Weight)
		}
	}
	if l.MaxPeers < 1 || l.Timeout <= 0 || l.MaxBody < 0 || l.BodyTimeout < 0 || l.RouteSlots < 0 || l.RouteSlots > MaxRouteSlots || len(l.Slots) > l.RouteSlots {
		return fmt.Errorf("%w: haproxy: max peers %d, timeout %v, max body %d, body timeout %v, route slots %d (%d held)", dfaas.ErrInvalidConfig,
			l.MaxPeers, l.Timeout, l.MaxBody, l.BodyTimeout, l.RouteSlots, len(l.Slots))
	}
	return nil
}

// configWord reports whether s can stand as one word of a configuration
// line: printable ASCII only, without space, quote, '#' or backslash. A
// control character (a carriage return, a vertical tab) would end the line
// for HAProxy's parser, or hide what follows it from a reader.
func configWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '#' || c == '\\' {
			return false
		}
	}
	return true
}

// Render writes haproxy.cfg for the layout.
func (l Layout) Render() (string, error) {
	if err := l.validate(); err != nil {
		return "", err
	}
	ms := l.Timeout.Milliseconds()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Generated by dfaas. Routine changes go through the runtime API, not this file.")
	w("global")
	w("    master-worker")
	// A port another process holds is an error at start, not a share:
	// with SO_REUSEPORT two HAProxy (or two agents) on one port would split
	// its connections between them without a word. Reloads pass the
	// listeners over the stats socket (expose-fd), so they need no reuse.
	w("    noreuseport")
	w("    stats socket %s mode 600 level admin expose-fd listeners", l.Socket)
	w("    stats timeout 10s")
	w("    setenv DFAAS_ROUTES %s", l.RoutesMap)
	w("    lua-load %s", l.Lua)
	if l.TLS != nil {
		w("    tune.ssl.cachesize 0") // no resumption by session id either
	}
	w("    localpeer %s", peersSection)
	if l.LogSocket != "" {
		w("    log %s len 256 format raw local0", l.LogSocket)
	}
	w("")
	// A reloaded worker learns the tables from the old one through the local
	// peer, so counts and rates go on across reloads.
	w("peers %s", peersSection)
	w("    bind unix@%s", l.PeersSocket)
	w("    server %s", peersSection)
	w("")
	w("defaults")
	w("    mode http")
	w("    timeout connect 1s")
	w("    timeout client %dms", ms)
	w("    timeout server %dms", ms)
	w("    timeout http-request 10s")
	// Idle connections live longer on the listening side (2 min, as in the
	// embedded proxy) than forwarders keep them (60 s; HAProxy's idle pool
	// decays faster), so a forward rarely meets a connection its peer is
	// closing: such a request may have been sent, and is not retried.
	w("    timeout http-keep-alive 2m")
	w("    option http-keep-alive")
	w("    http-reuse always") // function calls carry no per-connection state
	w("")
	// Entries never expire (only a full table drops its oldest), so their
	// request counts serve as counters however long a function idles.
	for _, t := range []string{tableArrivals, tableUser, tableTotal, tableSpill, tableRefused, tableBusy} {
		store := "http_req_cnt,http_req_rate(1s)"
		if t == tableTotal {
			// conn_cur: local executions in progress (not passed to a new
			// worker); gpc0 and gpc1: user and peer requests the platform
			// answered 429 (it did not run them).
			store += ",conn_cur,gpc0,gpc1"
		}
		w("backend %s", t)
		w("    stick-table type string len 64 size 10k store %s peers %s", store, peersSection)
	}
	w("backend %s", tableFwd) // function "/" server name
	w("    stick-table type string len 96 size 100k store http_req_cnt peers %s", peersSection)
	w("")
	w("frontend user")
	w("    bind %s", l.UserAddr)
	w("    http-request set-var(txn.t0) date(0,us)")
	if l.LogSocket != "" {
		w("    log global")
		w("    log-format \"%s\"", l.logFormatOf())
		if l.Trace {
			w("    http-request set-var(txn.tp) req.hdr(traceparent) if { req.hdr_cnt(traceparent) eq 1 } { req.hdr(traceparent) -m reg %s }", traceparentRE)
		}
	}
	// The gateway's headers (see proxy.HeaderCallID): a call id made for a
	// call that has none, sent on and answered; the arrival time (ns) on
	// every answer, HAProxy's own included.
	w("    http-request set-var(txn.callid) uuid if !{ req.hdr(%s),length gt 0 }", proxy.HeaderCallID)
	w("    http-request set-header %s %%[var(txn.callid)] if { var(txn.callid) -m found }", proxy.HeaderCallID)
	w("    http-after-response set-header %s %%[var(txn.t0),mul(1000)] if { var(txn.t0) -m found }", proxy.HeaderStartTime)
	w("    http-after-response set-header %s %%[var(txn.callid)] if { var(txn.callid) -m found }", proxy.HeaderCallID)
	w("    http-request del-header %s", "X-Dfaas-Hop")
	w("    http-request del-header %s", "X-Dfaas-From")
	dotSegment(w)
	w("    http-request set-var(txn.fn) path,field(3,/) if { path -m beg /function/ }")
	if l.Async != "" {
		// Queued by the node's asynchronous calls (backend async), which
		// answer 404 for a function the plan does not name: no rule below
		// applies to them (each needs a function's name, which only
		// /function/ paths set).
		w("    acl async path_beg /async-function/")
		w("    http-request return status 404 content-type text/plain string \"function not found\" hdr %s %s if !async !{ var(txn.fn),map(%s) -m found }",
			proxy.HeaderRejected, proxy.RefusedUnknown, l.LimitsMap)
	} else {
		w("    http-request return status 404 content-type text/plain string \"function not found\" hdr %s %s if !{ var(txn.fn),map(%s) -m found }",
			proxy.HeaderRejected, proxy.RefusedUnknown, l.LimitsMap)
	}
	l.tooLarge(w)
	l.waitForBody(w)
	w("    http-request track-sc2 var(txn.fn) table %s", tableArrivals)
	w("    http-request set-var(txn.limit) var(txn.fn),map(%s,0)", l.LimitsMap)
	w("    http-request set-var(txn.capacity) var(txn.fn),map(%s,0)", l.CapacityMap)
	w("    acl under_limit var(txn.fn),table_http_req_rate(%s),sub(txn.limit) lt 0", tableUser)
	w("    acl under_capacity var(txn.fn),table_http_req_rate(%s),sub(txn.capacity) lt 0", tableTotal)
	// Decide once: tracking the request changes the rates the ACLs read.
	// Local within the limit; else a peer with cap left (dfaas.lua picks
	// txn.peer); else local beyond the limit while capacity is left; else
	// the forwarding backend answers 503.
	w("    acl local var(txn.local) -m bool")
	w("    acl spill var(txn.spill) -m bool")
	w("    acl peer var(txn.peer) -m found")
	w("    http-request set-var(txn.local) bool(true) if under_limit under_capacity")
	if l.testClock != "" {
		w("    http-request set-var(txn.clock) req.hdr(%s)", l.testClock)
		w("    http-request set-var(txn.peer) var(txn.fn),concat(\" \",txn.clock),lua.dfaas_pick(clock) if !local")
	} else {
		w("    http-request set-var(txn.peer) var(txn.fn),lua.dfaas_pick if !local")
	}
	w("    http-request unset-var(txn.peer) if !local { var(txn.peer) -m len 0 }")
	w("    http-request set-var(txn.spill) bool(true) if !local !peer under_capacity")
	w("    http-request track-sc0 var(txn.fn) table %s if local", tableUser)
	w("    http-request track-sc0 var(txn.fn) table %s if spill", tableSpill)
	w("    http-request track-sc1 var(txn.fn) table %s if local || spill", tableTotal)
	if l.LogSocket != "" {
		// For the log: how it ran, and how many of the function's
		// executions were in progress as it started, itself included.
		w("    http-request set-var(txn.exec) str(u) if local")
		w("    http-request set-var(txn.exec) str(s) if spill")
		w("    http-request set-var(txn.cur) sc1_conn_cur if local || spill")
		w("    http-request set-var(txn.began) sc1_http_req_cnt if local || spill")
	}
	if l.Async != "" {
		w("    use_backend %s if async", backendAsync)
	}
	w("    use_backend %s if local || spill", backendLocal)
	// A function's forwards go to its route's backend (SlotsMap), else to
	// the forwarding backend, which holds every peer.
	w("    use_backend %%[var(txn.fn),map(%s,%s)]", l.SlotsMap, backendForward)
	// The platform did not run it: counted as rejected (sc1 is tracked
	// only for local executions, so a peer's answer counts nothing here).
	w("    http-response sc-inc-gpc0(1) if { status 429 }")
	w("")
	w("frontend peer")
	if l.TLS != nil {
		// No session tickets: a node that left cannot resume an old session.
		// TLS 1.2: a refused client certificate fails the handshake (see
		// proxy.PeerTLSVersion).
		w("    bind %s ssl crt %s ca-file %s verify required ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2 no-tls-tickets", l.PeerAddr, l.TLS.CertFile, l.TLS.MembersFile)
	} else {
		w("    bind %s", l.PeerAddr)
	}
	if l.LogSocket != "" {
		w("    log global")
		w("    log-format \"%s\"", l.logFormatOf())
		w("    http-request set-var(txn.t0) date(0,us)")
		if l.Trace {
			w("    http-request set-var(txn.tp) req.hdr(traceparent) if { req.hdr_cnt(traceparent) eq 1 } { req.hdr(traceparent) -m reg %s }", traceparentRE)
			w("    http-request set-var(txn.from) req.hdr(X-Dfaas-From) if { req.hdr_cnt(X-Dfaas-From) eq 1 } { req.hdr(X-Dfaas-From) -m reg %s }", nodeIDRE)
		}
	}
	if l.TLS != nil && l.TLS.MembersMap != "" {
		// The anchor that verified the client's certificate: its issuer's
		// name is "dfaas node <id>" (a leaf's subject is whatever its
		// signer wrote).
		w("    http-request return status 425 content-type text/plain string \"no member of this federation\" hdr %s %s hdr Connection close if !{ ssl_c_i_dn(CN),bytes(11),map(%s) -m found }",
			proxy.HeaderRefused, proxy.RefusedMember, l.TLS.MembersMap)
	}
	w("    http-request return status 400 content-type text/plain string \"missing hop marker\" if !{ req.hdr(X-Dfaas-Hop) -m found }")
	dotSegment(w)
	w("    http-request set-var(txn.fn) path,field(3,/) if { path -m beg /function/ }")
	// Refusals are 425 (proxy.StatusRefused): not executed, retry elsewhere.
	w("    http-request return status 425 hdr X-Dfaas-Refused unknown if !{ var(txn.fn),map(%s) -m found }", l.CapacityMap)
	l.tooLarge(w)
	w("    http-request set-var(txn.capacity) var(txn.fn),map(%s,0)", l.CapacityMap)
	w("    acl under_capacity var(txn.fn),table_http_req_rate(%s),sub(txn.capacity) lt 0", tableTotal)
	w("    http-request track-sc0 var(txn.fn) table %s if !under_capacity", tableRefused)
	w("    http-request return status 425 hdr X-Dfaas-Refused capacity hdr Retry-After 1 if !under_capacity")
	w("    http-request track-sc1 var(txn.fn) table %s", tableTotal)
	// Admitted and counted first, as the embedded proxy takes capacity
	// before it reads a body: requests whose bodies are on their way do not
	// all pass the capacity check before any counts. And a forwarder that
	// asked "Expect: 100-continue" keeps the body of a refused request for
	// the next peer.
	l.waitForBody(w)
	if l.LogSocket != "" {
		w("    http-request set-var(txn.exec) str(p)")
		w("    http-request set-var(txn.cur) sc1_conn_cur")
		w("    http-request set-var(txn.began) sc1_http_req_cnt")
	}
	w("    http-response set-status 502 if { status 425 }") // the platform's own 425: executed
	// The platform's 429 goes back as it is (never retried: a function may
	// answer it after running) and counts as refused, not received.
	w("    http-response sc-inc-gpc1(1) if { status 429 }")
	w("    default_backend %s", backendLocal)
	w("")
	if l.Async != "" {
		w("backend %s", backendAsync)
		w("    server async %s", l.Async)
		w("")
	}
	w("backend %s", backendLocal)
	w("    http-response set-header %s %s", proxy.HeaderNode, l.Node) // the node that ran it, in place of any the platform set
	w("    http-response del-header %s", proxy.HeaderRejected)
	if l.Namespace != "" {
		w("    http-request replace-path ^/function/([^/]+)(.*)$ /function/\\1.%s\\2", l.Namespace)
	}
	w("    server platform %s", l.LocalAddr)
	w("")
	servers := slices.Clone(l.Servers)
	slices.SortFunc(servers, func(a, b Server) int { return strings.Compare(a.Name, b.Name) })
	l.forwarding(w, backendForward, servers, serverHealth)
	for k := range l.RouteSlots {
		var slot []Server
		if k < len(l.Slots) {
			slot = slices.Clone(l.Slots[k])
			slices.SortFunc(slot, func(a, b Server) int { return strings.Compare(a.Name, b.Name) })
		}
		w("")
		l.forwarding(w, slotName(k), slot, slotHealth)
	}
	return b.String(), nil
}

// forwarding writes a backend of forwards, named name, with servers (the
// forwarding backend's, or a route backend's) and their health options.
func (l Layout) forwarding(w func(string, ...any), name string, servers []Server, health string) {
	w("backend %s", name)
	// dfaas.lua picks the first attempt's peer per function (txn.peer); a
	// retry goes to the backend's next server in turn (in a route backend,
	// the next peer of the function's route), which refuses (425) what it
	// cannot run, and is retried in its turn.
	w("    balance roundrobin")
	w("    retries 3")
	w("    option redispatch 1")
	// At most once: retry only what a peer provably did not run - a
	// connection or TLS handshake that failed before the request was
	// sent, or a refusal.
	w("    retry-on conn-failure 425")
	w("    http-request set-header X-Dfaas-Hop 1")
	w("    http-request set-header X-Dfaas-From %s", l.Node)
	w("    http-response del-header X-Dfaas-Refused if { status 425 }")
	w("    http-response del-header %s", proxy.HeaderRejected) // the peer's platform's, not this node's word
	w("    http-response set-header %s %s if { status 425 }", proxy.HeaderRejected, proxy.RefusedCapacity)
	w("    http-response set-status 503 if { status 425 }") // every peer refused
	w("    http-response set-header Retry-After 1 if { status 503 }")
	w("    http-response set-var(txn.srv) srv_name")
	w("    http-response track-sc0 var(txn.fn),concat(/,txn.srv) table %s if { status lt 500 } !{ status 429 }", tableFwd)
	// A peer's 429 reaches the user as a rejection (sc1 tracks local
	// executions only, so it is free on a forward).
	w("    http-response track-sc1 var(txn.fn) table %s if { status 429 }", tableBusy)
	w("    http-error status 503 content-type text/plain string \"%s\" hdr Retry-After 1 hdr %s %s", noCapacity, proxy.HeaderRejected, proxy.RefusedCapacity)
	w("    http-request return status 503 content-type text/plain string \"%s\" hdr Retry-After 1 hdr %s %s if !{ var(txn.peer) -m found }",
		noCapacity, proxy.HeaderRejected, proxy.RefusedCapacity)
	w("    use-server %%[var(txn.peer)] if { var(txn.peer) -m found }")
	for _, sv := range servers {
		w("    server %s %s weight %d%s%s", sv.Name, sv.Addr, sv.Weight, health, l.serverTLS(sv.Name))
	}
}

// tooLarge writes a frontend's refusal (413) of a declared body over
// MaxBody, before the request counts anywhere. (HAProxy cannot count a
// chunked body as it streams: the platform's bound holds there.)
func (l Layout) tooLarge(w func(string, ...any)) {
	maxBody := l.MaxBody
	if maxBody == 0 {
		maxBody = proxy.DefaultMaxBody
	}
	w("    http-request return status 413 content-type text/plain string \"request body too large\" if { req.hdr_val(content-length) gt %d }", maxBody)
}

// waitForBody writes a frontend's wait for the request's body, up to
// BodyTimeout (408 past it), as far as the request buffer holds it: a
// small body arrives whole before it goes anywhere, and a forward that a
// peer refuses can go to another (HAProxy retries only a request it holds
// whole). HAProxy 2.6 has no bound on the total time of a body larger than
// its buffer, which it streams: the platform's bound holds there (faas/local
// has one, OpenFaaS's gateway its read_timeout), and timeout client bounds
// each silence.
func (l Layout) waitForBody(w func(string, ...any)) {
	wait := l.BodyTimeout
	if wait == 0 {
		wait = proxy.DefaultBodyTimeout
	}
	w("    http-request wait-for-body time %dms", max(wait.Milliseconds(), 1))
}

// dotSegment writes a frontend's refusal (400) of a path with a "." or ".."
// segment once decoded (proxy.HasDotSegment): HAProxy passes the path on as
// it came, and a gateway that cleans it would run another path than the
// function the frontend admitted.
//
// A path with an invalid percent-escape (%zz) cannot be decoded, so url_dec
// matches nothing in it: it is refused too (400), as net/http refuses it on
// the embedded proxy.
func dotSegment(w func(string, ...any)) {
	w("    acl bad_escape path -m reg %%([^0-9A-Fa-f]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)")
	w("    http-request return status 400 content-type text/plain string \"the path has an invalid percent-escape\" if bad_escape")
	w("    acl dot_segment path,url_dec -m sub /./ /../")
	w("    acl dot_segment path,url_dec -m end /. /..")
	w("    http-request return status 400 content-type text/plain string \"the path has a dot segment\" if dot_segment")
}
