package haproxy_test

import (
	"testing"

	"github.com/dfaas-go/dfaas/proxy/haproxy"
	"github.com/dfaas-go/dfaas/proxy/proxytest"
)

// TestConformance runs the data-plane contract's suite on real HAProxy
// processes.
func TestConformance(t *testing.T) { proxytest.Run(t, haproxy.Name) }
