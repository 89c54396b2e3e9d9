package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openfaas/faas-provider/logs"
	"github.com/openfaas/faas-provider/types"
	"golang.org/x/time/rate"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/capacity"
	"github.com/dfaas-go/dfaas/internal/httpbody"
	"github.com/dfaas-go/dfaas/internal/onheaders"
)

// Labels a deployment may carry.
const (
	LabelMaxRate = "dfaas.maxrate"
	// LabelMaxRTT is how far, in round-trip time, a function's requests may
	// be forwarded: a Go duration such as "20ms" (see ParseMaxRTT).
	LabelMaxRTT      = "dfaas.maxrtt"
	LabelConcurrency = "dfaas.concurrency"
	LabelTimeout     = "dfaas.timeout"
	// LabelSLO is a function's latency objective, such as "p95=200ms"
	// (see capacity.ParseObjective): the capacity a node measures for it
	// keeps that quantile of its executions' latency within the bound.
	LabelSLO = "dfaas.slo"
)

// Defaults of the per-function labels.
const (
	DefaultConcurrency = 64
	DefaultTimeout     = 30 * time.Second
	DefaultMaxReplicas = 20 // OpenFaaS's
)

// OpenFaaS's scaling labels: the fewest and most replicas.
const (
	LabelScaleMin = "com.openfaas.scale.min"
	LabelScaleMax = "com.openfaas.scale.max"
)

// Config configures a Provider. The zero value of every field means its
// default.
type Config struct {
	// Addr is the listen address. Default 127.0.0.1:0.
	Addr string
	// Namespace is the namespace of requests that name none. Default
	// "openfaas-fn", OpenFaaS's own default. Deployments may name any
	// namespace (a DNS-1123 label); several agents can so share one provider
	// and one gateway, each in its own namespace.
	Namespace string
	// Logger receives the provider's logs. Default slog.Default().
	Logger *slog.Logger
	// EnforceMaxRate makes a function's dfaas.maxrate label its physical
	// capacity: beyond it (with bursts of up to enforceWindow of it) the
	// provider answers 429, as an overloaded machine would fail. For demos
	// and tests; OpenFaaS itself treats the label as a hint.
	EnforceMaxRate bool
	// Middleware, if set, wraps every function's handler when it is
	// deployed: to account for its calls, say. It sees the function's name
	// and namespace.
	Middleware func(name, namespace string, next http.Handler) http.Handler
	// BodyTimeout bounds the time from a call's headers to the end of its
	// body, however steadily it trickles (and so however slowly the
	// function reads it); each silence in it is bounded to 30 s as well.
	// MaxBody bounds its size. Past any of them the function's reads of the
	// body fail. Defaults 1 min and 16 MiB (the data planes' own bounds:
	// HAProxy streams a body larger than its buffer without them).
	BodyTimeout time.Duration
	MaxBody     int64
	// SecretsDir keeps the secrets of the provider's secrets API (see
	// ReadSecret), and the directories functions read them from. Default:
	// a new temporary directory, removed by Close.
	SecretsDir string
}

// bodyIdle bounds each silence in a call's body.
const bodyIdle = 30 * time.Second

// enforceWindow is how much of its rate a function under EnforceMaxRate
// takes at once: the second over which every data plane admits
// (proxy.AdmissionWindow), and a tenth more. A machine does not fail a
// request for arriving a few milliseconds before its turn, and a proxy
// that admits exactly the capacity calls the platform after a delay that
// varies from request to request: with no margin, a request that came
// through faster than the one before it found the platform's bucket a
// fraction of a token short and got 429 (1 of 600 in the reference
// scenario).
const enforceWindow = 1100 * time.Millisecond

// Provider is a running local provider. It is safe for concurrent use.
type Provider struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	mu     sync.RWMutex
	fns    map[key]*function
	nss    map[string]types.FunctionNamespace // created or updated by the namespace API
	images map[string]http.Handler

	srv        *http.Server
	l          net.Listener
	ownSecrets bool // SecretsDir is the provider's own: removed by Close
	closeOnce  sync.Once
	closeErr   error
	done       chan struct{}
}

// key names a function in a namespace.
type key struct{ ns, name string }

