package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas/internal/httpbody"
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
		} else {
			w.Header().Set(proxy.HeaderRejected, proxy.RefusedUnknown)
		}
		http.Error(w, "function not found", code)
	}
	return rt
}

// serveUser handles the user listener: serveCall, with the OpenFaaS
// gateway's headers on the answer and its status counted.
func (p *Proxy) serveUser(w http.ResponseWriter, r *http.Request) {
	if p.async != nil && strings.HasPrefix(r.URL.Path, "/async-function/") {
		// Queued by the node's asynchronous calls, which answer 202 (with
		// the gateway's headers) or why not; run later through this
		// listener.
		_, restore := httpbody.Bound(w, r, httpbody.Bounds{Idle: p.cfg.BodyIdle, Timeout: p.cfg.BodyTimeout, Max: p.cfg.MaxBody})
		defer restore()
		r.Header.Del(proxy.HeaderHop)
		r.Header.Del(proxy.HeaderFrom)
		p.async.ServeHTTP(w, r)
		return
	}
	ow, call := gatewayHeaders(w, r)
	start := time.Now()
	var fn *function
	p.serveCall(ow, r, &fn)
	if r.Context().Err() == nil {
		ow.Finish() // nothing written: net/http's 200, with the gateway's headers (not after a panic)
	}
	if fn != nil && call.status != 0 { // else the function is unknown, or the client left before any answer
		fn.counts.statuses.Observe(call.status, time.Since(start))
	}
}

// serveCall answers a user request; *counted is set to its function once
// it is known.
func (p *Proxy) serveCall(w http.ResponseWriter, r *http.Request, counted **function) {
	body, restore := httpbody.Bound(w, r, httpbody.Bounds{Idle: p.cfg.BodyIdle, Timeout: p.cfg.BodyTimeout, Max: p.cfg.MaxBody})
	defer restore()
	// Only proxies set hop markers, and never on this listener.
	r.Header.Del(proxy.HeaderHop)
	r.Header.Del(proxy.HeaderFrom)
	rt := p.lookup(w, r, false)
	if rt == nil {
		return
	}
	*counted = rt.fn
	if p.tooLarge(w, r) {
		return // a bad request, not an arrival (its status is counted, as HAProxy's log counts it)
	}
	fn := rt.fn
	fn.counts.arrivals.Add(1)
	start := time.Now()
	defer func() { fn.counts.latency.Observe(time.Since(start)) }()
	var span trace.Span // nil unless traced
	if p.tracer != nil {
		var tw *traceWriter
		r, tw, span = p.serverSpan(w, r, "dfaas.user", fn.name)
		w = tw
		defer endServer(span, tw)
	}

	now := p.cfg.Now()
	if admit(fn, now) {
		outcome(span, "local", "")
		p.serveLocal(w, r, fn, false, body)
		return
	}
	fn.refusing.Store(true)
	if rt.armed.CompareAndSwap(true, false) {
		p.fire()
	}
	if len(rt.peers) > 0 {
		var reserved int64 // the forward's hold on the body, until the request is done
		defer func() { p.buffered.Add(-reserved) }()
		if p.forward(w, r, rt, body, &reserved, span) {
			return
		}
	}
	// No peer took it: use local capacity beyond the user limit, if any.
	if fn.capacity.Take(p.cfg.Now()) {
		outcome(span, "local", "")
		p.serveLocal(w, r, fn, false, body)
		return
	}
	outcome(span, "rejected", "")
	fn.counts.rejected.Add(1)
	w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
	w.Header().Set(proxy.HeaderRejected, proxy.RefusedCapacity)
	http.Error(w, "no capacity for this function in the federation", http.StatusServiceUnavailable)
}

