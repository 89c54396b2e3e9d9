package embedded

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/internal/h1pool"
	"github.com/dfaas-go/dfaas/proxy"
)

// Config configures a Proxy. The zero value of every field but Node means
// its default.
type Config struct {
	// Node is this node's overlay id, sent to peers with forwarded requests.
	// Required.
	Node dfaas.NodeID
	// UserAddr is the user listener's address. Default 127.0.0.1:0.
	UserAddr string
	// PeerAddr is the peer listener's address. Default 127.0.0.1:0.
	PeerAddr string
	// TLS, if set, is the federation's mutual TLS bound to node identity:
	// the peer listener serves TLS to current members only, and each
	// forward verifies that it reaches the node its plan named.
	TLS *proxy.TLS
	// Burst is how much a peer's Cap, and the node's own Limit, let
	// through at once, as time at that rate (at least two requests).
	// Default 100 ms. The Capacity lets through up to a
	// proxy.AdmissionWindow's worth.
	Burst time.Duration
	// MaxBody is the largest request body accepted on either listener,
	// run here or forwarded: a larger one is answered 413. Default 16 MiB.
	MaxBody int64
	// MaxBuffered bounds the bytes of request bodies held by all forwards
	// at once: a forward holds its body, up to 64 KiB, so that a refusal
	// can be retried with another peer; the rest of a larger body streams
	// to a peer that has admitted the request. A forward that would exceed
	// it is answered 503 with Retry-After (and counted as rejected).
	// Default 64 MiB.
	MaxBuffered int64
	// DialTimeout bounds connecting to a peer. Default 1 s.
	DialTimeout time.Duration
	// ForwardTimeout bounds waiting for a peer's response headers. Default 30 s.
	ForwardTimeout time.Duration
	// BodyIdle bounds each wait for more of a request's body: a client (or
	// peer) that stops sending its body is cut off after this much silence,
	// as HAProxy's timeout client does, instead of holding a goroutine and
	// its connection for as long as it likes. Default 30 s.
	BodyIdle time.Duration
	// BodyTimeout bounds the time from a request's headers to the end of
	// its body, however steadily it trickles: past it the request is
	// answered 408. Default 60 s.
	BodyTimeout time.Duration
	// Async, if set, is the host:port of the node's asynchronous calls
	// (package async): the user listener sends /async-function/... there,
	// within the same bounds on the body. Default none: 404.
	Async string
	// RetryAfter is the Retry-After of a 503. Default 1 s.
	RetryAfter time.Duration
	// Outliers tunes the ejection of peers whose forwards keep failing.
	Outliers proxy.OutlierConfig
	// Tracer, if set, traces every request with W3C trace context: a
	// server span per request on each listener (dfaas.user, dfaas.peer),
	// a client span per forward attempt (dfaas.forward) and per execution
	// on the platform (dfaas.execute), with the node, function, peer and
	// outcome; each hop's context goes to the next in traceparent. Default
	// none, at no cost: a caller's traceparent then passes through as it
	// came.
	Tracer trace.TracerProvider
	// Logger receives the proxy's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of the rate limiters. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.UserAddr == "" {
		c.UserAddr = "127.0.0.1:0"
	}
	if c.PeerAddr == "" {
		c.PeerAddr = "127.0.0.1:0"
	}
	if c.Burst == 0 {
		c.Burst = 100 * time.Millisecond
	}
	if c.MaxBody == 0 {
		c.MaxBody = proxy.DefaultMaxBody
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = 64 << 20
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.ForwardTimeout == 0 {
		c.ForwardTimeout = 30 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.BodyIdle == 0 {
		c.BodyIdle = 30 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = proxy.DefaultBodyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Node == "":
		return fmt.Errorf("%w: proxy: empty node id", dfaas.ErrInvalidConfig)
	case c.Burst < 0 || c.MaxBody < 0 || c.MaxBuffered < 0 || c.DialTimeout < 0 || c.ForwardTimeout < 0 || c.BodyIdle < 0 || c.BodyTimeout < 0 || c.RetryAfter < time.Second:
		return fmt.Errorf("%w: proxy: negative duration or size, or retry-after under 1s", dfaas.ErrInvalidConfig)
	case c.Async != "" && dfaas.ValidateAddr(c.Async) != nil:
		return fmt.Errorf("%w: proxy: async %q: want host:port", dfaas.ErrInvalidConfig, c.Async)
	case c.TLS != nil:
		if err := c.TLS.Validate(); err != nil {
			return err
		}
	}
	return c.Outliers.Validate()
}

// maxHeaderBytes bounds a request's header on both listeners (HAProxy's
// default buffer holds about as much).
const maxHeaderBytes = 64 << 10

// Proxy is the embedded data plane of one node. It implements
// proxy.DataPlane and dfaas.Trigger (fired when a function first exceeds
// its local limit). It is safe for concurrent use.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	local     http.Handler
	async     http.Handler // to Config.Async; nil: none
	peerConns *peerConns   // with TLS: the peer port's connections by node (members.go)
	transport *h1pool.Pool // of forwards without TLS
	dialer    *net.Dialer
	scheme    string // of forwards: http or https
	trigger   chan struct{}
	outliers  *proxy.Outliers
	tracer    trace.Tracer // nil: not tracing
	forwards  proxy.Forwards
	inflight  inFlight     // forward attempts, to abort (AbortForwards)
	buffered  atomic.Int64 // bytes of request bodies held by forwards

	tmu        sync.Mutex
	transports map[dfaas.NodeID]*h1pool.Pool // with TLS: one per peer, verifying that peer

	// answers holds, per peer a route names, when it last answered a
	// forward (unix nanoseconds in an *atomic.Int64): see LastAnswer.
	answers sync.Map

	routes atomic.Pointer[map[string]*route]

	mu        sync.Mutex // guards functions; held by Apply
	functions map[string]*function

	user, peer   *http.Server
	userL, peerL net.Listener
	wg           sync.WaitGroup
	closeOnce    sync.Once
	closeErr     error
}

