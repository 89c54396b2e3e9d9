package proxytest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// fakePeer is a peer that reads each request whole and counts it (as if
// it ran it), then does what after says with the connection instead of
// answering.
type fakePeer struct {
	addr string
	got  atomic.Int64
}

func newFakePeer(t *testing.T, after func(net.Conn)) *fakePeer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &fakePeer{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				p.got.Add(1)
				after(c)
			}()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return p
}

// newResetter is a fake peer that resets the connection (RST).
func newResetter(t *testing.T) *fakePeer {
	return newFakePeer(t, func(c net.Conn) {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	})
}

// testNoRetryAfterSend: a peer that received a request and then reset the
// connection may have run it, so the request is answered 502 - or, by
// HAProxy on a kept-alive client connection, the connection is closed
// without an answer - and not sent to the other peer: every request runs
// at most once.
func testNoRetryAfterSend(t *testing.T, s *suite) {
	a, _ := s.node("a")
	ok, pok := s.node("ok")
	bad := newResetter(t)
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "bad", Addr: bad.addr, Weight: 0.9, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.1, Cap: 1e6}}}})
	failed := 0
	for i := range 10 {
		before := bad.got.Load() + pok.Calls.Load()
		got, err := s.try(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, before+1, bad.got.Load()+pok.Calls.Load(), "request %d ran %d times", i, bad.got.Load()+pok.Calls.Load()-before)
		if err != nil {
			failed++ // closed without an answer
			continue
		}
		switch got.code {
		case http.StatusOK:
			assert.Equal(t, "ok", got.body)
		case http.StatusBadGateway:
			failed++
		default:
			t.Errorf("request %d: %d %s", i, got.code, got.body)
		}
	}
	assert.Equal(t, int64(failed), bad.got.Load(), "every request the bad peer took failed at the user")
	assert.Positive(t, failed, "the bad peer, weighted 0.9, took none (test setup)")
}

// testRetryWhenUnreachable: a peer whose port refuses connections never
// got the request: every request goes to the next peer.
func testRetryWhenUnreachable(t *testing.T, s *suite) {
	a, _ := s.node("a")
	ok, pok := s.node("ok")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "gone", Addr: closed, Weight: 0.9, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.1, Cap: 1e6}}}})
	for range 10 {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusOK, got.code, got.body)
	}
	assert.Equal(t, int64(10), pok.Calls.Load())
	ca := s.countsWhen(a, "echo", func(c proxy.Counts) bool { return c.FailedTries > 0 }, "the attempts at the closed port retried")
	assert.Equal(t, uint64(10), ca.Forwarded["ok"])
}