type function struct {
	spec    types.FunctionDeployment
	log     *logBook
	handler http.Handler
	limiter *rate.Limiter // nil: no rate limit
	// perReplica calls run at once on each of its replicas (max_inflight,
	// or the dfaas.concurrency label); inflight counts those running.
	perReplica int
	inflight   atomic.Int64
	// replicas is how many it has (scale requests set it, within
	// minReplicas and maxReplicas; 0 scaled to zero, and back to
	// minReplicas at its next call).
	replicas                 atomic.Int64
	minReplicas, maxReplicas int
	timeout                  time.Duration
	created                  time.Time
	invoked                  atomic.Uint64
	throttled                atomic.Uint64
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Namespace != "" {
		if err := dfaas.ValidateFunctionName(c.Namespace); err != nil {
			return fmt.Errorf("%w: local: namespace: %w", dfaas.ErrInvalidConfig, err)
		}
	}
	if c.BodyTimeout < 0 || c.MaxBody < 0 {
		return fmt.Errorf("%w: local: negative body timeout or max body", dfaas.ErrInvalidConfig)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Namespace == "" {
		c.Namespace = "openfaas-fn"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = time.Minute
	}
	if c.MaxBody == 0 {
		c.MaxBody = 16 << 20
	}
	return c
}

// New starts a provider listening on cfg.Addr.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Provider{cfg: cfg, log: cfg.Logger.With("component", "faas/local"), fns: map[key]*function{}, nss: map[string]types.FunctionNamespace{},
		images: map[string]http.Handler{}, done: make(chan struct{})}
	if p.cfg.SecretsDir == "" {
		dir, err := os.MkdirTemp("", "dfaas-secrets-")
		if err != nil {
			return nil, fmt.Errorf("local: secrets: %w", err)
		}
		p.cfg.SecretsDir, p.ownSecrets = dir, true
	} else if err := os.MkdirAll(p.cfg.SecretsDir, 0o700); err != nil {
		return nil, fmt.Errorf("local: secrets: %w", err)
	}
	p.routes()
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("local: listen: %w", err)
	}
	p.l = l
	p.srv = &http.Server{Handler: p.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("provider stopped", "err", err)
		}
	}()
	return p, nil
}

// URL is the provider's base URL, for the gateway's functions_provider_url.
func (p *Provider) URL() string { return "http://" + p.l.Addr().String() + "/" }

// Close stops the provider, waiting up to 5 s for requests in flight.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.closeErr = p.srv.Shutdown(ctx)
		<-p.done
		if p.ownSecrets {
			p.closeErr = errors.Join(p.closeErr, os.RemoveAll(p.cfg.SecretsDir))
		}
	})
	return p.closeErr
}

