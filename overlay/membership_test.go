package overlay

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newKey(t *testing.T) (crypto.PrivKey, peer.ID) {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := peer.IDFromPrivateKey(k)
	require.NoError(t, err)
	return k, id
}

// membership is a valid document of version v for these members.
func membership(v uint64, members ...peer.ID) *Membership {
	m := &Membership{Format: MembershipVersion, Federation: "dfaas-test", Version: v, Issued: time.Now(),
		ValidUntil: time.Now().Add(time.Hour)}
	for _, id := range members {
		m.Members = append(m.Members, Member{ID: id})
	}
	m.Normalize()
	return m
}

func TestMembershipDocument(t *testing.T) {
	admin, adminID := newKey(t)
	other, _ := newKey(t)
	_, a := newKey(t)
	_, b := newKey(t)
	m := membership(3, b, a, b)
	m.Members[0].Name = "edge-1"
	require.Len(t, m.Members, 2, "Normalize drops repeats")
	require.NoError(t, m.Validate("dfaas-test"))
	s, err := SignMembership(m, admin)
	require.NoError(t, err)
	got, err := s.Open("dfaas-test", []peer.ID{adminID})
	require.NoError(t, err)
	assert.Equal(t, m.Version, got.Version)
	assert.True(t, got.Admits(a) && got.Admits(b))
	assert.Equal(t, "edge-1", got.Name(m.Members[0].ID))

	_, err = s.Open("dfaas-test", nil)
	assert.ErrorIs(t, err, ErrNotSigned, "no trusted key")
	_, err = s.Open("other-federation", []peer.ID{adminID})
	assert.ErrorIs(t, err, ErrBadMembership, "another federation's")
	forged, err := SignMembership(m, other)
	require.NoError(t, err)
	forged.Signer = adminID
	_, err = forged.Open("dfaas-test", []peer.ID{adminID})
	assert.ErrorIs(t, err, ErrNotSigned, "signed by another key")
	tampered := *s
	tampered.Document = json.RawMessage(string(s.Document[:len(s.Document)-1]) + `,"extra":1}`)
	_, err = tampered.Open("dfaas-test", []peer.ID{adminID})
	assert.ErrorIs(t, err, ErrNotSigned, "changed after signing")

	for name, mutate := range map[string]func(*Membership){
		"format":        func(m *Membership) { m.Format = 2 },
		"version 0":     func(m *Membership) { m.Version = 0 },
		"no valid time": func(m *Membership) { m.ValidUntil = time.Time{} },
		"no member":     func(m *Membership) { m.Members = nil },
		"unsorted":      func(m *Membership) { m.Members[0], m.Members[1] = m.Members[1], m.Members[0] },
		"revoked":       func(m *Membership) { m.Revoked = []peer.ID{m.Members[0].ID} },
		"bad id":        func(m *Membership) { m.Members[0].ID = "nonsense" },
		"name":          func(m *Membership) { m.Members[0].Name = "two words" },
	} {
		bad := membership(1, a, b)
		mutate(bad)
		assert.ErrorIs(t, bad.Validate("dfaas-test"), ErrBadMembership, name)
		sb, err := SignMembership(bad, admin)
		require.NoError(t, err)
		_, err = sb.Open("dfaas-test", []peer.ID{adminID})
		assert.ErrorIs(t, err, ErrBadMembership, name+": refused when opened too")
	}

	raw, err := s.Marshal()
	require.NoError(t, err)
	back, err := UnmarshalSignedMembership(raw)
	require.NoError(t, err)
	assert.Equal(t, s, back)
	_, err = UnmarshalSignedMembership(make([]byte, MaxMembershipBytes+1))
	assert.ErrorIs(t, err, ErrBadMembership, "too large")

	path := filepath.Join(t.TempDir(), "membership")
	none, err := LoadMembership(path)
	require.NoError(t, err)
	assert.Nil(t, none)
	require.NoError(t, StoreMembership(path, s))
	kept, err := LoadMembership(path)
	require.NoError(t, err)
	assert.Equal(t, s, kept)
	require.NoError(t, os.Chmod(path, 0o666))
	_, err = LoadMembership(path)
	assert.Error(t, err, "a file others may write is refused")
}

// federationOf starts n members trusting admin, each bootstrapping from
// the first, with its membership kept in dir.
func federationOf(t *testing.T, n int, admin peer.ID, dir string) []*Libp2p {
	t.Helper()
	var out []*Libp2p
	for i := range n {
		cfg := Libp2pConfig{Secret: testSecret, Admins: []peer.ID{admin},
			MembershipFile: filepath.Join(dir, string(rune('a'+i))+".membership")}
		if i > 0 {
			cfg.Bootstrap = out[0].Addrs()
		}
		out = append(out, startWith(t, cfg))
	}
	return out
}

