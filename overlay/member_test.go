package overlay

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	mh "github.com/multiformats/go-multihash"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

func TestSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "federation.key")
	psk, err := GenerateSecret(path)
	require.NoError(t, err)
	require.Len(t, psk, SecretBytes)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	got, err := LoadSecret(path)
	require.NoError(t, err)
	assert.Equal(t, psk, got)

	_, err = GenerateSecret(path)
	assert.ErrorIs(t, err, os.ErrExist, "an existing secret is never overwritten")

	require.NoError(t, os.Chmod(path, 0o640))
	_, err = LoadSecret(path)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "a group-readable secret is refused")
	assert.ErrorContains(t, err, "chmod 600")

	short := filepath.Join(t.TempDir(), "short.key")
	require.NoError(t, os.WriteFile(short, []byte("/key/swarm/psk/1.0.0/\n/base16/\nabcd\n"), 0o600))
	_, err = LoadSecret(short)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	_, err = LoadSecret(filepath.Join(t.TempDir(), "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	empty := filepath.Join(t.TempDir(), "empty.key")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	_, err = LoadSecret(empty)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	assert.ErrorContains(t, err, "is empty")
}

func TestKeyFile(t *testing.T) {
	// Its directory is made too, owner only (/var/lib/dfaas on a new host).
	path := filepath.Join(t.TempDir(), "state", "node.key")
	k1, created, err := LoadOrCreateKey(path)
	require.NoError(t, err)
	assert.True(t, created)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	dir, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), dir.Mode().Perm())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(raw, []byte("-----BEGIN PRIVATE KEY-----")), "PKCS#8 PEM")

	k2, created, err := LoadOrCreateKey(path)
	require.NoError(t, err)
	assert.False(t, created)
	id1, _ := peer.IDFromPrivateKey(k1)
	id2, _ := peer.IDFromPrivateKey(k2)
	assert.Equal(t, id1, id2, "the node keeps its id across restarts")

	require.NoError(t, os.Chmod(path, 0o644))
	_, _, err = LoadOrCreateKey(path)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "a world-readable key is refused")

	junk := filepath.Join(t.TempDir(), "junk.key")
	require.NoError(t, os.WriteFile(junk, []byte("not a key"), 0o600))
	_, _, err = LoadOrCreateKey(junk)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
}

func TestAllowListFile(t *testing.T) {
	a, b := startLibp2p(t), startLibp2p(t)
	path := filepath.Join(t.TempDir(), "allow")
	require.NoError(t, os.WriteFile(path, []byte("# members\n"+string(a.Self())+"  # node a\n\n"+string(b.Self())+"\n"), 0o644))
	ids, err := LoadAllowList(path)
	require.NoError(t, err)
	assert.Equal(t, []peer.ID{a.host.ID(), b.host.ID()}, ids)

	require.NoError(t, os.WriteFile(path, []byte(string(a.Self())+"\nnot-a-peer-id\n"), 0o644))
	_, err = LoadAllowList(path)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	assert.ErrorContains(t, err, "line 2")

	// A list that names nobody would admit everybody: refused.
	for _, empty := range []string{"", "# members\n\n   \n"} {
		require.NoError(t, os.WriteFile(path, []byte(empty), 0o644))
		_, err = LoadAllowList(path)
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "%q", empty)
		assert.ErrorContains(t, err, "names no peer", "%q", empty)
	}

	// Who may join is the owner's to say: a list others can write, or a
	// symlink (to a file others control), is refused, as the key and
	// secret files are.
	require.NoError(t, os.WriteFile(path, []byte(string(a.Self())+"\n"), 0o666))
	require.NoError(t, os.Chmod(path, 0o666))
	_, err = LoadAllowList(path)
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig)
	assert.ErrorContains(t, err, "writable by group or others")
	require.NoError(t, os.Chmod(path, 0o644))
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(path, link))
	_, err = LoadAllowList(link)
	assert.ErrorContains(t, err, "symlink")
}

