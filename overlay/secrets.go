package overlay

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/davidlazar/go-crypto/salsa20"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/tcpreuse"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Rotating the federation secret. A libp2p private network has one key:
// every connection is XSalsa20-encrypted with it beneath the handshake
// (the format IPFS private networks use: each side sends a 24-byte nonce,
// then its stream). To change the secret without splitting the federation
// while agents restart one by one, an agent can accept connections under
// more than one secret (Libp2pConfig.AlsoAccept) and dials with Secret:
//
//  1. every agent restarts with the new secret accepted too (-secret old,
//     -secret-also new): all still dial with the old one;
//  2. every agent restarts dialling with the new one and still accepting
//     the old (-secret new, -secret-also old);
//  3. every agent restarts with the new one alone.
//
// At every moment any two agents share a secret one dials and the other
// accepts. An inbound connection tells its secret by its first bytes: the
// dialer's first message under the secret is always multistream-select's
// header, so the listener decrypts the first 20 bytes with each secret it
// accepts and keeps the one under which they read as that header.

// msHeader is multistream-select's header as the dialer sends it first: a
// varint length and "/multistream/1.0.0\n".
var msHeader = []byte("\x13/multistream/1.0.0\n")

// errNoSecret: an inbound connection under none of the secrets accepted.
var errNoSecret = errors.New("overlay: a connection under none of the federation's secrets")

// newRotatingTCP is the TCP transport of a node that accepts connections
// under several secrets (dial is dialled with, accept are the others): its
// connections are protected here, not by libp2p's private network.
func newRotatingTCP(dial pnet.PSK, accept []pnet.PSK) func(transport.Upgrader, network.ResourceManager, *tcpreuse.ConnMgr) (*tcp.TcpTransport, error) {
	keys := []*[32]byte{key32(dial)}
	for _, k := range accept {
		keys = append(keys, key32(k))
	}
	return func(u transport.Upgrader, rm network.ResourceManager, shared *tcpreuse.ConnMgr) (*tcp.TcpTransport, error) {
		return tcp.NewTCPTransport(&secretsUpgrader{Upgrader: u, keys: keys}, rm, shared, tcp.DisableReuseport())
	}
}

func key32(psk pnet.PSK) *[32]byte {
	var k [32]byte
	copy(k[:], psk)
	return &k
}

// secretsUpgrader wraps the host's upgrader (which has no secret of its
// own): outbound connections go under the first key, inbound ones under
// the key their first bytes name.
type secretsUpgrader struct {
	transport.Upgrader
	keys []*[32]byte
}

func (u *secretsUpgrader) UpgradeListener(t transport.Transport, l manet.Listener) transport.Listener {
	return u.Upgrader.UpgradeGatedMaListener(t, &secretListener{GatedMaListener: u.Upgrader.GateMaListener(l), keys: u.keys})
}

func (u *secretsUpgrader) UpgradeGatedMaListener(t transport.Transport, l transport.GatedMaListener) transport.Listener {
	return u.Upgrader.UpgradeGatedMaListener(t, &secretListener{GatedMaListener: l, keys: u.keys})
}

func (u *secretsUpgrader) Upgrade(ctx context.Context, t transport.Transport, c manet.Conn, dir network.Direction, p peer.ID,
	scope network.ConnManagementScope) (transport.CapableConn, error) {
	if _, ok := c.(*secretConn); !ok { // an outbound connection (inbound ones come wrapped from the listener)
		c = &secretConn{Conn: c, keys: u.keys[:1]}
	}
	return u.Upgrader.Upgrade(ctx, t, c, dir, p, scope)
}

// secretListener hands out inbound connections that find their key.
type secretListener struct {
	transport.GatedMaListener
	keys []*[32]byte
}

func (l *secretListener) Accept() (manet.Conn, network.ConnManagementScope, error) {
	c, scope, err := l.GatedMaListener.Accept()
	if err != nil {
		return nil, nil, err
	}
	return &secretConn{Conn: c, keys: l.keys}, scope, nil
}

// secretConn is a connection under a federation secret: with one key (an
// outbound connection) it is libp2p's private network connection; with
// several it reads the dialer's nonce and first 20 bytes before it knows
// which, and writes nothing before it knows.
type secretConn struct {
	manet.Conn
	once    sync.Once
	err     error
	keys    []*[32]byte
	key     *[32]byte
	read    cipher.Stream
	write   cipher.Stream
	pending []byte // decrypted bytes read while finding the key
}

func (c *secretConn) Read(out []byte) (int, error) {
	if err := c.started(); err != nil {
		return 0, err
	}
	if len(c.pending) > 0 {
		n := copy(out, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	n, err := c.Conn.Read(out)
	if n > 0 {
		c.read.XORKeyStream(out[:n], out[:n])
	}
	return n, err
}

// started runs start once, for Read and Write alike.
func (c *secretConn) started() error {
	c.once.Do(func() { c.err = c.start() })
	return c.err
}

// start reads the dialer's nonce and, with several keys, finds the one
// under which its first bytes are multistream-select's header.
func (c *secretConn) start() error {
	nonce := make([]byte, 24)
	if _, err := io.ReadFull(c.Conn, nonce); err != nil {
		return fmt.Errorf("overlay: could not read full nonce: %w", err)
	}
	if len(c.keys) == 1 {
		c.key = c.keys[0]
		c.read = salsa20.New(c.key, nonce)
		return nil
	}
	first := make([]byte, len(msHeader))
	if _, err := io.ReadFull(c.Conn, first); err != nil {
		return fmt.Errorf("overlay: could not read the first bytes: %w", err)
	}
	plain := make([]byte, len(first))
	for _, k := range c.keys {
		s := salsa20.New(k, nonce)
		s.XORKeyStream(plain, first)
		if bytes.Equal(plain, msHeader) {
			c.key, c.read, c.pending = k, s, plain
			return nil
		}
	}
	_ = c.Conn.Close()
	return errNoSecret
}

func (c *secretConn) Write(in []byte) (int, error) {
	if c.write == nil {
		key := c.keys[0]
		if len(c.keys) > 1 {
			// An inbound connection writes only once its dialer's first
			// bytes named the key (multistream-select reads first on this
			// side).
			if err := c.started(); err != nil {
				return 0, err
			}
			key = c.key
		}
		nonce := make([]byte, 24)
		if _, err := rand.Read(nonce); err != nil {
			return 0, err
		}
		if _, err := c.Conn.Write(nonce); err != nil {
			return 0, err
		}
		c.write = salsa20.New(key, nonce)
	}
	out := make([]byte, len(in))
	c.write.XORKeyStream(out, in)
	return c.Conn.Write(out)
}
