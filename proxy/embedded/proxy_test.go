package embedded

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is a local platform that answers with the node's name and counts
// what it executes, remembering the last hop marker it saw.
type echo struct {
	name    string
	calls   atomic.Int64
	lastHop atomic.Value
}

func (e *echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.calls.Add(1)
	e.lastHop.Store(r.Header.Get(proxy.HeaderHop))
	body, _ := io.ReadAll(r.Body)
	_, _ = io.WriteString(w, e.name+":"+string(body))
}

func newTestProxy(t *testing.T, node string) (*Proxy, *echo) {
	t.Helper()
	e := &echo{name: node}
	p, err := New(Config{Node: dfaas.NodeID(node)}, e)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p, e
}

func apply(t *testing.T, p *Proxy, fns map[string]dfaas.FunctionPlan) {
	t.Helper()
	require.NoError(t, p.Apply(context.Background(), dfaas.Plan{Functions: fns}))
}

func do(t *testing.T, method, url string, hdr map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// counts reads a proxy's counters.
func counts(t *testing.T, p *Proxy) map[string]proxy.Counts {
	t.Helper()
	c, err := p.Counts(context.Background())
	require.NoError(t, err)
	return c
}

func TestUnknownFunctionIs404(t *testing.T) {
	p, e := newTestProxy(t, "a")
	apply(t, p, map[string]dfaas.FunctionPlan{"figlet": {Limit: 10, Capacity: 10}})
	for _, path := range []string{"/function/nope", "/function/UPPER", "/other"} {
		code, _, _ := do(t, "GET", "http://"+p.UserAddr()+path, nil, "")
		assert.Equal(t, http.StatusNotFound, code, path)
		code, _, _ = do(t, "GET", "http://"+p.PeerAddr()+path, map[string]string{proxy.HeaderHop: "1"}, "")
		assert.Equal(t, proxy.StatusRefused, code, path)
	}
	assert.Zero(t, e.calls.Load())
	assert.NotContains(t, counts(t, p), "nope")
}

func TestLocalAdmissionAndForward(t *testing.T) {
	a, ea := newTestProxy(t, "a")
	b, eb := newTestProxy(t, "b")
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	// a admits nothing locally: every request goes to b.
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})

	code, hdr, body := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet?x=1", nil, "hi")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "b:hi", body)
	assert.Empty(t, hdr.Get(proxy.HeaderRefused))
	assert.Equal(t, "1", eb.lastHop.Load())
	assert.Zero(t, ea.calls.Load())
	ca, cb := counts(t, a)["figlet"], counts(t, b)["figlet"]
	assert.Equal(t, uint64(1), ca.Arrivals)
	assert.Equal(t, uint64(1), ca.ForwardedOut)
	assert.Equal(t, map[dfaas.NodeID]uint64{"b": 1}, ca.Forwarded)
	assert.Equal(t, uint64(1), cb.ReceivedIn)
	assert.Zero(t, cb.Arrivals, "a forwarded request is not a user arrival at the peer")
	assert.Equal(t, uint64(1), ca.Latency.Count())
}

func TestForgedHopOnUserPortIsUserTraffic(t *testing.T) {
	a, ea := newTestProxy(t, "a")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	code, _, _ := do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", map[string]string{proxy.HeaderHop: "1", proxy.HeaderFrom: "evil"}, "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "", ea.lastHop.Load(), "hop marker stripped")
	c := counts(t, a)["figlet"]
	assert.Equal(t, uint64(1), c.Arrivals)
	assert.Equal(t, uint64(1), c.ServedLocal)
	assert.Zero(t, c.ReceivedIn)
}

func TestPeerPortRequiresHopMarker(t *testing.T) {
	a, ea := newTestProxy(t, "a")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	code, _, _ := do(t, "GET", "http://"+a.PeerAddr()+"/function/figlet", nil, "")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Zero(t, ea.calls.Load())
}

