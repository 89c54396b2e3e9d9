// Package scenario starts a federation of complete nodes on loopback - an
// FaaS platform, an embedded proxy, an overlay and an Agent each - drives
// open-loop load at them with vegeta, and reports what every node served.
// The reference-scenario demo and the end-to-end tests are built on it.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/faas/openfaas"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
)

// ClusterConfig describes a federation to start.
type ClusterConfig struct {
	// Capacities holds each node's capacity for Function, in req/s; node i
	// is named strconv.Itoa(i+1).
	Capacities []dfaas.Rate
	// Function is the function every node deploys. Default "figlet".
	Function string
	// Interval is the Agents' control tick. Default 1 s.
	Interval time.Duration
	// Strategy plans every node. Default balance.Proportional.
	Strategy dfaas.Balancer
	// Forecaster makes each node's forecaster. Default forecast.LastValue.
	Forecaster func() dfaas.Forecaster
	// Overlay is "libp2p" (default: real hosts on loopback, every node
	// bootstrapping from node 1) or "memory".
	Overlay string
	// Logger receives every component's logs. Default: discard.
	Logger *slog.Logger
	// Proxy is the data plane: "embedded" (default) or "haproxy" (a real
	// HAProxy process per node; needs a platform with an Addr).
	Proxy string
	// HAProxy is the haproxy executable for Proxy "haproxy". Default
	// "haproxy" on $PATH.
	HAProxy string
	// Platform makes each node's FaaS platform, serving Function at the
	// node's capacity. Default: Embedded.
	Platform func(ctx context.Context, node string, function string, capacity dfaas.Rate) (Platform, error)
}

// Platform is a node's FaaS platform: the proxy's local target and the
// Monitor's source of capacities.
type Platform struct {
	Handler  http.Handler
	Capacity faas.Platform
	// Addr is the platform's host:port, for data planes that reach it over
	// TCP (HAProxy); empty if it runs in-process only.
	Addr string
	// Close, if set, stops the platform when the cluster closes.
	Close func() error
}

// Embedded is the default Platform, the one production runs with nothing
// installed: an OpenFaaS-compatible faas/local provider on loopback, with
// the function deployed through its API under the dfaas.maxrate label
// (enforced as the physical capacity), reached through the faas/openfaas
// backend exactly as a gateway would be.
func Embedded(ctx context.Context, node, function string, capacity dfaas.Rate) (_ Platform, err error) {
	quiet := slog.New(slog.DiscardHandler)
	p, err := local.New(local.Config{EnforceMaxRate: true, Logger: quiet})
	if err != nil {
		return Platform{}, err
	}
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	image := "dfaas/hello"
	if err := p.RegisterImage(image, Hello(node)); err != nil {
		return Platform{}, err
	}
	gw := strings.TrimSuffix(p.URL(), "/")
	u, _ := url.Parse(gw)
	deployer := &http.Client{Transport: &http.Transport{}}
	defer deployer.CloseIdleConnections()
	if _, err := sdk.NewClient(u, nil, deployer).Deploy(ctx, types.FunctionDeployment{Service: function, Image: image,
		Labels: &map[string]string{local.LabelMaxRate: strconv.FormatFloat(float64(capacity), 'g', -1, 64)}}); err != nil {
		return Platform{}, err
	}
	b, err := openfaas.New(openfaas.Config{Gateway: gw, Logger: quiet})
	if err != nil {
		return Platform{}, err
	}
	return Platform{Handler: b.Handler(), Capacity: b, Addr: u.Host, Close: func() error {
		return errors.Join(b.Close(), p.Close())
	}}, nil
}

// DataPlane is a node's proxy: the embedded one or HAProxy.
type DataPlane interface {
	dfaas.ProxyDriver
	proxy.Counter
	UserAddr() string
	PeerAddr() string
	Close() error
}

// Node is one member of a started cluster.
type Node struct {
	Name     string
	Platform Platform
	Proxy    DataPlane
	Overlay  dfaas.Overlay
	Agent    *dfaas.Agent

	stop    context.CancelFunc
	stopped chan struct{}
}

// Stop ends the node's agent, then closes its overlay and proxy, as a
// switched-off node would. Cluster.Close still works after it.
func (n *Node) Stop() error {
	n.StopAgent()
	return errors.Join(n.Overlay.Close(), n.Proxy.Close())
}

// StopAgent ends the node's agent only: the node stays connected but falls
// silent, as a hung agent would.
func (n *Node) StopAgent() {
	n.stop()
	<-n.stopped
}

// Cluster is a running federation.
type Cluster struct {
	Nodes    []*Node
	Function string
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closers  []func() error
	once     sync.Once
}

