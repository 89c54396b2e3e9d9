package proxytest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Functions are the functions the suite's platforms serve: "echo" answers
// at once with the platform's name, "slow" waits until the test lets it go,
// "early" answers proxy.StatusRefused (after running), "cut" breaks its
// answer off after a part of it, "empty" writes nothing (net/http answers
// 200). A platform set Busy answers 429 Too Many
// Requests to every request without running it, one set to Fail the
// status it holds.
var Functions = []string{"echo", "slow", "early", "cut", "empty"}

// Run runs the conformance suite against the data plane registered as
// name: every node it starts is that data plane, on loopback, in front of
// a platform that counts what it executes. Run it from the data plane's
// own tests, or from any package that imports the data plane's (its init
// registers it):
//
//	import _ "github.com/dfaas-go/dfaas/proxy/embedded"
//
//	func TestConformance(t *testing.T) { proxytest.Run(t, "embedded") }
func Run(t *testing.T, name string) {
	if !slices.Contains(proxy.Names(), name) {
		t.Fatalf("proxytest: no data plane is registered as %q (registered: %v): import its package, "+
			"as in import _ \"github.com/dfaas-go/dfaas/proxy/embedded\"", name, proxy.Names())
	}
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *suite)
	}{
		{"UnknownFunctionIs404", testUnknownFunction},
		{"DotSegmentIs400", testDotSegment},
		{"BodyOverMaxBodyIs413", testBodyOverMaxBody},
		{"TrickledBodyIs408", testTrickledBody},
		{"HopMarkersStrippedOnUserPort", testHopMarkersStripped},
		{"GatewayHeaders", testGatewayHeaders},
		{"PeerPortRequiresHopMarker", testPeerPortRequiresHop},
		{"AdmissionAtTheLimit", testAdmission},
		{"PeerPortAdmissionAtCapacity", testPeerPortCapacity},
		{"PeerPortNeverForwards", testPeerPortNeverForwards},
		{"ForwardsAreMeasuredPerPeer", testForwardsAreMeasured},
		{"ForwardToPeer", testForward},
		{"CapsHoldPeersToTheirCap", testCaps},
		{"RoundRobinGoesOnAcrossPlans", testRoundRobinGoesOnAcrossPlans},
		{"RetryOnRefusal", testRetryOnRefusal},
		{"RejectWithRetryAfter", testReject},
		{"HostileAddressesGetNothing", testHostileAddresses},
		{"InFlightSurvivesPlanChange", testInFlight},
		{"ForwardSurvivesLeavingThePlan", testForwardSurvivesLeavingThePlan},
		{"AbortForwardsCutsOnlyThatPeer", testAbortForwards},
		{"NoRetryAfterSend", testNoRetryAfterSend},
		{"ACutAnswerIsCutForTheUser", testCutAnswer},
		{"RetryWhenUnreachable", testRetryWhenUnreachable},
		{"StalledConnectIsAFailedForward", testStalledConnectIsAFailedForward},
		{"RefusalOpensTheCaps", testRefusalOpensTheCaps},
		{"TimeoutAfterSendRunsOnce", testTimeoutAfterSend},
		{"PlatformRefusalStatusIsNotARefusal", testPlatformRefusalStatusIsNotARefusal},
		{"PlatformBusyIsNotRetried", testBusyPlatform},
		{"LocalExecutionsAreMeasured", testExecutions},
		{"TLSForwardBetweenMembers", testTLSForward},
		{"TLSPeerPortAdmitsMembersOnly", testTLSPeerPortAdmitsMembersOnly},
		{"TLSForwardsOnlyToTheNamedNode", testTLSForwardsOnlyToTheNamedNode},
		{"TLSRemovedMemberIsCutOff", testTLSRemovedMemberIsCutOff},
		{"TLSLeavesRenewed", testTLSLeavesRenewed},
		{"BrokenPeerIsEjected", testBrokenPeerIsEjected},
		{"NotYetAMemberIsRetried", testNotYetAMemberIsRetried},
		{"RefusedWhileLeavingThePlanIsRetried", testRefusedWhileLeavingThePlanIsRetried},
		{"FunctionsComeAndGoUnderLoad", testFunctionsComeAndGo},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, &suite{t: t, name: name}) })
	}
}

