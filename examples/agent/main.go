// Command agent runs one dfaas node, built by package node: a libp2p
// overlay, a data plane, a FaaS platform and the Agent that ties them
// together. Start one per node:
//
//	go run ./examples/agent -functions hello=10 -user 127.0.0.1:8090 -peer 127.0.0.1:8091 \
//	    -listen /ip4/127.0.0.1/tcp/4001 -secret fed.key -key a.key
//	go run ./examples/agent -functions hello=20 -user 127.0.0.1:8092 -peer 127.0.0.1:8093 \
//	    -listen /ip4/127.0.0.1/tcp/4002 -secret fed.key -key b.key -bootstrap <a multiaddr the first agent printed>
//	curl -d world http://127.0.0.1:8090/function/hello
//
// The federation is closed: the first agent creates the federation secret
// (-secret, mode 0600) and every other agent must be given a copy; hosts
// without it cannot connect. Each agent keeps its identity in -key (0600),
// so its node id survives restarts; -allow names the only node ids that may
// join; -admins names the federation administrators whose signed membership
// the agent takes instead (see examples/members: members added and removed
// with no file edited on the nodes). -insecure runs an open federation
// instead, with a warning.
//
// The platform (-faas) is one registered with package node: "runtime" (echo
// functions in the agent's process, the default), "local" (the same behind
// an OpenFaaS-compatible faas/local provider on loopback) or "openfaas" (a
// gateway, whose functions carry the dfaas.maxrate label; credentials come
// from OPENFAAS_USERNAME and OPENFAAS_PASSWORD and are never logged):
//
//	go run ./examples/agent -faas openfaas -gateway http://127.0.0.1:8080
//
// Clients then call the agent's user port (127.0.0.1:8090 by default), not
// the gateway's: the defaults leave OpenFaaS's ports (8080, 8081, 8082) free.
//
// The data plane (-proxy) is one registered with package proxy: "embedded"
// (the default) or "haproxy" (a real HAProxy process; it reaches the
// platform over TCP, so it needs -faas local or openfaas).
//
// Every flag is also a key of a YAML file (-config agent.yaml, a commented
// sample beside this file) and an environment variable (DFAAS_<FLAG>);
// flags win over the environment, which wins over the file. -admin serves
// /healthz, /readyz, /status and /metrics. SIGTERM drains the node before it
// leaves (-drain).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/faas/openfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/async"
)

type options struct {
	async          string
	asyncCallbacks string
	proxy          string
	haproxy        string
	faas           string
	gateway        openfaas.Config
	listen         []string
	bootstrap      []string
	namespace      string
	user           string
	peer           string
	advertise      string
	name           string
	unknownEnv     []string // DFAAS_ variables no flag reads, warned of at start
	functions      map[string]dfaas.Rate
	interval       time.Duration
	neighbours     int
	strategy       dfaas.Balancer
	declared       bool   // -capacity declared
	secret         string // federation secret file
	secretAlso     string // other secrets accepted (a rotation's middle phases)
	key            string // identity key file
	allow          string // allow-list file
	admins         string // administrator ids file (signed membership)
	membershipFile string // where the membership in force is kept
	insecure       bool
	printID        bool
	cpuProfile     string
	admin          string // operator listener: /healthz, /readyz, /status
	drain          time.Duration
	leafLifetime   time.Duration
	maxBody        int64
	bodyWait       time.Duration
	otlp           string  // OTLP/HTTP traces endpoint URL, or none
	sample         float64 // share of calls traced that come without a sampled trace context
	logFormat      string
	logLevel       string
}