func (c ClusterConfig) withDefaults() ClusterConfig {
	if c.Function == "" {
		c.Function = "figlet"
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Strategy == nil {
		c.Strategy = balance.Proportional{}
	}
	if c.Forecaster == nil {
		c.Forecaster = func() dfaas.Forecaster { return &forecast.LastValue{} }
	}
	if c.Overlay == "" {
		c.Overlay = "libp2p"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Platform == nil {
		c.Platform = Embedded
	}
	if c.Proxy == "" {
		c.Proxy = "embedded"
	}
	return c
}

// Hello is the demo function on node: it answers with a greeting and the
// node that executed it.
func Hello(node string) http.Handler {
	return faas.HandlerFunc(func(_ context.Context, body []byte) ([]byte, error) {
		return append([]byte("hello from node "+node+": "), body...), nil
	})
}

// StartCluster starts every node and their agents. The agents run until
// Close.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	cfg = cfg.withDefaults()
	if len(cfg.Capacities) == 0 {
		return nil, fmt.Errorf("%w: no nodes", dfaas.ErrInvalidConfig)
	}
	if cfg.Proxy != "embedded" && cfg.Proxy != "haproxy" {
		return nil, fmt.Errorf("%w: proxy %q: want embedded or haproxy", dfaas.ErrInvalidConfig, cfg.Proxy)
	}
	if cfg.Overlay != "libp2p" && cfg.Overlay != "memory" {
		return nil, fmt.Errorf("%w: overlay %q: want libp2p or memory", dfaas.ErrInvalidConfig, cfg.Overlay)
	}
	c := &Cluster{Function: cfg.Function}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	network := overlay.NewNetwork()
	var bootstrap []string
	for i, capacity := range cfg.Capacities {
		n := &Node{Name: strconv.Itoa(i + 1)}
		log := cfg.Logger.With("name", n.Name)
		if n.Platform, err = cfg.Platform(ctx, n.Name, cfg.Function, capacity); err != nil {
			return nil, err
		}
		if n.Platform.Close != nil {
			c.closers = append(c.closers, n.Platform.Close)
		}
		switch cfg.Overlay {
		case "libp2p":
			o, err := overlay.NewLibp2p(ctx, overlay.Libp2pConfig{Bootstrap: bootstrap, DiscoveryInterval: time.Second, Logger: log})
			if err != nil {
				return nil, err
			}
			if i == 0 {
				bootstrap = o.Addrs()
			}
			n.Overlay = o
		default:
			o, err := network.Join(dfaas.NodeID(n.Name))
			if err != nil {
				return nil, err
			}
			n.Overlay = o
		}
		c.closers = append(c.closers, n.Overlay.Close)
		if n.Proxy, err = newDataPlane(ctx, cfg, n, log); err != nil {
			return nil, err
		}
		c.closers = append(c.closers, n.Proxy.Close)
		mon, err := faas.NewMonitor(n.Proxy, n.Platform.Capacity, faas.MonitorConfig{Window: cfg.Interval / 2})
		if err != nil {
			return nil, err
		}
		n.Agent, err = dfaas.NewAgent(dfaas.Config{Interval: cfg.Interval, Addr: n.Proxy.PeerAddr(), Logger: log},
			n.Overlay, mon, cfg.Forecaster(), cfg.Strategy, n.Proxy)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, n := range c.Nodes {
		var nodeCtx context.Context
		nodeCtx, n.stop = context.WithCancel(runCtx)
		n.stopped = make(chan struct{})
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer close(n.stopped)
			_ = n.Agent.Run(nodeCtx)
		}()
	}
	return c, nil
}

// WaitFormed waits until every node holds a live advert of every other node
// and has planned with them.
func (c *Cluster) WaitFormed(ctx context.Context) error {
	for {
		formed := true
		for _, n := range c.Nodes {
			if len(n.Overlay.Adverts(time.Now())) != len(c.Nodes)-1 || n.Agent.Status().Peers != len(c.Nodes)-1 {
				formed = false
			}
		}
		if formed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scenario: federation did not form: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the agents, then the proxies and overlays. It is idempotent.
func (c *Cluster) Close() error {
	var err error
	c.once.Do(func() {
		if c.cancel != nil {
			c.cancel()
		}
		c.wg.Wait()
		var errs []error
		for i := len(c.closers) - 1; i >= 0; i-- {
			errs = append(errs, c.closers[i]())
		}
		err = errors.Join(errs...)
	})
	return err
}

// newDataPlane starts node n's proxy.
func newDataPlane(ctx context.Context, cfg ClusterConfig, n *Node, log *slog.Logger) (DataPlane, error) {
	if cfg.Proxy == "embedded" {
		return proxy.New(proxy.Config{Node: n.Overlay.Self(), Logger: log}, n.Platform.Handler)
	}
	if n.Platform.Addr == "" {
		return nil, fmt.Errorf("%w: haproxy needs a platform reachable over TCP", dfaas.ErrInvalidConfig)
	}
	user, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	peer, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	return haproxy.Start(ctx, haproxy.Config{Binary: cfg.HAProxy, Node: n.Overlay.Self(), UserAddr: user, PeerAddr: peer,
		Platform: n.Platform.Addr, Functions: []string{cfg.Function}, Logger: log})
}

// freeLoopbackAddr finds a free port on 127.0.0.1 for a process that cannot
// report the port it bound.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