type suite struct {
	t    *testing.T
	name string
}

// Platform is the suite's FaaS platform stand-in: it runs in-process and
// on a loopback port, answers with its name and remembers what it saw.
type Platform struct {
	Name    string
	Calls   atomic.Int64
	LastHop atomic.Value // string: HeaderHop of the last request
	LastFor atomic.Value // string: HeaderFrom of the last request
	LastID  atomic.Value // string: HeaderCallID of the last request
	Busy    atomic.Bool  // answer 429 without running anything
	Fail    atomic.Int64 // if set, answer this status without running anything
	Delay   atomic.Int64 // if set, ns to wait before answering (a starved node)
	release chan struct{}
	once    sync.Once
	srv     *http.Server
	addr    string
}

func newPlatform(t *testing.T, name string) *Platform {
	t.Helper()
	p := &Platform{Name: name, release: make(chan struct{})}
	p.LastHop.Store("")
	p.LastFor.Store("")
	p.LastID.Store("")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = l.Addr().String()
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	t.Cleanup(func() {
		p.Release()
		_ = p.srv.Close()
	})
	return p
}

// ServeHTTP implements http.Handler.
func (p *Platform) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.Busy.Load() {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	if code := p.Fail.Load(); code != 0 {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set(proxy.HeaderRejected, proxy.RefusedCapacity) // a lie: only the data plane may say it
		http.Error(w, "the platform failed", int(code))
		return
	}
	p.Calls.Add(1)
	if d := p.Delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	p.LastHop.Store(r.Header.Get(proxy.HeaderHop))
	p.LastFor.Store(r.Header.Get(proxy.HeaderFrom))
	p.LastID.Store(r.Header.Get(proxy.HeaderCallID))
	// As a gateway behind the node, or a function that lies, would: the
	// data plane answers with its own.
	w.Header().Set(proxy.HeaderStartTime, "1")
	w.Header().Set(proxy.HeaderNode, "not "+p.Name)
	w.Header().Set(proxy.HeaderRejected, proxy.RefusedCapacity)
	_, _ = io.Copy(io.Discard, r.Body)
	if fn, _ := proxy.FunctionName(r.URL.Path); fn == "slow" {
		select {
		case <-p.release:
		case <-r.Context().Done():
			return
		}
	}
	if fn, _ := proxy.FunctionName(r.URL.Path); fn == "early" {
		http.Error(w, "a function's own 425", proxy.StatusRefused)
		return
	}
	if fn, _ := proxy.FunctionName(r.URL.Path); fn == "empty" {
		return // no answer written: net/http's 200
	}
	if fn, _ := proxy.FunctionName(r.URL.Path); fn == "cut" {
		_, _ = io.WriteString(w, "part of")
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // the connection is cut mid-answer
	}
	_, _ = io.WriteString(w, p.Name)
}

// Release lets every "slow" request go, now and later.
func (p *Platform) Release() { p.once.Do(func() { close(p.release) }) }

// node starts one data plane in front of a new platform.
func (s *suite) node(node string) (proxy.DataPlane, *Platform) {
	s.t.Helper()
	return s.nodeWith(proxy.Spec{Node: dfaas.NodeID(node)})
}

// nodeWith starts one data plane from spec in front of a new platform.
func (s *suite) nodeWith(spec proxy.Spec) (proxy.DataPlane, *Platform) {
	s.t.Helper()
	pf := newPlatform(s.t, string(spec.Node))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spec.Platform, spec.Functions, spec.Logger = proxy.Platform{Handler: pf, Addr: pf.addr}, Functions, slog.New(slog.DiscardHandler)
	dp, err := proxy.Open(ctx, s.name, spec)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { assert.NoError(s.t, dp.Close()) })
	return dp, pf
}

