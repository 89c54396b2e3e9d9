// Package h1pool is the HTTP/1.1 client of the embedded data plane's hops:
// a pool of kept-alive connections per address whose exchanges run on the
// caller's goroutine. The request is written by net/http's
// (*http.Request).Write and the answer parsed by http.ReadResponse, so
// every byte on the wire goes through net/http's own code; only the
// keeping of connections is the pool's.
//
// http.Transport hands each request to a connection's write loop and the
// answer back from its read loop: two goroutine wake-ups per request, and
// on a busy machine a thread wake-up for each. Measured with
// examples/hopbench on a 2-core machine, the pool cut the embedded proxy's
// CPU per request by a third on its local hop and by a quarter on its
// forwarded hop.
//
// The pool takes a request only when writing it cannot block on a peer
// that has stopped reading: no body, or a body of known length up to
// MaxBody. Every other request goes to an http.Transport built from the
// same Config (with a read loop of its own, it sees an answer that comes
// before the whole body was sent), never allowed to send it twice.
//
// What it holds to, as a client of peers it does not trust: an answer's
// headers are bounded (MaxResponseHeaderBytes, 1xx answers included); a
// request whose context has ended is not written; no request is ever sent
// twice; a kept connection is used again only if the peer left nothing
// unread on it and has not closed it (a peek at the socket, and at what
// TLS has already decrypted). A peer that closes a connection between that
// peek and the write still fails a request that was sent: keeping
// connections for less time than the servers do (IdleTimeout) makes that
// rare, as it does for http.Transport.
package h1pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// MaxBody is the largest request body the pool writes itself: far less than
// what a peer's socket buffers and a net/http server's discard of an unread
// body (256 KiB) take, so that the write never waits for the peer.
const MaxBody = 64 << 10

// Config configures a Pool. The zero value is usable: plain TCP, the
// defaults below.
type Config struct {
	// Dial opens a TCP connection. Default: a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds the default Dial and the TLS handshake.
	// Default 10 s.
	DialTimeout time.Duration
	// TLS, if set, secures connections to https URLs. Without it, https
	// URLs are refused.
	TLS *tls.Config
	// ResponseHeaderTimeout bounds the wait for the answer's headers once
	// the request is written. 0: only the request's context bounds it.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout is how long an unused connection is kept. Keep it below
	// the servers' own idle timeout, so that the pool does not pick a
	// connection the server is closing. Default 60 s.
	IdleTimeout time.Duration
	// MaxIdlePerHost bounds the unused connections kept per address.
	// Default 256.
	MaxIdlePerHost int
	// ExpectContinueTimeout is how long a request with "Expect:
	// 100-continue" waits for the server's 100 Continue before its body
	// goes anyway (such requests always have a large or unknown body, so
	// they take the http.Transport). 0: the body goes at once.
	ExpectContinueTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxIdlePerHost <= 0 {
		c.MaxIdlePerHost = 256
	}
	return c
}

// Pool is an http.RoundTripper for HTTP/1.1. It is safe for concurrent use.
type Pool struct {
	cfg      Config
	tls      *tls.Config // cfg.TLS for HTTP/1.1 only
	fallback *http.Transport

	mu      sync.Mutex
	idle    map[string][]*conn      // by "scheme://host:port", the most recently used last
	waiters map[string][]chan *conn // requests dialing, which take a freed connection first
	sweeper *time.Timer             // while connections are kept
	closed  bool
}

// New returns a pool with cfg's settings.
func New(cfg Config) *Pool {
	cfg = cfg.withDefaults()
	var tc *tls.Config
	if cfg.TLS != nil {
		tc = cfg.TLS.Clone()
		tc.NextProtos = slices.DeleteFunc(slices.Clone(tc.NextProtos), func(p string) bool { return p != "http/1.1" })
	}
	return &Pool{cfg: cfg, tls: tc, idle: map[string][]*conn{}, waiters: map[string][]chan *conn{},
		fallback: &http.Transport{
			DialContext:           resetOnClose(cfg.Dial),
			TLSClientConfig:       tc,
			TLSHandshakeTimeout:   cfg.DialTimeout,
			ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
			ExpectContinueTimeout: cfg.ExpectContinueTimeout,
			IdleConnTimeout:       cfg.IdleTimeout,
			MaxIdleConns:          cfg.MaxIdlePerHost,
			MaxIdleConnsPerHost:   cfg.MaxIdlePerHost,
			DisableCompression:    true,
		}}
}