// RegisterImage binds an image name to an in-process Go handler. A
// deployment of that image serves its requests with h, which sees the
// OpenFaaS path as called: /function/<name>[.<namespace>][/...].
func (p *Provider) RegisterImage(image string, h http.Handler) error {
	if image == "" || h == nil {
		return fmt.Errorf("%w: local: empty image or nil handler", dfaas.ErrInvalidConfig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.images[image] = h
	return nil
}

func (p *Provider) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /system/functions", p.list)
	m.HandleFunc("POST /system/functions", p.deploy)
	m.HandleFunc("PUT /system/functions", p.update)
	m.HandleFunc("DELETE /system/functions", p.remove)
	m.HandleFunc("GET /system/function/{name}", p.status)
	m.HandleFunc("POST /system/scale-function/{name}", p.scale)
	m.HandleFunc("GET /system/info", p.info)
	m.HandleFunc("GET /system/namespaces", p.namespaces)
	m.HandleFunc("POST /system/namespace/{name...}", p.createNamespace)
	m.HandleFunc("GET /system/namespace/{name}", p.getNamespace)
	m.HandleFunc("PUT /system/namespace/{name}", p.updateNamespace)
	m.HandleFunc("DELETE /system/namespace/{name}", p.deleteNamespace)
	m.HandleFunc("GET /system/secrets", p.listSecrets)
	m.HandleFunc("POST /system/secrets", p.createSecret)
	m.HandleFunc("PUT /system/secrets", p.updateSecret)
	m.HandleFunc("DELETE /system/secrets", p.deleteSecret)
	m.Handle("GET /system/logs", logs.NewLogHandlerFunc(p, logsTimeout))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	m.HandleFunc("/function/", p.invoke)
	p.mux = m
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// namespace resolves a request's namespace, answering 400 if it is not a
// DNS-1123 label.
func (p *Provider) namespace(w http.ResponseWriter, ns string) (string, bool) {
	if ns == "" {
		return p.cfg.Namespace, true
	}
	if err := dfaas.ValidateFunctionName(ns); err != nil {
		http.Error(w, fmt.Sprintf("namespace %q: not a DNS-1123 label", ns), http.StatusBadRequest)
		return "", false
	}
	return ns, true
}

func (p *Provider) list(w http.ResponseWriter, r *http.Request) {
	ns, ok := p.namespace(w, r.URL.Query().Get("namespace"))
	if !ok {
		return
	}
	p.mu.RLock()
	out := []types.FunctionStatus{}
	for k, f := range p.fns {
		if k.ns == ns {
			out = append(out, p.statusOf(k, f))
		}
	}
	p.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

// OpenFaaSSecrets is where OpenFaaS mounts a function's secrets.
const OpenFaaSSecrets = "/var/openfaas/secrets/"

// LabelFunction is the label OpenFaaS's providers put on every function,
// naming it.
const LabelFunction = "faas_function"

func (p *Provider) statusOf(k key, f *function) types.FunctionStatus {
	s := f.spec
	labels := map[string]string{}
	if s.Labels != nil {
		labels = maps.Clone(*s.Labels)
	}
	labels[LabelFunction] = s.Service
	return types.FunctionStatus{Name: s.Service, Image: s.Image, Namespace: k.ns, EnvProcess: s.EnvProcess,
		EnvVars: s.EnvVars, Labels: &labels, Annotations: s.Annotations, Limits: s.Limits, Requests: s.Requests, Secrets: s.Secrets,
		Constraints: s.Constraints, ReadOnlyRootFilesystem: s.ReadOnlyRootFilesystem,
		InvocationCount: float64(f.invoked.Load()), Replicas: uint64(f.replicas.Load()), AvailableReplicas: uint64(f.replicas.Load()), CreatedAt: f.created}
}

// decodeDeployment reads and checks a deployment request.
func (p *Provider) decodeDeployment(w http.ResponseWriter, r *http.Request) (types.FunctionDeployment, key, bool) {
	var spec types.FunctionDeployment
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&spec); err != nil {
		http.Error(w, "invalid deployment: "+err.Error(), http.StatusBadRequest)
		return spec, key{}, false
	}
	if err := dfaas.ValidateFunctionName(spec.Service); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return spec, key{}, false
	}
	ns, ok := p.namespace(w, spec.Namespace)
	return spec, key{ns, spec.Service}, ok
}

// build makes a function from a deployment, whose secrets are in
// secrets ("" if it names none) and whose log is book.
func (p *Provider) build(spec types.FunctionDeployment, secrets string, book *logBook) (*function, error) {
	labels := map[string]string{}
	if spec.Labels != nil {
		labels = *spec.Labels
	}
	concurrency := DefaultConcurrency
	if v, ok := spec.EnvVars[EnvMaxInflight]; ok { // the watchdogs' bound, 429 beyond
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s=%q: want a positive integer", EnvMaxInflight, v)
		}
		concurrency = n
	}
	if v, ok := labels[LabelConcurrency]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("label %s=%q: want a positive integer", LabelConcurrency, v)
		}
		concurrency = n
	}
	timeout := DefaultTimeout
	if v, ok := labels[LabelTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("label %s=%q: want a positive duration", LabelTimeout, v)
		}
		timeout = d
	}
	if v, ok := labels[LabelMaxRTT]; ok {
		if _, err := ParseMaxRTT(v); err != nil {
			return nil, err
		}
	}
	if v, ok := labels[LabelSLO]; ok {
		if _, err := capacity.ParseObjective(v); err != nil {
			return nil, fmt.Errorf("label %s=%q: want p<quantile>=<duration>, such as p95=200ms", LabelSLO, v)
		}
	}
	minR, maxR := 1, DefaultMaxReplicas
	for label, into := range map[string]*int{LabelScaleMin: &minR, LabelScaleMax: &maxR} {
		if v, ok := labels[label]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000 {
				return nil, fmt.Errorf("label %s=%q: want a whole number of replicas, 0 to 1000", label, v)
			}
			*into = n
		}
	}
	if minR > maxR || maxR < 1 {
		return nil, fmt.Errorf("labels %s=%d, %s=%d: want a minimum of replicas at most the maximum, which is at least 1", LabelScaleMin, minR, LabelScaleMax, maxR)
	}
	f := &function{spec: spec, log: book, perReplica: concurrency, minReplicas: max(1, minR), maxReplicas: maxR, timeout: timeout, created: time.Now()}
	f.replicas.Store(int64(max(1, minR)))
	if v, ok := labels[LabelMaxRate]; ok {
		r, err := ParseMaxRate(v)
		if err != nil {
			return nil, err
		}
		if p.cfg.EnforceMaxRate {
			f.limiter = rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(float64(r)*enforceWindow.Seconds()))))
		}
	}
	if spec.EnvProcess != "" {
		env := maps.Clone(spec.EnvVars)
		if secrets != "" {
			if env == nil {
				env = map[string]string{}
			}
			env[EnvSecretMountPath] = secrets
		}
		h, err := newProcess(spec.EnvProcess, env)
		if err != nil {
			return nil, err
		}
		if secrets != "" {
			// Where OpenFaaS mounts them: a command line that names that
			// directory reads the function's own.
			for i, a := range h.argv {
				h.argv[i] = strings.ReplaceAll(a, OpenFaaSSecrets, secrets+"/")
			}
		}
		h.log = book
		f.handler = h
		return f, nil
	}
	h, ok := p.images[spec.Image]
	if !ok {
		var err error
		if h, ok, err = builtin(spec); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, fmt.Errorf("image %q is neither a registered Go handler, nor a built-in one (%s), nor accompanied by envProcess",
			spec.Image, strings.Join(BuiltinImages(), ", "))
	}
	f.handler = withLog(withSecrets(h, secrets), book)
	return f, nil
}

