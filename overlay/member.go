package overlay

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dfaas-go/dfaas"
)

// SecretBytes is the length of a federation secret.
const SecretBytes = 32

// A federation secret is a libp2p private-network key: every connection
// between members is encrypted with it beneath the libp2p handshake, so a
// host without it cannot complete a connection, let alone publish an advert
// or write to the DHT. The file format is the one IPFS private networks use
// (swarm.key: "/key/swarm/psk/1.0.0/", "/base16/", 64 hex digits).

// GenerateSecret writes a new random federation secret to path, readable by
// its owner only (0600). It refuses to overwrite an existing file.
func GenerateSecret(path string) (pnet.PSK, error) {
	psk := make([]byte, SecretBytes)
	if _, err := rand.Read(psk); err != nil {
		return nil, fmt.Errorf("overlay: secret: %w", err)
	}
	body := "/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(psk) + "\n"
	if err := writePrivate(path, []byte(body)); err != nil {
		return nil, fmt.Errorf("overlay: secret: %w", err)
	}
	return psk, nil
}

// LoadSecret reads a federation secret written by GenerateSecret (or any
// swarm.key of 32 bytes). The file must not be readable by group or others.
func LoadSecret(path string) (pnet.PSK, error) {
	raw, err := readPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("overlay: secret: %w", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, fmt.Errorf("%w: overlay: secret %s is empty: copy the federation's secret there", dfaas.ErrInvalidConfig, path)
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: overlay: secret %s: %w", dfaas.ErrInvalidConfig, path, err)
	}
	return psk, nil
}

// LoadOrCreateKey returns the node identity kept at path: an Ed25519 key in
// a PKCS#8 PEM file readable by its owner only. If the file does not exist
// it creates one (0600) and reports created. The node's id is derived from
// this key, so keeping the file keeps the node's id across restarts.
func LoadOrCreateKey(path string) (key crypto.PrivKey, created bool, err error) {
	raw, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, sk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("overlay: key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(sk)
		if err != nil {
			return nil, false, fmt.Errorf("overlay: key: %w", err)
		}
		if err := writePrivate(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			return nil, false, fmt.Errorf("overlay: key: %w", err)
		}
		key, _, err = crypto.KeyPairFromStdKey(&sk)
		return key, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("overlay: key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, false, fmt.Errorf("%w: overlay: key %s: not a PEM \"PRIVATE KEY\"", dfaas.ErrInvalidConfig, path)
	}
	std, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("%w: overlay: key %s: %w", dfaas.ErrInvalidConfig, path, err)
	}
	sk, ok := std.(ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("%w: overlay: key %s: want an Ed25519 key, have %T", dfaas.ErrInvalidConfig, path, std)
	}
	key, _, err = crypto.KeyPairFromStdKey(&sk)
	return key, false, err
}

// LoadAllowList reads peer ids, one per line; blank lines and text after
// '#' are ignored. A file that names no peer is an error: an empty list
// admits every holder of the secret (Libp2pConfig.Allow), so a file left
// empty by mistake would open the federation without a word.
func LoadAllowList(path string) ([]peer.ID, error) { return loadIDs(path, "allow-list") }

// LoadAdmins reads the administrator ids a node trusts (see
// Libp2pConfig.Admins), in LoadAllowList's format.
func LoadAdmins(path string) ([]peer.ID, error) { return loadIDs(path, "administrators") }

func loadIDs(path, what string) ([]peer.ID, error) {
	raw, err := readChecked(path, false)
	if err != nil {
		return nil, fmt.Errorf("overlay: %s: %w", what, err)
	}
	var out []peer.ID
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		id, err := peer.Decode(line)
		if err != nil {
			return nil, fmt.Errorf("%w: overlay: %s %s line %d: %w", dfaas.ErrInvalidConfig, what, path, n, err)
		}
		out = append(out, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("overlay: %s %s: %w", what, path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: overlay: %s %s names no peer (to admit every holder of the secret, give none)", dfaas.ErrInvalidConfig, what, path)
	}
	return out, nil
}

// writePrivate creates path with mode 0600, and its directory with mode
// 0700 if missing; it fails if path exists.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return err
	}
	return f.Close()
}

// readPrivate reads a file that must be a regular file (not a symlink)
// readable by its owner only, as ssh does for private keys.
func readPrivate(path string) ([]byte, error) { return readChecked(path, true) }

// readChecked reads a file that must be a regular file, not a symlink, and
// writable by its owner only; private, readable by its owner only too. The
// checks are made on the open file, so the file cannot be swapped between
// them, and the open does not wait: a FIFO or a device at the path is
// refused, not read until someone writes to it.
func readChecked(path string, private bool) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symlink", dfaas.ErrInvalidConfig, path)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", dfaas.ErrInvalidConfig, path)
	}
	perm := st.Mode().Perm()
	switch {
	case private && perm&0o077 != 0:
		return nil, fmt.Errorf("%w: %s is accessible by group or others (mode %#o): chmod 600 it", dfaas.ErrInvalidConfig, path, perm)
	case perm&0o022 != 0:
		return nil, fmt.Errorf("%w: %s is writable by group or others (mode %#o): chmod go-w it", dfaas.ErrInvalidConfig, path, perm)
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// gater admits only the peers of the membership in force (the allow-list
// until a signed document comes; see membership.go), the administrator
// keys' hosts (which publish documents) and this node. It checks the peer
// id before dialling and again once the connection is authenticated,
// before any protocol (DHT, adverts) runs on it. With no allow-list and no
// document yet it admits every holder of the secret.
type gater struct {
	self   peer.ID
	admins map[peer.ID]bool
	allow  atomic.Pointer[map[peer.ID]bool] // nil: every holder of the secret
	denied atomic.Uint64
}

func newGater(self peer.ID, allow, admins []peer.ID) *gater {
	g := &gater{self: self, admins: make(map[peer.ID]bool, len(admins))}
	for _, id := range admins {
		g.admins[id] = true
	}
	if len(allow) > 0 {
		g.set(allow)
	}
	return g
}

// set admits these peers (and the administrators' hosts) from now on.
func (g *gater) set(members []peer.ID) {
	m := make(map[peer.ID]bool, len(members))
	for _, id := range members {
		m[id] = true
	}
	g.allow.Store(&m)
}

// member reports whether p is admitted as a member: an administrator's
// host is admitted, but is no member.
func (g *gater) member(p peer.ID) bool {
	m := g.allow.Load()
	return m == nil || (*m)[p]
}

// isMember reports whether p counts as a member: one the membership
// admits, or without one any host but an administrator's.
func (g *gater) isMember(p peer.ID) bool {
	if m := g.allow.Load(); m != nil {
		return (*m)[p]
	}
	return !g.admins[p]
}

func (g *gater) allowed(p peer.ID) bool {
	if p == g.self || g.admins[p] || g.member(p) {
		return true
	}
	g.denied.Add(1)
	return false
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.allowed(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.allowed(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptUpgraded(c network.Conn) (bool, control.DisconnectReason) {
	return g.allowed(c.RemotePeer()), 0 // again: the membership may have changed since its handshake
}
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p)
}
