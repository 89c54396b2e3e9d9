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
					Logger: quiet, PlainPeers: true, DeclaredCapacity: true, AsyncQueue: filepath.Join(t.TempDir(), "async.db")})
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