// ParseMaxRTT parses a dfaas.maxrtt label value: a positive Go duration
// of at most a minute, such as "20ms".
func ParseMaxRTT(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 || d > time.Minute {
		return 0, fmt.Errorf("label %s=%q: want a duration such as 20ms, at most 1m", LabelMaxRTT, v)
	}
	return d, nil
}

// MaxRTTs lists the dfaas.maxrtt label of every function of the default
// namespace that has one (see faas.RTTBudgets).
func (p *Provider) MaxRTTs() map[string]time.Duration {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]time.Duration{}
	for k, f := range p.fns {
		if k.ns != p.cfg.Namespace || f.spec.Labels == nil {
			continue
		}
		if v, ok := (*f.spec.Labels)[LabelMaxRTT]; ok {
			if d, err := ParseMaxRTT(v); err == nil {
				out[k.name] = d
			}
		}
	}
	return out
}

// MaxInFlight lists, for every function of the default namespace, the
// calls it runs at once: its replicas (at least its minimum: one scaled to
// zero comes back at its next call) times each one's concurrency (see
// faas.InFlightBounds: the capacity a node measures stays within it).
func (p *Provider) MaxInFlight() map[string]int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]int{}
	for k, f := range p.fns {
		if k.ns == p.cfg.Namespace {
			out[k.name] = max(int(f.replicas.Load()), f.minReplicas) * f.perReplica
		}
	}
	return out
}

// ParseMaxRate parses a dfaas.maxrate label value: a finite rate >= 0.
func ParseMaxRate(v string) (dfaas.Rate, error) {
	r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || r < 0 || r > 1e9 || r != r {
		return 0, fmt.Errorf("label %s=%q: want a rate in [0, 1e9] req/s", LabelMaxRate, v)
	}
	return dfaas.Rate(r), nil
}

func (p *Provider) deploy(w http.ResponseWriter, r *http.Request) {
	p.put(w, r, false)
}

func (p *Provider) update(w http.ResponseWriter, r *http.Request) {
	p.put(w, r, true)
}

