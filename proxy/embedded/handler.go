package embedded

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas/proxy"
)

// lookup resolves a request to its function's route, or answers that the
// function is unknown (404 to a user, a refusal to a peer) or that its path
// has a dot segment (400, see proxy.HasDotSegment).
func (p *Proxy) lookup(w http.ResponseWriter, r *http.Request, peer bool) *route {
	if proxy.HasDotSegment(r.URL.Path) {
		http.Error(w, "the path has a dot segment", http.StatusBadRequest)
		return nil
	}
	// The name as it came: /function%2fother/echo or /function/ech%6f name
	// no function here (HAProxy reads the raw path too), not other or echo.
	raw := r.URL.RawPath
	if raw == "" {
		raw = r.URL.Path // encoded as it came
	}
	name, ok := proxy.FunctionName(raw)
	var rt *route
	if ok {
		rt = (*p.routes.Load())[name]
	}
	if rt == nil {
		code := http.StatusNotFound
		if peer {
			code = proxy.StatusRefused
			w.Header().Set(proxy.HeaderRefused, proxy.RefusedUnknown)
		}
		http.Error(w, "function not found", code)
	}
	return rt
}

// idleBody bounds each wait for more of a request body to idle, through
// the connection's read deadline, and lifts that deadline once the body is
// read: a long function must not be cut off by it afterwards (net/http's
// server then reads in the background to notice a client leaving).
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
	done bool
}