// testGatewayHeaders: the user listener answers as an OpenFaaS gateway
// does (proxy.HeaderCallID, proxy.HeaderStartTime): a call without an id
// gets one, sent on to the platform that runs it (here or at a peer) and
// answered; a caller's own id goes on and is not echoed; every answer, the
// node's own refusals included, carries the call's arrival time in ns, in
// place of the platform's. An answer a platform gave names the node that
// ran it (proxy.HeaderNode), in place of anything the platform said.
func testGatewayHeaders(t *testing.T, s *suite) {
	a, pa := s.node("a")
	b, pb := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	started := func(got answer, before, after time.Time) {
		t.Helper()
		ns, err := strconv.ParseInt(got.header.Get(proxy.HeaderStartTime), 10, 64)
		require.NoError(t, err, "%s: %v", proxy.HeaderStartTime, got.header)
		assert.Len(t, got.header.Values(proxy.HeaderStartTime), 1)
		// HAProxy's clock reads to the microsecond.
		assert.True(t, ns >= before.Truncate(time.Microsecond).UnixNano() && ns <= after.UnixNano(), "start %d not within the call", ns)
	}
	called := func(hdr map[string]string) (answer, time.Time, time.Time) {
		t.Helper()
		before := time.Now()
		got := s.do(a.UserAddr(), "/function/echo", hdr)
		return got, before, time.Now()
	}

	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	got, before, after := called(nil)
	require.Equal(t, http.StatusOK, got.code)
	id := got.header.Get(proxy.HeaderCallID)
	_, err := uuid.Parse(id)
	assert.NoError(t, err, "a made call id is a UUID: %q", id)
	assert.Equal(t, id, pa.LastID.Load(), "the platform got the call's id")
	started(got, before, after)
	assert.Equal(t, []string{"a"}, got.header.Values(proxy.HeaderNode), "run here")

	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited, "empty": unlimited})
	before = time.Now()
	got = s.do(a.UserAddr(), "/function/empty", nil)
	require.Equal(t, http.StatusOK, got.code)
	assert.NotEmpty(t, got.header.Get(proxy.HeaderCallID), "a function that writes nothing: %v", got.header)
	started(got, before, time.Now())
	assert.Equal(t, []string{"a"}, got.header.Values(proxy.HeaderNode))

	got, _, _ = called(map[string]string{proxy.HeaderCallID: "caller-1"})
	assert.Equal(t, "caller-1", pa.LastID.Load(), "the caller's id goes on")
	assert.Empty(t, got.header.Values(proxy.HeaderCallID), "and is not echoed, as by the gateway")

	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	got, before, after = called(nil)
	require.Equal(t, http.StatusOK, got.code)
	assert.Equal(t, "b", got.body)
	assert.NotEmpty(t, got.header.Get(proxy.HeaderCallID))
	assert.Equal(t, got.header.Get(proxy.HeaderCallID), pb.LastID.Load(), "the peer's platform got the call's id")
	started(got, before, after)
	assert.Equal(t, []string{"b"}, got.header.Values(proxy.HeaderNode), "run at the peer")

	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {}})
	got, before, after = called(nil)
	require.Equal(t, http.StatusServiceUnavailable, got.code)
	assert.NotEmpty(t, got.header.Get(proxy.HeaderCallID))
	started(got, before, after)
	assert.Empty(t, got.header.Values(proxy.HeaderNode), "run nowhere")
	assert.Equal(t, []string{proxy.RefusedCapacity}, got.header.Values(proxy.HeaderRejected), "and says so")

	before = time.Now()
	got = s.do(a.UserAddr(), "/function/nothere", nil)
	require.Equal(t, http.StatusNotFound, got.code)
	started(got, before, time.Now())
	assert.Equal(t, []string{proxy.RefusedUnknown}, got.header.Values(proxy.HeaderRejected))

	// Every peer refused (425): not run anywhere either.
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": {}})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	got = s.do(a.UserAddr(), "/function/echo", nil)
	require.Equal(t, http.StatusServiceUnavailable, got.code)
	assert.Equal(t, []string{proxy.RefusedCapacity}, got.header.Values(proxy.HeaderRejected))

	// A platform's own answer cannot claim it, here or at a peer.
	pa.Fail.Store(http.StatusServiceUnavailable)
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	got = s.do(a.UserAddr(), "/function/echo", nil)
	require.Equal(t, http.StatusServiceUnavailable, got.code)
	assert.Empty(t, got.header.Values(proxy.HeaderRejected), "the platform's 503: it ran here")
	pa.Fail.Store(0)
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	got = s.do(a.UserAddr(), "/function/echo", nil)
	require.Equal(t, http.StatusOK, got.code)
	assert.Empty(t, got.header.Values(proxy.HeaderRejected), "nor the peer's platform's")
}

