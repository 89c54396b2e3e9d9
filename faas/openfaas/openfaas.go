// Package openfaas is the dfaas backend for OpenFaaS: it lists a gateway's
// functions through github.com/openfaas/go-sdk, turns their labels into the
// capacities the agent plans with, and forwards the requests a node serves
// locally to the gateway.
//
// # Capacity labels
//
// A node measures what it can run of each function (see faas/capacity);
// labels bound it. dfaas.maxrate (for example "dfaas.maxrate": "20") is the
// most requests per second this node runs of the function, and where it
// starts before it has measured anything; dfaas.slo (for example
// "p95=200ms") is the latency objective the measured capacity keeps. A
// function without dfaas.maxrate declares no capacity (faas.Undeclared)
// unless Config.DefaultCapacity is set. A node that does not measure
// (faas.MonitorConfig.Declared) takes the label as the capacity, and runs
// none of a function that declares none. A label that does not parse is
// logged and treated as absent.
package openfaas

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	sdk "github.com/openfaas/go-sdk"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/internal/h1pool"
	"github.com/dfaas-go/dfaas/proxy"
)

// LabelMaxRate is the capacity label.
const LabelMaxRate = local.LabelMaxRate

// Config configures a Backend. Gateway is required; the zero value of the
// other fields means their default.
type Config struct {
	// Gateway is the gateway's base URL, e.g. http://127.0.0.1:8080.
	Gateway string
	// Username and Password are the gateway's basic-auth credentials, if it
	// has them. They are never logged.
	Username, Password string
	// Namespace of the functions. Default "openfaas-fn".
	Namespace string
	// DefaultCapacity, if set, is the capacity declared for a function
	// without the dfaas.maxrate label. Default none: faas.Undeclared.
	DefaultCapacity dfaas.Rate
	// Timeout bounds one call to the gateway's API, and connecting to the
	// gateway for an invocation. Default 5 s.
	Timeout time.Duration
	// FunctionTimeout bounds an invocation's wait for the function's
	// response headers (the gateway's own exec timeouts apply first if
	// shorter). Default 2 min.
	FunctionTimeout time.Duration
	// Logger receives the backend's logs. Default slog.Default().
	Logger *slog.Logger
}

// Function is a function the gateway serves.
type Function struct {
	Name        string
	Image       string
	Labels      map[string]string
	Annotations map[string]string
	Replicas    uint64
	// Capacity is the label dfaas.maxrate, Config.DefaultCapacity or
	// faas.Undeclared.
	Capacity dfaas.Rate
	// Objective is the label dfaas.slo; the zero value if unset.
	Objective capacity.Objective
	// MaxRTT is the label dfaas.maxrtt: how far, in round-trip time, its
	// requests may be forwarded; zero if unset.
	MaxRTT time.Duration
	// MaxInFlight is the most calls it runs at once: its watchdogs'
	// max_inflight (an environment variable of the deployment) times its
	// replicas (at least one: the gateway scales a function from zero);
	// zero if max_inflight is unset.
	MaxInFlight int
}

