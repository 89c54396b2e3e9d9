package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/faas/openfaas"
)

// Platform is a node's FaaS platform as the node uses it: the data plane's
// local target and the Monitor's source of capacities.
type Platform struct {
	// Handler executes a request in-process, for in-process data planes.
	Handler http.Handler
	// Addr is the platform's host:port, for data planes that reach it over
	// TCP (HAProxy); empty if it runs in-process only.
	Addr string
	// Namespace, if set, is the functions' OpenFaaS namespace (see
	// proxy.Platform).
	Namespace string
	// Capacities lists the deployed functions and their capacities.
	Capacities faas.Platform
	// Close, if set, stops the platform; the node calls it on Close.
	Close func() error
}

// PlatformSpec is what a platform is opened from. Each platform uses the
// fields it needs.
type PlatformSpec struct {
	// Node names the node, for the functions' answers.
	Node string
	// Functions to deploy, with their capacities (req/s), on the platforms
	// that deploy functions themselves ("runtime", "local").
	Functions map[string]dfaas.Rate
	// Handler makes the handler of a deployed function. Default Echo.
	Handler func(node, function string) http.Handler
	// OpenFaaS is the gateway of the "openfaas" platform.
	OpenFaaS openfaas.Config
	// MaxBody and BodyTimeout bound a call's body on the "local" platform
	// (local.Config): behind HAProxy, which streams a body larger than its
	// buffer without these bounds, they are what holds. Give the node's.
	MaxBody     int64
	BodyTimeout time.Duration
	// Logger receives the platform's logs. Default slog.Default().
	Logger *slog.Logger
}

// PlatformFactory opens a platform from a PlatformSpec.
type PlatformFactory func(ctx context.Context, spec PlatformSpec) (Platform, error)

var platforms = struct {
	sync.RWMutex
	m map[string]PlatformFactory
}{m: map[string]PlatformFactory{}}

// RegisterPlatform makes a platform available by name. It panics if the
// name is empty or taken (a programming error, as in proxy.Register).
func RegisterPlatform(name string, f PlatformFactory) {
	platforms.Lock()
	defer platforms.Unlock()
	if name == "" || f == nil {
		panic("node: RegisterPlatform with an empty name or a nil factory")
	}
	if _, dup := platforms.m[name]; dup {
		panic("node: RegisterPlatform called twice for " + name)
	}
	platforms.m[name] = f
}

// OpenPlatform opens the platform registered as name.
func OpenPlatform(ctx context.Context, name string, spec PlatformSpec) (Platform, error) {
	platforms.RLock()
	f, ok := platforms.m[name]
	platforms.RUnlock()
	if !ok {
		return Platform{}, fmt.Errorf("%w: platform %q: want one of %v", dfaas.ErrInvalidConfig, name, PlatformNames())
	}
	if spec.Handler == nil {
		spec.Handler = Echo
	}
	if spec.Logger == nil {
		spec.Logger = slog.Default()
	}
	return f(ctx, spec)
}

// PlatformNames lists the registered platforms, sorted.
func PlatformNames() []string {
	platforms.RLock()
	defer platforms.RUnlock()
	return slices.Sorted(maps.Keys(platforms.m))
}

func init() {
	RegisterPlatform("runtime", openRuntime)
	RegisterPlatform("local", openLocal)
	RegisterPlatform("openfaas", openOpenFaaS)
}

// Echo is the default function: it answers with the function's name, the
// node that executed it and the request body.
func Echo(node, function string) http.Handler {
	return faas.HandlerFunc(func(_ context.Context, body []byte) ([]byte, error) {
		return append([]byte(function+" on node "+node+": "), body...), nil
	})
}

// openRuntime is "runtime": faas.Runtime, Go handlers in the agent's
// process at the given capacities, reached in-process only.
func openRuntime(_ context.Context, s PlatformSpec) (Platform, error) {
	rt := faas.NewRuntime()
	for name, capacity := range s.Functions {
		if err := rt.Deploy(faas.Function{Name: name, Handler: s.Handler(s.Node, name), Capacity: capacity}); err != nil {
			return Platform{}, err
		}
	}
	return Platform{Handler: rt, Capacities: rt}, nil
}

// openLocal is "local": an OpenFaaS-compatible faas/local provider on
// loopback (no containers), with the functions deployed through its API
// under the dfaas.maxrate label (enforced as the physical capacity), and
// reached through the faas/openfaas backend exactly as a gateway would be.
func openLocal(ctx context.Context, s PlatformSpec) (_ Platform, err error) {
	quiet := slog.New(slog.DiscardHandler)
	p, err := local.New(local.Config{EnforceMaxRate: true, MaxBody: s.MaxBody, BodyTimeout: s.BodyTimeout, Logger: quiet})
	if err != nil {
		return Platform{}, err
	}
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	gw := strings.TrimSuffix(p.URL(), "/")
	u, err := url.Parse(gw)
	if err != nil {
		return Platform{}, err
	}
	deployer := &http.Client{Transport: &http.Transport{}}
	defer deployer.CloseIdleConnections()
	client := sdk.NewClient(u, nil, deployer)
	for _, name := range slices.Sorted(maps.Keys(s.Functions)) {
		image := "dfaas/" + name
		if err := p.RegisterImage(image, s.Handler(s.Node, name)); err != nil {
			return Platform{}, err
		}
		if _, err := client.Deploy(ctx, types.FunctionDeployment{Service: name, Image: image,
			Labels: &map[string]string{local.LabelMaxRate: strconv.FormatFloat(float64(s.Functions[name]), 'g', -1, 64)}}); err != nil {
			return Platform{}, fmt.Errorf("node: deploy %s on faas/local: %w", name, err)
		}
	}
	b, err := openfaas.New(openfaas.Config{Gateway: gw, Logger: quiet})
	if err != nil {
		return Platform{}, err
	}
	return Platform{Handler: b.Handler(), Addr: u.Host, Capacities: b, Close: func() error {
		return errors.Join(b.Close(), p.Close())
	}}, nil
}

// openOpenFaaS is "openfaas": a gateway (s.OpenFaaS), whose functions give
// their capacity in the dfaas.maxrate label.
func openOpenFaaS(_ context.Context, s PlatformSpec) (Platform, error) {
	cfg := s.OpenFaaS
	if cfg.Logger == nil {
		cfg.Logger = s.Logger
	}
	b, err := openfaas.New(cfg)
	if err != nil {
		return Platform{}, err
	}
	u, err := url.Parse(cfg.Gateway)
	if err != nil {
		_ = b.Close()
		return Platform{}, fmt.Errorf("%w: node: gateway %q: %w", dfaas.ErrInvalidConfig, cfg.Gateway, err)
	}
	return Platform{Handler: b.Handler(), Addr: u.Host, Namespace: cfg.Namespace, Capacities: b, Close: b.Close}, nil
}
