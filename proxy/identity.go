package proxy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dfaas-go/dfaas"
)

// Forwards between peers travel over mutual TLS bound to node identity: a
// node's TLS certificate is vouched for by its overlay key, the same key
// its node id is derived from, so there is one identity and one membership
// list (the overlay's).
//
// Every node id of an Ed25519 overlay key contains its public key. From a
// node id alone anyone builds that node's trust anchor (Anchor): a CA
// certificate named "dfaas node <id>" holding the node's public key. Like
// every trust anchor, it is trusted for its name and key only: its own
// signature, made with a fixed well-known key so that the anchor is the
// same bytes everywhere, carries no meaning and no verifier (Go's
// crypto/x509, OpenSSL) checks it (RFC 5280, 6.1.1 (d)). At start a node
// makes a fresh P-256 TLS key and a leaf certificate for it, issued under
// its anchor's name and signed with its overlay key (NewIdentity). Only the
// holder of the overlay key can make a leaf that verifies against the
// node's anchor.
//
// A forwarder trusts the anchor of the node the advert named, and nothing
// else: an address now served by anyone else, member or not, gets no
// request. A peer listener accepts a client whose leaf verifies against the
// anchor of a current member. HAProxy does the same with the anchors
// written as PEM (per server, and all members for its peer listener).

// PeerTLSVersion is the TLS version between peers: 1.2, on purpose. In
// TLS 1.3 a client sends its request before the server has checked the
// client's certificate, and hears of a refusal only when it reads the
// answer; it cannot tell a refused handshake from a peer that failed after
// running the request, so it could not retry at most once. In TLS 1.2 the
// server checks the client's certificate within the handshake: a refusal
// is a failed connection, which both data planes retry on another peer.
// Only forward-secret AEAD cipher suites are offered (Go's defaults).
const PeerTLSVersion = tls.VersionTLS12

// ServerName is the DNS name in every leaf certificate and the name
// forwarders verify: identity is checked through the anchor, not the name.
const ServerName = "node.dfaas.invalid"

// DefaultLeafLifetime is how long a leaf certificate is valid by default.
// An identity renews its leaf (a new TLS key too) when half of its life is
// over: at every new handshake the current one is presented, and
// connections made with the one before go on (TLS checks validity at the
// handshake only). A leaf stolen from a node's memory or disk so serves
// for hours, not a year.
const DefaultLeafLifetime = 12 * time.Hour

// anchorSigner signs anchors. Its private key is public knowledge (an
// all-zero seed): an anchor's signature is never checked, and a fixed key
// makes every node's rendering of an anchor identical.
var anchorSigner = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// Identity is a node's TLS identity: a fresh TLS key and its certificate,
// signed with the node's overlay key, renewed halfway through its life. It
// is safe for concurrent use.
type Identity struct {
	node     dfaas.NodeID
	signer   ed25519.PrivateKey
	anchor   *x509.Certificate
	lifetime time.Duration
	now      func() time.Time
	mu       sync.Mutex // renewals
	cur      atomic.Pointer[leafCert]
}

// leafCert is one leaf and its key.
type leafCert struct {
	cert  tls.Certificate
	leaf  *x509.Certificate
	renew time.Time // when the next one is due
}

// NewIdentity makes a TLS identity for the node whose overlay key is key
// (Ed25519: the node id must contain the public key), with leaves of
// DefaultLeafLifetime.
func NewIdentity(key crypto.PrivKey) (*Identity, error) {
	return NewIdentityWith(key, DefaultLeafLifetime, time.Now)
}

// NewIdentityWith is NewIdentity with leaves valid for lifetime (at least
// a second), on the clock now.
func NewIdentityWith(key crypto.PrivKey, lifetime time.Duration, now func() time.Time) (*Identity, error) {
	if key == nil || key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: tls identity: want an Ed25519 overlay key", dfaas.ErrInvalidConfig)
	}
	if lifetime < time.Second || now == nil {
		return nil, fmt.Errorf("%w: tls identity: leaf lifetime %v: at least 1s", dfaas.ErrInvalidConfig, lifetime)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	std, err := crypto.PrivKeyToStdKey(key)
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	signer, ok := std.(*ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: tls identity: want an Ed25519 overlay key", dfaas.ErrInvalidConfig)
	}
	node := dfaas.NodeID(id.String())
	anchor, err := Anchor(node)
	if err != nil {
		return nil, err
	}
	ident := &Identity{node: node, signer: *signer, anchor: anchor, lifetime: lifetime, now: now}
	l, err := ident.issue()
	if err != nil {
		return nil, err
	}
	ident.cur.Store(l)
	return ident, nil
}

// issue makes a new TLS key and its leaf.
func (id *Identity) issue() (*leafCert, error) {
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	now := id.now()
	// Valid from a little before now (clocks a little behind), a little
	// longer than renewed: a peer whose clock is ahead still takes it.
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: string(id.node)},
		NotBefore:    now.Add(-min(time.Hour, id.lifetime/2)),
		NotAfter:     now.Add(id.lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, id.anchor, &tlsKey.PublicKey, id.signer)
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	return &leafCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: tlsKey, Leaf: leaf},
		leaf: leaf, renew: now.Add(id.lifetime / 2)}, nil
}

