package haproxy

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// Name is the name the HAProxy data plane is registered under.
const Name = "haproxy"

func init() { proxy.Register(Name, open) }

// open starts the HAProxy data plane from a proxy.Spec. HAProxy cannot say
// which port it bound, so a listener address with port 0 gets a free port
// on its host first.
func open(ctx context.Context, s proxy.Spec) (proxy.DataPlane, error) {
	if s.Platform.Addr == "" {
		return nil, fmt.Errorf("%w: haproxy: the platform needs an address (host:port) HAProxy can reach", dfaas.ErrInvalidConfig)
	}
	// A port picked here may be taken by another process before HAProxy
	// binds it (HAProxy refuses to share it, see noreuseport): then pick
	// again, a few times.
	for try := 0; ; try++ {
		user, err := concretePort(s.UserAddr)
		if err != nil {
			return nil, err
		}
		peer, err := concretePort(s.PeerAddr)
		if err != nil {
			return nil, err
		}
		d, err := Start(ctx, Config{Binary: s.Binary, Node: s.Node, UserAddr: user, PeerAddr: peer, Platform: s.Platform.Addr,
			Namespace: s.Platform.Namespace, Functions: s.Functions, TLS: s.TLS, Timeout: s.Timeout, MaxBody: s.MaxBody, BodyTimeout: s.BodyTimeout, Async: s.Async, Tracer: s.Tracer, Logger: s.Logger})
		picked := user != s.UserAddr || peer != s.PeerAddr
		if err == nil || !picked || try == 2 || !strings.Contains(err.Error(), "Address already in use") {
			return d, err
		}
	}
}

// concretePort returns addr with a free port if its port is 0 or it is
// empty (127.0.0.1).
func concretePort(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%w: haproxy: address %q: %w", dfaas.ErrInvalidConfig, addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("haproxy: free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
