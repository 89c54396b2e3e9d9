package overlay

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSecretRotation: the phases of a rotation of the federation secret
// (secrets.go) never split the federation: a node that dials under the
// old secret and accepts the new one, one that dials under the new one and
// accepts the old, and nodes under either alone, connect wherever one
// dials under a secret the other accepts, and nowhere else.
func TestSecretRotation(t *testing.T) {
	old := testSecret
	fresh := make(pnet.PSK, SecretBytes)
	_, err := rand.Read(fresh)
	require.NoError(t, err)
	configs := map[string][2][]pnet.PSK{ // dial, also accept
		"old":     {{old}, nil},
		"phase 1": {{old}, {fresh}},
		"phase 2": {{fresh}, {old}},
		"new":     {{fresh}, nil},
	}
	start := func(name string) *Libp2p {
		c := configs[name]
		o, err := NewLibp2p(context.Background(), Libp2pConfig{Secret: c[0][0], AlsoAccept: c[1], Namespace: "dfaas-test",
			DiscoveryInterval: time.Hour})
		require.NoError(t, err)
		t.Cleanup(func() { _ = o.Close() })
		return o
	}
	connects := func(from, to string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		a, b := start(from), start(to) // fresh each time: no connection left from another case
		if err := a.host.Connect(ctx, peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}); err != nil {
			return false
		}
		// Up at both ends, and a stream goes through.
		require.Eventually(t, func() bool { return b.host.Network().Connectedness(a.host.ID()) == network.Connected },
			2*time.Second, 10*time.Millisecond, "%s -> %s: connected at one end only", from, to)
		return true
	}
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"old", "old", true}, {"new", "new", true},
		{"old", "phase 1", true}, {"phase 1", "old", true},
		{"phase 1", "phase 2", true}, {"phase 2", "phase 1", true},
		{"phase 2", "new", true}, {"new", "phase 2", true},
		{"phase 1", "phase 1", true}, {"phase 2", "phase 2", true},
		{"old", "phase 2", true},  // phase 2 accepts the old secret
		{"phase 2", "old", false}, // it dials under the new one, which old does not know
		{"new", "phase 1", true},  // phase 1 accepts the new one
		{"phase 1", "new", false},
		{"old", "new", false}, {"new", "old", false},
	} {
		assert.Equal(t, c.want, connects(c.from, c.to), "%s -> %s", c.from, c.to)
	}
}
