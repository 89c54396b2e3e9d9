// Package node builds a complete, running dfaas node from a Config that
// names its parts: the overlay, the FaaS platform, the data plane (by its
// registered name), the Monitor, the Forecaster, the Balancer and the Agent
// that ties them together. The example agent, the demo and the scenario
// tests all build their nodes here.
//
// Data planes are the ones registered with proxy.Register; this package
// imports the two that ship (proxy/embedded and proxy/haproxy), so they are
// always available by name. Platforms are registered here
// (RegisterPlatform): "runtime", "local" and "openfaas" ship.
package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/async"
	_ "github.com/dfaas-go/dfaas/proxy/embedded" // registers "embedded"
	_ "github.com/dfaas-go/dfaas/proxy/haproxy"  // registers "haproxy"
)

// DefaultDataPlane is the data plane a Config without one gets.
const DefaultDataPlane = "embedded"

// Config names a node's parts. The zero value of every field but Platform
// means its default.
type Config struct {
	// Overlay, if set, is a running overlay the node uses (and closes);
	// otherwise the node starts a libp2p overlay from Libp2p.
	Overlay dfaas.Overlay
	// Libp2p configures the libp2p overlay when Overlay is nil.
	Libp2p overlay.Libp2pConfig
	// Platform executes the node's functions and says their capacities.
	// Required; the node closes it.
	Platform Platform
	// DataPlane is the registered name of the data plane (proxy.Names).
	// Default DefaultDataPlane.
	DataPlane string
	// UserAddr and PeerAddr are the data plane's listeners. Default
	// 127.0.0.1 with a free port.
	UserAddr, PeerAddr string
	// Advertise is the peer address advertised to other nodes: where they
	// reach the peer listener. Default the data plane's bound PeerAddr;
	// required when PeerAddr binds every address (0.0.0.0, ::, or no host).
	Advertise string
	// TLS is the federation's mutual TLS between peers. Default, with the
	// libp2p overlay: bound to the overlay key (proxy.Identity), admitting
	// the overlay's Members. A node on another Overlay sets TLS itself, or
	// PlainPeers.
	TLS *proxy.TLS
	// LeafLifetime is how long the peer TLS leaf certificates the node
	// makes itself are valid; each is renewed halfway through (see
	// proxy.DefaultLeafLifetime, the default).
	LeafLifetime time.Duration
	// PlainPeers turns TLS between peers off: forwards travel in clear text
	// and the peer listener serves anyone who reaches it. For labs; the
	// node logs a warning at start.
	PlainPeers bool
	// Binary is the data plane's executable, for one that runs a process
	// (HAProxy). Default: found on $PATH.
	Binary string
	// MaxBody and BodyTimeout bound a request's body on both listeners
	// (413, 408 past them; see proxy.Spec). Default proxy.DefaultMaxBody
	// and proxy.DefaultBodyTimeout.
	MaxBody     int64
	BodyTimeout time.Duration
	// Name is the node's name for people, advertised beside its id and
	// shown in /status, the live page and metrics (dfaas.ValidateNodeName).
	// Optional; the example agent defaults it to the host name.
	Name string
	// Interval is the control tick. Default 1 s.
	Interval time.Duration
	// Balancer plans the node. Default balance.Nearest (Resilient's shares,
	// nearer peers first; on a LAN exactly Resilient).
	Balancer dfaas.Balancer
	// Forecaster predicts demand. Default forecast.LastValue.
	Forecaster dfaas.Forecaster
	// Estimator makes each function's capacity estimator: the node learns
	// what it can run of a function from its local executions, within what
	// the platform declares. Default capacity.NewAdaptive with its
	// defaults.
	Estimator func(function string) capacity.Estimator
	// DeclaredCapacity turns measuring off: a function's capacity is what
	// the platform declares (its dfaas.maxrate label), and 0 without one.
	DeclaredCapacity bool
	// Sequencer numbers the node's adverts (dfaas.Config.Sequencer).
	// Default: from the start time; overlay.SeqFile survives a clock that
	// goes back.
	Sequencer dfaas.Sequencer
	// Tracer, if set, traces the requests the data plane handles (W3C
	// trace context, see proxy.Spec.Tracer): an OpenTelemetry SDK's
	// TracerProvider with an exporter of the caller's. Default none.
	Tracer trace.TracerProvider
	// AsyncQueue, if set, is the file of the node's queue of asynchronous
	// calls (package async, created 0600): the user listener takes
	// OpenFaaS's /async-function/<name> (202, then the call runs through
	// the user listener and its result goes to X-Callback-Url), and the
	// calls wait there across restarts. Default none: such paths are
	// answered 404.
	AsyncQueue string
	// AsyncCallbacks reports whether an asynchronous call's result may be
	// posted to an address (async.Config.Callbacks). Default
	// async.PublicCallbacks: not to this host's loopback, link-local or
	// unspecified addresses.
	AsyncCallbacks func(netip.Addr) bool
	// Logger receives every part's logs. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Platform.Capacities == nil:
		return fmt.Errorf("%w: node: the platform has no capacities", dfaas.ErrInvalidConfig)
	case c.Platform.Handler == nil && c.Platform.Addr == "":
		return fmt.Errorf("%w: node: the platform has neither a handler nor an address", dfaas.ErrInvalidConfig)
	case c.Interval < 0:
		return fmt.Errorf("%w: node: negative interval", dfaas.ErrInvalidConfig)
	case dfaas.ValidateNodeName(c.Name) != nil:
		return fmt.Errorf("%w: node: %w", dfaas.ErrInvalidConfig, dfaas.ValidateNodeName(c.Name))
	case c.TLS != nil && c.PlainPeers:
		return fmt.Errorf("%w: node: both TLS and PlainPeers", dfaas.ErrInvalidConfig)
	case c.Overlay != nil && c.TLS == nil && !c.PlainPeers:
		return fmt.Errorf("%w: node: with an Overlay of your own, set TLS (or PlainPeers)", dfaas.ErrInvalidConfig)
	case c.Advertise == "" && unspecifiedHost(c.PeerAddr):
		return fmt.Errorf("%w: node: the peer listener %q binds every address: set Config.Advertise (the example agent's -advertise) to the host:port peers reach it at",
			dfaas.ErrInvalidConfig, c.PeerAddr)
	case c.Advertise != "":
		if err := dfaas.ValidateAddr(c.Advertise); err != nil {
			return fmt.Errorf("%w: node: advertise: %w", dfaas.ErrInvalidConfig, err)
		}
	}
	return nil
}