// boundBody puts r's body, if any, under p's BodyIdle, and returns what
// puts net/http's own body back when the handler returns: net/http looks
// at it to decide what to do with a body the handler left. The rest of
// such a body (the function was unknown, say) is not waited for: the
// answer goes at once and the connection closes after it, and a client
// waiting for a 100 Continue is not sent one.
func (p *Proxy) boundBody(w http.ResponseWriter, r *http.Request) (restore func()) {
	if r.Body == nil || r.Body == http.NoBody {
		return func() {}
	}
	orig := r.Body
	b := &idleBody{ReadCloser: orig, rc: http.NewResponseController(w), idle: p.cfg.BodyIdle}
	r.Body = b
	return func() {
		r.Body = orig
		if !b.done {
			_ = b.rc.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

func (b *idleBody) Read(buf []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(buf)
	}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(buf)
	switch {
	case errors.Is(err, io.EOF): // all of it: no deadline from now on
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil: // the deadline passed, or the client left: keep it so
		b.done = true // (the server's own reads of the rest fail at once)
	}
	return n, err
}

// serveUser handles the user listener.
func (p *Proxy) serveUser(w http.ResponseWriter, r *http.Request) {
	defer p.boundBody(w, r)()
	// Only proxies set hop markers, and never on this listener.
	r.Header.Del(proxy.HeaderHop)
	r.Header.Del(proxy.HeaderFrom)
	rt := p.lookup(w, r, false)
	if rt == nil {
		return
	}
	fn := rt.fn
	fn.counts.arrivals.Add(1)
	start := time.Now()
	defer func() { fn.counts.latency.Observe(time.Since(start)) }()

	now := p.cfg.Now()
	if admit(fn, now) {
		p.serveLocal(w, r, fn, false)
		return
	}
	fn.refusing.Store(true)
	if rt.armed.CompareAndSwap(true, false) {
		p.fire()
	}
	if len(rt.peers) > 0 && p.forward(w, r, rt) {
		return
	}
	// No peer took it: use local capacity beyond the user limit, if any.
	if fn.capacity.Take(p.cfg.Now()) {
		p.serveLocal(w, r, fn, false)
		return
	}
	fn.counts.rejected.Add(1)
	w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
	http.Error(w, "no capacity for this function in the federation", http.StatusServiceUnavailable)
}

// admit takes a token from the user limit and counts the execution against
// the capacity, or neither.
func admit(fn *function, now time.Time) bool {
	res := fn.limit.ReserveN(now, 1)
	if !res.OK() || res.DelayFrom(now) > 0 {
		res.CancelAt(now)
		return false
	}
	if !fn.capacity.Take(now) {
		res.CancelAt(now)
		return false
	}
	return true
}

// servePeer handles the peer listener: execute within capacity or refuse.
func (p *Proxy) servePeer(w http.ResponseWriter, r *http.Request) {
	defer p.boundBody(w, r)()
	rt := p.lookup(w, r, true)
	if rt == nil {
		return
	}
	if hop, err := strconv.Atoi(r.Header.Get(proxy.HeaderHop)); err != nil || hop < 1 {
		http.Error(w, "missing hop marker: this listener is for federation peers", http.StatusBadRequest)
		return
	}
	fn := rt.fn
	if !fn.capacity.Take(p.cfg.Now()) {
		fn.counts.refused.Add(1)
		w.Header().Set(proxy.HeaderRefused, proxy.RefusedCapacity)
		w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
		http.Error(w, "over capacity", proxy.StatusRefused)
		return
	}
	p.serveLocal(w, r, fn, true)
}

// serveLocal executes a request on the local platform.
func (p *Proxy) serveLocal(w http.ResponseWriter, r *http.Request, fn *function, fromPeer bool) {
	c := fn.counts
	// Alone throughout: none in progress at the start, none begun since.
	alone := c.inFlight.Add(1) == 1
	began := c.starts.Add(1)
	defer c.inFlight.Add(-1)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK, peer: fromPeer}
	start := time.Now()
	c.occupied.enter(start)
	// Counted on the way out, an aborted answer (http.ErrAbortHandler, the
	// platform's answer cut off) included: the function ran.
	defer func() {
		end := time.Now()
		c.occupied.leave(end)
		took := end.Sub(start)
		c.executions.Observe(took)
		if alone && c.starts.Load() == began {
			c.solo.Observe(took)
		}
		busy := sw.status == http.StatusTooManyRequests // the platform's (or the function's) 429
		switch {
		case busy:
			c.busy.Add(1)
		case proxy.PlatformFailed(sw.status):
			c.failed.Add(1)
		}
		switch {
		case fromPeer && busy:
			c.refused.Add(1)
		case fromPeer:
			c.receivedIn.Add(1)
		case busy:
			c.rejected.Add(1)
		default:
			c.servedLocal.Add(1)
		}
	}()
	p.local.ServeHTTP(sw, r)
}

// forward sends the request to the route's peers in order until one answers
// without refusing. It reports whether a response was written.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt *route) bool {
	held := &heldReader{r: http.MaxBytesReader(w, r.Body, p.cfg.MaxBody), p: p}
	body, err := io.ReadAll(held)
	defer p.buffered.Add(-held.n)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			rt.fn.counts.rejected.Add(1)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		case errors.Is(err, errBufferFull):
			rt.fn.counts.rejected.Add(1)
			w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
			http.Error(w, "too many forwards in progress", http.StatusServiceUnavailable)
		default:
			http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
		}
		return true
	}
	r.Body = io.NopCloser(bytes.NewReader(body)) // for a local fallback
	order := rt.pick.Order()
	tried := make([]bool, len(rt.peers))
	failed := false
	// First the pick rule: peers within their Cap. If a peer refused,
	// failed or is ejected, the plan overrated it: the others are then
	// tried beyond their Cap too (they hold their own capacity and refuse
	// beyond it), so a lying or broken member costs retries, not
	// rejections.
	for pass := 0; pass < 2 && (pass == 0 || failed); pass++ {
		for _, i := range order {
			pr := rt.peers[i]
			now := p.cfg.Now()
			if tried[i] {
				continue
			}
			if !p.outliers.Usable(pr.node, now) {
				failed = true // ejected: its share is free for the others
				continue
			}
			if pass == 0 && !rt.pick.Take(i, now) {
				continue
			}
			tried[i] = true
			resp, sent, err := p.try(r, pr, body)
			if err != nil && r.Context().Err() != nil {
				return true // the client left: nobody to answer
			}
			if err != nil {
				failed = true
				rt.fn.counts.failedTries.Add(1)
				p.log.Debug("forward failed", "peer", pr.node, "sent", sent, "err", err)
				record := p.outliers.Failure
				if errors.Is(err, errRefused) && !sent {
					record = p.outliers.Refused
				}
				if record(pr.node, p.cfg.Now()) {
					p.log.Info("peer ejected", "peer", pr.node, "err", err)
					p.fire()
				}
				if !sent {
					continue // the peer provably did not run it
				}
				// The peer may have run it: at most once, so no other peer.
				code := http.StatusBadGateway
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					code = http.StatusGatewayTimeout
				}
				http.Error(w, "the peer failed after the request was sent", code)
				return true
			}
			p.outliers.Success(pr.node)
			if resp.StatusCode == http.StatusTooManyRequests {
				// The peer's platform (or the function) said too many: the
				// user gets it, as from a local platform; not retried.
				rt.fn.counts.rejected.Add(1)
			} else {
				pr.sent.Add(1)
				rt.fn.counts.forwardedOut.Add(1)
			}
			proxy.CopyResponse(w, r, resp)
			return true
		}
	}
	return false
}

