package node_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/async"
)

// TestAsyncCallsOnBothDataPlanes: a node with a queue takes OpenFaaS's
// asynchronous calls on its user listener (202 and a call id at once),
// runs them where its synchronous calls would run (here: at b, a having
// no capacity of its own) and posts each result to its callback once; a
// function no plan names is 404, as a synchronous call.
func TestAsyncCallsOnBothDataPlanes(t *testing.T) {
	for _, dp := range []string{"embedded", "haproxy"} {
		t.Run(dp, func(t *testing.T) {
			network := overlay.NewNetwork()
			build := func(name string, capacity dfaas.Rate) *node.Node {
				ov, err := network.Join(dfaas.NodeID(name))
				require.NoError(t, err)
				platform := "runtime"
				if dp == "haproxy" {
					platform = "local"
				}
				pf, err := node.OpenPlatform(t.Context(), platform, node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"hello": capacity}, Logger: quiet})
				require.NoError(t, err)
				n, err := node.Build(t.Context(), node.Config{Overlay: ov, Platform: pf, DataPlane: dp, Interval: 100 * time.Millisecond,
					Logger: quiet, PlainPeers: true, DeclaredCapacity: true, AsyncQueue: filepath.Join(t.TempDir(), "async.db"),
					AsyncCallbacks: async.AnyCallbacks}) // the test's receiver is on loopback
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, n.Close()) })
				return n
			}
			a, _ := build("a", 0), build("b", 100)

			var mu sync.Mutex
			var got []http.Header
			var bodies []string
			cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got, bodies = append(got, r.Header.Clone()), append(bodies, string(b))
				mu.Unlock()
			}))
			defer cb.Close()

			url := "http://" + a.DataPlane.UserAddr() + "/async-function/hello"
			var id string
			require.Eventually(t, func() bool { // once a's plan names hello
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("x"))
				req.Header.Set(async.HeaderCallback, cb.URL)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return false
				}
				resp.Body.Close()
				id = resp.Header.Get(proxy.HeaderCallID)
				return resp.StatusCode == http.StatusAccepted
			}, 10*time.Second, 50*time.Millisecond)
			assert.NotEmpty(t, id)
			require.Eventually(t, func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) == 1
			}, 10*time.Second, 20*time.Millisecond)
			time.Sleep(200 * time.Millisecond)
			mu.Lock()
			require.Len(t, got, 1, "called back once")
			assert.Equal(t, "200", got[0].Get(async.HeaderStatus))
			assert.Equal(t, id, got[0].Get(proxy.HeaderCallID))
			assert.Equal(t, "b", got[0].Get(proxy.HeaderNode), "run at b")
			assert.Equal(t, "hello on node b: x", bodies[0])
			mu.Unlock()

			resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/async-function/nope", "text/plain", nil)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
			assert.Eventually(t, func() bool { return a.Async.Stats().Completed == 1 }, 2*time.Second, 20*time.Millisecond)
			http.DefaultClient.CloseIdleConnections()
		})
	}
}

// TestBacklogDrainsAcrossTheFederation: a backlog of asynchronous calls at
// a node of 10 req/s drains at the federation's pace, peers of 20 and 30
// req/s taking their part: 600 calls of 50 ms in well under the 60 s node a
// alone would take, each called back once.
func TestBacklogDrainsAcrossTheFederation(t *testing.T) {
	network := overlay.NewNetwork()
	work := func(node, _ string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(50 * time.Millisecond)
			_, _ = io.WriteString(w, node)
		})
	}
	build := func(name string, capacity dfaas.Rate) *node.Node {
		ov, err := network.Join(dfaas.NodeID(name))
		require.NoError(t, err)
		pf, err := node.OpenPlatform(t.Context(), "runtime", node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"work": capacity}, Handler: work, Logger: quiet})
		require.NoError(t, err)
		n, err := node.Build(t.Context(), node.Config{Overlay: ov, Platform: pf, Interval: 200 * time.Millisecond,
			Logger: quiet, PlainPeers: true, DeclaredCapacity: true, AsyncQueue: filepath.Join(t.TempDir(), "async.db"), AsyncCallbacks: async.AnyCallbacks})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, n.Close()) })
		return n
	}
	a, _, _ := build("a", 10), build("b", 20), build("c", 30)

	var mu sync.Mutex
	byNode := map[string]int{}
	ids := map[string]int{}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		byNode[r.Header.Get(proxy.HeaderNode)]++
		ids[r.Header.Get(proxy.HeaderCallID)]++
		mu.Unlock()
	}))
	defer cb.Close()
	url := "http://" + a.DataPlane.UserAddr() + "/async-function/work"
	require.Eventually(t, func() bool {
		st := a.Agent.Status()
		return len(st.LastPlan.Functions["work"].Peers) == 2
	}, 10*time.Second, 50*time.Millisecond, "a plans with b and c")
	const calls = 600
	start := time.Now()
	for range calls {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		req.Header.Set(async.HeaderCallback, cb.URL)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusAccepted, resp.StatusCode)
	}
	require.Eventually(t, func() bool { return a.Async.Stats().Completed == calls }, 60*time.Second, 100*time.Millisecond)
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d calls drained in %v: %v; requeued %d", calls, took.Round(100*time.Millisecond), byNode, a.Async.Stats().Requeued)
	assert.Len(t, ids, calls)
	for id, n := range ids {
		if n != 1 {
			t.Errorf("call %s called back %d times", id, n)
		}
	}
	assert.Less(t, took, 30*time.Second, "the federation's pace (60 req/s: 10 s), not a's alone (60 s)")
	assert.Positive(t, byNode["b"])
	assert.Positive(t, byNode["c"])
	http.DefaultClient.CloseIdleConnections()
}