func TestRefusedForwardIsRetriedOnNextPeer(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	full, efull := newTestProxy(t, "full")
	b, eb := newTestProxy(t, "b")
	apply(t, full, map[string]dfaas.FunctionPlan{"figlet": {}}) // no capacity: refuses
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{
		{Node: "dead", Addr: "127.0.0.1:1", Weight: 0.5, Cap: 1000}, // nothing listens there
		{Node: "full", Addr: full.PeerAddr(), Weight: 0.4, Cap: 1000},
		{Node: "b", Addr: b.PeerAddr(), Weight: 0.1, Cap: 1000},
	}}})
	for range 10 {
		code, _, body := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "x")
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, "b:x", body, "body replayed intact on retry")
	}
	assert.Equal(t, int64(10), eb.calls.Load())
	assert.Zero(t, efull.calls.Load())
	ca := counts(t, a)["figlet"]
	assert.Equal(t, uint64(10), ca.ForwardedOut)
	// Requests try dead and full before b: outlier detection ejects dead
	// after its 5th failure in a row, and not full, which refuses for
	// capacity (a peer whose capacity fell refuses until its next advert:
	// it takes 30 refusals in a row to eject one).
	refused := counts(t, full)["figlet"].Refused
	assert.GreaterOrEqual(t, refused, uint64(8), "full was tried first or second nearly every time")
	assert.Equal(t, 5+refused, ca.FailedTries)
	assert.Zero(t, ca.Rejected)
	assert.Equal(t, []dfaas.NodeID{"dead"}, a.Ejected())
}

func TestNoCapacityAnywhereIs503WithRetryAfter(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	b, _ := newTestProxy(t, "b")
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})
	code, hdr, _ := do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "1", hdr.Get("Retry-After"))
	assert.Equal(t, uint64(1), counts(t, a)["figlet"].Rejected)
}

func TestLocalCapacityBeyondUserLimitIsLastResort(t *testing.T) {
	a, ea := newTestProxy(t, "a")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Limit: 0, Capacity: 1000}})
	code, _, _ := do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, int64(1), ea.calls.Load())
}

func TestTriggerFiresOnceWhenLimitFirstCrossed(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	plan := map[string]dfaas.FunctionPlan{"figlet": {Limit: 1, Capacity: 1}}
	apply(t, a, plan)
	for range 5 {
		do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	}
	select {
	case <-a.Trigger():
	case <-time.After(time.Second):
		t.Fatal("no trigger")
	}
	// Still over the limit after the next plan: no new trigger.
	apply(t, a, plan)
	for range 5 {
		do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	}
	select {
	case <-a.Trigger():
		t.Fatal("sustained overload fired again")
	default:
	}
}

func TestRemovedFunctionIs404AndItsStateIsDropped(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})
	do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	assert.Equal(t, uint64(1), counts(t, a)["figlet"].ServedLocal)
	apply(t, a, map[string]dfaas.FunctionPlan{})
	code, _, _ := do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.NotContains(t, counts(t, a), "figlet")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})
	do(t, "GET", "http://"+a.UserAddr()+"/function/figlet", nil, "")
	assert.Equal(t, uint64(1), counts(t, a)["figlet"].ServedLocal, "counters start again (a reset)")
}

// TestFreshFunctionsEveryTickArePruned: 100 plans, each naming 1024 fresh
// functions (as plans do when a member advertises fresh names every tick)
// with fresh peers: the proxy holds only the current plan's functions and
// peers.
func TestFreshFunctionsEveryTickArePruned(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	for tick := range 100 {
		fns := map[string]dfaas.FunctionPlan{"figlet": {Limit: 1, Capacity: 1, Peers: []dfaas.Share{
			{Node: dfaas.NodeID(fmt.Sprintf("peer-%d", tick)), Addr: "127.0.0.1:9", Weight: 1, Cap: 1}}}}
		for i := range 1024 {
			fns[fmt.Sprintf("fn-%d-%d", tick, i)] = dfaas.FunctionPlan{}
		}
		apply(t, a, fns)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	assert.Len(t, a.functions, 1025)
	assert.Len(t, *a.routes.Load(), 1025)
	assert.Len(t, a.functions["figlet"].caps, 1, "only the current plan's peer")
	assert.Contains(t, a.functions, "fn-99-0")
	assert.NotContains(t, a.functions, "fn-98-0")
}

func TestApplyRejectsBadNames(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	err := a.Apply(context.Background(), dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"../etc": {}}})
	assert.ErrorIs(t, err, dfaas.ErrInvalidName)
}

