package embedded

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

func newIdentity(t *testing.T) *proxy.Identity {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	require.NoError(t, err)
	id, err := proxy.NewIdentity(k)
	require.NoError(t, err)
	return id
}

// startMembersOnly starts b's proxy, its peer port admitting members,
// in front of a platform that answers "ok" (counting its calls in calls,
// if not nil), with echo planned; it returns the proxy, the plan, and a's
// client TLS configuration for b's peer port.
func startMembersOnly(t *testing.T, b *proxy.Identity, members *atomic.Pointer[[]dfaas.NodeID], a *proxy.Identity, calls *atomic.Int64) (*Proxy, dfaas.Plan, *tls.Config) {
	t.Helper()
	p, err := New(Config{Node: b.Node(), UserAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		TLS: &proxy.TLS{Identity: b, Members: func() []dfaas.NodeID { return *members.Load() }}},
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if calls != nil {
				calls.Add(1)
			}
			_, _ = io.WriteString(w, "ok")
		}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	plan := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"echo": {Limit: 1e6, Capacity: 1e6}}}
	require.NoError(t, p.Apply(context.Background(), plan))
	tc, err := (&proxy.TLS{Identity: a, Members: func() []dfaas.NodeID { return nil }}).ClientConfig(b.Node())
	require.NoError(t, err)
	return p, plan, tc
}

// TestRemovedMembersIdleConnectionsClose: a second after the Apply that
// follows a member's removal, the connections it keeps idle at the peer
// port close, without waiting for its next request; a member that comes
// back is let in again.
func TestRemovedMembersIdleConnectionsClose(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	var members atomic.Pointer[[]dfaas.NodeID]
	members.Store(&[]dfaas.NodeID{a.Node()})
	p, plan, tc := startMembersOnly(t, b, &members, a, nil)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	defer client.CloseIdleConnections()
	call := func() (int, error) {
		req, err := http.NewRequest("POST", "https://"+p.PeerAddr()+"/function/echo", strings.NewReader("x"))
		require.NoError(t, err)
		req.Header.Set(proxy.HeaderHop, "1")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	held := func() int {
		p.peerConns.mu.Lock()
		defer p.peerConns.mu.Unlock()
		n := 0
		for _, e := range p.peerConns.conns {
			if e.node == a.Node() {
				n++
			}
		}
		return n
	}
	code, err := call()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1, held(), "kept alive")

	members.Store(&[]dfaas.NodeID{})
	require.NoError(t, p.Apply(context.Background(), plan))
	applied := time.Now()
	require.Eventually(t, func() bool { return held() == 0 }, 3*time.Second, 5*time.Millisecond, "closed after the Apply")
	assert.GreaterOrEqual(t, time.Since(applied), cutGrace-50*time.Millisecond, "closed before its grace")

	members.Store(&[]dfaas.NodeID{a.Node()})
	require.NoError(t, p.Apply(context.Background(), plan))
	client.CloseIdleConnections() // the one closed at the Apply may not have been seen closing yet
	code, err = call()
	require.NoError(t, err, "back: let in again")
	assert.Equal(t, http.StatusOK, code)
}

// TestCutOffIsRefusedBeforeClosed: for a second after a node is cut off,
// the connection it keeps idle stays open, and a request it sends there is
// answered (refused: proxy.RefusedMember, so that the sender may try
// another peer) rather than lost to the connection closing as it arrives.
func TestCutOffIsRefusedBeforeClosed(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	var members atomic.Pointer[[]dfaas.NodeID]
	members.Store(&[]dfaas.NodeID{a.Node()})
	var calls atomic.Int64
	p, plan, tc := startMembersOnly(t, b, &members, a, &calls)
	var dials atomic.Int64
	d := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}}}
	defer client.CloseIdleConnections()
	call := func() (*http.Response, error) {
		req, err := http.NewRequest("POST", "https://"+p.PeerAddr()+"/function/echo", strings.NewReader("x"))
		require.NoError(t, err)
		req.Header.Set(proxy.HeaderHop, "1")
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	resp, err := call()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	members.Store(&[]dfaas.NodeID{})
	require.NoError(t, p.Apply(context.Background(), plan))
	time.Sleep(cutGrace / 4) // a close at the Apply would be seen by now
	resp, err = call()
	require.NoError(t, err, "the request on the idle connection got no answer")
	assert.Equal(t, proxy.StatusRefused, resp.StatusCode)
	assert.Equal(t, proxy.RefusedMember, resp.Header.Get(proxy.HeaderRefused))
	assert.Equal(t, int64(1), dials.Load(), "sent on the connection kept alive")
	assert.Equal(t, int64(1), calls.Load(), "nothing ran after the cut")
}

// TestSilentClientHoldsNoApply: a client that opens the peer port and
// sends nothing (its handshake pending) holds neither Apply nor the
// port's other clients.
func TestSilentClientHoldsNoApply(t *testing.T) {
	a, b := newIdentity(t), newIdentity(t)
	p, err := New(Config{Node: b.Node(), UserAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		TLS: &proxy.TLS{Identity: b, Members: func() []dfaas.NodeID { return []dfaas.NodeID{a.Node()} }}},
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	require.NoError(t, err)
	defer p.Close()
	silent, err := net.Dial("tcp", p.PeerAddr())
	require.NoError(t, err)
	defer silent.Close()
	require.Eventually(t, func() bool {
		p.peerConns.mu.Lock()
		defer p.peerConns.mu.Unlock()
		return len(p.peerConns.conns) == 1
	}, time.Second, 5*time.Millisecond)
	plan := dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"echo": {Limit: 1e6, Capacity: 1e6}}}
	start := time.Now()
	require.NoError(t, p.Apply(context.Background(), plan))
	assert.Less(t, time.Since(start), time.Second, "Apply waited for a handshake")
}