// testStalledConnectIsAFailedForward: a peer whose connections never come
// up (its SYNs dropped, as on a lossy link) costs a forward the connect
// timeout, then another peer answers it; the attempt counts against the
// stalled peer in the forwards' measures (dfaas.ForwardMeter), as a failed
// connection does, so that the balancer moves its share.
func testStalledConnectIsAFailedForward(t *testing.T, s *suite) {
	a, _ := s.node("a")
	m, isMeter := a.(dfaas.ForwardMeter)
	require.True(t, isMeter, "the data plane measures no forwards: implement dfaas.ForwardMeter")
	ok, pok := s.node("ok")
	stalled := blackHole(t)
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "stalled", Addr: stalled, Weight: 0.5, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.5, Cap: 1e6}}}})
	const calls = 4
	for range calls {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusOK, got.code, got.body)
	}
	assert.Equal(t, int64(calls), pok.Calls.Load(), "each ran once, at the peer that answers")
	var h map[dfaas.NodeID]dfaas.ForwardHealth
	assert.Eventually(t, func() bool { // HAProxy's come from its request log, after the answers
		h = m.Forwards(time.Now())["echo"]
		return h["stalled"].Attempts > 0
	}, 5*time.Second, 10*time.Millisecond, "the stalled peer's attempts are not measured: %+v", h)
	assert.Zero(t, h["stalled"].Success, "every attempt at the stalled peer failed: %+v", h)
	assert.LessOrEqual(t, h["stalled"].Attempts, uint64(calls), "%+v", h)
	assert.Equal(t, 1.0, h["ok"].Success, "%+v", h)

	// A peer that refuses a request whose body came slowly failed nothing:
	// the body's time is not an attempt's.
	full, _ := s.node("full")
	s.apply(full, map[string]dfaas.FunctionPlan{"echo": {}}) // no capacity: it refuses
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "full", Addr: full.PeerAddr(), Weight: 0.5, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.5, Cap: 1e6}}}})
	for range 2 {
		pr, pw := io.Pipe()
		go func() {
			_, _ = io.WriteString(pw, "x")
			time.Sleep(700 * time.Millisecond)
			_, _ = io.WriteString(pw, "y")
			_ = pw.Close()
		}()
		req, err := http.NewRequest("POST", "http://"+a.UserAddr()+"/function/echo", pr)
		require.NoError(t, err)
		req.ContentLength = 2
		resp, err := client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
	time.Sleep(200 * time.Millisecond) // HAProxy's log lines
	h = m.Forwards(time.Now())["echo"]
	assert.True(t, h["full"].Attempts == 0 || h["full"].Success == 1, "a refusal after a slow body counted as a failure: %+v", h)
}

// testPlatformRefusalStatusIsNotARefusal: a function that itself answers
// StatusRefused ran: its peer answers 502, and the forwarder does not try
// another peer.
func testPlatformRefusalStatusIsNotARefusal(t *testing.T, s *suite) {
	a, b, c, pb, pc := s.senderAndPeers("early")
	s.apply(a, map[string]dfaas.FunctionPlan{"early": {Peers: []dfaas.Share{
		{Node: "b", Addr: b.PeerAddr(), Weight: 0.5, Cap: 1e6},
		{Node: "c", Addr: c.PeerAddr(), Weight: 0.5, Cap: 1e6}}}})
	for i := range 4 {
		got := s.do(a.UserAddr(), "/function/early", nil)
		assert.Equal(t, http.StatusBadGateway, got.code, "request %d", i)
		assert.Equal(t, int64(i+1), pb.Calls.Load()+pc.Calls.Load(), "request %d ran more than once", i)
	}
}