// senderAndPeers starts a sender a and two peers b and c that run fn
// without limit (a's plan is the test's).
func (s *suite) senderAndPeers(fn string) (a, b, c proxy.DataPlane, pb, pc *Platform) {
	s.t.Helper()
	a, _ = s.node("a")
	b, pb = s.node("b")
	c, pc = s.node("c")
	s.apply(b, map[string]dfaas.FunctionPlan{fn: unlimited})
	s.apply(c, map[string]dfaas.FunctionPlan{fn: unlimited})
	return a, b, c, pb, pc
}

func (s *suite) apply(dp proxy.DataPlane, fns map[string]dfaas.FunctionPlan) {
	s.t.Helper()
	require.NoError(s.t, dp.Apply(context.Background(), dfaas.Plan{Functions: fns}))
}

func (s *suite) counts(dp proxy.DataPlane, fn string) proxy.Counts {
	s.t.Helper()
	c, err := dp.Counts(context.Background())
	require.NoError(s.t, err)
	return c[fn]
}

// countsWhen returns fn's counts at dp once cond holds of them, failing
// the test if it does not within 2 s: a data plane may count a moment after
// its answers (HAProxy counts rejections and retries from its request log,
// whose line comes after the answer).
func (s *suite) countsWhen(dp proxy.DataPlane, fn string, cond func(proxy.Counts) bool, msg string) proxy.Counts {
	s.t.Helper()
	var c proxy.Counts
	assert.Eventually(s.t, func() bool {
		c = s.counts(dp, fn)
		return cond(c)
	}, 2*time.Second, 5*time.Millisecond, msg)
	return c
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}

type answer struct {
	code   int
	header http.Header
	body   string
}

func (s *suite) do(addr, path string, hdr map[string]string) answer {
	s.t.Helper()
	a, err := s.try(addr, path, hdr)
	require.NoError(s.t, err)
	return a
}

// try is do that returns a failed exchange (no answer) as an error.
func (s *suite) try(addr, path string, hdr map[string]string) (answer, error) {
	s.t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("payload"))
	require.NoError(s.t, err)
	req.URL.Opaque = path // sent as it is, an invalid escape included
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, nil
}

var unlimited = dfaas.FunctionPlan{Limit: 1e6, Capacity: 1e6}

func testUnknownFunction(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	// The name is read from the path as it came: an encoded slash or
	// letter names no function (a gateway that decodes first would route
	// /function%2fslow/echo to slow), and only /function/ names one.
	for _, path := range []string{"/function/slow", "/function/UPPER", "/function/", "/system/functions",
		"/function%2fslow/echo", "/function/ech%6f", "/async-function/echo", "/xyz/echo"} {
		assert.Equal(t, http.StatusNotFound, s.do(a.UserAddr(), path, nil).code, "user port %s", path)
		got := s.do(a.PeerAddr(), path, map[string]string{proxy.HeaderHop: "1"})
		assert.Equal(t, proxy.StatusRefused, got.code, "peer port %s", path)
		assert.Equal(t, proxy.RefusedUnknown, got.header.Get(proxy.HeaderRefused), "peer port %s", path)
	}
	assert.Zero(t, pa.Calls.Load(), "nothing executed")
	assert.Zero(t, s.counts(a, "slow").Arrivals)
}

// testDotSegment: a path that a platform would clean into another one
// (proxy.HasDotSegment), however it is encoded, gets 400 on both ports and
// runs and counts nothing; a segment that only starts with dots is a name.
func testDotSegment(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	for _, path := range []string{"/function/echo/..%2f..%2fsystem%2ffunctions", "/function/echo/../x", "/function/echo/./x",
		"/function/echo/%2e%2e/x", "/function/echo/%2E", "/function/echo/..", "/function/./echo",
		// An invalid escape must not switch the refusal off (HAProxy's
		// url_dec fails on it, and matched nothing).
		"/function/echo/%zz/..%2fx", "/function/echo/%zz/../x", "/function/echo/x%2", "/function/echo/%g0"} {
		assert.Equal(t, http.StatusBadRequest, s.do(a.UserAddr(), path, nil).code, "user port %s", path)
		assert.Equal(t, http.StatusBadRequest, s.do(a.PeerAddr(), path, map[string]string{proxy.HeaderHop: "1"}).code, "peer port %s", path)
	}
	assert.Zero(t, pa.Calls.Load(), "nothing executed")
	c := s.counts(a, "echo")
	assert.Equal(t, [5]uint64{}, [5]uint64{c.Arrivals, c.ServedLocal, c.ReceivedIn, c.Rejected, c.Refused}, "nothing counted")
	for _, path := range []string{"/function/echo/...", "/function/echo/..x", "/function/echo/.well-known/x", "/function/echo/x."} {
		assert.Equal(t, http.StatusOK, s.do(a.UserAddr(), path, nil).code, "user port %s", path)
	}
	assert.Equal(t, int64(4), pa.Calls.Load())
}