// tooLarge answers 413 to a request whose declared body is over MaxBody,
// before anything reads it. (A body of unknown length fails when a read
// passes MaxBody: see httpbody.Body.)
func (p *Proxy) tooLarge(w http.ResponseWriter, r *http.Request) bool {
	if r.ContentLength <= p.cfg.MaxBody {
		return false
	}
	http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
	return true
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
	if p.peerConns != nil && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if node, _ := proxy.ClaimedNode(r.TLS.PeerCertificates[0]); p.peerConns.isCut(node) {
			w.Header().Set("Connection", "close")
			w.Header().Set(proxy.HeaderRefused, proxy.RefusedMember)
			http.Error(w, "no member of this federation", proxy.StatusRefused)
			return
		}
	}
	body, restore := httpbody.Bound(w, r, httpbody.Bounds{Idle: p.cfg.BodyIdle, Timeout: p.cfg.BodyTimeout, Max: p.cfg.MaxBody})
	defer restore()
	rt := p.lookup(w, r, true)
	if rt == nil {
		return
	}
	if hop, err := strconv.Atoi(r.Header.Get(proxy.HeaderHop)); err != nil || hop < 1 {
		http.Error(w, "missing hop marker: this listener is for federation peers", http.StatusBadRequest)
		return
	}
	if p.tooLarge(w, r) {
		return
	}
	fn := rt.fn
	var span trace.Span
	if p.tracer != nil {
		var tw *traceWriter
		r, tw, span = p.serverSpan(w, r, "dfaas.peer", fn.name, proxy.AttrFrom.String(from(r)))
		w = tw
		defer endServer(span, tw)
	}
	if !fn.capacity.Take(p.cfg.Now()) {
		outcome(span, "refused", "")
		fn.counts.refused.Add(1)
		w.Header().Set(proxy.HeaderRefused, proxy.RefusedCapacity)
		w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
		http.Error(w, "over capacity", proxy.StatusRefused)
		return
	}
	outcome(span, "executed", "")
	p.serveLocal(w, r, fn, true, body)
}

// serveLocal executes a request on the local platform. body is the
// request's bounded body (nil without one): if it fails as the platform
// reads it, the platform's error goes out as the failure's status.
func (p *Proxy) serveLocal(w http.ResponseWriter, r *http.Request, fn *function, fromPeer bool, body *httpbody.Body) {
	c := fn.counts
	// Alone throughout: none in progress at the start, none begun since.
	alone := c.inFlight.Add(1) == 1
	began := c.starts.Add(1)
	defer c.inFlight.Add(-1)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK, peer: fromPeer, body: body, node: string(p.cfg.Node)}
	if p.tracer != nil {
		// The platform's call: its context goes to the platform, in place
		// of the caller's.
		ctx, span := p.tracer.Start(r.Context(), "dfaas.execute", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(proxy.AttrNode.String(string(p.cfg.Node)), proxy.AttrFunction.String(fn.name)))
		r = r.WithContext(ctx)
		inject(r, r.Header)
		defer func() {
			span.SetAttributes(proxy.AttrStatus.Int(sw.status))
			if proxy.PlatformFailed(sw.status) {
				span.SetStatus(codes.Error, http.StatusText(sw.status))
			}
			span.End()
		}()
	}
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
	if !sw.wrote && r.Context().Err() == nil {
		sw.WriteHeader(http.StatusOK) // the platform wrote nothing: net/http's 200, named (not after a panic)
	}
}