// TestAFIFOIsRefusedNotWaitedOn: a FIFO where a key, the secret, the
// sequence file or the allow-list should be is refused at once; reading it
// would wait until someone wrote to it, and the agent would hang at start.
func TestAFIFOIsRefusedNotWaitedOn(t *testing.T) {
	dir := t.TempDir()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, name := range []string{"key", "secret", "seq", "allow"} {
			path := filepath.Join(dir, name)
			require.NoError(t, syscall.Mkfifo(path, 0o600))
			var err error
			switch name {
			case "key":
				_, _, err = LoadOrCreateKey(path)
			case "secret":
				_, err = LoadSecret(path)
			case "seq":
				_, err = NewSeqFile(path, nil)
			case "allow":
				_, err = LoadAllowList(path)
			}
			assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, name)
			assert.ErrorContains(t, err, "not a regular file", name)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a FIFO was waited on")
	}
}

// outsiderGetsNothing has the outsider publish its advert ten times while
// it tries to join through the member, then checks that the member kept no
// connection to it, holds no advert of it and has it neither in its DHT
// routing table nor among the providers of the rendezvous key.
func outsiderGetsNothing(t *testing.T, member, outsider *Libp2p) {
	t.Helper()
	ctx := context.Background()
	for i := range 10 {
		_ = outsider.Publish(ctx, advertOf(outsider, uint64(i+1), 0))
		assert.NotEqual(t, network.Connected, member.host.Network().Connectedness(outsider.host.ID()), "tick %d", i)
		time.Sleep(200 * time.Millisecond)
	}
	for _, a := range member.Adverts(time.Now()) {
		assert.NotEqual(t, outsider.Self(), a.Node, "the member holds an advert of the outsider")
	}
	assert.Empty(t, member.dht.RoutingTable().Find(outsider.host.ID()), "the outsider is in the member's DHT")
	key, err := mh.Sum([]byte(member.cfg.Namespace), mh.SHA2_256, -1)
	require.NoError(t, err)
	provs, err := member.dht.ProviderStore().GetProviders(ctx, key)
	require.NoError(t, err)
	for _, p := range provs {
		assert.NotEqual(t, outsider.host.ID(), p.ID, "the outsider placed a provider record")
	}
	assert.NotContains(t, member.Members(), outsider.Self())
}

// TestNonMembersGetNothing: hosts without the federation secret (none, or
// another federation's) cannot join, while a host with it joins at once.
func TestNonMembersGetNothing(t *testing.T) {
	member := startLibp2p(t)
	insider := startLibp2p(t, member.Addrs()...)
	require.Eventually(t, func() bool {
		return slices.Contains(member.Members(), insider.Self())
	}, 10*time.Second, 20*time.Millisecond, "a host with the secret did not join")

	open := startWith(t, Libp2pConfig{Bootstrap: member.Addrs(), Insecure: true})
	other := startWith(t, Libp2pConfig{Bootstrap: member.Addrs(), Secret: pnet.PSK(bytes.Repeat([]byte{8}, SecretBytes))})
	for _, o := range []*Libp2p{open, other} {
		outsiderGetsNothing(t, member, o)
		assert.Zero(t, o.Peers(), "the outsider connected to someone")
	}
}

// TestAllowList: with an allow-list, a host that holds the secret but is
// not on the list gets nothing from a member that has the list, even when
// a misconfigured member without the list lets it in and follows it
// (adverts go no further than a follower).
func TestAllowList(t *testing.T) {
	keyOf := func(name string) (peer.ID, Libp2pConfig) {
		k, _, err := LoadOrCreateKey(filepath.Join(t.TempDir(), name))
		require.NoError(t, err)
		id, err := peer.IDFromPrivateKey(k)
		require.NoError(t, err)
		return id, Libp2pConfig{PrivateKey: k, Secret: testSecret}
	}
	idA, cfgA := keyOf("a")
	idB, cfgB := keyOf("b")
	cfgA.Allow = []peer.ID{idA, idB}
	a := startWith(t, cfgA)
	cfgB.Bootstrap = a.Addrs() // b has no list: it admits anyone with the secret
	b := startWith(t, cfgB)
	stranger := startLibp2p(t, a.Addrs()...)
	require.NoError(t, stranger.host.Connect(context.Background(),
		peer.AddrInfo{ID: b.host.ID(), Addrs: b.host.Addrs()}), "b (no list) lets the stranger in")

	ctx := context.Background()
	require.Eventually(t, func() bool {
		_ = b.Publish(ctx, advertOf(b, uint64(time.Now().UnixNano()), 0))
		return len(a.Adverts(time.Now())) == 1
	}, 10*time.Second, 100*time.Millisecond, "allowed peers did not exchange adverts")
	// The stranger's adverts reach b, which follows it.
	assert.Eventually(t, func() bool {
		_ = stranger.Publish(ctx, advertOf(stranger, uint64(time.Now().UnixNano()), 0))
		return slices.ContainsFunc(b.Adverts(time.Now()), func(ad dfaas.Advert) bool { return ad.Node == stranger.Self() })
	}, 5*time.Second, 50*time.Millisecond, "the stranger's adverts did not reach b (test setup)")
	outsiderGetsNothing(t, a, stranger)
	assert.Equal(t, []dfaas.NodeID{b.Self()}, a.Members())
	assert.NotZero(t, a.Stats().Denied, "refused connections are counted")
}

