package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
)

// DataPlane is a node's proxy as an agent runs it: it follows plans
// (dfaas.ProxyDriver), counts what it does (Counter) and listens on two
// addresses. It should also implement dfaas.PeerHealth, reporting the
// peers it ejected (Outliers does the bookkeeping): the conformance suite
// requires it (proxytest, BrokenPeerIsEjected). It may implement
// dfaas.Trigger to ask for an early plan.
//
// Apply and Counts may be called from different goroutines. Close is
// idempotent and stops both listeners.
type DataPlane interface {
	dfaas.ProxyDriver
	Counter
	// UserAddr is the bound host:port of the user listener.
	UserAddr() string
	// PeerAddr is the bound host:port of the peer listener, to advertise.
	PeerAddr() string
	Close() error
}

// Platform is how a data plane reaches the node's FaaS platform for local
// executions. In-process data planes use Handler; those in another process
// (HAProxy) use Addr.
type Platform struct {
	// Handler executes a request on the platform; it sees the OpenFaaS
	// path /function/<name>[/...].
	Handler http.Handler
	// Addr is the platform's host:port (an OpenFaaS gateway), or "" if it
	// runs in-process only.
	Addr string
	// Namespace, if set, is the functions' OpenFaaS namespace: a data plane
	// that reaches the platform over Addr sends /function/<name>.<namespace>.
	Namespace string
}

// Spec is what every data plane is started from.
type Spec struct {
	// Node is this node's overlay id, sent to peers with forwarded requests.
	// Required.
	Node dfaas.NodeID
	// UserAddr and PeerAddr are the listeners' host:port. Default
	// 127.0.0.1:0 (a free port).
	UserAddr, PeerAddr string
	// Platform executes local requests. Required.
	Platform Platform
	// Functions are those the platform serves at start; a data plane that
	// must reconfigure for a new function (HAProxy) prepares them.
	Functions []string
	// TLS, if set, makes the peer listener serve mutual TLS to current
	// members only, and forwards verify the node they go to (see Identity).
	TLS *TLS
	// Timeout bounds a forward's wait for its peer's answer (which is then
	// 504, never retried). Default: the data plane's own (30 s for both
	// that ship).
	Timeout time.Duration
	// MaxBody is the largest request body either listener takes, for a
	// local execution or a forward: a larger one is answered 413. Default:
	// the data plane's own (DefaultMaxBody for both that ship).
	MaxBody int64
	// BodyTimeout bounds the time from a request's headers to the end of
	// its body, however steadily it trickles (408 past it). Default: the
	// data plane's own (DefaultBodyTimeout for both that ship; HAProxy
	// bounds only what fits its request buffer, see proxy/haproxy).
	BodyTimeout time.Duration
	// Async, if set, is the host:port of the node's asynchronous calls
	// (package async): the user listener sends /async-function/... there.
	// Default none: such paths are answered 404.
	Async string
	// Binary is the executable of a data plane that runs one (HAProxy).
	// Default: the data plane's own, on $PATH.
	Binary string
	// Tracer, if set, traces requests with W3C trace context (the embedded
	// data plane: see embedded.Config.Tracer). Default none. Either way a
	// caller's traceparent header reaches the peer and the platform.
	Tracer trace.TracerProvider
	// Logger receives the data plane's logs. Default slog.Default().
	Logger *slog.Logger
}

// The bounds on a request's body of both data planes that ship, unless a
// Spec says otherwise.
const (
	DefaultMaxBody     = 16 << 20
	DefaultBodyTimeout = time.Minute
)

// Factory starts a data plane from a Spec.
type Factory func(ctx context.Context, spec Spec) (DataPlane, error)

var registry = struct {
	sync.RWMutex
	m map[string]Factory
}{m: map[string]Factory{}}

// Register makes a data plane available by name, to Open and to every
// binary and test that looks data planes up. Call it from an init
// function of the implementation's package. It panics if name is empty or
// already registered, as database/sql's Register does: that is a
// programming error, not input.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || f == nil {
		panic("proxy: Register with an empty name or a nil factory")
	}
	if _, dup := registry.m[name]; dup {
		panic("proxy: Register called twice for data plane " + name)
	}
	registry.m[name] = f
}

// Open starts the data plane registered as name.
func Open(ctx context.Context, name string, spec Spec) (DataPlane, error) {
	registry.RLock()
	f, ok := registry.m[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: data plane %q: want one of %v", dfaas.ErrInvalidConfig, name, Names())
	}
	if spec.Node == "" {
		return nil, fmt.Errorf("%w: data plane %s: empty node id", dfaas.ErrInvalidConfig, name)
	}
	if spec.Platform.Handler == nil && spec.Platform.Addr == "" {
		return nil, fmt.Errorf("%w: data plane %s: no platform", dfaas.ErrInvalidConfig, name)
	}
	if spec.Timeout < 0 {
		return nil, fmt.Errorf("%w: data plane %s: negative timeout", dfaas.ErrInvalidConfig, name)
	}
	if spec.TLS != nil {
		if err := spec.TLS.Validate(); err != nil {
			return nil, err
		}
		if spec.TLS.Identity.Node() != spec.Node {
			return nil, fmt.Errorf("%w: data plane %s: the TLS identity is of %s, not of node %s", dfaas.ErrInvalidConfig, name,
				spec.TLS.Identity.Node(), spec.Node)
		}
	}
	if spec.Logger == nil {
		spec.Logger = slog.Default()
	}
	return f(ctx, spec)
}

// Names lists the registered data planes, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	var out []string
	for n := range registry.m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