func (p *Provider) put(w http.ResponseWriter, r *http.Request, mustExist bool) {
	spec, k, ok := p.decodeDeployment(w, r)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, exists := p.fns[k]; mustExist && !exists {
		http.Error(w, fmt.Sprintf("function %q not found", spec.Service), http.StatusNotFound)
		return
	}
	for _, name := range spec.Secrets {
		if dfaas.ValidateFunctionName(name) != nil {
			http.Error(w, fmt.Sprintf("function %q: secret %q: not a DNS-1123 label", spec.Service, name), http.StatusBadRequest)
			return
		}
	}
	for _, name := range spec.Secrets {
		if _, err := os.Stat(p.secretFile(k.ns, name)); err != nil {
			http.Error(w, fmt.Sprintf("function %q: secret %q not found in namespace %q", spec.Service, name, k.ns), http.StatusBadRequest)
			return
		}
	}
	secrets := ""
	if len(spec.Secrets) > 0 {
		secrets = p.mountDir(k)
	}
	book := newLogBook(k)
	if old, ok := p.fns[k]; ok {
		book = old.log // an update keeps the function's log
	}
	f, err := p.build(spec, secrets, book)
	if err != nil {
		http.Error(w, fmt.Sprintf("function %q: %v", spec.Service, err), http.StatusBadRequest)
		return
	}
	if _, err := p.mount(k, spec.Secrets); err != nil {
		http.Error(w, fmt.Sprintf("function %q: %v", spec.Service, err), http.StatusInternalServerError)
		return
	}
	if p.cfg.Middleware != nil {
		f.handler = p.cfg.Middleware(k.name, k.ns, f.handler)
	}
	if old, ok := p.fns[k]; ok {
		f.created = old.created
		f.invoked.Store(old.invoked.Load())
		f.replicas.Store(min(max(old.replicas.Load(), int64(f.minReplicas)), int64(f.maxReplicas)))
	}
	p.fns[k] = f
	p.log.Info("function deployed", "name", spec.Service, "namespace", k.ns, "image", spec.Image, "process", spec.EnvProcess != "")
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) remove(w http.ResponseWriter, r *http.Request) {
	var req types.DeleteFunctionRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "invalid request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Namespace == "" { // faas-cli names it in the query
		req.Namespace = r.URL.Query().Get("namespace")
	}
	ns, ok := p.namespace(w, req.Namespace)
	if !ok {
		return
	}
	k := key{ns, req.FunctionName}
	p.mu.Lock()
	_, ok = p.fns[k]
	delete(p.fns, k)
	if ok {
		_ = os.RemoveAll(p.mountDir(k))
	}
	p.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("function %q not found", req.FunctionName), http.StatusNotFound)
		return
	}
	p.log.Info("function removed", "name", req.FunctionName)
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) lookup(k key) (*function, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	f, ok := p.fns[k]
	return f, ok
}

func (p *Provider) status(w http.ResponseWriter, r *http.Request) {
	ns, ok := p.namespace(w, r.URL.Query().Get("namespace"))
	if !ok {
		return
	}
	k := key{ns, r.PathValue("name")}
	f, ok := p.lookup(k)
	if !ok {
		http.Error(w, "function not found", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, p.statusOf(k, f))
}

// scale sets a function's replicas: each runs perReplica calls at once
// (so a node measures the capacity of them all), at most the
// com.openfaas.scale.max label; 0 scales it to zero (it comes back at its
// next call).
func (p *Provider) scale(w http.ResponseWriter, r *http.Request) {
	var req types.ScaleServiceRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "invalid scale request: "+err.Error(), http.StatusBadRequest)
		return
	}
	nsName := req.Namespace
	if nsName == "" {
		nsName = r.URL.Query().Get("namespace")
	}
	ns, ok := p.namespace(w, nsName)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if req.ServiceName != "" && req.ServiceName != name {
		http.Error(w, fmt.Sprintf("scale request for %q at %q", req.ServiceName, name), http.StatusBadRequest)
		return
	}
	f, ok := p.lookup(key{ns, name})
	if !ok {
		http.Error(w, "function not found", http.StatusNotFound)
		return
	}
	n := min(req.Replicas, uint64(f.maxReplicas))
	f.replicas.Store(int64(n))
	p.log.Info("function scaled", "name", name, "namespace", ns, "replicas", n)
	w.WriteHeader(http.StatusAccepted)
}

func (p *Provider) info(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, types.ProviderInfo{Name: "dfaas-local", Orchestration: "local",
		Version: &types.VersionInfo{Release: "dev", SHA: "dev"}})
}

