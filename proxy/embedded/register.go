package embedded

import (
	"context"
	"fmt"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Name is the name the embedded data plane is registered under.
const Name = "embedded"

func init() { proxy.Register(Name, open) }

// open starts the embedded data plane from a proxy.Spec.
func open(_ context.Context, s proxy.Spec) (proxy.DataPlane, error) {
	if s.Platform.Handler == nil {
		return nil, fmt.Errorf("%w: embedded: the platform needs an in-process Handler", dfaas.ErrInvalidConfig)
	}
	return New(Config{Node: s.Node, UserAddr: s.UserAddr, PeerAddr: s.PeerAddr, TLS: s.TLS, ForwardTimeout: s.Timeout,
		MaxBody: s.MaxBody, BodyTimeout: s.BodyTimeout, Async: s.Async, Tracer: s.Tracer, Logger: s.Logger}, s.Platform.Handler)
}