// Backend talks to one OpenFaaS gateway. It implements faas.Platform and is
// safe for concurrent use.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	gateway *url.URL
	client  *sdk.Client
	invoker http.RoundTripper // of invocations: fnTr, small bodies read first
	apiTr   *http.Transport
	fnTr    *h1pool.Pool

	mu         sync.Mutex
	warned     map[string]bool               // functions whose bad label was logged
	budgets    map[string]time.Duration      // dfaas.maxrtt of the last Capacities
	objectives map[string]capacity.Objective // dfaas.slo of the last Capacities
	inflight   map[string]int                // max_inflight times replicas, of the last Capacities
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	u, err := url.Parse(c.Gateway)
	if err != nil {
		return fmt.Errorf("%w: openfaas: gateway is not a URL", dfaas.ErrInvalidConfig) // it may hold a password
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: openfaas: gateway %q is not an http(s) URL", dfaas.ErrInvalidConfig, u.Redacted())
	}
	if c.DefaultCapacity < 0 || c.Timeout < 0 || c.FunctionTimeout < 0 || (c.Username == "") != (c.Password == "") {
		return fmt.Errorf("%w: openfaas: negative capacity or timeout, or half a credential", dfaas.ErrInvalidConfig)
	}
	if c.Namespace != "" {
		if err := dfaas.ValidateFunctionName(c.Namespace); err != nil {
			return fmt.Errorf("%w: openfaas: namespace: %w", dfaas.ErrInvalidConfig, err)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = sdk.DefaultNamespace
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.FunctionTimeout == 0 {
		c.FunctionTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// New checks cfg and returns a Backend. It does not contact the gateway.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	u, err := url.Parse(cfg.Gateway)
	if err != nil {
		return nil, fmt.Errorf("%w: openfaas: %w", dfaas.ErrInvalidConfig, err)
	}
	var auth sdk.ClientAuth
	if cfg.Username != "" {
		auth = &sdk.BasicAuth{Username: cfg.Username, Password: cfg.Password}
	}
	b := &Backend{cfg: cfg, log: cfg.Logger.With("component", "faas/openfaas", "gateway", u.Redacted()), gateway: u,
		apiTr: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second},
		// Invocations run on the request's goroutine (internal/h1pool):
		// http.Transport's read and write loops cost a third of the
		// proxy's CPU on a local hop.
		fnTr: h1pool.New(h1pool.Config{DialTimeout: cfg.Timeout, TLS: gatewayTLS(u), ResponseHeaderTimeout: cfg.FunctionTimeout,
			IdleTimeout: 90 * time.Second, MaxIdlePerHost: 256}),
		warned: map[string]bool{}}
	b.client = sdk.NewClient(u, auth, &http.Client{Timeout: cfg.Timeout, Transport: b.apiTr})
	b.invoker = wholeBody{b.fnTr}
	return b, nil
}

// gatewayTLS is the TLS of an https gateway: verified against the system's
// roots, as http.Transport does by default.
func gatewayTLS(u *url.URL) *tls.Config {
	if u.Scheme != "https" {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// wholeBody reads a small request body of known length before the round
// trip, so that the request leaves in one write. With a body it cannot see
// into (the user's connection), net/http sends the headers on their own
// first: two writes, two packets and two wake-ups of the platform for every
// invocation, a fifth of the proxy's CPU on a small request.
type wholeBody struct{ next http.RoundTripper }

// wholeBodyMax bounds the bodies read first; larger ones stream. Headers
// and body leave in one write only if they fit net/http's 4 KiB write
// buffer, so reading more first gains nothing, and a client that promises
// a body and stalls holds at most this much.
const wholeBodyMax = 4 << 10

var errBody = errors.New("reading the request body")

func (t wholeBody) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength <= 0 || r.ContentLength > wholeBodyMax {
		return t.next.RoundTrip(r)
	}
	buf := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, buf)
	_ = r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBody, err)
	}
	out := r.WithContext(r.Context()) // a shallow copy: RoundTrip leaves r alone
	out.Body = io.NopCloser(bytes.NewReader(buf))
	return t.next.RoundTrip(out)
}

// Close releases the backend's idle connections to the gateway.
func (b *Backend) Close() error {
	b.apiTr.CloseIdleConnections()
	b.fnTr.Close()
	return nil
}

// invokePath maps the proxy's /function/<name>[/rest] to the gateway's
// /function/<name>.<namespace>[/rest].
func (b *Backend) invokePath(path string) string {
	name, ok := proxy.FunctionName(path)
	if !ok {
		return path
	}
	rest := strings.TrimPrefix(path, "/function/"+name)
	return "/function/" + name + "." + b.cfg.Namespace + rest
}

// Handler returns the local target for the proxy: it forwards each request
// to the gateway, in the backend's namespace.
func (b *Backend) Handler() http.Handler { return http.HandlerFunc(b.invoke) }