// current is the leaf to present now, renewed first if it is due. A
// renewal that fails keeps the current leaf (until it expires) and is
// tried again at the next call.
func (id *Identity) current() *leafCert {
	l := id.cur.Load()
	if id.now().Before(l.renew) {
		return l
	}
	id.mu.Lock()
	defer id.mu.Unlock()
	if l = id.cur.Load(); id.now().Before(l.renew) {
		return l
	}
	if n, err := id.issue(); err == nil {
		id.cur.Store(n)
		return n
	}
	return l
}

// Node is the node this identity belongs to.
func (id *Identity) Node() dfaas.NodeID { return id.node }

// Certificate is the TLS certificate (leaf and key) to present now.
func (id *Identity) Certificate() tls.Certificate { return id.current().cert }

// NotAfter is when the current leaf expires.
func (id *Identity) NotAfter() time.Time { return id.current().leaf.NotAfter }

// PEM is the current leaf certificate followed by its private key, in PEM:
// the form HAProxy's crt takes. It holds a private key: write it 0600.
func (id *Identity) PEM() ([]byte, error) {
	cert := id.current().cert
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("tls identity: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...), nil
}

// anchorName is the subject of node's anchor.
func anchorName(node dfaas.NodeID) string { return "dfaas node " + string(node) }

// Anchor returns node's trust anchor, built from the public key its id
// contains.
func Anchor(node dfaas.NodeID) (*x509.Certificate, error) {
	pub, err := publicKey(node)
	if err != nil {
		return nil, err
	}
	ski := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: anchorName(node)},
		NotBefore:             time.Unix(0, 0).UTC(),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          ski[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, anchorSigner)
	if err != nil {
		return nil, fmt.Errorf("tls anchor of %s: %w", node, err)
	}
	return x509.ParseCertificate(der)
}

// AnchorsPEM renders the anchors of nodes, in PEM, for a CA file.
func AnchorsPEM(nodes ...dfaas.NodeID) ([]byte, error) {
	var out []byte
	for _, n := range nodes {
		a, err := Anchor(n)
		if err != nil {
			return nil, err
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Raw})...)
	}
	return out, nil
}

// publicKey extracts the Ed25519 public key a node id contains.
func publicKey(node dfaas.NodeID) (ed25519.PublicKey, error) {
	id, err := peer.Decode(string(node))
	if err != nil {
		return nil, fmt.Errorf("%w: tls: node id %q: %w", dfaas.ErrInvalidConfig, node, err)
	}
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: tls: node id %s holds no public key: %w", dfaas.ErrInvalidConfig, node, err)
	}
	std, err := crypto.PubKeyToStdKey(pk)
	if err != nil {
		return nil, fmt.Errorf("tls: node id %s: %w", node, err)
	}
	pub, ok := std.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: tls: node id %s is not of an Ed25519 key", dfaas.ErrInvalidConfig, node)
	}
	return pub, nil
}

// ErrNotMember is the handshake error of a client that is not a current
// member, or whose certificate its claimed node did not sign.
var ErrNotMember = errors.New("tls: client is not a current member")

// Verify checks that leaf was issued by node's overlay key and is valid
// now for usage.
func Verify(leaf *x509.Certificate, node dfaas.NodeID, usage x509.ExtKeyUsage) error {
	anchor, err := Anchor(node)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// ClaimedNode is the node a leaf says issued it (its issuer's name); only
// Verify says whether it did.
func ClaimedNode(leaf *x509.Certificate) (dfaas.NodeID, bool) {
	n, ok := strings.CutPrefix(leaf.Issuer.CommonName, "dfaas node ")
	return dfaas.NodeID(n), ok && n != ""
}

// TLS is the federation's mutual TLS between peers, bound to node identity.
type TLS struct {
	// Identity is this node's certificate. Required.
	Identity *Identity
	// Members returns the current members of the federation (the
	// overlay's view). Only they may forward to this node. Required.
	Members func() []dfaas.NodeID
}

// Validate reports a missing field.
func (t *TLS) Validate() error {
	if t.Identity == nil || t.Members == nil {
		return fmt.Errorf("%w: tls: needs an Identity and Members", dfaas.ErrInvalidConfig)
	}
	return nil
}

// ServerConfig is the TLS configuration of a peer listener: TLS 1.2, and a
// client certificate issued by a current member is required. Membership is
// checked in VerifyConnection, which also runs on resumed sessions, and
// session tickets are off: a node that left cannot come back on an old
// session.
func (t *TLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: PeerTLSVersion,
		MaxVersion: PeerTLSVersion,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := t.Identity.Certificate()
			return &c, nil
		},
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNotMember
			}
			return t.Admit(cs.PeerCertificates[0])
		},
	}
}

// Admit reports whether leaf is the certificate of a current member: the
// node it claims is a member and that node's overlay key signed it.
func (t *TLS) Admit(leaf *x509.Certificate) error {
	node, ok := ClaimedNode(leaf)
	if !ok {
		return ErrNotMember
	}
	if !slices.Contains(t.Members(), node) {
		return fmt.Errorf("%w: %s", ErrNotMember, node)
	}
	if err := Verify(leaf, node, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNotMember, node, err)
	}
	return nil
}

// ClientConfig is the TLS configuration of forwards to node: it presents
// this node's certificate and trusts node's anchor only.
func (t *TLS) ClientConfig(node dfaas.NodeID) (*tls.Config, error) {
	anchor, err := Anchor(node)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	return &tls.Config{
		MinVersion: PeerTLSVersion,
		MaxVersion: PeerTLSVersion,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := t.Identity.Certificate()
			return &c, nil
		},
		RootCAs:    roots,
		ServerName: ServerName,
	}, nil
}