// New binds the proxy's listeners and starts serving. Local executes
// requests on this node (the FaaS platform); it sees the OpenFaaS path.
// Until the first Apply every function is unknown (404).
func New(cfg Config, local http.Handler) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if local == nil {
		return nil, fmt.Errorf("%w: proxy: nil local handler", dfaas.ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	outliers, err := proxy.NewOutliers(cfg.Outliers)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("node", string(cfg.Node)), local: local,
		trigger: make(chan struct{}, 1), functions: map[string]*function{}, outliers: outliers}
	p.routes.Store(&map[string]*route{})
	if cfg.Tracer != nil {
		p.tracer = cfg.Tracer.Tracer(instrumentation)
	}
	if cfg.Async != "" {
		target := &url.URL{Scheme: "http", Host: cfg.Async}
		p.async = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		}, ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
	}
	p.dialer = &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	p.scheme = "http"
	p.transport = p.newTransport(nil)
	if cfg.TLS != nil {
		p.scheme = "https"
		p.transports = map[dfaas.NodeID]*h1pool.Pool{}
	}
	if p.userL, err = net.Listen("tcp", cfg.UserAddr); err != nil {
		return nil, fmt.Errorf("proxy: user listener: %w", err)
	}
	if p.peerL, err = net.Listen("tcp", cfg.PeerAddr); err != nil {
		_ = p.userL.Close()
		return nil, fmt.Errorf("proxy: peer listener: %w", err)
	}
	if cfg.TLS != nil {
		p.peerL = tls.NewListener(p.peerL, cfg.TLS.ServerConfig())
	}
	p.user = &http.Server{Handler: http.HandlerFunc(p.serveUser), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes}
	p.peer = &http.Server{Handler: http.HandlerFunc(p.servePeer), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes,
		// Refused handshakes (non-members) are routine: debug, not stderr.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)}
	if cfg.TLS != nil {
		p.peerConns = &peerConns{conns: map[net.Conn]*peerConn{}}
		p.peer.ConnState = p.peerConns.state
	}
	for _, s := range []struct {
		srv *http.Server
		l   net.Listener
	}{{p.user, p.userL}, {p.peer, p.peerL}} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := s.srv.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("proxy listener stopped", "addr", s.l.Addr().String(), "err", err)
			}
		}()
	}
	return p, nil
}

// newTransport returns a pool of connections for forwards (see
// internal/h1pool: each forward runs on its request's goroutine, without
// http.Transport's read and write loops).
func (p *Proxy) newTransport(tc *tls.Config) *h1pool.Pool {
	return h1pool.New(h1pool.Config{
		Dial:                  p.dialer.DialContext,
		DialTimeout:           p.cfg.DialTimeout,
		TLS:                   tc,
		ResponseHeaderTimeout: p.cfg.ForwardTimeout,
		IdleTimeout:           60 * time.Second, // peers keep idle connections 2 min: no race with their close
		MaxIdlePerHost:        256,
		ExpectContinueTimeout: expectContinue,
	})
}

// transportTo returns the transport of forwards to node. With TLS, each
// peer has its own, trusting that peer's anchor only: a connection
// verified for one node is never reused for another at the same address.
func (p *Proxy) transportTo(node dfaas.NodeID) (*h1pool.Pool, error) {
	if p.cfg.TLS == nil {
		return p.transport, nil
	}
	p.tmu.Lock()
	defer p.tmu.Unlock()
	if t := p.transports[node]; t != nil {
		return t, nil
	}
	tc, err := p.cfg.TLS.ClientConfig(node)
	if err != nil {
		return nil, err
	}
	t := p.newTransport(tc)
	p.transports[node] = t
	return t, nil
}

// named returns the peers routes name.
func named(routes map[string]*route) map[dfaas.NodeID]bool {
	out := map[dfaas.NodeID]bool{}
	for _, rt := range routes {
		for _, pr := range rt.peers {
			out[pr.node] = true
		}
	}
	return out
}