// try sends one forward attempt. sent reports whether any of the request
// may have reached the peer: a refusal (StatusRefused) is returned as an
// error with the response closed and sent false, as is a failure to
// connect; any failure after the request was written has sent true.
func (p *Proxy) try(r *http.Request, pr peer, body []byte) (_ *http.Response, sent bool, _ error) {
	// Built from parsed parts: the peer's address only ever names the host.
	u := &url.URL{Scheme: p.scheme, Host: pr.addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	var wrote atomic.Bool
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { wrote.Store(true) },
		WroteHeaders:     func() { wrote.Store(true) },
	})
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	out.Header = r.Header.Clone()
	proxy.RemoveHopByHop(out.Header)
	out.Header.Set(proxy.HeaderHop, "1")
	out.Header.Set(proxy.HeaderFrom, string(p.cfg.Node))
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := out.Header.Get("X-Forwarded-For"); prior != "" {
			host = prior + ", " + host
		}
		out.Header.Set("X-Forwarded-For", host)
	}
	t, err := p.transportTo(pr.node)
	if err != nil {
		return nil, false, err
	}
	resp, err := t.RoundTrip(out)
	if err != nil {
		// A refused TLS handshake (a peer that does not count this node
		// as a member) fails before anything is written: TLS 1.2, see
		// proxy.PeerTLSVersion. An alert after the write may come after
		// the peer ran the request.
		return nil, wrote.Load(), err
	}
	p.answered(pr.node) // any answer, a refusal too: the path works
	if resp.StatusCode == proxy.StatusRefused {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		return nil, false, fmt.Errorf("peer %s %w: %s %s", pr.node, errRefused, resp.Status, resp.Header.Get(proxy.HeaderRefused))
	}
	return resp, true, nil
}

// errRefused: the peer refused the request (proxy.StatusRefused): it ran
// nothing.
var errRefused = errors.New("refused")

// errBufferFull: the forwards in progress hold MaxBuffered bytes already.
var errBufferFull = errors.New("forward buffer full")

// heldReader reads a body to be held in memory for a forward, counting
// its bytes against the proxy's MaxBuffered; n is what it took.
type heldReader struct {
	r io.Reader
	p *Proxy
	n int64
}

func (h *heldReader) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	if n > 0 {
		h.n += int64(n)
		if h.p.buffered.Add(int64(n)) > h.p.cfg.MaxBuffered {
			return n, errBufferFull
		}
	}
	return n, err
}

// statusWriter records the status code the platform wrote. On the peer
// listener (peer) it translates for the forwarder: between peers
// StatusRefused means "not executed", so the platform's own 425 (it ran)
// goes out as 502.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	peer   bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	if s.peer && code == proxy.StatusRefused {
		code = http.StatusBadGateway
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