func TestConfigValidate(t *testing.T) {
	assert.ErrorIs(t, Config{}.Validate(), dfaas.ErrInvalidConfig)
	assert.ErrorIs(t, Config{Node: "a", RetryAfter: time.Millisecond}.Validate(), dfaas.ErrInvalidConfig)
	_, err := New(Config{Node: "a"}, nil)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	_, err = New(Config{Node: "a", UserAddr: "256.0.0.1:0"}, http.NotFoundHandler())
	assert.Error(t, err)
}

// TestBufferedForwardsAreBounded: forwards hold their bodies in memory (for
// retries) within MaxBuffered in all; beyond it the user gets 503 with
// Retry-After, the peer nothing, and the bytes are given back.
func TestBufferedForwardsAreBounded(t *testing.T) {
	e := &echo{name: "a"}
	a, err := New(Config{Node: "a", MaxBuffered: 1000}, e)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	b, eb := newTestProxy(t, "b")
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})
	code, hdr, _ := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, strings.Repeat("x", 5000))
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.NotEmpty(t, hdr.Get("Retry-After"))
	assert.Zero(t, eb.calls.Load())
	assert.Equal(t, uint64(1), counts(t, a)["figlet"].Rejected)
	// The handler gives the bytes back when it returns, which may be just
	// after the client has read the whole answer.
	given := func() bool { return a.buffered.Load() == 0 }
	require.Eventually(t, given, 5*time.Second, time.Millisecond, "the bytes were given back")
	for range 3 {
		code, _, body := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, strings.Repeat("y", 900))
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, "b:"+strings.Repeat("y", 900), body)
	}
	require.Eventually(t, given, 5*time.Second, time.Millisecond)
}

// TestForwardBodyLimit: a forward holds its body for retries, up to
// MaxBody: a larger one is answered 413 and reaches no peer.
func TestForwardBodyLimit(t *testing.T) {
	a, err := New(Config{Node: "a", MaxBody: 1000}, &echo{name: "a"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	b, eb := newTestProxy(t, "b")
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})
	code, _, _ := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, strings.Repeat("x", 1001))
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.Zero(t, eb.calls.Load())
	code, _, _ = do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, strings.Repeat("x", 1000))
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, int64(1), eb.calls.Load())
}

// TestPeerCountersOfGonePeersAreForgotten: the per-peer counter of a peer
// that no plan has named for forgetPeersAfter goes (a federation whose
// members come and go must not grow it, or the metrics' peer labels,
// without end); one named again within that time keeps its count.
func TestPeerCountersOfGonePeersAreForgotten(t *testing.T) {
	b, _ := newTestProxy(t, "b")
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := &echo{name: "a"}
	a, err := New(Config{Node: "a", Now: clock}, e)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	toB := map[string]dfaas.FunctionPlan{"figlet": {Limit: 0, Capacity: 0, Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 100}}}}
	alone := map[string]dfaas.FunctionPlan{"figlet": {Limit: 0, Capacity: 0}}
	apply(t, a, toB)
	code, _, body := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "x")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, uint64(1), counts(t, a)["figlet"].Forwarded["b"])

	advance(5 * time.Minute)
	apply(t, a, alone)
	assert.Equal(t, uint64(1), counts(t, a)["figlet"].Forwarded["b"], "kept while it may come back")
	advance(5 * time.Minute)
	apply(t, a, toB) // back within forgetPeersAfter: keeps counting
	advance(forgetPeersAfter - time.Second)
	apply(t, a, alone)
	assert.Equal(t, uint64(1), counts(t, a)["figlet"].Forwarded["b"])
	advance(2 * time.Second)
	apply(t, a, alone)
	assert.NotContains(t, counts(t, a)["figlet"].Forwarded, dfaas.NodeID("b"), "forgotten")
}

