package main

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/overlay"
)

// TestMembersCommand: the administrator's command makes the first
// version, lists it, removes a member (cut off at every member) and adds a
// new node that then joins, with no file edited on any node.
func TestMembersCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key, secretFile := filepath.Join(dir, "admin.key"), filepath.Join(dir, "fed.key")
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"keygen", "-key", key}, &out))
	admin, err := peer.Decode(strings.TrimSpace(out.String()))
	require.NoError(t, err, out.String())
	secret, err := overlay.GenerateSecret(secretFile)
	require.NoError(t, err)

	start := func(bootstrap []string) *overlay.Libp2p {
		o, err := overlay.NewLibp2p(ctx, overlay.Libp2pConfig{Secret: secret, Namespace: "dfaas-test", Admins: []peer.ID{admin},
			Bootstrap: bootstrap, DiscoveryInterval: 200 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = o.Close() })
		return o
	}
	a := start(nil)
	b, c := start(a.Addrs()), start(a.Addrs())
	id := func(o *overlay.Libp2p) string { return string(o.Self()) }
	members := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append(append([]string{}, args...), "-key", key, "-secret", secretFile, "-namespace", "dfaas-test",
			"-join", a.Addrs()[0]), &out)
		return out.String(), err
	}
	version := func(o *overlay.Libp2p) uint64 {
		if m, _ := o.Membership(); m != nil {
			return m.Version
		}
		return 0
	}

	got, err := members("list")
	require.NoError(t, err)
	assert.Contains(t, got, "no signed membership in force")
	_, err = members("add", "-id", id(a))
	assert.ErrorContains(t, err, "add -init", "the first version is made on purpose")
	got, err = members("add", "-init", "-id", id(a)+"=edge-a,"+id(b)+","+id(c))
	require.NoError(t, err)
	assert.Contains(t, got, "version 1 in force")
	require.Eventually(t, func() bool { return version(a) == 1 && version(b) == 1 && version(c) == 1 },
		5*time.Second, 10*time.Millisecond, "everywhere")
	got, err = members("list")
	require.NoError(t, err)
	assert.Contains(t, got, "member  "+id(a)+" edge-a")

	got, err = members("remove", "-id", id(c))
	require.NoError(t, err)
	assert.Contains(t, got, "revoked "+id(c))
	cid, err := peer.Decode(id(c))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		m, _ := b.Membership()
		return m != nil && m.Version == 2 && !m.Admits(cid) && !slices.Contains(b.Members(), c.Self())
	}, 2*time.Second, 10*time.Millisecond, "removed at b within 2 s")
	_, err = members("remove", "-id", id(c))
	assert.ErrorContains(t, err, "not a member")

	d := start(a.Addrs())
	got, err = members("add", "-id", id(d)+"=edge-d")
	require.NoError(t, err)
	assert.Contains(t, got, "version 3")
	require.Eventually(t, func() bool { return version(d) == 3 && version(b) == 3 }, 10*time.Second, 20*time.Millisecond,
		"d joins with nothing edited on a, b or c")
	require.Eventually(t, func() bool { return slices.Contains(b.Members(), d.Self()) }, 10*time.Second, 20*time.Millisecond,
		"and is a member at b")
}
