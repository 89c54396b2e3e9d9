package overlay

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logBuffer is an io.Writer for a slog handler that tests read while the
// overlay writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// TestAloneIsSaid: a node whose bootstrap peer cannot be reached says at
// Warn that it serves alone, with the dial's error; a node that joined
// says nothing of the kind.
func TestAloneIsSaid(t *testing.T) {
	after, every := aloneAfter, aloneEvery
	t.Cleanup(func() { aloneAfter, aloneEvery = after, every }) // after the nodes close
	// Past the redialer's first dials (redialFirst), which clear the
	// swarm's back-off: the DHT's own first dial may leave only a
	// back-off for the bootstrap dial to meet.
	aloneAfter, aloneEvery = time.Second, time.Hour

	member := startLibp2p(t)
	var joined, lonely logBuffer
	j := startWith(t, Libp2pConfig{Bootstrap: member.Addrs()[:1], Secret: testSecret,
		Logger: slog.New(slog.NewTextHandler(&joined, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	dead := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(closedPort(t)) + "/p2p/" + string(member.Self())
	startWith(t, Libp2pConfig{Bootstrap: []string{dead}, Secret: testSecret,
		Logger: slog.New(slog.NewTextHandler(&lonely, &slog.HandlerOptions{Level: slog.LevelInfo}))})

	require.Eventually(t, func() bool { return bytes.Contains([]byte(lonely.String()), []byte("serves alone")) },
		5*time.Second, 20*time.Millisecond, "the lonely node says so")
	out := lonely.String()
	assert.Contains(t, out, "level=WARN")
	assert.Contains(t, out, "connection refused", "with the dial's error")
	assert.Equal(t, 1, bytes.Count([]byte(out), []byte("serves alone")), "once per aloneEvery")
	time.Sleep(aloneAfter + aloneAfter/2)
	assert.NotContains(t, joined.String(), "serves alone", "a node with a peer")

	// A node closing does not log its peers as leaving: it is the one
	// that leaves.
	require.Eventually(t, func() bool {
		require.NoError(t, member.Publish(t.Context(), advertOf(member, uint64(time.Now().UnixNano()), 0)))
		return len(j.Adverts(time.Now())) > 0
	}, 5*time.Second, 50*time.Millisecond, "the member's advert in the joined node's table")
	require.NoError(t, j.Close())
	assert.NotContains(t, joined.String(), "peer left")
}

// TestListenPortIsNotShared: a second host cannot take a port another
// holds (no SO_REUSEPORT): it fails to start, rather than split the
// port's connections with the first.
func TestListenPortIsNotShared(t *testing.T) {
	addr := "/ip4/127.0.0.1/tcp/" + strconv.Itoa(closedPort(t))
	startWith(t, Libp2pConfig{ListenAddrs: []string{addr}, Secret: testSecret})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := NewLibp2p(ctx, Libp2pConfig{ListenAddrs: []string{addr}, Secret: testSecret, Namespace: "dfaas-test"})
	if err == nil {
		_ = o.Close()
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "address already in use")
}