// testBusyPlatform: a platform's 429 is not a refusal - a function may
// answer it after running - so it is never retried: it reaches the user and
// counts as rejected where the user arrived and as refused on the peer,
// which counts no receipt for it.
func testBusyPlatform(t *testing.T, s *suite) {
	a, pa := s.node("a")
	busy, pbusy := s.node("busy")
	ok, pok := s.node("ok")
	pbusy.Busy.Store(true)
	s.apply(busy, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "busy", Addr: busy.PeerAddr(), Weight: 0.5, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.5, Cap: 1e6}}}})
	const n = 6
	codes := map[int]int{}
	for range n {
		codes[s.do(a.UserAddr(), "/function/echo", nil).code]++
	}
	assert.Equal(t, n, codes[http.StatusOK]+codes[http.StatusTooManyRequests], "%v", codes)
	assert.Positive(t, codes[http.StatusTooManyRequests], "the busy peer was picked: %v", codes)
	assert.Equal(t, int64(codes[http.StatusOK]), pok.Calls.Load(), "no 429 was retried on the other peer")
	ca, cb, co := s.counts(a, "echo"), s.counts(busy, "echo"), s.counts(ok, "echo")
	assert.Equal(t, uint64(codes[http.StatusOK]), ca.ForwardedOut)
	assert.Equal(t, map[dfaas.NodeID]uint64{"ok": uint64(codes[http.StatusOK])}, nonZero(ca.Forwarded))
	assert.Equal(t, uint64(codes[http.StatusTooManyRequests]), ca.Rejected)
	assert.Zero(t, ca.FailedTries, "nothing retried")
	assert.Zero(t, cb.ReceivedIn)
	assert.Equal(t, uint64(codes[http.StatusTooManyRequests]), cb.Refused)
	assert.Equal(t, uint64(codes[http.StatusOK]), co.ReceivedIn)

	// At the user's own node the 429 reaches the user: rejected, not served.
	pa.Busy.Store(true)
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited})
	got := s.do(a.UserAddr(), "/function/echo", nil)
	assert.Equal(t, http.StatusTooManyRequests, got.code)
	ca = s.counts(a, "echo")
	assert.Equal(t, uint64(codes[http.StatusTooManyRequests]+1), ca.Rejected)
	assert.Zero(t, ca.ServedLocal)
	assert.Equal(t, ca.Arrivals, ca.ServedLocal+ca.ForwardedOut+ca.Rejected)
}

// nonZero drops the zero entries of a per-peer count.
func nonZero(m map[dfaas.NodeID]uint64) map[dfaas.NodeID]uint64 {
	out := map[dfaas.NodeID]uint64{}
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

// testRefusalOpensTheCaps: when a peer refuses, the plan overrated it, and
// the other peers are tried beyond their Cap (they refuse for themselves
// when full): a peer with a Cap too small for a single request serves
// every request the refusing peer sends back.
func testRefusalOpensTheCaps(t *testing.T, s *suite) {
	a, _ := s.node("a")
	full, _ := s.node("full")
	ok, pok := s.node("ok")
	s.apply(full, map[string]dfaas.FunctionPlan{"echo": {}})
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "full", Addr: full.PeerAddr(), Weight: 0.99, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.01, Cap: 0.001}}}})
	for i := range 6 {
		got := s.do(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, http.StatusOK, got.code, "request %d: %s", i, got.body)
	}
	assert.Equal(t, int64(6), pok.Calls.Load())
}

// testTimeoutAfterSend: a peer that received a POST and does not answer
// within the forward timeout may still run it: the user gets 504 and the
// request goes to no other peer.
func testTimeoutAfterSend(t *testing.T, s *suite) {
	a, _ := s.nodeWith(proxy.Spec{Node: "a", Timeout: 300 * time.Millisecond})
	ok, pok := s.node("ok")
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })                 // lets the hanging handlers end with the test
	hang := newFakePeer(t, func(net.Conn) { <-hold }) // never answers
	got := &hang.got
	s.apply(ok, map[string]dfaas.FunctionPlan{"echo": unlimited})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "hang", Addr: hang.addr, Weight: 0.9, Cap: 1e6},
		{Node: "ok", Addr: ok.PeerAddr(), Weight: 0.1, Cap: 1e6}}}})
	timeouts := 0
	for i := range 5 {
		before := got.Load() + pok.Calls.Load()
		ans, err := s.try(a.UserAddr(), "/function/echo", nil)
		assert.Equal(t, before+1, got.Load()+pok.Calls.Load(), "request %d ran %d times", i, got.Load()+pok.Calls.Load()-before)
		if err == nil && ans.code == http.StatusOK {
			continue
		}
		timeouts++
		if err == nil {
			assert.Equal(t, http.StatusGatewayTimeout, ans.code, "request %d: %s", i, ans.body)
		}
	}
	assert.Equal(t, int64(timeouts), got.Load())
	assert.Positive(t, timeouts, "the hanging peer, weighted 0.9, took none (test setup)")
}