// unspecifiedHost reports whether addr's host is empty or an unspecified
// IP (0.0.0.0, ::): an address to bind, not one peers can reach.
func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return host == "" || (err == nil && ip.IsUnspecified())
}

func (c Config) withDefaults() Config {
	if c.DataPlane == "" {
		c.DataPlane = DefaultDataPlane
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Balancer == nil {
		c.Balancer = balance.Nearest{}
	}
	if c.Forecaster == nil {
		c.Forecaster = &forecast.LastValue{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Libp2p.Logger == nil {
		c.Libp2p.Logger = c.Logger
	}
	return c
}

// Node is a running node. Its fields are for reading; Close stops it.
type Node struct {
	Overlay   dfaas.Overlay
	Platform  Platform
	DataPlane proxy.DataPlane
	Monitor   *faas.Monitor
	Agent     *dfaas.Agent
	// Async is the queue of asynchronous calls, nil without
	// Config.AsyncQueue.
	Async *async.Queue

	interval  time.Duration
	name      string
	cancel    context.CancelFunc
	done      chan struct{}
	closers   []func() error
	closeOnce sync.Once
	closeErr  error
}

// Build starts every part of a node and runs its Agent until Close (or
// StopAgent). ctx bounds the start only. On error, whatever started is
// closed again, the platform included.
func Build(ctx context.Context, cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		if cfg.Platform.Close != nil {
			_ = cfg.Platform.Close()
		}
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{Platform: cfg.Platform, done: make(chan struct{}), interval: cfg.Interval, name: cfg.Name}
	if cfg.Platform.Close != nil {
		n.closers = append(n.closers, cfg.Platform.Close)
	}
	defer func() {
		if err != nil {
			close(n.done)
			_ = n.Close()
		}
	}()
	n.Overlay = cfg.Overlay
	if n.Overlay == nil {
		if cfg.Libp2p.PrivateKey == nil { // the TLS identity derives from it
			if cfg.Libp2p.PrivateKey, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
				return nil, err
			}
		}
		o, err := overlay.NewLibp2p(ctx, cfg.Libp2p)
		if err != nil {
			return nil, err
		}
		n.Overlay = o
		if cfg.Libp2p.Insecure && !cfg.PlainPeers {
			cfg.Logger.Warn("an open federation admits anyone to the peer port: its members are whoever connects", "node", o.Self())
		}
		if cfg.TLS == nil && !cfg.PlainPeers {
			id, err := proxy.NewIdentityWith(cfg.Libp2p.PrivateKey, cmp.Or(cfg.LeafLifetime, proxy.DefaultLeafLifetime), time.Now)
			if err != nil {
				return nil, err
			}
			cfg.TLS = &proxy.TLS{Identity: id, Members: o.Members}
		}
	}
	if cfg.PlainPeers {
		cfg.Logger.Warn("INSECURE: peer traffic in clear text; the peer listener serves anyone who reaches it", "node", n.Overlay.Self())
	}
	n.closers = append(n.closers, n.Overlay.Close)
	var functions []string
	if caps, err := cfg.Platform.Capacities.Capacities(ctx); err == nil {
		for fn := range caps {
			functions = append(functions, fn)
		}
	}
	// The asynchronous calls' listener first (the data plane sends
	// /async-function/ there); its queue once the data plane's user
	// listener, where the calls run, is up.
	var asyncL net.Listener
	asyncAddr := ""
	if cfg.AsyncQueue != "" {
		if asyncL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("node: async listener: %w", err)
		}
		n.closers = append(n.closers, func() error { _ = asyncL.Close(); return nil })
		asyncAddr = asyncL.Addr().String()
	}
	if n.DataPlane, err = proxy.Open(ctx, cfg.DataPlane, proxy.Spec{Node: n.Overlay.Self(), UserAddr: cfg.UserAddr, PeerAddr: cfg.PeerAddr,
		Platform:  proxy.Platform{Handler: cfg.Platform.Handler, Addr: cfg.Platform.Addr, Namespace: cfg.Platform.Namespace},
		Functions: functions, TLS: cfg.TLS, Binary: cfg.Binary, MaxBody: cfg.MaxBody, BodyTimeout: cfg.BodyTimeout, Async: asyncAddr,
		Tracer: cfg.Tracer, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	n.closers = append(n.closers, n.DataPlane.Close)
	// A data plane that knows when each peer last answered lends it to
	// the overlay's probes: a peer whose forwards are answered is not
	// suspected for a stalled libp2p connection.
	if a, ok := n.DataPlane.(interface{ LastAnswer(dfaas.NodeID) time.Time }); ok {
		if o, ok := n.Overlay.(interface {
			SetAnswered(func(dfaas.NodeID) time.Time)
		}); ok {
			o.SetAnswered(a.LastAnswer)
		}
	}
	// And a peer the overlay finds silent has its forwards in flight
	// answered at once, not at their timeout.
	if a, ok := n.DataPlane.(interface{ AbortForwards(dfaas.NodeID) }); ok {
		if o, ok := n.Overlay.(interface{ SetOnSuspect(func(dfaas.NodeID)) }); ok {
			o.SetOnSuspect(a.AbortForwards)
		}
	}
	if n.Monitor, err = faas.NewMonitor(n.DataPlane, cfg.Platform.Capacities, faas.MonitorConfig{Window: cfg.Interval / 2,
		Estimator: cfg.Estimator, Declared: cfg.DeclaredCapacity, Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	advertise := cfg.Advertise
	if advertise == "" {
		advertise = n.DataPlane.PeerAddr()
	}
	if n.Agent, err = dfaas.NewAgent(dfaas.Config{Interval: cfg.Interval, Addr: advertise, Name: cfg.Name, Logger: cfg.Logger, Sequencer: cfg.Sequencer},
		n.Overlay, n.Monitor, cfg.Forecaster, cfg.Balancer, n.DataPlane); err != nil {
		return nil, err
	}
	if asyncL != nil {
		// A function the latest plan names (local or at a peer) can be
		// called, as on the user listener.
		known := func(fn string) bool {
			_, ok := n.Agent.Status().LastPlan.Functions[fn]
			return ok
		}
		if n.Async, err = async.Open(async.Config{Path: cfg.AsyncQueue, Invoke: n.DataPlane.UserAddr(), Known: known, MaxBody: cfg.MaxBody,
			Callbacks: cfg.AsyncCallbacks, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
		// The data planes bound a call's header at 64 KiB (HAProxy's buffer
		// about as much); this listener, on loopback, no more.
		srv := &http.Server{Handler: n.Async, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
		go func() { _ = srv.Serve(asyncL) }()
		// Closed first: the calls in progress finish through the data plane.
		n.closers = append(n.closers, func() error { return errors.Join(srv.Close(), n.Async.Close()) })
	}
	var runCtx context.Context
	runCtx, n.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(n.done)
		_ = n.Agent.Run(runCtx)
	}()
	return n, nil
}

// StopAgent ends the node's agent only: the node stays connected and its
// data plane serves, but it falls silent, as a hung agent would.
func (n *Node) StopAgent() {
	if n.cancel != nil {
		n.cancel()
	}
	<-n.done
}

// Shutdown leaves the federation without losing a request: the agent
// drains (Agent.Drain: zero capacity advertised, forwards from peers
// refused - they retry elsewhere - and the node's own users' requests
// forwarded), Shutdown waits until peers have stopped sending (no forward
// arrived for two ticks) or ctx ends, then closes the node, whose data
// plane lets the requests in flight finish. It returns ctx's error if the
// peers were still sending when it ended (the node is closed anyway): give
// it a deadline, since an agent that is not running (StopAgent) never
// drains. While it drains, users of this node get 503 when no peer has
// room: the node serves nothing itself any more.
func (n *Node) Shutdown(ctx context.Context) error {
	n.Agent.Drain()
	interval := n.interval
	var last uint64
	quietSince := time.Time{}
	var waitErr error
	for {
		if n.Agent.Status().Draining {
			counts, err := n.DataPlane.Counts(ctx)
			if err == nil {
				var arrived uint64
				for _, c := range counts {
					arrived += c.ReceivedIn + c.Refused
				}
				switch {
				case arrived != last || quietSince.IsZero():
					last, quietSince = arrived, time.Now()
				case time.Since(quietSince) >= 2*interval:
					return n.Close()
				}
			}
		}
		select {
		case <-ctx.Done():
			waitErr = ctx.Err()
		case <-time.After(interval / 10):
			continue
		}
		break
	}
	return errors.Join(waitErr, n.Close())
}

// Close stops the agent, then the data plane, the overlay and the
// platform. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.StopAgent()
		var errs []error
		for i := len(n.closers) - 1; i >= 0; i-- {
			errs = append(errs, n.closers[i]())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