func testHopMarkersStripped(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	got := s.do(a.UserAddr(), "/function/echo", map[string]string{proxy.HeaderHop: "1", proxy.HeaderFrom: "evil"})
	assert.Equal(t, http.StatusOK, got.code)
	assert.Equal(t, "", pa.LastHop.Load(), "hop marker removed")
	assert.Equal(t, "", pa.LastFor.Load(), "forwarder removed")
	c := s.counts(a, "echo")
	assert.Equal(t, uint64(1), c.Arrivals)
	assert.Equal(t, uint64(1), c.ServedLocal)
	assert.Zero(t, c.ReceivedIn, "a user request, not a peer's")
}

func testPeerPortRequiresHop(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	assert.Equal(t, http.StatusBadRequest, s.do(a.PeerAddr(), "/function/echo", nil).code)
	assert.Zero(t, pa.Calls.Load())
	assert.Equal(t, http.StatusOK, s.do(a.PeerAddr(), "/function/echo", map[string]string{proxy.HeaderHop: "1"}).code)
	assert.Equal(t, uint64(1), s.counts(a, "echo").ReceivedIn)
}

// testAdmission: back-to-back requests over a limit of 5 req/s with no
// peer: at least one and at most 5 run locally (HAProxy takes a second's
// worth at once, the embedded proxy a Burst's), the rest are rejected,
// and the counters add up to what the client saw.
func testAdmission(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Limit: 5, Capacity: 5}})
	ok, rejected := 0, 0
	for range 20 {
		switch got := s.do(a.UserAddr(), "/function/echo", nil); got.code {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			rejected++
		default:
			t.Fatalf("status %d", got.code)
		}
	}
	assert.GreaterOrEqual(t, ok, 1)
	assert.LessOrEqual(t, ok, 5, "no more than the limit within a second")
	c := s.countsWhen(a, "echo", func(c proxy.Counts) bool { return c.Rejected == uint64(rejected) }, "every 503 counted as rejected")
	assert.Equal(t, uint64(20), c.Arrivals)
	assert.Equal(t, uint64(ok), c.ServedLocal)
	assert.Equal(t, int64(ok), pa.Calls.Load())
}

func testForward(t *testing.T, s *suite) {
	a, pa := s.node("a")
	b, pb := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	got := s.do(a.UserAddr(), "/function/echo?x=1", nil)
	require.Equal(t, http.StatusOK, got.code)
	assert.Equal(t, "b", got.body)
	assert.Empty(t, got.header.Get(proxy.HeaderRefused))
	assert.Equal(t, "1", pb.LastHop.Load())
	assert.Equal(t, "a", pb.LastFor.Load())
	assert.Zero(t, pa.Calls.Load())
	ca, cb := s.counts(a, "echo"), s.counts(b, "echo")
	assert.Equal(t, uint64(1), ca.Arrivals)
	assert.Equal(t, uint64(1), ca.ForwardedOut)
	assert.Equal(t, uint64(1), ca.Forwarded["b"])
	assert.Equal(t, uint64(1), cb.ReceivedIn)
	assert.Zero(t, cb.Arrivals, "a forwarded request is not a user arrival at the peer")
}

