package node_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
)

// TestViewOf: a node's view lists itself and its peers by id, with their
// functions' planning state and traffic, and the RTTs it measured.
func TestViewOf(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	self := dfaas.Advert{Node: "b", Addr: "10.0.0.2:8081",
		Functions: map[string]dfaas.FunctionState{"hello": {Capacity: 10, Demand: 25}},
		Traffic: map[string]dfaas.Traffic{"hello": {Served: 10, Rejected: 2,
			Forwarded: map[dfaas.NodeID]dfaas.Rate{"a": 13.0004, "unknown": 3}}}}
	peer := dfaas.Advert{Node: "a", Addr: "10.0.0.1:8081", Functions: map[string]dfaas.FunctionState{"hello": {Capacity: 30}},
		Traffic: map[string]dfaas.Traffic{"other": {Served: 1}}}
	v := node.ViewOf(self, []dfaas.Advert{peer}, map[dfaas.NodeID]time.Duration{"a": 1500 * time.Microsecond}, now)

	assert.Equal(t, dfaas.NodeID("b"), v.From)
	require.Len(t, v.Nodes, 2)
	a, b := v.Nodes[0], v.Nodes[1]
	assert.Equal(t, dfaas.NodeID("a"), a.ID, "sorted by id")
	assert.False(t, a.Self)
	require.NotNil(t, a.RTTms)
	assert.InDelta(t, 1.5, *a.RTTms, 1e-9)
	assert.Equal(t, node.FunctionView{Capacity: 30}, a.Functions["hello"])
	assert.Equal(t, node.FunctionView{Served: 1}, a.Functions["other"], "traffic of a function it does not plan")
	assert.True(t, b.Self)
	assert.Nil(t, b.RTTms)
	assert.Equal(t, node.FunctionView{Capacity: 10, Demand: 25, Served: 10, Rejected: 2,
		Forwarded: map[dfaas.NodeID]float64{"a": 13}}, b.Functions["hello"], "flows to nodes the view shows only")

	before := node.ViewOf(dfaas.Advert{}, []dfaas.Advert{peer}, nil, now)
	require.Len(t, before.Nodes, 1, "no own advert yet: only the peers")

	merged := node.MergeViews(v, node.ViewOf(peer, []dfaas.Advert{self}, nil, now))
	require.Len(t, merged.Nodes, 2, "each node's own entry once")
	assert.Empty(t, merged.From)
	assert.False(t, merged.Nodes[0].Self || merged.Nodes[1].Self)
}

// TestFederationHandler: the page, its assets and the view are served with
// headers that confine the page; nothing else is.
func TestFederationHandler(t *testing.T) {
	srv := httptest.NewServer(node.FederationHandler(func() node.View {
		return node.View{From: "a", Nodes: []node.NodeView{{ID: "a", Self: true}}}
	}))
	defer srv.Close()
	for path, want := range map[string]string{"/": "text/html", "/ui/app.js": "javascript", "/ui/style.css": "text/css", "/federation": "application/json"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("Content-Type"), want, path)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
	}
	resp, err := http.Get(srv.URL + "/federation")
	require.NoError(t, err)
	defer resp.Body.Close()
	var v node.View
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	assert.Equal(t, dfaas.NodeID("a"), v.From)
	for _, path := range []string{"/nope", "/ui/../node.go", "/ui/missing.js", "/ui/"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
	resp, err = http.Post(srv.URL+"/federation", "text/plain", nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