// TestStalledBodyIsCutOff: a client that promises a body and stops sending
// it is cut off after BodyIdle of silence; a function that runs longer than
// BodyIdle once its body is read is not.
func TestStalledBodyIsCutOff(t *testing.T) {
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(600 * time.Millisecond) // longer than BodyIdle
		_, _ = w.Write(body)
	})
	p, err := New(Config{Node: "a", BodyIdle: 200 * time.Millisecond}, slow)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	apply(t, p, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})

	code, _, body := do(t, "POST", "http://"+p.UserAddr()+"/function/figlet", nil, "whole")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "whole", body, "a function outlasting BodyIdle after its body is whole")

	for _, addr := range []string{p.UserAddr(), p.PeerAddr()} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, err = io.WriteString(conn, "POST /function/figlet HTTP/1.1\r\nHost: x\r\nX-Dfaas-Hop: 1\r\nContent-Length: 100\r\n\r\nonly ten b")
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		start := time.Now()
		_, err = io.ReadAll(conn) // an answer, then the close; or the close
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "%s: the stalled client still holds its connection after 5 s", addr)
		assert.Less(t, time.Since(start), 3*time.Second, addr)
		_ = conn.Close()
	}
}

// cutShort is a platform whose answer of unknown length breaks off, as
// faas/openfaas relays a gateway's answer that was cut: it aborts.
var cutShort = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, "part")
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
})

// TestACutAnswerIsCutForTheUser: an answer cut off where it ran reaches the
// user cut off, run locally or forwarded (never a part passed off as the
// whole), and still counts as run. Forwarded answers keep their trailers.
func TestACutAnswerIsCutForTheUser(t *testing.T) {
	local, err := New(Config{Node: "a"}, cutShort)
	require.NoError(t, err)
	t.Cleanup(func() { _ = local.Close() })
	apply(t, local, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})

	b, err := New(Config{Node: "b"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/function/cut" {
			cutShort(w, r)
			return
		}
		w.Header().Set("Trailer", "X-Sum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	a, _ := newTestProxy(t, "c")
	apply(t, b, map[string]dfaas.FunctionPlan{"cut": {Limit: 100, Capacity: 100}, "whole": {Limit: 100, Capacity: 100}})
	apply(t, a, map[string]dfaas.FunctionPlan{
		"cut":   {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 100}}},
		"whole": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 100}}}})

	for _, u := range []string{"http://" + local.UserAddr() + "/function/figlet", "http://" + a.UserAddr() + "/function/cut"} {
		resp, err := http.Get(u)
		require.NoError(t, err, u)
		_, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Error(t, err, "%s: the user can tell the answer was cut", u)
	}
	c := counts(t, local)["figlet"]
	assert.EqualValues(t, 1, c.Arrivals)
	assert.EqualValues(t, 1, c.ServedLocal, "an aborted answer still ran")
	assert.EqualValues(t, 0, c.InFlight)
	assert.EqualValues(t, 1, counts(t, b)["cut"].ReceivedIn)

	resp, err := http.Get("http://" + a.UserAddr() + "/function/whole")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, "body", string(body))
	assert.Equal(t, "42", resp.Trailer.Get("X-Sum"), "trailers cross the hop")
}

