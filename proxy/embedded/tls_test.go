package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// federationTLS returns a TLS config for a node of a federation whose CA it
// makes, and a second config with a certificate from another CA.
func federationTLS(t *testing.T) (member, stranger *tls.Config) {
	t.Helper()
	newCA := func() (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		require.NoError(t, err)
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return cert, key
	}
	issue := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	ca, caKey := newCA()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	member = &tls.Config{Certificates: []tls.Certificate{issue(ca, caKey)}, ClientCAs: pool, RootCAs: pool, MinVersion: tls.VersionTLS13}
	other, otherKey := newCA()
	stranger = &tls.Config{Certificates: []tls.Certificate{issue(other, otherKey)}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return member, stranger
}

func TestPeerMutualTLS(t *testing.T) {
	member, stranger := federationTLS(t)
	start := func(node string) (*Proxy, *echo) {
		e := &echo{name: node}
		p, err := New(Config{Node: dfaas.NodeID(node), PeerTLS: member}, e)
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		return p, e
	}
	a, _ := start("a")
	b, eb := start("b")
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 100}}}})
	code, _, body := do(t, "POST", "http://"+a.UserAddr()+"/function/figlet", nil, "x")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "b:x", body, "forwarded over mutual TLS")

	for name, cfg := range map[string]*tls.Config{
		"no client certificate":            {RootCAs: member.RootCAs},
		"certificate of another authority": stranger,
	} {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest("POST", "https://"+b.PeerAddr()+"/function/figlet", nil)
		req.Header.Set(proxy.HeaderHop, "1")
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		assert.Error(t, err, name)
		c.CloseIdleConnections()
	}
	assert.Equal(t, int64(1), eb.calls.Load(), "only the federation's request ran")
	_, err := New(Config{Node: "c", PeerTLS: &tls.Config{}}, &echo{})
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
}
