package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

func identity(t *testing.T) *proxy.Identity {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := proxy.NewIdentity(k)
	require.NoError(t, err)
	want, err := peer.IDFromPrivateKey(k)
	require.NoError(t, err)
	require.Equal(t, dfaas.NodeID(want.String()), id.Node())
	return id
}

func TestIdentity(t *testing.T) {
	a, b := identity(t), identity(t)
	leaf := a.Certificate().Leaf

	// Anchors are a function of the node id: every node renders the same.
	x, err := proxy.Anchor(a.Node())
	require.NoError(t, err)
	y, err := proxy.Anchor(a.Node())
	require.NoError(t, err)
	assert.Equal(t, x.Raw, y.Raw)

	claimed, ok := proxy.ClaimedNode(leaf)
	require.True(t, ok)
	assert.Equal(t, a.Node(), claimed)
	assert.NoError(t, proxy.Verify(leaf, a.Node(), x509.ExtKeyUsageServerAuth))
	assert.NoError(t, proxy.Verify(leaf, a.Node(), x509.ExtKeyUsageClientAuth))
	assert.Error(t, proxy.Verify(leaf, b.Node(), x509.ExtKeyUsageServerAuth), "a's leaf does not verify as b")

	// HAProxy's form: the leaf, then its key.
	raw, err := a.PEM()
	require.NoError(t, err)
	block, rest := pem.Decode(raw)
	require.Equal(t, "CERTIFICATE", block.Type)
	key, _ := pem.Decode(rest)
	require.Equal(t, "PRIVATE KEY", key.Type)

	bundle, err := proxy.AnchorsPEM(a.Node(), b.Node())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(bundle))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool})
	assert.NoError(t, err)
}

func TestIdentityRefusesOtherKeys(t *testing.T) {
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	k, _, err := crypto.KeyPairFromStdKey(ek)
	require.NoError(t, err)
	_, err = proxy.NewIdentity(k)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "an ECDSA overlay key: its node id holds no key")
	_, err = proxy.NewIdentity(nil)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)

	id, err := peer.IDFromPrivateKey(k)
	require.NoError(t, err)
	for _, n := range []dfaas.NodeID{"a", "", dfaas.NodeID(id.String())} {
		_, err := proxy.Anchor(n)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "%q", n)
	}
	assert.ErrorIs(t, (&proxy.TLS{}).Validate(), dfaas.ErrInvalidConfig)
}
