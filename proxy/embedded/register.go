package embedded

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

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
	cfg := Config{Node: s.Node, UserAddr: s.UserAddr, PeerAddr: s.PeerAddr, Logger: s.Logger}
	if s.TLS != nil {
		var err error
		if cfg.PeerTLS, err = LoadTLS(*s.TLS); err != nil {
			return nil, err
		}
	}
	return New(cfg, s.Platform.Handler)
}

// LoadTLS reads the federation's TLS files into a Config.PeerTLS.
func LoadTLS(f proxy.TLS) (*tls.Config, error) {
	key := f.KeyFile
	if key == "" {
		key = f.CertFile
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, key)
	if err != nil {
		return nil, fmt.Errorf("embedded: tls: %w", err)
	}
	ca, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("embedded: tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("%w: embedded: tls: no certificate in %s", dfaas.ErrInvalidConfig, f.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}
