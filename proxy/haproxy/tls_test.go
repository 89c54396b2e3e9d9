package haproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// federationCA makes a CA and signs one certificate per node, for 127.0.0.1.
type federationCA struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
}

func newFederationCA(t *testing.T) *federationCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dfaas federation"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ca := &federationCA{dir: t.TempDir(), cert: cert, key: key}
	ca.caFile = filepath.Join(ca.dir, "ca.pem")
	require.NoError(t, os.WriteFile(ca.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return ca
}

// issue writes a node's certificate and key into one PEM file.
func (ca *federationCA) issue(t *testing.T, node string, serial int64) (*proxy.TLS, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: node},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	path := filepath.Join(ca.dir, node+".pem")
	require.NoError(t, os.WriteFile(path, append(certPEM, keyPEM...), 0o600))
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	return &proxy.TLS{CAFile: ca.caFile, CertFile: path}, pair
}

// TestMutualTLSBetweenPeers: forwards travel over mutual TLS; the peer port
// refuses clients without a federation certificate, and plain HTTP.
func TestMutualTLSBetweenPeers(t *testing.T) {
	ca := newFederationCA(t)
	tlsA, _ := ca.issue(t, "a", 2)
	tlsB, certB := ca.issue(t, "b", 3)
	pa, pb := newPlatform(t, "a"), newPlatform(t, "b")
	start := func(node string, pf *platform, tc *proxy.TLS) *Driver {
		d, err := Start(t.Context(), Config{Node: dfaas.NodeID(node), UserAddr: freeAddr(t), PeerAddr: freeAddr(t), Platform: pf.addr,
			Functions: []string{"figlet"}, TLS: tc})
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	a, b := start("a", pa, tlsA), start("b", pb, tlsB)
	apply(t, b, map[string]dfaas.FunctionPlan{"figlet": {Limit: 100, Capacity: 100}})
	apply(t, a, map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: b.PeerAddr(), Weight: 1, Cap: 1e6}}}})

	code, _, body := get(t, "http://"+a.UserAddr()+"/function/figlet", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "b", body, "forwarded over mutual TLS")

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	// A client without a certificate is turned away in the handshake.
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	_, err := anon.Get("https://" + b.PeerAddr() + "/function/figlet")
	assert.Error(t, err, "no client certificate")
	// Plain HTTP on the TLS port gets nowhere either.
	resp, err := client.Get("http://" + b.PeerAddr() + "/function/figlet")
	if err == nil {
		assert.NotEqual(t, http.StatusOK, resp.StatusCode)
		resp.Body.Close()
	}
	// A federation member is served.
	member := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{certB}}}}
	req, _ := http.NewRequest("GET", "https://"+b.PeerAddr()+"/function/figlet", nil)
	req.Header.Set("X-Dfaas-Hop", "1")
	resp, err = member.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	anon.CloseIdleConnections()
	member.CloseIdleConnections()
}