// testPeerPortCapacity: back-to-back forwarded requests over a capacity
// of 5 req/s: a second's worth (proxy.AdmissionWindow) runs at once, 5 (6
// if a token came back or HAProxy's window turned meanwhile), the rest are
// refused, and the peer's counters add up to what the client saw. A helper
// takes a bunch of retries up to that.
func testPeerPortCapacity(t *testing.T, s *suite) {
	b, pb := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": {Limit: 5, Capacity: 5}})
	ok, refused := 0, 0
	start := time.Now()
	for range 20 {
		switch got := s.do(b.PeerAddr(), "/function/echo", map[string]string{proxy.HeaderHop: "1"}); got.code {
		case http.StatusOK:
			ok++
		case proxy.StatusRefused:
			refused++
			assert.Equal(t, proxy.RefusedCapacity, got.header.Get(proxy.HeaderRefused))
			assert.NotEmpty(t, got.header.Get("Retry-After"))
		default:
			t.Fatalf("status %d", got.code)
		}
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		assert.Equal(t, 5, ok, "a second's worth of the capacity at once, and no more within the second")
	} else { // a slow machine: the window slid on meanwhile
		t.Logf("20 requests took %v", took)
		assert.GreaterOrEqual(t, ok, 5)
		assert.LessOrEqual(t, ok, 5+int(5*took.Seconds()))
	}
	c := s.counts(b, "echo")
	assert.Equal(t, uint64(ok), c.ReceivedIn)
	assert.Equal(t, uint64(refused), c.Refused)
	assert.Equal(t, int64(ok), pb.Calls.Load())
}