// Functions lists the gateway's functions with their capacities.
func (b *Backend) Functions(ctx context.Context) ([]Function, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	list, err := b.client.GetFunctions(ctx, b.cfg.Namespace)
	if err != nil {
		return nil, fmt.Errorf("openfaas: list functions: %w", err)
	}
	out := make([]Function, 0, len(list))
	for _, s := range list {
		f := Function{Name: s.Name, Image: s.Image, Replicas: s.Replicas, Capacity: b.cfg.DefaultCapacity}
		if f.Capacity == 0 {
			f.Capacity = faas.Undeclared
		}
		if s.Labels != nil {
			f.Labels = *s.Labels
		}
		if s.Annotations != nil {
			f.Annotations = *s.Annotations
		}
		if v, ok := f.Labels[LabelMaxRate]; ok {
			if r, err := local.ParseMaxRate(v); err == nil {
				f.Capacity = r
			} else {
				b.warnOnce(s.Name, err)
			}
		}
		if v, ok := f.Labels[local.LabelMaxRTT]; ok {
			if d, err := local.ParseMaxRTT(v); err == nil {
				f.MaxRTT = d
			} else {
				b.warnOnce(s.Name, err)
			}
		}
		if v, ok := f.Labels[local.LabelSLO]; ok {
			if o, err := capacity.ParseObjective(v); err == nil {
				f.Objective = o
			} else {
				b.warnOnce(s.Name, err)
			}
		}
		if v, ok := s.EnvVars[local.EnvMaxInflight]; ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				f.MaxInFlight = n * int(min(max(s.Replicas, 1), 1<<20))
			} else {
				b.warnOnce(s.Name, fmt.Errorf("%s %q: want a positive whole number", local.EnvMaxInflight, v))
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func (b *Backend) warnOnce(name string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.warned[name] {
		b.warned[name] = true
		b.log.Warn("ignoring capacity label", "function", name, "err", err)
	}
}

// Capacities implements faas.Platform: every function the gateway lists,
// whose name is valid for dfaas, with its capacity.
func (b *Backend) Capacities(ctx context.Context) (map[string]dfaas.Rate, error) {
	fns, err := b.Functions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]dfaas.Rate, len(fns))
	budgets := map[string]time.Duration{}
	objectives := map[string]capacity.Objective{}
	inflight := map[string]int{}
	for _, f := range fns {
		if dfaas.ValidateFunctionName(f.Name) != nil {
			b.warnOnce(f.Name, fmt.Errorf("name is not a DNS-1123 label"))
			continue
		}
		out[f.Name] = f.Capacity
		if f.MaxRTT > 0 {
			budgets[f.Name] = f.MaxRTT
		}
		if f.Objective.Latency > 0 {
			objectives[f.Name] = f.Objective
		}
		if f.MaxInFlight > 0 {
			inflight[f.Name] = f.MaxInFlight
		}
	}
	b.mu.Lock()
	b.budgets, b.objectives, b.inflight = budgets, objectives, inflight
	b.mu.Unlock()
	return out, nil
}

// MaxInFlight implements faas.InFlightBounds: max_inflight times the
// replicas, as the last Capacities listed them.
func (b *Backend) MaxInFlight() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.inflight)
}

// MaxRTTs implements faas.RTTBudgets: the dfaas.maxrtt labels the last
// Capacities listed.
func (b *Backend) MaxRTTs() map[string]time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.budgets)
}

// Objectives implements faas.Objectives: the dfaas.slo labels the last
// Capacities listed.
func (b *Backend) Objectives() map[string]capacity.Objective {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.objectives)
}

var (
	_ faas.Platform       = (*Backend)(nil)
	_ faas.RTTBudgets     = (*Backend)(nil)
	_ faas.Objectives     = (*Backend)(nil)
	_ faas.InFlightBounds = (*Backend)(nil)
)
