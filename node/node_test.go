package node_test

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// TestBuildForwardsBetweenTwoNodes: two nodes built from names only - the
// "runtime" platform, the default data plane, an in-memory overlay - plan
// together, and the one without capacity forwards to the other.
func TestBuildForwardsBetweenTwoNodes(t *testing.T) {
	ctx := t.Context()
	network := overlay.NewNetwork()
	build := func(name string, capacity dfaas.Rate) *node.Node {
		ov, err := network.Join(dfaas.NodeID(name))
		require.NoError(t, err)
		pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"hello": capacity}})
		require.NoError(t, err)
		n, err := node.Build(ctx, node.Config{Overlay: ov, Platform: pf, Interval: 100 * time.Millisecond, Logger: quiet})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, n.Close()) })
		return n
	}
	a, b := build("a", 0), build("b", 100)
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("x"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		body = string(raw)
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, "hello on node b: x", body, "a has no capacity: b served it")
	counts, err := a.DataPlane.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), counts["hello"].Forwarded[b.Overlay.Self()])
	http.DefaultClient.CloseIdleConnections()
}

// TestBuildRejectsUnknownParts: unknown names and missing parts are
// configuration errors, and a failed build closes what it opened.
func TestBuildRejectsUnknownParts(t *testing.T) {
	ctx := t.Context()
	_, err := node.OpenPlatform(ctx, "lambda", node.PlatformSpec{})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	_, err = node.Build(ctx, node.Config{})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)

	closed := false
	pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Functions: map[string]dfaas.Rate{"hello": 1}})
	require.NoError(t, err)
	pf.Close = func() error { closed = true; return nil }
	ov, err := overlay.NewNetwork().Join("a")
	require.NoError(t, err)
	_, err = node.Build(ctx, node.Config{Overlay: ov, Platform: pf, DataPlane: "nginx", Logger: quiet})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	assert.True(t, closed, "the platform was closed")
	assert.ErrorIs(t, ov.Publish(ctx, dfaas.Advert{}), dfaas.ErrClosed, "the overlay was closed")
	assert.Contains(t, node.PlatformNames(), "local")
}
