package embedded_test

import (
	"testing"

	"github.com/dfaas-go/dfaas/proxy/embedded"
	"github.com/dfaas-go/dfaas/proxy/proxytest"
)

// TestConformance runs the data-plane contract's suite.
func TestConformance(t *testing.T) { proxytest.Run(t, embedded.Name) }
