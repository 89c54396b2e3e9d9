package haproxy

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/proxytest"
)

// TestLargeMembership: a members list too long for one runtime API command
// (60 anchors, about 35 KiB of PEM against a 16 KiB buffer) still reaches
// the peer listener, through a reload, and Apply does not fail: the member
// that joined last is admitted, and one that left is refused.
func TestLargeMembership(t *testing.T) {
	self := benchTLS(t)
	var mu sync.Mutex
	var members []dfaas.NodeID
	self.Members = func() []dfaas.NodeID {
		mu.Lock()
		defer mu.Unlock()
		return append([]dfaas.NodeID(nil), members...)
	}
	setMembers := func(ids ...*proxy.TLS) {
		var out []dfaas.NodeID
		for _, id := range ids {
			out = append(out, id.Identity.Node())
		}
		slices.Sort(out)
		mu.Lock()
		members = out
		mu.Unlock()
	}
	pf := newPlatform(t, "p")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Start(ctx, Config{Node: self.Identity.Node(), UserAddr: freeAddr(t), PeerAddr: freeAddr(t), Platform: pf.addr,
		Functions: []string{"figlet"}, TLS: self, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	plan := map[string]dfaas.FunctionPlan{"figlet": {Limit: 1e6, Capacity: 1e6}}
	apply(t, d, plan)

	crowd := make([]*proxy.TLS, 60)
	for i := range crowd {
		crowd[i] = benchTLS(t)
	}
	setMembers(crowd...)
	apply(t, d, plan)
	raw, err := os.ReadFile(d.layout.TLS.MembersFile)
	require.NoError(t, err)
	assert.Equal(t, 61, strings.Count(string(raw), "BEGIN CERTIFICATE"), "60 members and this node")

	call := func(from *proxy.TLS) (int, error) {
		tc, err := from.ClientConfig(self.Identity.Node())
		require.NoError(t, err)
		return proxytest.PeerCall(d.PeerAddr(), "/function/figlet", tc)
	}
	// The reload happens in the background of Apply: wait for the new worker.
	require.Eventually(t, func() bool {
		code, err := call(crowd[59])
		return err == nil && code == http.StatusOK
	}, 10*time.Second, 100*time.Millisecond, "the last member is not admitted")

	setMembers(crowd[1:]...) // crowd[0] leaves
	apply(t, d, plan)
	require.Eventually(t, func() bool {
		code, err := call(crowd[0])
		return err != nil || code != http.StatusOK
	}, 10*time.Second, 100*time.Millisecond, "a member that left is still admitted")
	code, err := call(crowd[1])
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
}
