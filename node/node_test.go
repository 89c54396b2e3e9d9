package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"maps"
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
	"github.com/dfaas-go/dfaas/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// TestBuildForwardsBetweenTwoNodes: two nodes built from names only - the
// "runtime" platform, the default data plane, an in-memory overlay - plan
// together, and the one without the function forwards to the other.
func TestBuildForwardsBetweenTwoNodes(t *testing.T) {
	ctx := t.Context()
	network := overlay.NewNetwork()
	build := func(name string, capacity dfaas.Rate) *node.Node {
		ov, err := network.Join(dfaas.NodeID(name))
		require.NoError(t, err)
		pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Node: name, Functions: serving(capacity)})
		require.NoError(t, err)
		n, err := node.Build(ctx, node.Config{Overlay: ov, Platform: pf, Interval: 100 * time.Millisecond, Logger: quiet, PlainPeers: true})
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
	assert.Equal(t, "hello on node b: x", body, "a does not serve hello: b served it")
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
	_, err = node.Build(ctx, node.Config{Overlay: ov, Platform: pf, DataPlane: "nginx", Logger: quiet, PlainPeers: true})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	assert.True(t, closed, "the platform was closed")
	assert.ErrorIs(t, ov.Publish(ctx, dfaas.Advert{}), dfaas.ErrClosed, "the overlay was closed")
	assert.Contains(t, node.PlatformNames(), "local")
}

// TestBuildDefaultIsSecure: two nodes built with nothing but a federation
// secret forward to each other over TLS bound to their overlay keys; the
// peer port answers no one else, in clear text or with a certificate of
// its own.
func TestBuildDefaultIsSecure(t *testing.T) {
	ctx := t.Context()
	secret := bytes.Repeat([]byte{3}, overlay.SecretBytes)
	var boot []string
	build := func(name string, capacity dfaas.Rate) *node.Node {
		pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Node: name, Functions: serving(capacity)})
		require.NoError(t, err)
		n, err := node.Build(ctx, node.Config{Platform: pf, Interval: 100 * time.Millisecond, Logger: quiet,
			Libp2p: overlay.Libp2pConfig{Secret: secret, Bootstrap: boot, DiscoveryInterval: 200 * time.Millisecond}})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, n.Close()) })
		boot = n.Overlay.(*overlay.Libp2p).Addrs()
		return n
	}
	a, b := build("a", 0), build("b", 100)
	require.Eventually(t, func() bool {
		resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("x"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)
	counts, err := a.DataPlane.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), counts["hello"].Forwarded[b.Overlay.Self()], "forwarded over TLS")

	req, err := http.NewRequest("POST", "http://"+b.DataPlane.PeerAddr()+"/function/hello", strings.NewReader("x"))
	require.NoError(t, err)
	req.Header.Set(proxy.HeaderHop, "1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "clear text reached the peer port")
		resp.Body.Close()
	}
	tc := &tls.Config{RootCAs: x509.NewCertPool(), ServerName: proxy.ServerName, MinVersion: tls.VersionTLS12}
	anchor, err := proxy.Anchor(b.Overlay.Self())
	require.NoError(t, err)
	tc.RootCAs.AddCert(anchor)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	req, err = http.NewRequest("POST", "https://"+b.DataPlane.PeerAddr()+"/function/hello", strings.NewReader("x"))
	require.NoError(t, err)
	req.Header.Set(proxy.HeaderHop, "1")
	if resp, err := c.Do(req); err == nil {
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "a client without a certificate reached the peer port")
		resp.Body.Close()
	}
	counts, err = b.DataPlane.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), counts["hello"].ReceivedIn, "only a's forward was executed")
	http.DefaultClient.CloseIdleConnections()
}

// liar is an overlay that advertises an absurd (but bounded) capacity for
// every function: its node's peer port refuses what it cannot run.
type liar struct{ *overlay.Memory }

func (l liar) Publish(ctx context.Context, a dfaas.Advert) error {
	a.Functions = maps.Clone(a.Functions)
	for name, f := range a.Functions {
		f.Capacity = dfaas.MaxRate
		a.Functions[name] = f
	}
	return l.Memory.Publish(ctx, a)
}

// TestLyingMemberCostsRetriesNotRejections: an overloaded node whose peers
// are a member advertising 1e9 req/s (and refusing everything) and an
// honest idle helper still forwards at least 35 of 40 requests
// successfully, on both data planes.
func TestLyingMemberCostsRetriesNotRejections(t *testing.T) {
	for _, dp := range []string{"embedded", "haproxy"} {
		t.Run(dp, func(t *testing.T) {
			network := overlay.NewNetwork()
			a := startNode(t, network, dp, "a", 0, nil)
			startNode(t, network, dp, "liar", 0, func(m *overlay.Memory) dfaas.Overlay { return liar{m} })
			startNode(t, network, dp, "honest", 50, nil)
			require.Eventually(t, func() bool { return a.Agent.Status().Peers == 2 }, 10*time.Second, 20*time.Millisecond)
			time.Sleep(500 * time.Millisecond) // a plans with both
			ok := 0
			for range 40 {
				resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("x"))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						ok++
					}
				}
				time.Sleep(25 * time.Millisecond)
			}
			assert.GreaterOrEqual(t, ok, 35, "of 40")
			t.Logf("%s: %d of 40 served", dp, ok)
			http.DefaultClient.CloseIdleConnections()
		})
	}
}

// TestAdvertiseMustBeReachable: a peer listener bound to every address
// needs an advertised address (0.0.0.0 reaches nobody); a bad one is refused.
func TestAdvertiseMustBeReachable(t *testing.T) {
	pf, err := node.OpenPlatform(t.Context(), "runtime", node.PlatformSpec{Node: "a", Functions: map[string]dfaas.Rate{"hello": 1}})
	require.NoError(t, err)
	for _, c := range []node.Config{{PeerAddr: "0.0.0.0:8081"}, {PeerAddr: ":8081"}, {PeerAddr: "[::]:8081"},
		{Advertise: "0.0.0.0:8081"}, {Advertise: "no port"}} {
		c.Platform = pf
		assert.ErrorIs(t, c.Validate(), dfaas.ErrInvalidConfig, "%+v", c)
	}
	assert.NoError(t, node.Config{Platform: pf, PeerAddr: "0.0.0.0:8081", Advertise: "192.0.2.2:8081"}.Validate())
	assert.NoError(t, node.Config{Platform: pf, PeerAddr: "127.0.0.1:0"}.Validate())
}
