package async_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/async"
)

// node is a user listener stand-in: answer decides each call's answer
// from how many came before it.
type node struct {
	calls  atomic.Int64
	mu     sync.Mutex
	seen   []*http.Request
	bodies []string
	addr   string
}

func newNode(t *testing.T, answer func(n int64, w http.ResponseWriter)) *node {
	t.Helper()
	nd := &node{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		nd.mu.Lock()
		nd.seen = append(nd.seen, r)
		nd.bodies = append(nd.bodies, string(b))
		nd.mu.Unlock()
		answer(nd.calls.Add(1), w)
	}))
	t.Cleanup(srv.Close)
	nd.addr = strings.TrimPrefix(srv.URL, "http://")
	return nd
}

// ran answers as a node whose platform ran the call.
func ran(status int, body string) func(int64, http.ResponseWriter) {
	return func(_ int64, w http.ResponseWriter) {
		w.Header().Set(proxy.HeaderNode, "n1")
		w.Header().Set("X-Fn", "yes")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// callbacks receives results.
type callbacks struct {
	mu   sync.Mutex
	got  []http.Header
	body []string
	url  string
}

func newCallbacks(t *testing.T) *callbacks {
	t.Helper()
	cb := &callbacks{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cb.mu.Lock()
		cb.got = append(cb.got, r.Header.Clone())
		cb.body = append(cb.body, string(b))
		cb.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	cb.url = srv.URL + "/done"
	return cb
}

func (cb *callbacks) n() int {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	return len(cb.got)
}

func open(t *testing.T, cfg async.Config) *async.Queue {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "async.db")
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.Callbacks == nil {
		cfg.Callbacks = async.AnyCallbacks // the tests' receivers are on loopback
	}
	q, err := async.Open(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// post makes an asynchronous call to q.
func post(t *testing.T, q http.Handler, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	q.ServeHTTP(w, r)
	return w
}

// TestAcceptedRunCalledBack: 202 with a call id at once; the call runs
// through the node's user listener with its method, path, query, body and
// headers (but the callback's); its result reaches the callback with the
// function's status, headers and body, the call id and the function's
// name.
func TestAcceptedRunCalledBack(t *testing.T) {
	nd := newNode(t, ran(http.StatusOK, "hello"))
	cb := newCallbacks(t)
	q := open(t, async.Config{Invoke: nd.addr})
	w := post(t, q, "/async-function/echo/sub/path?x=1", "payload", map[string]string{async.HeaderCallback: cb.url, "X-Mine": "m"})
	require.Equal(t, http.StatusAccepted, w.Code)
	id := w.Header().Get(proxy.HeaderCallID)
	assert.NotEmpty(t, id)
	assert.NotEmpty(t, w.Header().Get(proxy.HeaderStartTime))

	require.Eventually(t, func() bool { return cb.n() == 1 }, 5*time.Second, 10*time.Millisecond)
	nd.mu.Lock()
	r := nd.seen[0]
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/function/echo/sub/path", r.URL.Path)
	assert.Equal(t, "x=1", r.URL.RawQuery)
	assert.Equal(t, "payload", nd.bodies[0])
	assert.Equal(t, "m", r.Header.Get("X-Mine"))
	assert.Equal(t, id, r.Header.Get(proxy.HeaderCallID))
	assert.Empty(t, r.Header.Get(async.HeaderCallback), "the callback is the queue's, not the function's")
	nd.mu.Unlock()
	cb.mu.Lock()
	h := cb.got[0]
	assert.Equal(t, "hello", cb.body[0])
	cb.mu.Unlock()
	assert.Equal(t, "200", h.Get(async.HeaderStatus))
	assert.Equal(t, id, h.Get(proxy.HeaderCallID))
	assert.Equal(t, "echo", h.Get(async.HeaderFunction))
	assert.Equal(t, "yes", h.Get("X-Fn"), "the function's headers")
	assert.Equal(t, "n1", h.Get(proxy.HeaderNode), "the node that ran it")
	assert.NotEmpty(t, h.Get(async.HeaderDuration))
	assert.Eventually(t, func() bool { return q.Stats().Completed == 1 }, 2*time.Second, 10*time.Millisecond)
	assert.Empty(t, q.Backlogs()["echo"].Calls)

	// A caller's call id is kept.
	w = post(t, q, "/async-function/echo", "", map[string]string{async.HeaderCallback: cb.url, proxy.HeaderCallID: "mine-1"})
	assert.Equal(t, "mine-1", w.Header().Get(proxy.HeaderCallID))
	require.Eventually(t, func() bool { return cb.n() == 2 }, 5*time.Second, 10*time.Millisecond)
	cb.mu.Lock()
	assert.Equal(t, "mine-1", cb.got[1].Get(proxy.HeaderCallID))
	cb.mu.Unlock()
}

// TestNoCapacityGoesAgain: a call the node had no capacity for (its own
// 503, no platform answered) ran nowhere: it goes again, and each call's
// callback arrives once, with the answer of the run.
func TestNoCapacityGoesAgain(t *testing.T) {
	nd := newNode(t, func(n int64, w http.ResponseWriter) {
		if n%3 != 0 {
			w.Header().Set(proxy.HeaderRejected, proxy.RefusedCapacity) // the node's own: it ran nowhere
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ran(http.StatusOK, "ok")(n, w)
	})
	cb := newCallbacks(t)
	q := open(t, async.Config{Invoke: nd.addr})
	const calls = 20
	ids := map[string]bool{}
	for range calls {
		w := post(t, q, "/async-function/f", "x", map[string]string{async.HeaderCallback: cb.url})
		require.Equal(t, http.StatusAccepted, w.Code)
		ids[w.Header().Get(proxy.HeaderCallID)] = true
	}
	require.Eventually(t, func() bool { return q.Stats().Completed == calls }, 10*time.Second, 10*time.Millisecond)
	cb.mu.Lock()
	defer cb.mu.Unlock()
	require.Len(t, cb.got, calls)
	for _, h := range cb.got {
		assert.Equal(t, "200", h.Get(async.HeaderStatus))
		assert.True(t, ids[h.Get(proxy.HeaderCallID)], "one of the calls")
		delete(ids, h.Get(proxy.HeaderCallID))
	}
	assert.Empty(t, ids, "every call called back, once")
	assert.Positive(t, q.Stats().Requeued)
}

// TestPlatformRefusalsAreTriedAgain: a call the platform refused (429) is
// tried again, up to MaxAttempts; the last answer is the result.
func TestPlatformRefusalsAreTriedAgain(t *testing.T) {
	nd := newNode(t, func(n int64, w http.ResponseWriter) {
		if n <= 2 {
			ran(http.StatusTooManyRequests, "busy")(n, w)
			return
		}
		ran(http.StatusOK, "ok")(n, w)
	})
	cb := newCallbacks(t)
	q := open(t, async.Config{Invoke: nd.addr, RetryDelay: 10 * time.Millisecond})
	post(t, q, "/async-function/f", "", map[string]string{async.HeaderCallback: cb.url})
	require.Eventually(t, func() bool { return cb.n() == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, int64(3), nd.calls.Load())
	cb.mu.Lock()
	assert.Equal(t, "200", cb.got[0].Get(async.HeaderStatus))
	cb.mu.Unlock()

	busy := newNode(t, ran(http.StatusTooManyRequests, "busy"))
	q2 := open(t, async.Config{Invoke: busy.addr, RetryDelay: 10 * time.Millisecond, MaxAttempts: 2})
	post(t, q2, "/async-function/f", "", map[string]string{async.HeaderCallback: cb.url})
	require.Eventually(t, func() bool { return cb.n() == 2 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, int64(2), busy.calls.Load())
	cb.mu.Lock()
	assert.Equal(t, "429", cb.got[1].Get(async.HeaderStatus), "given up: the last answer")
	cb.mu.Unlock()
}

// TestBadCallsAnswered: unknown functions, dot segments, bad callbacks,
// bodies too large and full queues get their answers, and nothing is
// queued for them.
func TestBadCallsAnswered(t *testing.T) {
	block := make(chan struct{})
	nd := newNode(t, func(n int64, w http.ResponseWriter) {
		<-block
		ran(http.StatusOK, "")(n, w)
	})
	q := open(t, async.Config{Invoke: nd.addr, Known: func(fn string) bool { return fn != "gone" }, MaxPerFunction: 2, MaxBody: 10})
	t.Cleanup(func() { close(block) }) // before the queue's Close, which waits for its runs
	for path, want := range map[string]int{
		"/async-function/gone":         http.StatusNotFound,
		"/async-function/Bad_Name":     http.StatusNotFound,
		"/function/f":                  http.StatusNotFound,
		"/async-function/f/../system":  http.StatusBadRequest,
		"/async-function/f/%2e%2e/sys": http.StatusBadRequest,
	} {
		assert.Equal(t, want, post(t, q, path, "", nil).Code, path)
	}
	for cb, want := range map[string]int{"ftp://x/y": http.StatusBadRequest, "/relative": http.StatusBadRequest, "http://": http.StatusBadRequest} {
		assert.Equal(t, want, post(t, q, "/async-function/f", "", map[string]string{async.HeaderCallback: cb}).Code, cb)
	}
	assert.Equal(t, http.StatusRequestEntityTooLarge, post(t, q, "/async-function/f", strings.Repeat("x", 11), nil).Code)
	r := httptest.NewRequest(http.MethodPost, "/async-function/f", io.MultiReader(strings.NewReader(strings.Repeat("x", 11))))
	r.ContentLength = -1 // chunked: counted as it comes
	w := httptest.NewRecorder()
	q.ServeHTTP(w, r)
	assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
	assert.Zero(t, q.Stats().Accepted)

	// Two may wait (or run); the third is refused until one is done.
	assert.Equal(t, http.StatusAccepted, post(t, q, "/async-function/f", "", nil).Code)
	assert.Equal(t, http.StatusAccepted, post(t, q, "/async-function/f", "", nil).Code)
	w = post(t, q, "/async-function/f", "", nil)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, http.StatusAccepted, post(t, q, "/async-function/other", "", nil).Code, "a queue per function")
	assert.Equal(t, uint64(1), q.Stats().Refused)
}

// TestQueueSurvivesARestart: calls accepted while the node's listener is
// down wait on disk; the queue closed and opened again runs each once.
func TestQueueSurvivesARestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there yet
	cb := newCallbacks(t)
	path := filepath.Join(t.TempDir(), "async.db")
	q, err := async.Open(async.Config{Path: path, Invoke: addr, Logger: slog.New(slog.DiscardHandler), Callbacks: async.AnyCallbacks})
	require.NoError(t, err)
	const calls = 5
	for i := range calls {
		w := post(t, q, "/async-function/f", strings.Repeat("b", i), map[string]string{async.HeaderCallback: cb.url})
		require.Equal(t, http.StatusAccepted, w.Code)
	}
	time.Sleep(200 * time.Millisecond) // tried, not reached
	assert.Equal(t, calls, q.Backlogs()["f"].Calls)
	require.NoError(t, q.Close())

	// The node's listener comes up where it was.
	var bodies sync.Map
	var runs atomic.Int64
	l, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies.Store(string(b), true)
		runs.Add(1)
		w.Header().Set(proxy.HeaderNode, "n1")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	q = open(t, async.Config{Path: path, Invoke: addr})
	require.Eventually(t, func() bool { return cb.n() == calls }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, int64(calls), runs.Load(), "each run once")
	assert.Equal(t, calls, cb.n(), "each called back once")
	for i := range calls {
		_, ok := bodies.Load(strings.Repeat("b", i))
		assert.True(t, ok, "body %d", i)
	}
	assert.Empty(t, q.Backlogs()["f"].Calls)
}

// TestFailingCallbackIsTriedAgain: a receiver that fails (5xx) gets the
// result again, then the call is done.
func TestFailingCallbackIsTriedAgain(t *testing.T) {
	nd := newNode(t, ran(http.StatusOK, "r"))
	var tries atomic.Int64
	var got bytes.Buffer
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		mu.Lock()
		_, _ = io.Copy(&got, r.Body)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	q := open(t, async.Config{Invoke: nd.addr})
	post(t, q, "/async-function/f", "", map[string]string{async.HeaderCallback: srv.URL})
	require.Eventually(t, func() bool { return q.Stats().Completed == 1 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, int64(2), tries.Load())
	mu.Lock()
	assert.Equal(t, "r", got.String())
	mu.Unlock()
	assert.Zero(t, q.Stats().CallbacksFailed)
	assert.Equal(t, int64(1), nd.calls.Load(), "run once, called back twice")
}

// TestCallsWaitForTheirFunction: calls of a function the node's plan does
// not name now (a node restarted with calls queued has no plan yet) wait,
// then run once it does; the data plane's own 404 is tried again.
func TestCallsWaitForTheirFunction(t *testing.T) {
	nd := newNode(t, func(n int64, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set(proxy.HeaderRejected, proxy.RefusedUnknown) // the node's own: its plan lost the function for a moment
			w.WriteHeader(http.StatusNotFound)
			return
		}
		ran(http.StatusOK, "ok")(n, w)
	})
	cb := newCallbacks(t)
	// Accepted while the node's listener is down: it waits on disk.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := l.Addr().String()
	require.NoError(t, l.Close())
	path := filepath.Join(t.TempDir(), "async.db")
	q, err := async.Open(async.Config{Path: path, Invoke: down, Logger: slog.New(slog.DiscardHandler), Callbacks: async.AnyCallbacks})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, post(t, q, "/async-function/f", "", map[string]string{async.HeaderCallback: cb.url}).Code)
	require.NoError(t, q.Close())

	// The node again, its plan not made yet.
	var planned atomic.Bool
	q = open(t, async.Config{Path: path, Invoke: nd.addr, RetryDelay: 10 * time.Millisecond, Known: func(string) bool { return planned.Load() }})
	assert.Equal(t, http.StatusNotFound, post(t, q, "/async-function/f", "", nil).Code, "a new call for it is not accepted")
	time.Sleep(500 * time.Millisecond)
	assert.Zero(t, nd.calls.Load(), "the queued call waits for the plan")
	planned.Store(true)
	require.Eventually(t, func() bool { return cb.n() == 1 }, 5*time.Second, 10*time.Millisecond)
	cb.mu.Lock()
	assert.Equal(t, "200", cb.got[0].Get(async.HeaderStatus), "the 404 tried again")
	cb.mu.Unlock()
	assert.Equal(t, int64(2), nd.calls.Load())
}

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := l.Addr().String()
	require.NoError(t, l.Close())
	return a
}

// TestUnmarkedAnswersAreResults: a 503 or 404 the node's data plane did
// not mark as its own (a platform's, or a function's) ran: it is the
// call's result, not sent again.
func TestUnmarkedAnswersAreResults(t *testing.T) {
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusNotFound} {
		nd := newNode(t, ran(code, "mine"))
		cb := newCallbacks(t)
		q := open(t, async.Config{Invoke: nd.addr})
		post(t, q, "/async-function/f", "", map[string]string{async.HeaderCallback: cb.url})
		require.Eventually(t, func() bool { return cb.n() == 1 }, 5*time.Second, 10*time.Millisecond)
		assert.Equal(t, int64(1), nd.calls.Load(), "%d: run once", code)
		cb.mu.Lock()
		assert.Equal(t, strconv.Itoa(code), cb.got[0].Get(async.HeaderStatus))
		cb.mu.Unlock()
	}
}

// TestCallbacksStandApart: a receiver that never answers holds none of
// the calls' runs: another function's call is run and called back at once.
func TestCallbacksStandApart(t *testing.T) {
	nd := newNode(t, ran(http.StatusOK, "r"))
	release := make(chan struct{})
	tarpit := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer tarpit.Close()
	fast := newCallbacks(t)
	q := open(t, async.Config{Invoke: nd.addr, Concurrency: 4, CallbackTimeout: time.Second})
	defer close(release) // before the queue's Close
	for range 8 {
		post(t, q, "/async-function/evil", "", map[string]string{async.HeaderCallback: tarpit.URL})
	}
	require.Eventually(t, func() bool { return nd.calls.Load() == 8 }, 5*time.Second, 10*time.Millisecond, "every run done")
	t0 := time.Now()
	post(t, q, "/async-function/victim", "", map[string]string{async.HeaderCallback: fast.url})
	require.Eventually(t, func() bool { return fast.n() == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Less(t, time.Since(t0), time.Second)
}

// TestCallbackCutAtCloseIsSentAgain: a callback in progress when Close's
// grace ends is sent again after the restart; the call does not run again.
func TestCallbackCutAtCloseIsSentAgain(t *testing.T) {
	nd := newNode(t, ran(http.StatusOK, "result"))
	var hang atomic.Bool
	hang.Store(true)
	var got atomic.Int64
	release := make(chan struct{})
	cbs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		got.Add(1)
	}))
	defer cbs.Close()
	defer close(release)
	path := filepath.Join(t.TempDir(), "q.db")
	q, err := async.Open(async.Config{Path: path, Invoke: nd.addr, Logger: slog.New(slog.DiscardHandler), Callbacks: async.AnyCallbacks,
		CloseGrace: 500 * time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, post(t, q, "/async-function/f", "x", map[string]string{async.HeaderCallback: cbs.URL}).Code)
	require.Eventually(t, func() bool { return nd.calls.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // the callback hangs
	require.NoError(t, q.Close())
	hang.Store(false)
	open(t, async.Config{Path: path, Invoke: nd.addr})
	require.Eventually(t, func() bool { return got.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, int64(1), nd.calls.Load(), "run once")
}

// TestCallbackLimits: callbacks to loopback are refused by default (a
// caller cannot make the node POST to this host's services), the callback
// carries no X-Callback-Url of the function's (no loop through the node's
// own queue), and a result beyond MaxBody is a 502, not a cut answer.
func TestCallbackLimits(t *testing.T) {
	nd := newNode(t, func(_ int64, w http.ResponseWriter) {
		w.Header().Set(proxy.HeaderNode, "n1")
		w.Header().Set(async.HeaderCallback, "http://example.invalid/again")
		_, _ = io.WriteString(w, "0123456789ABCDEFGHIJ")
	})
	cb := newCallbacks(t)
	q := open(t, async.Config{Invoke: nd.addr, MaxBody: 10})
	post(t, q, "/async-function/f", "", map[string]string{async.HeaderCallback: cb.url})
	require.Eventually(t, func() bool { return cb.n() == 1 }, 5*time.Second, 10*time.Millisecond)
	cb.mu.Lock()
	assert.Equal(t, "502", cb.got[0].Get(async.HeaderStatus), "a result too large")
	assert.Empty(t, cb.got[0].Get(async.HeaderCallback))
	cb.mu.Unlock()

	strict := open(t, async.Config{Invoke: nd.addr, Callbacks: async.PublicCallbacks})
	post(t, strict, "/async-function/f", "", map[string]string{async.HeaderCallback: cb.url})
	require.Eventually(t, func() bool { return strict.Stats().CallbacksFailed == 1 }, 5*time.Second, 10*time.Millisecond, "refused at once, not tried again")
	assert.Equal(t, 1, cb.n(), "nothing reached loopback")
	for _, a := range []string{"127.0.0.1", "::1", "169.254.169.254", "0.0.0.0", "fe80::1", "::ffff:127.0.0.1"} {
		assert.False(t, async.PublicCallbacks(netip.MustParseAddr(a)), a)
	}
	for _, a := range []string{"10.77.0.254", "192.0.2.1", "2001:db8::1"} {
		assert.True(t, async.PublicCallbacks(netip.MustParseAddr(a)), a)
	}
}

// TestBoundsBeforeTheBody: the bounds hold what is stored (headers too),
// and a full queue answers 429 before it reads a body; only POST is an
// asynchronous call.
func TestBoundsBeforeTheBody(t *testing.T) {
	q := open(t, async.Config{Invoke: deadAddr(t), MaxBytes: 256 << 10})
	big := strings.Repeat("a", 60<<10)
	accepted := 0
	for range 20 {
		if post(t, q, "/async-function/f", "", map[string]string{"X-Pad": big}).Code == http.StatusAccepted {
			accepted++
		}
	}
	assert.Less(t, accepted, 5, "a call is reckoned with its headers")
	full := open(t, async.Config{Invoke: deadAddr(t), MaxPerFunction: 1})
	require.Equal(t, http.StatusAccepted, post(t, full, "/async-function/f", "", nil).Code)
	var read atomic.Int64
	r := httptest.NewRequest(http.MethodPost, "/async-function/f", readerFunc(func(p []byte) (int, error) {
		read.Add(int64(len(p)))
		return len(p), nil
	}))
	r.ContentLength = -1
	w := httptest.NewRecorder()
	full.ServeHTTP(w, r)
	assert.Equal(t, http.StatusTooManyRequests, w.Code)
	assert.Zero(t, read.Load(), "no body read for a full queue")
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		r := httptest.NewRequest(m, "/async-function/g", nil)
		w := httptest.NewRecorder()
		full.ServeHTTP(w, r)
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code, m)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