// testExecutions: every local execution, a user's or a peer's, is
// measured (Counts.Executions), those that ran alone throughout also as
// Solo, and the platform's 429s and failures are
// counted apart (Busy, Failed), on both listeners.
func testExecutions(t *testing.T, s *suite) {
	a, pa := s.node("a")
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": unlimited, "slow": unlimited})
	measured := func(fn string, executions, solo, busy, failed uint64) {
		t.Helper()
		var c proxy.Counts
		ok := assert.Eventually(t, func() bool { // HAProxy's come from its log, a moment later
			c = s.counts(a, fn)
			return c.Executions.Count() == executions && c.Solo.Count() == solo && c.Busy == busy && c.Failed == failed
		}, 5*time.Second, 20*time.Millisecond)
		if !ok {
			t.Errorf("%s: executions %d solo %d busy %d failed %d, want %d %d %d %d", fn, c.Executions.Count(), c.Solo.Count(),
				c.Busy, c.Failed, executions, solo, busy, failed)
		}
	}
	for range 3 {
		assert.Equal(t, http.StatusOK, s.do(a.UserAddr(), "/function/echo", nil).code)
	}
	assert.Equal(t, http.StatusOK, s.do(a.PeerAddr(), "/function/echo", map[string]string{proxy.HeaderHop: "1", proxy.HeaderFrom: "b"}).code)
	measured("echo", 4, 4, 0, 0)

	// Two "slow" at once: the second started while the first ran, and the
	// first did not end alone.
	done := make(chan int, 2)
	began := time.Now()
	go func() { done <- s.do(a.UserAddr(), "/function/slow", nil).code }()
	require.Eventually(t, func() bool { return s.counts(a, "slow").InFlight == 1 }, 5*time.Second, 10*time.Millisecond)
	go func() {
		done <- s.do(a.PeerAddr(), "/function/slow", map[string]string{proxy.HeaderHop: "1", proxy.HeaderFrom: "b"}).code
	}()
	require.Eventually(t, func() bool { return s.counts(a, "slow").InFlight == 2 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	pa.Release()
	assert.Equal(t, http.StatusOK, <-done)
	assert.Equal(t, http.StatusOK, <-done)
	measured("slow", 2, 0, 0, 0)
	// Occupied: from the first's start to the second's end, counted once.
	occupied := s.counts(a, "slow").Occupied
	assert.GreaterOrEqual(t, occupied, 100*time.Millisecond)
	assert.LessOrEqual(t, occupied, time.Since(began), "two overlapping executions count their span once")
	assert.GreaterOrEqual(t, s.counts(a, "slow").Executions.Quantile(1), time.Duration(0))

	// The platform's refusals and failures, of either origin.
	pa.Busy.Store(true)
	assert.Equal(t, http.StatusTooManyRequests, s.do(a.UserAddr(), "/function/echo", nil).code)
	assert.Equal(t, http.StatusTooManyRequests, s.do(a.PeerAddr(), "/function/echo", map[string]string{proxy.HeaderHop: "1", proxy.HeaderFrom: "b"}).code)
	measured("echo", 6, 6, 2, 0)
	pa.Busy.Store(false)
	for _, code := range []int{http.StatusGatewayTimeout, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusInternalServerError} {
		pa.Fail.Store(int64(code))
		assert.Equal(t, code, s.do(a.UserAddr(), "/function/echo", nil).code)
	}
	measured("echo", 10, 10, 2, 3) // a function's own 500 is not the platform failing
}

// testPeerPortNeverForwards: a request that came from a peer runs here or
// is refused here; it is never sent on, even when this node's plan has
// peers with room for the function (one hop at most: no loops, no request
// that wanders). Over capacity it is refused, and the plan's peer sees
// nothing.
func testPeerPortNeverForwards(t *testing.T, s *suite) {
	b, pb := s.node("b")
	c, pc := s.node("c")
	s.apply(c, map[string]dfaas.FunctionPlan{"echo": unlimited})
	// b runs nothing itself, and plans c with every room.
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: "c", Addr: c.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	for range 5 {
		got := s.do(b.PeerAddr(), "/function/echo", map[string]string{proxy.HeaderHop: "1", proxy.HeaderFrom: "a"})
		assert.Equal(t, proxy.StatusRefused, got.code, "a peer's request is run or refused, never sent on")
		assert.Equal(t, proxy.RefusedCapacity, got.header.Get(proxy.HeaderRefused))
	}
	assert.Zero(t, pc.Calls.Load(), "the plan's peer got a peer's request")
	assert.Zero(t, pb.Calls.Load())
	cb, cc := s.counts(b, "echo"), s.counts(c, "echo")
	assert.Equal(t, uint64(5), cb.Refused)
	assert.Zero(t, cb.ForwardedOut)
	assert.Zero(t, cc.ReceivedIn)
	// The same plan forwards b's own users' requests: the peer is usable.
	got := s.do(b.UserAddr(), "/function/echo", nil)
	assert.Equal(t, http.StatusOK, got.code)
	assert.Equal(t, "c", got.body)
}

// testForwardsAreMeasured: the data plane measures its forwards per
// function and peer (dfaas.ForwardMeter): a peer whose platform takes
// 40 ms more is measured that much slower, one whose platform fails (502)
// has a lower success rate, and refusals are no failures.
func testForwardsAreMeasured(t *testing.T, s *suite) {
	a, _ := s.node("a")
	m, ok := a.(dfaas.ForwardMeter)
	require.True(t, ok, "the data plane measures no forwards: implement dfaas.ForwardMeter")
	b, _ := s.node("b")
	c, pc := s.node("c")
	d, pd := s.node("d")
	pc.Delay.Store(int64(40 * time.Millisecond))
	pd.Fail.Store(http.StatusBadGateway)
	for _, n := range []proxy.DataPlane{b, c, d} {
		s.apply(n, map[string]dfaas.FunctionPlan{"echo": unlimited})
	}
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
		{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}, {Node: "c", Addr: c.PeerAddr(), Weight: 1, Cap: 1e6},
		{Node: "d", Addr: d.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	const calls = 30
	for range calls {
		s.do(a.UserAddr(), "/function/echo", nil)
	}
	var h map[dfaas.NodeID]dfaas.ForwardHealth
	require.Eventually(t, func() bool { // HAProxy's come from its request log, after the answers
		h = m.Forwards(time.Now())["echo"]
		return h["b"].Attempts+h["c"].Attempts+h["d"].Attempts == calls
	}, 5*time.Second, 10*time.Millisecond, "measured: %+v", h)
	for _, n := range []dfaas.NodeID{"b", "c", "d"} {
		require.Positive(t, h[n].Attempts, "no forward to %s", n)
	}
	assert.GreaterOrEqual(t, h["c"].Latency, 40*time.Millisecond, "the slow peer: %+v", h)
	assert.Less(t, h["b"].Latency, h["c"].Latency/2, "the fast peer: %+v", h)
	assert.Equal(t, 1.0, h["b"].Success)
	assert.Equal(t, 1.0, h["c"].Success, "slow is not failed")
	assert.Less(t, h["d"].Success, 0.5, "the failing peer: %+v", h)

	// Refusals say nothing of a peer's health.
	s.apply(b, map[string]dfaas.FunctionPlan{"echo": {Limit: 0, Capacity: 0}})
	s.apply(a, map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})
	before := m.Forwards(time.Now())["echo"]["b"]
	for range 5 {
		assert.Equal(t, http.StatusServiceUnavailable, s.do(a.UserAddr(), "/function/echo", nil).code)
	}
	time.Sleep(200 * time.Millisecond) // HAProxy's log lines
	after := m.Forwards(time.Now())["echo"]["b"]
	assert.Equal(t, before.Success, after.Success)
	assert.Equal(t, before.Attempts, after.Attempts)
}

// pending is a request sent in the background, and what came of it.
type pending struct {
	done chan struct{}
	got  answer
	err  error
}

// send posts to a function through addr in the background.
func (s *suite) send(addr, path string) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		req, err := http.NewRequest("POST", "http://"+addr+path, strings.NewReader("x"))
		if err != nil {
			p.err = err
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			p.err = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		p.got, p.err = answer{resp.StatusCode, resp.Header, string(b)}, err
	}()
	return p
}

// wait returns the request's outcome, or fails the test after d.
func (p *pending) wait(t *testing.T, d time.Duration) (answer, error) {
	t.Helper()
	select {
	case <-p.done:
		return p.got, p.err
	case <-time.After(d):
		t.Fatalf("no answer within %v", d)
		return answer{}, nil
	}
}

// testForwardSurvivesLeavingThePlan: a forward in flight to a peer that
// leaves the plan (a moment's suspicion, a lossy link) is answered by that
// peer, whether it stays out or comes back while the forward waits, and
// applying plans meanwhile does not fail; the peer back in the plan takes
// forwards again.
func testForwardSurvivesLeavingThePlan(t *testing.T, s *suite) {
	a, _ := s.node("a")
	b, pb := s.node("b")
	s.apply(b, map[string]dfaas.FunctionPlan{"slow": unlimited})
	withB := map[string]dfaas.FunctionPlan{"slow": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}}
	withoutB := map[string]dfaas.FunctionPlan{"slow": {}}

	s.apply(a, withB)
	first := s.send(a.UserAddr(), "/function/slow")
	require.Eventually(t, func() bool { return pb.Calls.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	s.apply(a, withoutB)
	s.apply(a, withoutB) // again, with the forward still in flight
	s.apply(a, withB)    // back before it finished
	s.apply(a, withoutB)
	select {
	case <-first.done:
		t.Fatalf("the forward ended before b answered it: %d %v", first.got.code, first.err)
	case <-time.After(200 * time.Millisecond):
	}
	s.apply(a, withB)
	pb.Release()
	got, err := first.wait(t, 5*time.Second)
	require.NoError(t, err, "the forward in flight was cut")
	assert.Equal(t, http.StatusOK, got.code)
	assert.Equal(t, "b", got.body)

	got = s.do(a.UserAddr(), "/function/slow", nil)
	assert.Equal(t, http.StatusOK, got.code, "b back in the plan takes forwards")
	assert.Equal(t, "b", got.body)
	assert.Equal(t, int64(2), pb.Calls.Load())

	// Out of the plan with nothing in flight, then back: still served.
	s.apply(a, withoutB)
	s.apply(a, withoutB)
	s.apply(a, withB)
	assert.Equal(t, "b", s.do(a.UserAddr(), "/function/slow", nil).body)
}

// testAbortForwards: a data plane that can cut the forwards in flight to a
// peer declared down (AbortForwards, which the node wires to the overlay's
// suspicion) ends them at once, sends them nowhere else (they may have
// run), leaves other peers' forwards alone, and forwards to the peer again
// afterwards.
func testAbortForwards(t *testing.T, s *suite) {
	a, b, c, pb, pc := s.senderAndPeers("slow")
	aborter, ok := a.(interface{ AbortForwards(dfaas.NodeID) })
	if !ok {
		t.Skipf("%s cannot cut forwards in flight (no AbortForwards)", s.name)
	}
	s.apply(a, map[string]dfaas.FunctionPlan{"slow": {Peers: []dfaas.Share{
		{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}, {Node: "c", Addr: c.PeerAddr(), Weight: 1e-9, Cap: 1e6}}}})

	held := s.send(a.UserAddr(), "/function/slow")
	require.Eventually(t, func() bool { return pb.Calls.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	aborter.AbortForwards("c") // nothing in flight there
	select {
	case <-held.done:
		t.Fatalf("answered before b was declared down: %d %v", held.got.code, held.err)
	case <-time.After(200 * time.Millisecond):
	}
	aborter.AbortForwards("b")
	got, err := held.wait(t, 2*time.Second)
	if err == nil { // else the connection was closed without an answer
		// A gateway error: the embedded data plane answers 504; HAProxy
		// answers a stream its runtime API cut with 502.
		assert.Contains(t, []int{http.StatusBadGateway, http.StatusGatewayTimeout}, got.code, got.body)
	}
	assert.Zero(t, pc.Calls.Load(), "sent to b, so never sent elsewhere")

	pb.Release()
	got = s.do(a.UserAddr(), "/function/slow", nil)
	assert.Equal(t, http.StatusOK, got.code)
	assert.Equal(t, "b", got.body)
}

// testRoundRobinGoesOnAcrossPlans: a plan every 20 requests (the agent
// applies one every tick) does not restart the round robin, so a peer
// whose weight is less than one plan's requests' worth - a degraded
// peer's probes - is still reached: about 3 of 200 at 1-2%.
func testRoundRobinGoesOnAcrossPlans(t *testing.T, s *suite) {
	a, b, c, pb, pc := s.senderAndPeers("echo")
	planWith := func(wc float64) map[string]dfaas.FunctionPlan {
		return map[string]dfaas.FunctionPlan{"echo": {Peers: []dfaas.Share{
			{Node: "b", Addr: b.PeerAddr(), Weight: 1 - wc, Cap: 1e6}, {Node: "c", Addr: c.PeerAddr(), Weight: wc, Cap: 1e6}}}}
	}
	for i := range 200 {
		if i%20 == 0 {
			s.apply(a, planWith([]float64{0.01, 0.02}[(i/20)%2]))
		}
		assert.Equal(t, http.StatusOK, s.do(a.UserAddr(), "/function/echo", nil).code)
	}
	assert.Equal(t, int64(200), pb.Calls.Load()+pc.Calls.Load())
	assert.GreaterOrEqual(t, pc.Calls.Load(), int64(2), "c, at 1-2%%, reached across plans")
	assert.LessOrEqual(t, pc.Calls.Load(), int64(4))
}