// resetOnClose wraps dial so that its connections close with a reset, as
// the pool's own do when an exchange fails or is given up (see abort):
// http.Transport does not say why it closes a connection, and a request
// it gave up inside a partition must not be delivered when it heals. An
// idle connection then ends with a reset in place of a FIN, which an HTTP
// server between requests takes the same way.
func resetOnClose(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return resetConn{c}, nil
	}
}

type resetConn struct{ net.Conn }

func (c resetConn) Close() error {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	return c.Conn.Close()
}

// conn is one kept-alive connection.
type conn struct {
	key  string
	c    net.Conn // the TLS connection, if any
	raw  net.Conn // the TCP connection under it
	br   *bufio.Reader
	bw   *bufio.Writer
	lr   limitReader // under br: bounds the answer's headers
	used time.Time   // when it was last returned to the pool

	mu       sync.Mutex // orders cancel against clearing the deadline
	canceled bool
}

// close closes an idle connection. A TLS connection is closed under its
// TLS layer: (*tls.Conn).Close may wait seconds to send its close alert to
// a peer that reads nothing, and HTTP/1.1's framing does not need it.
func (c *conn) close() { _ = c.raw.Close() }

// abort closes a connection whose exchange failed or was given up, with a
// reset: the kernel drops what it has not delivered yet. Closed the usual
// way, a request written into a partition would still be retransmitted,
// and run, when the network healed, long after its user was told it
// failed (the closing FIN is what sets the retransmission going).
func (c *conn) abort() {
	if l, ok := c.raw.(interface{ SetLinger(int) error }); ok { // *net.TCPConn
		_ = l.SetLinger(0)
	}
	_ = c.raw.Close()
}

// cancel makes the connection's pending and future reads and writes fail
// at once; the connection is then closed, never reused.
func (c *conn) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.canceled = true
	_ = c.c.SetDeadline(time.Unix(1, 0))
}

// setReadDeadline sets the read deadline unless the exchange was canceled.
func (c *conn) setReadDeadline(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.canceled {
		return false
	}
	_ = c.c.SetReadDeadline(t)
	return true
}

// errCanceled stands for the request's context error when the exchange was
// cut by it.
var errCanceled = errors.New("h1pool: request canceled")

// RoundTrip sends req and returns the answer's headers; the body is read
// from the connection as the caller reads it, and the connection returns
// to the pool once the body is read to its end and closed. If req's
// context carries an httptrace.ClientTrace, (*http.Request).Write calls
// its WroteHeaderField and WroteHeaders as it buffers the headers, before
// they leave in one write: an error before them means the peer never saw
// the request.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("h1pool: request without a host")
	}
	switch {
	case req.URL.Scheme == "https" && p.cfg.TLS == nil:
		closeBody(req)
		return nil, errors.New("h1pool: https without a TLS config")
	case req.URL.Scheme != "http" && req.URL.Scheme != "https":
		closeBody(req)
		return nil, fmt.Errorf("h1pool: unsupported scheme %q", req.URL.Scheme)
	case req.Body != nil && req.Body != http.NoBody && (req.ContentLength <= 0 || req.ContentLength > MaxBody),
		len(req.TransferEncoding) > 0:
		// Never replayed: http.Transport sends again a request it can
		// rewind (GetBody) if its kept connection failed after the write,
		// when the method or an Idempotency-Key header says it may; the
		// request may have run, and runs at most once.
		once := *req
		once.GetBody = nil
		return p.fallback.RoundTrip(&once)
	}
	if err := validHeaders(req); err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	c, err := p.get(ctx, req.URL)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	stop := context.AfterFunc(ctx, c.cancel)
	if err := ctx.Err(); err != nil { // canceled meanwhile: nothing written yet
		closeBody(req)
		if stop() {
			p.put(c)
		} else {
			c.close()
		}
		return nil, err
	}
	fail := func(err error) (*http.Response, error) {
		stop()
		c.abort()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w (%w)", errCanceled, ctx.Err(), err)
		}
		return nil, err
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err)
	}
	if t := p.cfg.ResponseHeaderTimeout; t > 0 {
		c.setReadDeadline(time.Now().Add(t))
	}
	c.lr.n = MaxResponseHeaderBytes
	resp, err := readResponse(c.br, req)
	c.lr.n = -1
	if err != nil {
		return fail(err)
	}
	if p.cfg.ResponseHeaderTimeout > 0 && !c.setReadDeadline(time.Time{}) {
		_ = resp.Body.Close()
		return fail(ctx.Err())
	}
	b := &body{rc: resp.Body, p: p, c: c, stop: stop, keep: !resp.Close && !req.Close}
	if resp.Body == http.NoBody { // HEAD, 204, 304, a length of 0: the exchange is over
		b.release(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// readResponse reads the final answer, skipping interim (1xx) ones.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for range 5 {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			_ = resp.Body.Close()
			return nil, errors.New("h1pool: the server switched protocols")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue // 100 Continue, 103 Early Hints: no body
		}
		return resp, nil
	}
	return nil, errors.New("h1pool: too many interim responses")
}