func versionAt(o *Libp2p) uint64 {
	if m, _ := o.Membership(); m != nil {
		return m.Version
	}
	return 0
}

func idOf(o *Libp2p) peer.ID { return o.host.ID() }

// TestMembershipReachesEveryMember: a document published at one member is
// in force at every member within two seconds; a newer one that revokes a
// member cuts it off everywhere (connections closed, adverts dropped, a
// new connection refused), and it is kept on disk.
func TestMembershipReachesEveryMember(t *testing.T) {
	admin, adminID := newKey(t)
	dir := t.TempDir()
	nodes := federationOf(t, 4, adminID, dir)
	a, d := nodes[0], nodes[3]
	require.Eventually(t, func() bool {
		for _, o := range nodes {
			if len(o.host.Network().Peers()) < 3 {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "the four connect")
	for _, o := range nodes {
		require.NoError(t, o.Publish(context.Background(), advertOf(o, 1, 0)))
	}
	ids := []peer.ID{idOf(nodes[0]), idOf(nodes[1]), idOf(nodes[2]), idOf(nodes[3])}
	require.Eventually(t, func() bool { return a.table.Live(d.Self()) }, 10*time.Second, 20*time.Millisecond)

	v1, err := SignMembership(membership(1, ids...), admin)
	require.NoError(t, err)
	require.NoError(t, nodes[1].PublishMembership(context.Background(), v1))
	start := time.Now()
	require.Eventually(t, func() bool {
		for _, o := range nodes {
			if versionAt(o) != 1 {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "version 1 everywhere")
	t.Logf("version 1 everywhere after %v", time.Since(start))
	assert.ErrorIs(t, nodes[2].PublishMembership(context.Background(), v1), ErrStaleMembership)

	m2 := membership(2, ids[:3]...)
	m2.Revoked = []peer.ID{ids[3]}
	v2, err := SignMembership(m2, admin)
	require.NoError(t, err)
	require.NoError(t, nodes[2].PublishMembership(context.Background(), v2))
	start = time.Now()
	require.Eventually(t, func() bool {
		for _, o := range nodes[:3] {
			if versionAt(o) != 2 || o.host.Network().Connectedness(ids[3]) == network.Connected {
				return false
			}
		}
		return true
	}, 2*time.Second, 10*time.Millisecond, "d revoked and cut off everywhere within 2 s")
	t.Logf("d cut off everywhere after %v", time.Since(start))
	assert.False(t, a.table.Live(d.Self()), "its adverts dropped")
	assert.NotContains(t, a.Members(), d.Self())
	denied := a.gater.denied.Load()
	_, _ = d.host.Network().DialPeer(context.Background(), ids[0]) // its side may complete before a closes it
	require.Eventually(t, func() bool { return a.gater.denied.Load() > denied }, 2*time.Second, 10*time.Millisecond,
		"a connection from it is refused")
	assert.Never(t, func() bool { return a.host.Network().Connectedness(ids[3]) == network.Connected },
		time.Second, 20*time.Millisecond)

	kept, err := LoadMembership(filepath.Join(dir, "a.membership"))
	require.NoError(t, err)
	assert.Equal(t, v2, kept, "kept on disk")
}

// TestMembershipCatchUp: a member that missed a document (new, or away)
// takes it from the first peer it connects to; one restarted takes its
// kept document before any peer speaks; a document not signed by a
// trusted key, or older, is not taken.
func TestMembershipCatchUp(t *testing.T) {
	admin, adminID := newKey(t)
	dir := t.TempDir()
	nodes := federationOf(t, 2, adminID, dir)
	a, b := nodes[0], nodes[1]
	late, lateID := newKey(t)
	ids := []peer.ID{idOf(a), idOf(b), lateID}
	v1, err := SignMembership(membership(1, ids...), admin)
	require.NoError(t, err)
	require.NoError(t, a.PublishMembership(context.Background(), v1))
	require.Eventually(t, func() bool { return versionAt(b) == 1 }, 5*time.Second, 10*time.Millisecond)

	c := startWith(t, Libp2pConfig{Secret: testSecret, Admins: []peer.ID{adminID}, PrivateKey: late, Bootstrap: a.Addrs()})
	require.Eventually(t, func() bool { return versionAt(c) == 1 }, 5*time.Second, 10*time.Millisecond, "fetched on connection")

	// Forged and stale documents change nothing.
	rogue, _ := newKey(t)
	forged, err := SignMembership(membership(9, ids...), rogue)
	require.NoError(t, err)
	assert.ErrorIs(t, c.PublishMembership(context.Background(), forged), ErrNotSigned)
	raw, err := forged.Marshal()
	require.NoError(t, err)
	// Sent on the topic as a rogue member would: past its own validator.
	require.NoError(t, c.fed.ps.UnregisterTopicValidator(membershipTopic("dfaas-test")))
	require.NoError(t, c.fed.topic.Publish(context.Background(), raw))
	require.Eventually(t, func() bool { return a.fed.rejected.Load() > 0 || b.fed.rejected.Load() > 0 },
		5*time.Second, 10*time.Millisecond, "rejected by the validator")
	assert.Equal(t, uint64(1), versionAt(a))
	assert.Equal(t, uint64(1), versionAt(b))

	// Restarted, b has version 1 before it connects to anyone.
	require.NoError(t, b.Close())
	again, err := NewLibp2p(context.Background(), Libp2pConfig{Secret: testSecret, Namespace: "dfaas-test", Admins: []peer.ID{adminID},
		MembershipFile: filepath.Join(dir, "b.membership")})
	require.NoError(t, err)
	defer again.Close()
	assert.Equal(t, uint64(1), versionAt(again))
	assert.False(t, again.gater.allowed(idOf(rogueHost(t))), "and admits only its members")
}

// rogueHost is a member of no federation.
func rogueHost(t *testing.T) *Libp2p {
	t.Helper()
	return startWith(t, Libp2pConfig{Secret: testSecret})
}

// TestMembershipAdoptionRules: two versions adopted at once end with the
// newer applied (the gater follows the document in force); a node that
// has a document takes a newer one however late it comes (past its
// valid_until); a node with none takes only a document that names it; a
// document in any encoding but its canonical one is refused; members are
// ids of Ed25519 keys.
func TestMembershipAdoptionRules(t *testing.T) {
	admin, adminID := newKey(t)
	_, a := newKey(t)
	_, x := newKey(t)
	m2 := membership(2, a, x)
	m3 := membership(3, a)
	m3.Revoked = []peer.ID{x}
	s2, err := SignMembership(m2, admin)
	require.NoError(t, err)
	s3, err := SignMembership(m3, admin)
	require.NoError(t, err)
	for i := range 20000 {
		o := &Libp2p{cfg: Libp2pConfig{Namespace: "dfaas-test", Now: time.Now}, log: quietLog(), trigger: make(chan struct{}, 1)}
		o.gater = newGater(a, nil, nil)
		f := &fedcast{o: o}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); f.adopt(s2, m2, "gossip") }()
		go func() { defer wg.Done(); f.adopt(s3, m3, "exchange") }()
		wg.Wait()
		require.Equal(t, uint64(3), f.doc.Version)
		require.False(t, o.gater.allowed(x), "iteration %d: x revoked by the version in force, admitted by the gater", i)
	}

	n := startWith(t, Libp2pConfig{Secret: testSecret, Admins: []peer.ID{adminID}})
	self := idOf(n)
	notNamed, err := SignMembership(membership(5, a, x), admin)
	require.NoError(t, err)
	raw, err := notNamed.Marshal()
	require.NoError(t, err)
	n.fed.take(context.Background(), a, raw)
	assert.Zero(t, versionAt(n), "a first document that does not name this node is not taken")
	named, err := SignMembership(membership(4, a, self), admin)
	require.NoError(t, err)
	raw, err = named.Marshal()
	require.NoError(t, err)
	spaced := append([]byte(" "), raw...)
	n.fed.take(context.Background(), a, spaced)
	assert.Zero(t, versionAt(n), "another encoding is refused")
	n.fed.take(context.Background(), a, raw)
	require.Equal(t, uint64(4), versionAt(n))
	late := membership(6, a, self)
	late.ValidUntil = time.Now().Add(-time.Minute)
	lateSigned, err := SignMembership(late, admin)
	require.NoError(t, err)
	raw, err = lateSigned.Marshal()
	require.NoError(t, err)
	n.fed.take(context.Background(), a, raw)
	assert.Equal(t, uint64(6), versionAt(n), "a newer version past its valid_until is still newer than the one in force")

	k, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	require.NoError(t, err)
	other, err := peer.IDFromPrivateKey(k)
	require.NoError(t, err)
	assert.ErrorIs(t, membership(1, a, other).Validate("dfaas-test"), ErrBadMembership, "a secp256k1 id")
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