// testCaps: of 50 back-to-back requests, a peer capped at 5 req/s (a
// 100 ms burst: 2 tokens) gets its 2 tokens and what refills while they
// run (at most one more request per 200 ms), its equal-weight neighbour
// without a binding cap the rest.
func testCaps(t *testing.T, s *suite) {
	a, b, c, _, _ := s.senderAndPeers("echo")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 5},
		{Node: "c", Addr: c.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	start := time.Now()
	got := map[string]int{}
	for range 50 {
		ans := s.do(a.UserAddr(), "/function/echo", nil)
		require.Equal(t, http.StatusOK, ans.code)
		got[ans.body]++
	}
	refill := int(time.Since(start) / (200 * time.Millisecond))
	assert.GreaterOrEqual(t, got["b"], 2, "b's burst")
	assert.LessOrEqual(t, got["b"], 2+refill, "b held to its cap (run took %v)", time.Since(start))
	assert.Equal(t, 50-got["b"], got["c"])
	ca := s.counts(a, "echo")
	assert.Equal(t, uint64(got["b"]), ca.Forwarded["b"])
	assert.Equal(t, uint64(got["c"]), ca.Forwarded["c"])
}

// testRetryOnRefusal: the heavier peer has no capacity and refuses; every
// request is served by the other peer, each refusal counted once at both
// ends, and the full peer executes nothing.
func testRetryOnRefusal(t *testing.T, s *suite) {
	a, _ := s.node("a")
	full, pfull := s.node("full")
	ok, pok := s.node("ok")
	s.apply(full, map[string]dfaas.FunctionPlan{"echo": {Limit: 0, Capacity: 0}})
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "full", Addr: full.PeerAddr(), Weight: 0.9, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.1, Cap: 1e6}}}})
	for range 10 {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusOK, got.code)
		assert.Equal(t, "ok", got.body)
	}
	assert.Zero(t, pfull.Calls.Load(), "the full peer executed nothing")
	assert.Equal(t, int64(10), pok.Calls.Load())
	cf := s.counts(full, "echo")
	assert.Positive(t, cf.Refused)
	ca := s.countsWhen(a, "echo", func(c proxy.Counts) bool { return c.FailedTries == cf.Refused }, "every refusal is one failed try")
	assert.Equal(t, uint64(10), ca.ForwardedOut)
	assert.Equal(t, uint64(10), ca.Forwarded["ok"])
	assert.Zero(t, ca.Forwarded["full"])
}

func testReject(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Limit: 0, Capacity: 0}})
	got := s.do(a.UserAddr(), "/function/echo", nil)
	assert.Equal(t, http.StatusServiceUnavailable, got.code)
	assert.NotEmpty(t, got.header.Get("Retry-After"))
	assert.Zero(t, pa.Calls.Load())
	s.countsWhen(a, "echo", func(c proxy.Counts) bool { return c.Rejected == 1 }, "the 503 counted as rejected")
}

// testInFlight: requests being executed when a new plan arrives complete.
func testInFlight(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"slow": unlimited, "echo": unlimited})
	codes := make(chan int, 3)
	for range 3 {
		go func() {
			req, _ := http.NewRequest("POST", "http://"+a.UserAddr()+"/function/slow", strings.NewReader("x"))
			resp, err := client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	require.Eventually(t, func() bool { return pa.Calls.Load() == 3 }, 5*time.Second, 5*time.Millisecond)
	s.apply(a, map[string]dfaas.FunctionPlan{"slow": {Limit: 1, Capacity: 1}, "echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"slow": unlimited})
	pa.Release()
	for range 3 {
		assert.Equal(t, http.StatusOK, <-codes)
	}
	assert.Equal(t, uint64(3), s.counts(a, "slow").ServedLocal)
}

// testHostileAddresses: a plan whose shares carry addresses that are more
// than a host:port (as a hostile advert would, were it not refused) sends
// nothing there, and its honest peer still gets every request.
func testHostileAddresses(t *testing.T, s *suite) {
	internal := newPlatform(t, "internal")
	a, _ := s.node("a")
	b, _ := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	var shares []dfaas.Share
	for i, addr := range []string{internal.addr + "/admin/deploy#", internal.addr + "\r", "\vredir\v//evil.example", internal.addr + ";x"} {
		shares = append(shares, dfaas.Share{Node: dfaas.NodeID("evil" + string(rune('a'+i))), Addr: addr, Weight: 10, Cap: 1e6})
	}
	shares = append(shares, dfaas.Share{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6})
	require.NoError(t, a.Apply(context.Background(), dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"echo": {Peers: shares}}}),
		"the rest of the plan applies")
	for range 5 {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusOK, got.code)
		assert.Equal(t, "b", got.body)
	}
	assert.Zero(t, internal.Calls.Load(), "nothing reached the address an advert smuggled in")
}

