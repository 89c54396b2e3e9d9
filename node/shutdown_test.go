package node_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/overlay"
)

// TestShutdownLosesNothing: a helper that shuts down while another node
// forwards to it drains first - zero capacity advertised, readiness off,
// late forwards refused and retried elsewhere - so every request of a
// steady load is still served, by the other helper.
func TestShutdownLosesNothing(t *testing.T) {
	for _, dp := range []string{"embedded", "haproxy"} {
		t.Run(dp, func(t *testing.T) { testShutdown(t, dp) })
	}
}

func testShutdown(t *testing.T, dp string) {
	ctx := t.Context()
	network := overlay.NewNetwork()
	a := startNode(t, network, dp, "a", 0, nil)
	b := startNode(t, network, dp, "b", 30, nil)
	startNode(t, network, dp, "c", 30, nil)
	require.Eventually(t, func() bool { return len(a.Agent.Status().LastPlan.Functions["hello"].Peers) == 2 },
		10*time.Second, 20*time.Millisecond)

	var mu sync.Mutex
	codes := map[int]int{}
	servedBy := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // 20 req/s at a, until stopped
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("x"))
			mu.Lock()
			if err != nil {
				codes[-1]++
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusOK {
					servedBy[strings.TrimSuffix(strings.Fields(string(body))[3], ":")]++ // "hello on node X: ..."
				}
			}
			mu.Unlock()
		}
	}()
	time.Sleep(time.Second)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Shutdown(sctx) }()
	require.Eventually(t, func() bool { return b.Agent.Status().Draining }, 5*time.Second, 5*time.Millisecond)
	ready, reason := b.Ready()
	assert.False(t, ready)
	assert.Contains(t, reason, "draining")
	require.NoError(t, <-done, "the peers stopped sending before the deadline")
	time.Sleep(time.Second) // load goes on without b
	close(stop)
	wg.Wait()
	http.DefaultClient.CloseIdleConnections()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("answers %v, served by %v", codes, servedBy)
	assert.Equal(t, []int{http.StatusOK}, keys(codes), "every request served")
	assert.Positive(t, servedBy["b"], "b served before it left")
	assert.Positive(t, servedBy["c"])
}

func keys(m map[int]int) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}