// pruneTransports closes the transports of peers not in keep.
func (p *Proxy) pruneTransports(keep map[dfaas.NodeID]bool) {
	if p.cfg.TLS == nil {
		return
	}
	p.tmu.Lock()
	defer p.tmu.Unlock()
	for n, t := range p.transports {
		if !keep[n] {
			t.Close()
			delete(p.transports, n)
		}
	}
}

// LastAnswer is when peer last answered a forward, with any status (a
// refusal too): the zero time if it has not since its route appeared. An
// answer proves the path to the peer works now; an overlay whose probes
// stall on a lossy link can take it as such (overlay.Libp2p.SetAnswered).
func (p *Proxy) LastAnswer(peer dfaas.NodeID) time.Time {
	if v, ok := p.answers.Load(peer); ok {
		return time.Unix(0, v.(*atomic.Int64).Load())
	}
	return time.Time{}
}

// answered records that peer answered a forward now.
func (p *Proxy) answered(peer dfaas.NodeID) {
	v, ok := p.answers.Load(peer)
	if !ok {
		v, _ = p.answers.LoadOrStore(peer, new(atomic.Int64))
	}
	v.(*atomic.Int64).Store(time.Now().UnixNano())
}

// UserAddr is the bound host:port of the user listener.
func (p *Proxy) UserAddr() string { return p.userL.Addr().String() }

// PeerAddr is the bound host:port of the peer listener, to advertise.
func (p *Proxy) PeerAddr() string { return p.peerL.Addr().String() }

// Trigger implements dfaas.Trigger: it fires when a function first exceeds
// its local limit and when a peer is ejected.
func (p *Proxy) Trigger() <-chan struct{} { return p.trigger }

func (p *Proxy) fire() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Ejected implements dfaas.PeerHealth: the peers ejected now.
func (p *Proxy) Ejected() []dfaas.NodeID { return p.outliers.Ejected(p.cfg.Now()) }

// Apply implements dfaas.ProxyDriver. Each function's routing is swapped
// atomically; requests in flight finish on the routing they started with.
// Functions absent from the plan answer 404 from then on, and their state
// is dropped.
func (p *Proxy) Apply(ctx context.Context, plan dfaas.Plan) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("proxy: apply: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	prev := *p.routes.Load()
	next := make(map[string]*route, len(plan.Functions))
	for name, fp := range plan.Functions {
		if err := dfaas.ValidateFunctionName(name); err != nil {
			return fmt.Errorf("proxy: apply: %w", err)
		}
		fn, ok := p.functions[name]
		if !ok {
			fn = newFunction(name, fp, p.cfg.Burst, now)
			p.functions[name] = fn
		}
		next[name] = newRoute(fn, fp, p.cfg.Burst, now, prev[name])
	}
	p.routes.Store(&next)
	// Functions that left the plan leave the proxy: a peer naming fresh
	// functions every tick costs memory for one plan only. Requests in
	// flight keep their route; a function that returns starts its
	// counters again (readers take a counter going down as a reset).
	for name := range p.functions {
		if _, ok := next[name]; !ok {
			delete(p.functions, name)
		}
	}
	keep := named(next)
	p.pruneTransports(keep)
	p.answers.Range(func(k, _ any) bool {
		if !keep[k.(dfaas.NodeID)] {
			p.answers.Delete(k)
		}
		return true
	})
	p.outliers.Forget(func(n dfaas.NodeID) bool { return keep[n] }, now)
	if p.peerConns != nil {
		if n := p.peerConns.sweep(p.cfg.TLS.Members()); n > 0 {
			p.log.Info("peer port: nodes no longer members cut off", "nodes", n)
		}
	}
	return nil
}

// Counts implements proxy.Counter: every function of the current plan, with its
// counters since the proxy started. It never fails.
func (p *Proxy) Counts(context.Context) (map[string]proxy.Counts, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]proxy.Counts, len(p.functions))
	for name, fn := range p.functions {
		out[name] = fn.counts.snapshot()
	}
	return out, nil
}

// closeGrace bounds Close's wait for the requests in progress. It is past
// the 5 s for which net/http's Shutdown counts a connection that has sent
// no request yet as busy: a peer's kept connection dialled but not used
// yet held a Close for those 5 s, and a 5 s grace then ended in an error.
const closeGrace = 7 * time.Second

// Close stops both listeners, waits up to closeGrace for requests in
// flight, and closes idle peer connections. It is idempotent.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
		defer cancel()
		p.closeErr = errors.Join(p.user.Shutdown(ctx), p.peer.Shutdown(ctx))
		p.wg.Wait()
		p.transport.Close()
		p.pruneTransports(nil)
	})
	return p.closeErr
}

// Interface guards.
var (
	_ dfaas.ProxyDriver = (*Proxy)(nil)
	_ dfaas.Trigger     = (*Proxy)(nil)
	_ dfaas.PeerHealth  = (*Proxy)(nil)
	_ proxy.DataPlane   = (*Proxy)(nil)
)

// Forwards implements dfaas.ForwardMeter.
func (p *Proxy) Forwards(now time.Time) map[string]map[dfaas.NodeID]dfaas.ForwardHealth {
	return p.forwards.Health(now)
}

var _ dfaas.ForwardMeter = (*Proxy)(nil)