// testCutAnswer: an answer the platform broke off reaches the user broken
// off, run locally or forwarded, never a part passed off as the whole; and
// it ran once.
func testCutAnswer(t *testing.T, s *suite) {
	a, _ := s.node("a")
	b, pb := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"cut": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"cut": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	for _, addr := range []string{b.UserAddr(), a.UserAddr()} {
		req, err := http.NewRequest("POST", "http://"+addr+"/function/cut", strings.NewReader("payload"))
		require.NoError(t, err)
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		assert.Error(t, err, "%s: the user can tell the answer was cut", addr)
	}
	assert.EqualValues(t, 2, pb.Calls.Load(), "each ran once")
}

// testBodyOverMaxBody: a declared body over the Spec's MaxBody is answered
// 413 on both ports and reaches no platform, as soon as the headers say it
// (a client that has not sent the body gets the answer); one of exactly
// MaxBody runs.
func testBodyOverMaxBody(t *testing.T, s *suite) {
	a, pa := s.nodeWith(proxy.Spec{Node: "a", MaxBody: 1000})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	for _, addr := range []string{a.UserAddr(), a.PeerAddr()} {
		for size, code := range map[int]int{1001: http.StatusRequestEntityTooLarge, 1000: http.StatusOK} {
			req, err := http.NewRequest("POST", "http://"+addr+"/function/echo", strings.NewReader(strings.Repeat("x", size)))
			require.NoError(t, err)
			req.Header.Set(proxy.HeaderHop, "1")
			resp, err := client.Do(req)
			if !assert.NoError(t, err, "%s %d bytes", addr, size) {
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, code, resp.StatusCode, "%s %d bytes", addr, size)
		}
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, err = io.WriteString(c, "POST /function/echo HTTP/1.1\r\nHost: x\r\nX-Dfaas-Hop: 1\r\nContent-Length: 1073741824\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if assert.NoError(t, err, "%s: a GiB announced, nothing sent", addr) {
			assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, addr)
		}
		_ = c.Close()
	}
	assert.EqualValues(t, 2, pa.Calls.Load(), "only the bodies within the bound ran")
}

// testTrickledBody: a body that comes a byte at a time, never silent for
// long, is cut off with 408 once the Spec's BodyTimeout has passed since
// its headers, on both ports, run here or forwarded.
func testTrickledBody(t *testing.T, s *suite) {
	a, _ := s.nodeWith(proxy.Spec{Node: "a", BodyTimeout: time.Second})
	b, pb := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"cut": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited,
		"cut": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	for _, tc := range []struct{ addr, fn string }{{a.UserAddr(), "echo"}, {a.PeerAddr(), "echo"}, {a.UserAddr(), "cut"}} {
		c, err := net.Dial("tcp", tc.addr)
		require.NoError(t, err)
		_, err = fmt.Fprintf(c, "POST /function/%s HTTP/1.1\r\nHost: x\r\nX-Dfaas-Hop: 1\r\nContent-Length: 100\r\n\r\n", tc.fn)
		require.NoError(t, err)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { // a byte every 200 ms: 20 s for the whole body
			defer close(done)
			for range 100 {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := io.WriteString(c, "x"); err != nil {
					return
				}
			}
		}()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		took := time.Since(start)
		close(stop)
		<-done
		_ = c.Close()
		if assert.NoError(t, err, "%s %s", tc.addr, tc.fn) {
			assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode, "%s %s", tc.addr, tc.fn)
		}
		assert.Less(t, took, 5*time.Second, "%s %s", tc.addr, tc.fn)
	}
	assert.Zero(t, pb.Calls.Load(), "the forward never went: its body never came whole")
}