// logger is the agent's logger, as -log-format and -log-level say.
func (o options) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(o.logLevel))
	opts := &slog.HandlerOptions{Level: level}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
	log := o.logger(os.Stderr)
	for _, k := range o.unknownEnv {
		log.Warn("environment variable ignored: no flag reads it", "name", k, "see", "agent -h")
	}
	if o.printID {
		var lc overlay.Libp2pConfig
		if err := membership(o, &lc, log); err != nil {
			log.Error("agent stopped", "err", err)
			os.Exit(1)
		}
		id, err := peer.IDFromPrivateKey(lc.PrivateKey)
		if err != nil {
			log.Error("agent stopped", "err", err)
			os.Exit(1)
		}
		fmt.Println(id)
		return
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			log.Error("agent stopped", "err", fmt.Errorf("-cpuprofile: %w", err))
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if err := run(ctx, o, log, nil); err != nil {
		log.Error("agent stopped", "err", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	return parseConfig(args, stderr, os.Getenv)
}

// parseConfig reads the configuration: flags, then the environment
// (getenv), then the -config file (see layer).
func parseConfig(args []string, stderr io.Writer, getenv func(string) string) (options, error) {
	o := options{functions: map[string]dfaas.Rate{}}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "/ip4/127.0.0.1/tcp/0", "libp2p listen multiaddrs, comma-separated")
	bootstrap := fs.String("bootstrap", "", "multiaddrs (with /p2p/<id>) of agents to join through, comma-separated")
	fs.StringVar(&o.namespace, "namespace", "dfaas", "federation namespace (DHT rendezvous and advert protocol)")
	fs.IntVar(&o.neighbours, "neighbours", overlay.DefaultNeighbours, "peers this node follows (the nearest by round-trip time): whose adverts it plans with and to whom it may forward")
	fs.StringVar(&o.user, "user", "127.0.0.1:8090", "user listener address (OpenFaaS path /function/<name>): where clients call functions, in place of a gateway's :8080")
	fs.StringVar(&o.peer, "peer", "127.0.0.1:8091", "peer listener address")
	fs.StringVar(&o.name, "name", "", "this node's name, advertised beside its id: shown on peers' live pages, in /status, metrics and logs, and in the echo functions' answers; letters, digits, '.', '-', '_' (default: the host name; \"-\": none advertised)")
	fs.StringVar(&o.advertise, "advertise", "", "peer address advertised to other agents (default: the bound -peer address)")
	functions := fs.String("functions", "hello=10", "with -faas runtime or local: echo functions as name=capacity (req/s), comma-separated")
	fs.StringVar(&o.proxy, "proxy", node.DefaultDataPlane, "data plane: "+strings.Join(proxy.Names(), ", ")+" (haproxy needs -faas local or openfaas)")
	fs.StringVar(&o.haproxy, "haproxy", "", "with -proxy haproxy: the haproxy binary (default: haproxy on $PATH)")
	fs.StringVar(&o.faas, "faas", "runtime", "FaaS platform: "+strings.Join(node.PlatformNames(), ", "))
	fs.StringVar(&o.gateway.Gateway, "gateway", "http://127.0.0.1:8080", "with -faas openfaas: the gateway URL")
	fs.StringVar(&o.gateway.Namespace, "fn-namespace", "openfaas-fn", "with -faas openfaas: the functions' namespace")
	defaultCapacity := fs.Float64("default-capacity", 0, "with -faas openfaas: req/s declared for functions without the dfaas.maxrate label (default: none)")
	capacityMode := fs.String("capacity", "measured", "measured: each function's capacity is what this node measures it runs within its latency objective (dfaas.slo), at most its dfaas.maxrate label; declared: the label is the capacity, and a function without one runs only at peers")
	fs.DurationVar(&o.interval, "interval", time.Second, "control tick")
	fs.Int64Var(&o.maxBody, "max-body", proxy.DefaultMaxBody, "largest request body either listener takes, in bytes (413 past it)")
	fs.DurationVar(&o.bodyWait, "body-timeout", proxy.DefaultBodyTimeout, "longest time from a request's headers to the end of its body (408 past it)")
	fs.StringVar(&o.otlp, "otlp", "", "OTLP/HTTP endpoint to export traces to (http://collector:4318); none: no tracing, W3C trace context still passes through")
	fs.Float64Var(&o.sample, "trace-sample", 0.1, "with -otlp: the share of calls traced that arrive without a trace context (calls that arrive with one follow its sampled flag)")
	fs.DurationVar(&o.leafLifetime, "leaf-lifetime", proxy.DefaultLeafLifetime, "how long the peer TLS leaf certificates this node makes are valid; each is renewed halfway through")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "on SIGTERM, how long to wait at most for peers to stop forwarding here before leaving")
	fs.StringVar(&o.secret, "secret", "federation.key", "federation secret file (0600); the first agent (no -bootstrap) creates it if missing: copy it to every member")
	fs.StringVar(&o.secretAlso, "secret-also", "", "other federation secret files (comma-separated) under which connections are accepted while this node dials under -secret: the middle phases of a rotation (docs/operators.md)")
	fs.StringVar(&o.key, "key", "node.key", "this node's identity key file (0600), created if missing; the node id derives from it")
	fs.StringVar(&o.asyncCallbacks, "async-callbacks", "public", "where asynchronous calls' results may be posted: public (anywhere but this host's loopback, link-local and unspecified addresses) or any (labs whose receivers are on loopback)")
	fs.StringVar(&o.async, "async", "", "the queue file of OpenFaaS's asynchronous calls (/async-function/<name>: 202 at once, run later, the result POSTed to X-Callback-Url), kept across restarts (default: the -key file's name with .async; \"off\": none, such calls get 404)")
	fs.StringVar(&o.allow, "allow", "", "optional allow-list file: the peer ids (one per line) that may join (with -admins: until a signed membership comes)")
	fs.StringVar(&o.admins, "admins", "", "optional file of the federation administrators' ids (one per line): this node takes the membership they sign (go run ./examples/members) and admits only its members")
	fs.StringVar(&o.membershipFile, "membership", "", "with -admins: where the membership in force is kept across restarts (default: the -key file's name with .membership)")
	fs.BoolVar(&o.printID, "print-id", false, "print this node's id (for other agents' -bootstrap: /ip4/<host>/tcp/<port>/p2p/<id>) and exit; creates the -key file, and a first agent's -secret, when missing")
	fs.BoolVar(&o.insecure, "insecure", false, "run an open federation without a secret, and peer traffic in clear text: any host that reaches -listen can join, any that reaches -peer can run functions (labs only)")
	fs.StringVar(&o.admin, "admin", "", "operator listener (e.g. 127.0.0.1:9100): /healthz, /readyz, /status, /metrics and the live view at /; off the user and peer ports; none if empty")
	strategy := fs.String("strategy", "nearest", "balancing strategy: "+strings.Join(balance.Names(), ", "))
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof reads it), for a diagnosis")
	fs.String("config", "", "YAML file of settings, keyed by flag name (see docs/operators.md); the environment (DFAAS_<FLAG>) overrides it, flags override both")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	from, err := layer(fs, getenv)
	if err != nil {
		return o, err
	}
	o.unknownEnv = unknownEnv(fs, os.Environ())
	if o.logFormat != "text" && o.logFormat != "json" {
		return o, fmt.Errorf("-log-format %q%s: want text or json", o.logFormat, from.of("log-format"))
	}
	if err := new(slog.Level).UnmarshalText([]byte(o.logLevel)); err != nil {
		return o, fmt.Errorf("-log-level %q%s: want debug, info, warn or error", o.logLevel, from.of("log-level"))
	}
	if o.neighbours < 1 || o.neighbours > 1024 {
		return o, fmt.Errorf("-neighbours %d%s: want 1 to 1024", o.neighbours, from.of("neighbours"))
	}
	o.listen = splitList(*listen)
	o.bootstrap = splitList(*bootstrap)
	for _, f := range splitList(*functions) {
		name, capacity, ok := strings.Cut(f, "=")
		c, err := strconv.ParseFloat(capacity, 64)
		if !ok || err != nil || c < 0 {
			return o, fmt.Errorf("-functions%s: %q is not name=capacity", from.of("functions"), f)
		}
		if err := dfaas.ValidateFunctionName(name); err != nil {
			return o, fmt.Errorf("-functions%s: %w", from.of("functions"), err)
		}
		o.functions[name] = dfaas.Rate(c)
	}
	switch *capacityMode {
	case "measured":
	case "declared":
		o.declared = true
	default:
		return o, fmt.Errorf("-capacity %q%s: want measured or declared", *capacityMode, from.of("capacity"))
	}
	if o.sample < 0 || o.sample > 1 {
		return o, fmt.Errorf("-trace-sample %v%s: want 0 to 1", o.sample, from.of("trace-sample"))
	}
	if o.otlp != "" {
		if u, err := url.Parse(o.otlp); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return o, fmt.Errorf("-otlp %q%s: want an http(s) URL, as http://collector:4318", o.otlp, from.of("otlp"))
		}
	}
	if err := dfaas.ValidateNodeName(o.name); err != nil {
		return o, fmt.Errorf("-name%s: %w", from.of("name"), err)
	}
	if o.strategy, err = balance.ByName(*strategy); err != nil {
		return o, fmt.Errorf("-strategy%s: %w", from.of("strategy"), err)
	}
	switch {
	case !slices.Contains(proxy.Names(), o.proxy):
		return o, fmt.Errorf("-proxy %q%s: want one of %s", o.proxy, from.of("proxy"), strings.Join(proxy.Names(), ", "))
	case !slices.Contains(node.PlatformNames(), o.faas):
		return o, fmt.Errorf("-faas %q%s: want one of %s", o.faas, from.of("faas"), strings.Join(node.PlatformNames(), ", "))
	case o.proxy == "haproxy" && o.faas == "runtime":
		return o, errors.New("-proxy haproxy needs -faas local or openfaas: HAProxy reaches the platform over TCP")
	}
	if o.faas == "openfaas" {
		// Credentials come from the environment only, so that they appear
		// in no process list and no log.
		o.gateway.Username, o.gateway.Password = os.Getenv("OPENFAAS_USERNAME"), os.Getenv("OPENFAAS_PASSWORD")
		o.gateway.DefaultCapacity = dfaas.Rate(*defaultCapacity)
		if _, err := openfaas.New(o.gateway); err != nil {
			return o, err
		}
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

// membership loads the node's identity and the federation's secret and
// allow-list into cfg. The first agent of a federation (no bootstrap peers)
// creates the secret if its file is missing; the others must be given it.
func membership(o options, cfg *overlay.Libp2pConfig, log *slog.Logger) error {
	key, created, err := overlay.LoadOrCreateKey(o.key)
	if err != nil {
		return err
	}
	if created {
		log.Info("created a node identity key", "file", o.key)
	}
	cfg.PrivateKey = key
	if o.allow != "" {
		if cfg.Allow, err = overlay.LoadAllowList(o.allow); err != nil {
			return err
		}
	}
	if o.admins != "" {
		if cfg.Admins, err = overlay.LoadAdmins(o.admins); err != nil {
			return err
		}
		cfg.MembershipFile = o.membershipFile
		if cfg.MembershipFile == "" {
			cfg.MembershipFile = o.key + ".membership"
		}
	}
	if o.insecure {
		cfg.Insecure = true
		return nil
	}
	for _, f := range splitList(o.secretAlso) {
		psk, err := overlay.LoadSecret(f)
		if err != nil {
			return err
		}
		cfg.AlsoAccept = append(cfg.AlsoAccept, psk)
	}
	cfg.Secret, err = overlay.LoadSecret(o.secret)
	if errors.Is(err, fs.ErrNotExist) {
		if len(o.bootstrap) > 0 {
			return fmt.Errorf("federation secret %s not found: copy it from the federation's first agent (or run -insecure)", o.secret)
		}
		if cfg.Secret, err = overlay.GenerateSecret(o.secret); err == nil {
			log.Info("created a new federation secret: copy this file, mode 0600, to every agent that joins", "file", o.secret)
		}
	}
	return err
}

// run builds the node and runs it until ctx ends. ready, if set, is called
// with the node once everything listens.
func run(ctx context.Context, o options, log *slog.Logger, ready func(*node.Node)) error {
	lc := overlay.Libp2pConfig{ListenAddrs: o.listen, Bootstrap: o.bootstrap, Namespace: o.namespace, Neighbours: o.neighbours, Logger: log}
	if err := membership(o, &lc, log); err != nil {
		return err
	}
	name := o.name
	if name == "" {
		name = hostName()
	}
	advertised := name
	if name == "-" { // a name for logs and answers, none in adverts (see docs/operators.md, Upgrade)
		name, advertised = hostName(), ""
	}
	log = log.With("name", name)
	lc.Logger = log
	pf, err := node.OpenPlatform(ctx, o.faas, node.PlatformSpec{Node: name, Functions: o.functions, OpenFaaS: o.gateway,
		MaxBody: o.maxBody, BodyTimeout: o.bodyWait, Logger: log})
	if err != nil {
		return err
	}
	// Advert numbers survive restarts whatever the clock does.
	seq, err := overlay.NewSeqFile(o.key+".seq", nil)
	if err != nil {
		_ = pf.Close()
		return err
	}
	tp, err := tracing(ctx, o, name)
	if err != nil {
		_ = pf.Close()
		return err
	}
	if tp != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				log.Warn("traces not all exported", "err", err)
			}
		}()
		log.Info("tracing", "otlp", o.otlp, "sample", o.sample)
	}
	callbacks := async.PublicCallbacks
	switch o.asyncCallbacks {
	case "public":
	case "any":
		callbacks = async.AnyCallbacks
	default:
		return fmt.Errorf("-async-callbacks %q: want public or any", o.asyncCallbacks)
	}
	n, err := node.Build(ctx, node.Config{Name: advertised, Tracer: tracerOf(tp), Platform: pf, DataPlane: o.proxy, Binary: o.haproxy, Sequencer: seq,
		UserAddr: o.user, PeerAddr: o.peer, Advertise: o.advertise, Interval: o.interval, Balancer: o.strategy, Logger: log,
		DeclaredCapacity: o.declared, MaxBody: o.maxBody, BodyTimeout: o.bodyWait, AsyncQueue: asyncQueue(o), AsyncCallbacks: callbacks,
		PlainPeers: o.insecure, LeafLifetime: o.leafLifetime,
		Libp2p: lc})
	if err != nil {
		return err
	}
	defer n.Close()
	if o.admin != "" {
		l, err := net.Listen("tcp", o.admin)
		if err != nil {
			return fmt.Errorf("-admin: %w", err)
		}
		srv := &http.Server{Handler: n.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
			IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
		log.Info("admin listener up", "addr", l.Addr().String())
	}
	var bootstrapFrom string
	if ov, ok := n.Overlay.(*overlay.Libp2p); ok {
		bootstrapFrom = strings.Join(ov.Addrs(), " ")
	}
	log.Info("agent up", "node", n.Overlay.Self(), "faas", o.faas, "proxy", o.proxy, "user", n.DataPlane.UserAddr(),
		"peer", n.DataPlane.PeerAddr(), "bootstrap_from", bootstrapFrom)
	if ready != nil {
		ready(n)
	}
	<-ctx.Done()
	// Leave without losing a request: drain, wait until the peers have
	// stopped forwarding here (bounded), then close.
	log.Info("stopping: draining before leaving the federation")
	sctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	start := time.Now()
	if err := n.Shutdown(sctx); err != nil {
		log.Warn("stopped before the peers had moved away", "err", err)
		return nil
	}
	log.Info("left the federation: peers had stopped forwarding here", "drained", time.Since(start).Round(time.Millisecond))
	return nil
}