// validHeaders refuses what net/http's Transport refuses: a header that
// would not survive the trip intact.
func validHeaders(req *http.Request) error {
	if req.Method != "" && !httpguts.ValidHeaderFieldName(req.Method) { // "": GET
		return fmt.Errorf("h1pool: invalid method %q", req.Method)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1pool: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h1pool: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// get returns a kept connection to u's host that is still open, or a new one.
func (p *Pool) get(ctx context.Context, u *url.URL) (*conn, error) {
	key, addr := connKey(u)
	w := make(chan *conn, 1) // put hands over at most one
	for {
		p.mu.Lock()
		l := p.idle[key]
		if len(l) == 0 {
			// Waiting from here, under the lock that found none kept: a
			// connection freed from now on is handed over.
			p.waiters[key] = append(p.waiters[key], w)
			p.mu.Unlock()
			break
		}
		c := l[len(l)-1]
		l[len(l)-1] = nil // the array does not keep it
		p.idle[key] = l[:len(l)-1]
		p.mu.Unlock()
		if time.Since(c.used) < p.cfg.IdleTimeout && c.usable() {
			return c, nil
		}
		c.close()
	}
	return p.dialOrWait(ctx, w, u.Scheme, key, addr)
}

// usable reports whether a kept connection may carry a request. A server
// closes idle connections when it likes (it restarted, or its idle timeout
// came first): a request written to such a connection fails after it was
// sent, which a forward may not retry. And a peer that sent more than its
// answer would have the rest read as the next answer. So a connection the
// peer closed, or left bytes on, is not used again.
func (c *conn) usable() bool { return c.br.Buffered() == 0 && alive(c.raw) && c.quiet() }

// dialOrWait dials a new connection, and takes one another request frees
// meanwhile (handed to w) if that comes first, as http.Transport does: on
// a lossy link a dial can take a second (a lost SYN) while a connection in
// use is free again in milliseconds. A dial that loses the race goes on,
// bounded by twice DialTimeout (connecting, then the TLS handshake), and
// keeps its connection for later.
func (p *Pool) dialOrWait(ctx context.Context, w chan *conn, scheme, key, addr string) (*conn, error) {
	type dialed struct {
		c   *conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*p.cfg.DialTimeout)
		defer cancel()
		c, err := p.dial(dctx, scheme, key, addr)
		done <- dialed{c, err}
	}()
	keepDialed := func() {
		go func() {
			if d := <-done; d.err == nil {
				p.put(d.c)
			}
		}()
	}
	for {
		select {
		case c := <-w:
			if !c.usable() { // handed over from an answer just read: checked as a kept one is
				c.close()
				p.mu.Lock()
				p.waiters[key] = append(p.waiters[key], w)
				p.mu.Unlock()
				continue
			}
			keepDialed()
			return c, nil
		case d := <-done:
			handed := p.unwait(key, w)
			switch {
			case d.err != nil && handed != nil && handed.usable():
				return handed, nil
			case handed != nil:
				p.put(handed)
			}
			return d.c, d.err
		case <-ctx.Done():
			if handed := p.unwait(key, w); handed != nil {
				p.put(handed)
			}
			keepDialed()
			return nil, ctx.Err()
		}
	}
}

// unwait removes w from key's waiters, and returns a connection handed to
// it before it was removed, if any.
func (p *Pool) unwait(key string, w chan *conn) *conn {
	p.mu.Lock()
	p.waiters[key] = slices.DeleteFunc(p.waiters[key], func(x chan *conn) bool { return x == w })
	if len(p.waiters[key]) == 0 {
		delete(p.waiters, key)
	}
	p.mu.Unlock()
	select {
	case c := <-w:
		return c
	default:
		return nil
	}
}

// connKey names a connection's destination: scheme and host with port.
func connKey(u *url.URL) (key, addr string) {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	addr = net.JoinHostPort(u.Hostname(), port)
	return u.Scheme + "://" + addr, addr
}

func (p *Pool) dial(ctx context.Context, scheme, key, addr string) (*conn, error) {
	raw, err := p.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := raw
	if scheme == "https" {
		cfg := p.tls
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = raw.Close()
			return nil, err
		}
		c = tc
	}
	cn := &conn{key: key, c: c, raw: raw, bw: bufio.NewWriter(c)}
	cn.lr = limitReader{r: c, n: -1}
	cn.br = bufio.NewReader(&cn.lr)
	return cn, nil
}