// TestFloodingMember: a followee that writes 1000 adverts/s on its stream
// to every honest node does not crowd out honest adverts: no honest peer's
// advert (TTL 1 s, renewed every 250 ms) is missing from any honest table
// at any 50 ms sample for 5 s; the flood beyond the advert rate is dropped
// and counted, and soon ends the flooder's stream. The process's CPU time
// is reported beside a quiet period of the same length.
func TestFloodingMember(t *testing.T) {
	start := func(bootstrap ...string) *Libp2p {
		return startWith(t, Libp2pConfig{Bootstrap: bootstrap, Secret: testSecret})
	}
	first := start()
	honest := []*Libp2p{first, start(first.Addrs()...), start(first.Addrs()...)}
	ctx := context.Background()
	seq := uint64(0)
	honestRound := func() {
		seq++
		for _, o := range honest {
			ad := advertOf(o, seq, 0)
			ad.TTL = time.Second
			require.NoError(t, o.Publish(ctx, ad))
		}
	}
	require.Eventually(t, func() bool {
		honestRound()
		for _, o := range honest {
			if len(o.Adverts(time.Now())) != 2 {
				return false
			}
		}
		return true
	}, 20*time.Second, 250*time.Millisecond, "the federation did not form")

	phase := func(flood bool) (cpu time.Duration) {
		start := cpuTime()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		if flood {
			for _, o := range honest {
				rogue(t, o, func(s network.Stream, self dfaas.NodeID) {
					wg.Add(1)
					defer wg.Done()
					tick := time.NewTicker(time.Millisecond)
					defer tick.Stop()
					for n := uint64(1); ; n++ {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						raw, err := Encode(dfaas.Advert{Node: self, Seq: n, TTL: time.Second, Addr: "127.0.0.1:1",
							Functions: map[string]dfaas.FunctionState{"figlet": {Capacity: 10, Demand: dfaas.Rate(n % 100)}}})
						if err != nil {
							return
						}
						if _, err := s.Write(frame(raw)); err != nil {
							return // the follower hung up
						}
					}
				})
			}
		}
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
			honestRound()
			for range 5 {
				time.Sleep(50 * time.Millisecond)
				for _, o := range honest {
					for _, p := range honest {
						if p != o && !slices.ContainsFunc(o.Adverts(time.Now()), func(ad dfaas.Advert) bool { return ad.Node == p.Self() }) {
							t.Errorf("flood=%v: %s lost the advert of %s", flood, o.Self(), p.Self())
						}
					}
				}
			}
		}
		close(stop)
		wg.Wait()
		return cpuTime() - start
	}
	quiet := phase(false)
	before := honest[0].Stats()
	loud := phase(true)
	after := honest[0].Stats()
	assert.NotZero(t, after.Flooded-before.Flooded, "over-rate adverts are counted")
	// Accepted: 2 honest peers' adverts every 250 ms (40) plus what the
	// flooder's rate and burst let through before its stream was closed.
	assert.LessOrEqual(t, after.Accepted-before.Accepted, uint64(40+10+2*20), "the flood got through")
	for _, o := range honest {
		assert.Len(t, o.Following(), 2, "the flooder is not followed any more")
	}
	t.Logf("process CPU over 5 s, 3 members in one process: quiet %v, flooded (1000 adverts/s to each from a rogue followee) %v; "+
		"at one honest node %d adverts accepted, %d over the rate dropped before the flooder's stream was closed",
		quiet, loud, after.Accepted-before.Accepted, after.Flooded-before.Flooded)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
