// Command agent runs one dfaas node: a libp2p overlay, the embedded proxy,
// the embedded runtime with echo functions of given capacities, and the
// Agent that ties them together. Start one per node:
//
//	go run ./examples/agent -functions hello=10 -user 127.0.0.1:8080 -peer 127.0.0.1:8081 \
//	    -listen /ip4/127.0.0.1/tcp/4001
//	go run ./examples/agent -functions hello=20 -user 127.0.0.1:8090 -peer 127.0.0.1:8091 \
//	    -listen /ip4/127.0.0.1/tcp/4002 -bootstrap <a multiaddr the first agent printed>
//	curl -d world http://127.0.0.1:8080/function/hello
//
// With -faas openfaas the node's functions are an OpenFaaS gateway's (give
// them the dfaas.maxrate label); credentials come from OPENFAAS_USERNAME and
// OPENFAAS_PASSWORD and are never logged:
//
//	go run ./examples/agent -faas openfaas -gateway http://127.0.0.1:8080 -user 127.0.0.1:9080 -peer 127.0.0.1:9081
//
// With -proxy haproxy a real HAProxy process is the data plane (needs
// -faas openfaas, and concrete ports).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/openfaas"
	"github.com/dfaas-go/dfaas/forecast"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
)

type options struct {
	proxy     string
	haproxy   string
	faas      string
	gateway   openfaas.Config
	listen    []string
	bootstrap []string
	namespace string
	user      string
	peer      string
	advertise string
	functions map[string]dfaas.Rate
	interval  time.Duration
	strategy  dfaas.Balancer
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, o, log, nil); err != nil {
		log.Error("agent stopped", "err", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{functions: map[string]dfaas.Rate{}}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "/ip4/127.0.0.1/tcp/0", "libp2p listen multiaddrs, comma-separated")
	bootstrap := fs.String("bootstrap", "", "multiaddrs (with /p2p/<id>) of agents to join through, comma-separated")
	fs.StringVar(&o.namespace, "namespace", "dfaas", "federation namespace (DHT rendezvous and topic)")
	fs.StringVar(&o.user, "user", "127.0.0.1:8080", "user listener address (OpenFaaS path /function/<name>)")
	fs.StringVar(&o.peer, "peer", "127.0.0.1:8081", "peer listener address")
	fs.StringVar(&o.advertise, "advertise", "", "peer address advertised to other agents (default: the bound -peer address)")
	functions := fs.String("functions", "hello=10", "with -faas embedded: echo functions as name=capacity (req/s), comma-separated")
	fs.StringVar(&o.proxy, "proxy", "embedded", "data plane: embedded (in-process Go proxy) or haproxy (a real HAProxy process, with -faas openfaas)")
	fs.StringVar(&o.haproxy, "haproxy", "haproxy", "with -proxy haproxy: the haproxy binary")
	fs.StringVar(&o.faas, "faas", "embedded", "FaaS platform: embedded (Go echo functions in-process) or openfaas (a gateway)")
	fs.StringVar(&o.gateway.Gateway, "gateway", "http://127.0.0.1:8080", "with -faas openfaas: the gateway URL")
	fs.StringVar(&o.gateway.Namespace, "fn-namespace", "openfaas-fn", "with -faas openfaas: the functions' namespace")
	defaultCapacity := fs.Float64("default-capacity", 0, "with -faas openfaas: req/s of functions without the dfaas.maxrate label")
	fs.DurationVar(&o.interval, "interval", time.Second, "control tick")
	strategy := fs.String("strategy", "proportional", "balancing strategy: "+strings.Join(balance.Names(), ", "))
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.listen = splitList(*listen)
	o.bootstrap = splitList(*bootstrap)
	for _, f := range splitList(*functions) {
		name, capacity, ok := strings.Cut(f, "=")
		c, err := strconv.ParseFloat(capacity, 64)
		if !ok || err != nil || c < 0 {
			return o, fmt.Errorf("-functions: %q is not name=capacity", f)
		}
		if err := dfaas.ValidateFunctionName(name); err != nil {
			return o, fmt.Errorf("-functions: %w", err)
		}
		o.functions[name] = dfaas.Rate(c)
	}
	var err error
	if o.strategy, err = balance.ByName(*strategy); err != nil {
		return o, err
	}
	switch {
	case o.proxy != "embedded" && o.proxy != "haproxy":
		return o, fmt.Errorf("-proxy %q: want embedded or haproxy", o.proxy)
	case o.proxy == "haproxy" && o.faas != "openfaas":
		return o, errors.New("-proxy haproxy needs -faas openfaas: HAProxy reaches the platform over TCP")
	}
	switch o.faas {
	case "embedded":
	case "openfaas":
		// Credentials come from the environment only, so that they appear
		// in no process list and no log.
		o.gateway.Username, o.gateway.Password = os.Getenv("OPENFAAS_USERNAME"), os.Getenv("OPENFAAS_PASSWORD")
		o.gateway.DefaultCapacity = dfaas.Rate(*defaultCapacity)
		if _, err := openfaas.New(o.gateway); err != nil {
			return o, err
		}
	default:
		return o, fmt.Errorf("-faas %q: want embedded or openfaas", o.faas)
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// dataPlane is what the agent needs of a proxy.
type dataPlane interface {
	dfaas.ProxyDriver
	proxy.Counter
	UserAddr() string
	PeerAddr() string
	Close() error
}

// newDataPlane starts the embedded proxy or HAProxy.
func newDataPlane(ctx context.Context, o options, node dfaas.NodeID, local http.Handler, platform faas.Platform, log *slog.Logger) (dataPlane, error) {
	if o.proxy == "haproxy" {
		gw, err := url.Parse(o.gateway.Gateway)
		if err != nil {
			return nil, err
		}
		// The functions deployed now get their backends from the start;
		// later ones take a seamless reload.
		var functions []string
		if caps, err := platform.Capacities(ctx); err == nil {
			functions = slices.Sorted(maps.Keys(caps))
		}
		return haproxy.Start(ctx, haproxy.Config{Binary: o.haproxy, Node: node, UserAddr: o.user, PeerAddr: o.peer,
			Platform: gw.Host, Namespace: o.gateway.Namespace, Functions: functions, Logger: log})
	}
	return proxy.New(proxy.Config{Node: node, UserAddr: o.user, PeerAddr: o.peer, Logger: log}, local)
}

// run composes and runs the node until ctx ends. ready, if set, is called
// with the proxy once everything listens.
func run(ctx context.Context, o options, log *slog.Logger, ready func(dataPlane)) error {
	local, platform, closePlatform, err := newPlatform(o, log)
	if err != nil {
		return err
	}
	defer closePlatform()
	ov, err := overlay.NewLibp2p(ctx, overlay.Libp2pConfig{ListenAddrs: o.listen, Bootstrap: o.bootstrap, Namespace: o.namespace, Logger: log})
	if err != nil {
		return err
	}
	defer ov.Close()
	px, err := newDataPlane(ctx, o, ov.Self(), local, platform, log)
	if err != nil {
		return err
	}
	defer px.Close()
	mon, err := faas.NewMonitor(px, platform, faas.MonitorConfig{Window: o.interval / 2})
	if err != nil {
		return err
	}
	advertise := o.advertise
	if advertise == "" {
		advertise = px.PeerAddr()
	}
	agent, err := dfaas.NewAgent(dfaas.Config{Interval: o.interval, Addr: advertise, Logger: log},
		ov, mon, &forecast.LastValue{}, o.strategy, px)
	if err != nil {
		return err
	}
	log.Info("agent up", "node", ov.Self(), "faas", o.faas, "user", px.UserAddr(), "peer", advertise, "bootstrap_from", strings.Join(ov.Addrs(), " "))
	if ready != nil {
		ready(px)
	}
	return agent.Run(ctx)
}

// newPlatform makes the proxy's local target and the Monitor's platform.
func newPlatform(o options, log *slog.Logger) (http.Handler, faas.Platform, func(), error) {
	if o.faas == "openfaas" {
		cfg := o.gateway
		cfg.Logger = log
		b, err := openfaas.New(cfg)
		if err != nil {
			return nil, nil, nil, err
		}
		return b.Handler(), b, func() { _ = b.Close() }, nil
	}
	runtime := faas.NewRuntime()
	for name, capacity := range o.functions {
		handler := faas.HandlerFunc(func(_ context.Context, body []byte) ([]byte, error) {
			return append([]byte(name+": "), body...), nil
		})
		if err := runtime.Deploy(faas.Function{Name: name, Handler: handler, Capacity: capacity}); err != nil {
			return nil, nil, nil, err
		}
	}
	return runtime, runtime, func() {}, nil
}