// put keeps c for a later request. With MaxIdlePerHost kept already, the
// one unused longest goes.
func (p *Pool) put(c *conn) {
	c.used = time.Now()
	var drop *conn
	p.mu.Lock()
	l := p.idle[c.key]
	switch {
	case p.closed:
		drop = c
	case len(p.waiters[c.key]) > 0: // a request waits for a connection
		w := p.waiters[c.key][0]
		p.waiters[c.key][0] = nil
		p.waiters[c.key] = p.waiters[c.key][1:]
		if len(p.waiters[c.key]) == 0 {
			delete(p.waiters, c.key)
		}
		w <- c // under the lock: unwait finds it either waiting or handed
		p.mu.Unlock()
		return
	case len(l) >= p.cfg.MaxIdlePerHost:
		drop = l[0]
		l[0] = nil
		p.idle[c.key] = append(l[1:], c)
	default:
		p.idle[c.key] = append(l, c)
	}
	if !p.closed && p.sweeper == nil {
		p.sweeper = time.AfterFunc(p.cfg.IdleTimeout, p.sweep)
	}
	p.mu.Unlock()
	if drop != nil {
		drop.close()
	}
}

// sweep closes the connections unused for IdleTimeout, and comes again
// while any are kept: a pool whose traffic stopped holds none for long.
func (p *Pool) sweep() {
	now := time.Now()
	var drop []*conn
	p.mu.Lock()
	for key, l := range p.idle {
		n := 0 // the least recently used come first
		for n < len(l) && now.Sub(l[n].used) >= p.cfg.IdleTimeout {
			n++
		}
		drop = append(drop, l[:n]...)
		clear(l[:n])
		if n == len(l) {
			delete(p.idle, key)
		} else {
			p.idle[key] = l[n:]
		}
	}
	p.sweeper = nil
	if !p.closed && len(p.idle) > 0 {
		p.sweeper = time.AfterFunc(p.cfg.IdleTimeout/2, p.sweep)
	}
	p.mu.Unlock()
	for _, d := range drop {
		d.close()
	}
}

// CloseIdleConnections closes the connections no request is using.
func (p *Pool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*conn{}
	p.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.close()
		}
	}
	p.fallback.CloseIdleConnections()
}

// Close closes the idle connections, and every other one as its request
// ends. The pool still serves requests, on new connections.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	if p.sweeper != nil {
		p.sweeper.Stop()
		p.sweeper = nil
	}
	p.mu.Unlock()
	p.CloseIdleConnections()
}

// body returns its connection to the pool when read to its end.
type body struct {
	mu   sync.Mutex // a Close may come while a Read waits
	rc   io.ReadCloser
	p    *Pool
	c    *conn
	stop func() bool
	keep bool
	done bool
}

func (b *body) Read(buf []byte) (int, error) {
	n, err := b.rc.Read(buf)
	switch {
	case err == io.EOF:
		b.release(true)
	case err != nil:
		b.release(false)
	}
	return n, err
}

// Close ends the exchange. A body not read to its end takes its
// connection with it: what is left of it is unknown.
func (b *body) Close() error {
	b.release(false)
	return nil
}

func (b *body) release(whole bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	if !b.stop() { // the context fired: the connection's deadline is gone
		whole = false
	}
	switch {
	case whole && b.keep:
		b.p.put(b.c)
	case whole:
		b.c.close() // the answer said so
	default:
		b.c.abort()
	}
}

// MaxResponseHeaderBytes bounds the bytes read for an answer's headers
// (interim answers included), as http.Transport's default does.
const MaxResponseHeaderBytes = 1 << 20

var errHeaderTooLarge = errors.New("h1pool: response headers too large")

type limitReader struct {
	r io.Reader
	n int64 // < 0: no limit
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

// quiet reports whether a TLS connection holds nothing already read from
// the socket (decrypted or not): a read through it with a past deadline
// must time out without data.
func (c *conn) quiet() bool {
	if c.c == c.raw {
		return true
	}
	_ = c.c.SetReadDeadline(time.Unix(1, 0))
	_, err := c.br.Peek(1)
	_ = c.c.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}