// hostName is the default node name: the host name, or its first label
// when the whole is no valid name (too long), or none.
func hostName() string {
	h, _ := os.Hostname()
	if dfaas.ValidateNodeName(h) == nil {
		return h
	}
	h, _, _ = strings.Cut(h, ".")
	if dfaas.ValidateNodeName(h) == nil {
		return h
	}
	return ""
}

// tracing returns the tracer provider -otlp asks for, or nil: spans go in
// batches to the OTLP/HTTP endpoint; a call that arrives with a trace
// context follows its sampled flag, others are sampled at -trace-sample.
func tracing(ctx context.Context, o options, name string) (*sdktrace.TracerProvider, error) {
	if o.otlp == "" {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(o.otlp))
	if err != nil {
		return nil, fmt.Errorf("-otlp: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "dfaas-agent"), attribute.String("dfaas.node.name", name))
	// Attribute values come partly from callers (a method, a peer's
	// header): held to 256 bytes, so a span stays small whoever asks for it.
	limits := sdktrace.NewSpanLimits()
	limits.AttributeValueLengthLimit = 256
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithRawSpanLimits(limits),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(o.sample)))), nil
}

// tracerOf is tp as the node takes it: none for nil.
func tracerOf(tp *sdktrace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return nil
	}
	return tp
}

// asyncQueue is the queue file of the asynchronous calls: -async, by
// default beside the -key file (each agent of a directory its own), "" for
// none.
func asyncQueue(o options) string {
	switch o.async {
	case "off":
		return ""
	case "":
		return o.key + ".async"
	}
	return o.async
}
