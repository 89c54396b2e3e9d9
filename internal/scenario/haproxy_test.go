package scenario

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dfaas-go/dfaas"
)

// TestReferenceScenarioOnHAProxy: the paper's experiment with a real HAProxy
// process as every node's data plane, driven through its runtime API.
func TestReferenceScenarioOnHAProxy(t *testing.T) {
	c := start(t, ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, Proxy: "haproxy"})
	rep := run(t, c, []dfaas.Rate{50, 0, 0}, 12*time.Second)
	steady(t, rep, []float64{10, 16, 24}, 1.5)
	assert.LessOrEqual(t, rep.ConvergenceS, 3.0)
	assert.LessOrEqual(t, float64(rep.RejectedAfterConvergence), 0.01*float64(rep.Requests))
	assert.Equal(t, rep.Nodes[0].ForwardedOut, rep.Nodes[1].Received+rep.Nodes[2].Received)
}