// forward sends the request to the route's peers in order until one answers
// without refusing. It reports whether a response was written; if not, no
// peer took the request and r's body is ready for a local execution.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, rt *route, body *httpbody.Body, reserved *int64, span trace.Span) (answered bool) {
	rp, err := p.hold(r, reserved)
	if err != nil {
		p.bodyFailed(w, rt, body, err)
		return true
	}
	defer func() {
		if answered {
			rp.retire()
		}
	}()
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
			attempt, err := rp.attempt()
			if err != nil {
				return p.bodyGone(w, rt)
			}
			tried[i] = true
			tr, aspan := r, trace.Span(nil) // the attempt's request and span, if traced
			if p.tracer != nil {
				var ctx context.Context
				ctx, aspan = p.tracer.Start(r.Context(), "dfaas.forward", trace.WithSpanKind(trace.SpanKindClient),
					trace.WithAttributes(proxy.AttrNode.String(string(p.cfg.Node)), proxy.AttrFunction.String(rt.fn.name), proxy.AttrPeer.String(string(pr.node))))
				tr = r.WithContext(ctx)
			}
			actx, untrack, cancel := p.inflight.start(tr.Context(), pr.node)
			defer cancel() // after the answer's body, or a panic copying it
			defer untrack()
			resp, sent, wrote, err := p.try(tr.WithContext(actx), pr, rp, attempt)
			untrack() // headers or an error: abortable no more (an answer begun is left to finish)
			down := err != nil && errors.Is(context.Cause(actx), errPeerDown)
			if aspan != nil {
				defer endAttempt(aspan, "cut", 0, nil) // a panic copying the answer; else ended below first
			}
			if err != nil && body.Failed() != 0 {
				// The client's body failed as it streamed to the peer
				// (too large, too slow): the client's doing, not the peer's.
				// (A body that fails its read deadline cancels the
				// request's context too: this comes first.)
				endAttempt(aspan, "body failed", 0, err)
				outcome(span, "rejected", "")
				p.bodyFailed(w, rt, body, err)
				return true
			}
			if err != nil && r.Context().Err() != nil {
				endAttempt(aspan, "client left", 0, err)
				outcome(span, "client left", "")
				return true // the client left: nobody to answer
			}
			if err != nil {
				failed = true
				rt.fn.counts.failedTries.Add(1)
				if !errors.Is(err, errRefused) { // a refusal is the peer's capacity, not its health; an abort counts
					p.forwards.Failed(rt.fn.name, pr.node, time.Now())
				}
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
					endAttempt(aspan, map[bool]string{true: "refused", false: "not sent"}[errors.Is(err, errRefused)], 0, err)
					continue // the peer provably did not run it
				}
				// The peer may have run it: at most once, so no other peer.
				code := http.StatusBadGateway
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || down {
					code = http.StatusGatewayTimeout
				}
				endAttempt(aspan, "failed after sending", 0, err)
				outcome(span, "failed at a peer", pr.node)
				msg := "the peer failed after the request was sent"
				if down {
					msg = "the peer stopped answering after the request was sent (it may have run there)"
				}
				http.Error(w, msg, code)
				return true
			}
			p.outliers.Success(pr.node)
			// The peer's time: from the request's end (a body streamed by a
			// slow client is the client's time) to the response headers.
			p.forwards.Answered(rt.fn.name, pr.node, resp.StatusCode, time.Since(wrote), time.Now())
			if resp.StatusCode == http.StatusTooManyRequests {
				// The peer's platform (or the function) said too many: the
				// user gets it, as from a local platform; not retried.
				rt.fn.counts.rejected.Add(1)
				outcome(span, "rejected", pr.node)
			} else {
				pr.sent.Add(1)
				rt.fn.counts.forwardedOut.Add(1)
				outcome(span, "forwarded", pr.node)
			}
			proxy.CopyResponse(w, r, resp)
			endAttempt(aspan, "answered", resp.StatusCode, nil)
			return true
		}
	}
	local, err := rp.attempt()
	if err != nil {
		return p.bodyGone(w, rt)
	}
	r.Body = local
	return false
}

// bodyFailed answers a forward whose body could not be read: 503 with
// Retry-After when the forward buffer is full, else the status the body's
// failure earns (see httpbody.Body.Failed). Either way the request is
// counted as rejected: it ran nowhere.
func (p *Proxy) bodyFailed(w http.ResponseWriter, rt *route, body *httpbody.Body, err error) {
	rt.fn.counts.rejected.Add(1)
	if errors.Is(err, errBufferFull) {
		w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
		w.Header().Set(proxy.HeaderRejected, proxy.RefusedCapacity)
		http.Error(w, "too many forwards in progress", http.StatusServiceUnavailable)
		return
	}
	code := body.Failed()
	if code == 0 {
		code = http.StatusBadRequest
	}
	http.Error(w, httpbody.Reason(code)+": "+err.Error(), code)
}

// bodyGone answers a request that nobody can run any more: a peer read part
// of its body beyond what was held, then refused it (it had not answered
// the 100 Continue in time). Not run anywhere: 503, try again.
func (p *Proxy) bodyGone(w http.ResponseWriter, rt *route) bool {
	rt.fn.counts.rejected.Add(1)
	w.Header().Set("Retry-After", strconv.Itoa(int(p.cfg.RetryAfter/time.Second)))
	w.Header().Set(proxy.HeaderRejected, proxy.RefusedCapacity)
	http.Error(w, "a peer refused the request after taking part of its body; it ran nowhere", http.StatusServiceUnavailable)
	return true
}

