// Package scenario starts a federation of complete nodes on loopback - an
// FaaS platform, a data plane, an overlay and an Agent each, built by
// package node - drives
// open-loop load at them with vegeta, and reports what every node served.
// The reference-scenario demo and the end-to-end tests are built on it.
package scenario

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
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
	// DataPlane is the registered name of every node's data plane
	// (proxy.Names): "embedded" (default) or "haproxy" (a real HAProxy
	// process per node; needs a platform with an Addr).
	DataPlane string
	// PlainPeers turns TLS between peers off (it is on with the libp2p
	// overlay; the memory overlay has no keys, so never TLS).
	PlainPeers bool
	// Binary is the data plane's executable, for one that runs a process.
	// Default: found on $PATH.
	Binary string
	// Measured makes the nodes measure their capacities, within the
	// declared ones. Default off: the capacities given are the truth, as
	// these scenarios check routing and balancing, not learning (which
	// faas/capacity, the simulator and the testbed check).
	Measured bool
	// Platform makes each node's FaaS platform, serving Function at the
	// node's capacity. Default: Embedded.
	Platform func(ctx context.Context, node string, function string, capacity dfaas.Rate) (node.Platform, error)
}

// Embedded is the default platform, the one production runs with nothing
// installed: node's "local" platform (an OpenFaaS-compatible faas/local
// provider on loopback, reached through the faas/openfaas backend) serving
// function at capacity with Hello.
func Embedded(ctx context.Context, name, function string, capacity dfaas.Rate) (node.Platform, error) {
	return node.OpenPlatform(ctx, "local", node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{function: capacity},
		Handler: func(n, _ string) http.Handler { return Hello(n) }, Logger: slog.New(slog.DiscardHandler)})
}

// Node is one member of a started cluster.
type Node struct {
	Name string
	*node.Node

	mu    sync.Mutex
	final map[string]proxy.Counts // the counters when Stop closed the node
}

// Stop ends the node's agent, then closes its data plane, overlay and
// platform, as a switched-off node would; a Run goes on with the counts it
// had then. Cluster.Close still works after it.
func (n *Node) Stop() error {
	n.StopAgent()
	final, err := n.DataPlane.Counts(context.Background())
	n.mu.Lock()
	n.final = final
	n.mu.Unlock()
	return errors.Join(err, n.Close())
}

// Counts reads the node's data-plane counters, or those it had when it
// was stopped.
func (n *Node) Counts(ctx context.Context) (map[string]proxy.Counts, error) {
	n.mu.Lock()
	final := n.final
	n.mu.Unlock()
	if final != nil {
		return final, nil
	}
	return n.DataPlane.Counts(ctx)
}

// Cluster is a running federation.
type Cluster struct {
	Nodes    []*Node
	Function string
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
	secret := make([]byte, overlay.SecretBytes) // a closed federation of its own
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	var bootstrap []string
	for i, capacity := range cfg.Capacities {
		name := strconv.Itoa(i + 1)
		log := cfg.Logger.With("name", name)
		nc := node.Config{Name: "node-" + name, DataPlane: cfg.DataPlane, Binary: cfg.Binary, Interval: cfg.Interval, Balancer: cfg.Strategy,
			Forecaster: cfg.Forecaster(), Logger: log, DeclaredCapacity: !cfg.Measured,
			Libp2p: overlay.Libp2pConfig{Bootstrap: bootstrap, Secret: secret, DiscoveryInterval: time.Second, Logger: log}}
		nc.PlainPeers = cfg.PlainPeers
		if cfg.Overlay == "memory" {
			nc.PlainPeers = true // node ids without keys: no TLS identity
			if nc.Overlay, err = network.Join(dfaas.NodeID(name)); err != nil {
				return nil, err
			}
		}
		if nc.Platform, err = cfg.Platform(ctx, name, cfg.Function, capacity); err != nil {
			if nc.Overlay != nil {
				_ = nc.Overlay.Close()
			}
			return nil, err
		}
		n, err := node.Build(ctx, nc)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			if o, ok := n.Overlay.(*overlay.Libp2p); ok {
				bootstrap = o.Addrs()
			}
		}
		c.Nodes = append(c.Nodes, &Node{Name: name, Node: n})
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

// Close stops the agents, then closes every node. It is idempotent.
func (c *Cluster) Close() error {
	var err error
	c.once.Do(func() {
		for _, n := range c.Nodes {
			n.StopAgent()
		}
		var errs []error
		for i := len(c.Nodes) - 1; i >= 0; i-- {
			errs = append(errs, c.Nodes[i].Close())
		}
		err = errors.Join(errs...)
	})
	return err
}