// invoke runs /function/<name>[.<namespace>][/...].
func (p *Provider) invoke(w http.ResponseWriter, r *http.Request) {
	// Bounded here, not only at the data plane: HAProxy streams a body
	// larger than its buffer with no bound on its total time.
	_, restore := httpbody.Bound(w, r, httpbody.Bounds{Idle: bodyIdle, Timeout: p.cfg.BodyTimeout, Max: p.cfg.MaxBody})
	defer restore()
	rest := strings.TrimPrefix(r.URL.Path, "/function/")
	target, _, _ := strings.Cut(rest, "/")
	name, ns, _ := strings.Cut(target, ".")
	ns, ok := p.namespace(w, ns)
	if !ok {
		return
	}
	f, ok := p.lookup(key{ns, name})
	if !ok {
		http.Error(w, fmt.Sprintf("function %q not found", name), http.StatusNotFound)
		return
	}
	if f.limiter != nil && !f.limiter.Allow() {
		f.throttled.Add(1)
		http.Error(w, "function over its rate", http.StatusTooManyRequests)
		return
	}
	if f.replicas.Load() == 0 { // scaled to zero: back, as the gateway's scale from zero would
		if f.replicas.CompareAndSwap(0, int64(f.minReplicas)) {
			p.log.Info("function scaled from zero", "name", name, "namespace", ns, "replicas", f.minReplicas)
		}
	}
	if n := f.inflight.Add(1); n > f.replicas.Load()*int64(f.perReplica) {
		f.inflight.Add(-1)
		f.throttled.Add(1)
		http.Error(w, "function at its concurrency limit", http.StatusTooManyRequests)
		return
	}
	defer f.inflight.Add(-1)
	f.invoked.Add(1)
	ctx, cancel := context.WithTimeout(r.Context(), f.timeout)
	defer cancel()
	// The function's time to its answer's headers, as OpenFaaS's watchdogs
	// answer it.
	start := time.Now()
	ow := onheaders.Wrap(w, func(_ int, h http.Header) {
		h.Set("X-Duration-Seconds", strconv.FormatFloat(time.Since(start).Seconds(), 'f', 6, 64))
	})
	f.handler.ServeHTTP(ow, r.WithContext(ctx))
	if r.Context().Err() == nil {
		ow.Finish() // a function that wrote nothing (not after a panic)
	}
}

// Capacities lists every function of the default namespace with its
// dfaas.maxrate label, or faas.Undeclared, so that a Provider can serve as
// the dfaas Monitor's platform directly.
func (p *Provider) Capacities(ctx context.Context) (map[string]dfaas.Rate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]dfaas.Rate{}
	for k, f := range p.fns {
		if k.ns != p.cfg.Namespace {
			continue
		}
		out[k.name] = faas.Undeclared
		if f.spec.Labels != nil {
			if v, ok := (*f.spec.Labels)[LabelMaxRate]; ok {
				out[k.name], _ = ParseMaxRate(v) // checked at deployment
			}
		}
	}
	return out, nil
}

// Objectives lists the dfaas.slo label of every function of the default
// namespace that has one (see faas.Objectives).
func (p *Provider) Objectives() map[string]capacity.Objective {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]capacity.Objective{}
	for k, f := range p.fns {
		if k.ns != p.cfg.Namespace || f.spec.Labels == nil {
			continue
		}
		if v, ok := (*f.spec.Labels)[LabelSLO]; ok {
			if o, err := capacity.ParseObjective(v); err == nil {
				out[k.name] = o
			}
		}
	}
	return out
}

// Functions lists the labels of the default namespace's functions by name.
func (p *Provider) Functions() map[string]map[string]string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[string]map[string]string{}
	for k, f := range p.fns {
		if k.ns != p.cfg.Namespace {
			continue
		}
		var l map[string]string
		if f.spec.Labels != nil {
			l = maps.Clone(*f.spec.Labels)
		}
		out[k.name] = l
	}
	return out
}

var (
	_ faas.Platform       = (*Provider)(nil)
	_ faas.RTTBudgets     = (*Provider)(nil)
	_ faas.Objectives     = (*Provider)(nil)
	_ faas.InFlightBounds = (*Provider)(nil)
)