// try sends one forward attempt with body, one of rp's attempts. sent
// reports whether any of the request may have reached the peer: a refusal
// (StatusRefused) is returned as an error with the response closed and
// sent false, as is a failure to connect; any failure after the request
// was written has sent true.
func (p *Proxy) try(r *http.Request, pr peer, rp *replay, body io.ReadCloser) (_ *http.Response, sent bool, wroteAt time.Time, _ error) {
	// Built from parsed parts: the peer's address only ever names the host.
	u := &url.URL{Scheme: p.scheme, Host: pr.addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	var wrote atomic.Bool
	var ended atomic.Int64 // when the request was written to its end
	ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { wrote.Store(true) },
		WroteHeaders:     func() { wrote.Store(true) },
		WroteRequest:     func(httptrace.WroteRequestInfo) { ended.Store(time.Now().UnixNano()) },
	})
	start := time.Now()
	// wroteAt: the request's end, or the attempt's start if it was not seen.
	at := func() time.Time {
		if n := ended.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return start
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), nil)
	if err != nil {
		return nil, false, start, err
	}
	out.Header = r.Header.Clone()
	proxy.RemoveHopByHop(out.Header)
	out.Header.Del("Expect")
	if rp.length != 0 {
		out.Body, out.ContentLength = body, rp.length // -1: chunked
	}
	if rp.streamed() {
		// Admitted first, then the body: a refusal leaves it unread, for
		// the next peer.
		out.Header.Set("Expect", "100-continue")
	}
	out.Header.Set(proxy.HeaderHop, "1")
	out.Header.Set(proxy.HeaderFrom, string(p.cfg.Node))
	if p.tracer != nil {
		inject(r, out.Header) // the attempt's span is the peer's parent
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := out.Header.Get("X-Forwarded-For"); prior != "" {
			host = prior + ", " + host
		}
		out.Header.Set("X-Forwarded-For", host)
	}
	t, err := p.transportTo(pr.node)
	if err != nil {
		return nil, false, start, err
	}
	resp, err := t.RoundTrip(out)
	if err != nil {
		// A refused TLS handshake (a peer that does not count this node
		// as a member) fails before anything is written: TLS 1.2, see
		// proxy.PeerTLSVersion. An alert after the write may come after
		// the peer ran the request.
		return nil, wrote.Load(), at(), err
	}
	p.answered(pr.node) // any answer, a refusal too: the path works
	if resp.StatusCode == proxy.StatusRefused {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		return nil, false, at(), fmt.Errorf("peer %s %w: %s %s", pr.node, errRefused, resp.Status, resp.Header.Get(proxy.HeaderRefused))
	}
	return resp, true, at(), nil
}

// errRefused: the peer refused the request (proxy.StatusRefused): it ran
// nothing.
var errRefused = errors.New("refused")

// statusWriter records the status code the platform wrote. On the peer
// listener (peer) it translates for the forwarder: between peers
// StatusRefused means "not executed", so the platform's own 425 (it ran)
// goes out as 502. An error the platform answers because the request's
// body failed under the proxy's bounds goes out as that failure (413, 408):
// the client's doing, not the platform's.
type statusWriter struct {
	http.ResponseWriter
	status  int
	wrote   bool
	peer    bool
	body    *httpbody.Body
	discard bool   // the platform's answer is dropped: see WriteHeader
	node    string // this node, the one that ran it (proxy.HeaderNode)
}

func (s *statusWriter) WriteHeader(code int) {
	if s.discard {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		s.ResponseWriter.WriteHeader(code) // informational: more to come
		return
	}
	if c := s.body.Failed(); c != 0 && !s.wrote {
		// Whatever the platform made of a cut body (an error, or an
		// answer to part of it) is not the answer to the request.
		s.status, s.wrote, s.discard = c, true, true
		h := s.ResponseWriter.Header()
		clear(h)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		s.ResponseWriter.WriteHeader(c)
		_, _ = io.WriteString(s.ResponseWriter, httpbody.Reason(c)+"\n")
		return
	}
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.Header().Set(proxy.HeaderNode, s.node) // in place of any the platform set
	s.ResponseWriter.Header().Del(proxy.HeaderRejected)     // it ran here
	if s.peer && code == proxy.StatusRefused {
		code = http.StatusBadGateway
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	if s.discard {
		return len(b), nil
	}
	return s.ResponseWriter.Write(b)
}

// FlushError flushes what the platform wrote, unless its answer is being
// dropped (http.ResponseController finds it before Unwrap).
func (s *statusWriter) FlushError() error {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	if s.discard {
		return nil
	}
	return http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
