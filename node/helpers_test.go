package node_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

// startNode starts a node called name on network, serving the function
// hello at capacity on data plane dp (with the platform that data plane
// needs: in-process for the embedded proxy, over TCP for HAProxy),
// planning every 200 ms; wrap, if set, stands between the node and its
// overlay membership.
func startNode(t *testing.T, network *overlay.Network, dp, name string, capacity dfaas.Rate, wrap func(*overlay.Memory) dfaas.Overlay) *node.Node {
	t.Helper()
	mem, err := network.Join(dfaas.NodeID(name))
	require.NoError(t, err)
	var ov dfaas.Overlay = mem
	if wrap != nil {
		ov = wrap(mem)
	}
	platform := "runtime"
	if dp == "haproxy" {
		platform = "local"
	}
	pf, err := node.OpenPlatform(t.Context(), platform, node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"hello": capacity}, Logger: quiet})
	require.NoError(t, err)
	n, err := node.Build(t.Context(), node.Config{Overlay: ov, Platform: pf, DataPlane: dp, Interval: 200 * time.Millisecond,
		Logger: quiet, PlainPeers: true})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}