// TestAnUnreadBodyDoesNotHoldTheAnswer: a client that announced a body and
// sends none (or waits for a 100 Continue, which it is not sent) gets its
// answer at once when the proxy does not need the body (an unknown
// function, a platform that answers without reading it).
func TestAnUnreadBodyDoesNotHoldTheAnswer(t *testing.T) {
	p, err := New(Config{Node: "a"}, // BodyIdle 30 s
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusBadGateway) }))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	apply(t, p, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		for path, code := range map[string]int{"/function/unknown": http.StatusNotFound, "/function/figlet": http.StatusBadGateway} {
			c, err := net.Dial("tcp", p.UserAddr())
			require.NoError(t, err)
			_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n%s\r\n", path, expect)
			require.NoError(t, err)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if assert.NoError(t, err, "%s %q", path, expect) {
				assert.Equal(t, code, resp.StatusCode, "%s %q", path, expect)
			}
			_ = c.Close()
		}
	}
	assert.Eventually(t, func() bool { return counts(t, p)["figlet"].InFlight == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestCloseWithAQuietConnection: a peer's connection that was dialled but
// has sent no request (a pool's spare) does not make Close fail: net/http
// counts it busy for 5 s, and Close waits past that.
func TestCloseWithAQuietConnection(t *testing.T) {
	p, _ := newTestProxy(t, "a")
	c, err := net.Dial("tcp", p.PeerAddr())
	require.NoError(t, err)
	defer c.Close()
	u, err := net.Dial("tcp", p.UserAddr())
	require.NoError(t, err)
	defer u.Close()
	time.Sleep(50 * time.Millisecond) // accepted
	assert.NoError(t, p.Close())
}

// TestLastAnswer: a peer's answers to forwards, a refusal included, are
// timed (what the overlay's probes take as evidence the peer is
// reachable); a peer no route names any more is forgotten.
func TestLastAnswer(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	b, _ := newTestProxy(t, "b")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1000}}}})
	assert.True(t, a.LastAnswer("b").IsZero(), "no forward yet")

	before := time.Now()
	code, _, _ := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "hi") // b does not serve it: refused
	require.Equal(t, http.StatusServiceUnavailable, code)
	refused := a.LastAnswer("b")
	assert.False(t, refused.Before(before), "a refusal is an answer")

	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 1000, Capacity: 1000}})
	time.Sleep(time.Millisecond)
	code, _, _ = do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "hi")
	require.Equal(t, http.StatusOK, code)
	assert.True(t, a.LastAnswer("b").After(refused))
	assert.True(t, a.LastAnswer("c").IsZero())

	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {}})
	assert.True(t, a.LastAnswer("b").IsZero(), "forgotten with its route")
}

// TestForwardsToAPeerDeclaredDownAreAnsweredAtOnce: a forward sent to a
// peer that then stops answering (frozen: its platform holds the call) is
// answered 504 as soon as the overlay declares the peer down, not at the
// forward timeout, and is sent nowhere else (it may have run); forwards
// to other peers go on.
func TestForwardsToAPeerDeclaredDownAreAnsweredAtOnce(t *testing.T) {
	a, _ := newTestProxy(t, "a")
	held, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	frozen, err := New(Config{Node: "b"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = frozen.Close() })
	c, ec := newTestProxy(t, "c")
	apply(t, frozen, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000}})
	apply(t, c, map[string]dfaas.FunctionPlan{"figlet": {Capacity: 1000}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{
		{Node: "b", Addr: frozen.PeerAddr(), Weight: 1, Cap: 1000}, {Node: "c", Addr: c.PeerAddr(), Weight: 1e-9, Cap: 1000}}}})

	type result struct {
		code int
		took time.Duration
	}
	got := make(chan result, 1)
	go func() {
		start := time.Now()
		code, _, _ := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "x")
		got <- result{code, time.Since(start)}
	}()
	<-held               // b has the call
	a.AbortForwards("c") // another peer: nothing in flight there
	select {
	case r := <-got:
		t.Fatalf("answered %d before b was declared down", r.code)
	case <-time.After(100 * time.Millisecond):
	}
	declared := time.Now()
	a.AbortForwards("b")
	r := <-got
	assert.Equal(t, http.StatusGatewayTimeout, r.code)
	assert.Less(t, time.Since(declared), time.Second, "answered at once")
	assert.Zero(t, ec.calls.Load(), "sent to b, so never sent elsewhere")
	ca := counts(t, a)["figlet"]
	assert.Zero(t, ca.ForwardedOut)
	assert.Equal(t, uint64(1), ca.FailedTries)

	// Nothing left in flight; later forwards are not touched.
	a.AbortForwards("b")
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "c", Addr: c.PeerAddr(), Weight: 1, Cap: 1000}}}})
	code, _, body := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "y")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "c:y", body)
}
