package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// downPlatform lists no capacities: its gateway does not answer.
type downPlatform struct{}

func (downPlatform) Capacities(context.Context) (map[string]dfaas.Rate, error) {
	return nil, errors.New("gateway down")
}

// TestAdminHandler: /healthz answers, /readyz waits for an applied plan and
// says why it is not ready, /status lists the peers the plan was made with.
func TestAdminHandler(t *testing.T) {
	ctx := t.Context()
	network := overlay.NewNetwork()
	build := func(name string, pf node.Platform) *node.Node {
		ov, err := network.Join(dfaas.NodeID(name))
		require.NoError(t, err)
		n, err := node.Build(ctx, node.Config{Overlay: ov, Platform: pf, Interval: 50 * time.Millisecond, Logger: quiet, PlainPeers: true,
			Name: "edge-" + name})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, n.Close()) })
		return n
	}
	runtime := func(name string) node.Platform {
		pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"hello": 10}})
		require.NoError(t, err)
		return pf
	}
	a := build("a", runtime("a"))
	build("b", runtime("b"))
	srv := httptest.NewServer(a.AdminHandler())
	defer srv.Close()

	code, _ := get(t, srv.URL+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	require.Eventually(t, func() bool {
		code, _ := get(t, srv.URL+"/readyz")
		var st node.Status
		_, body := get(t, srv.URL+"/status")
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		return code == http.StatusOK && len(st.Peers) == 1 && len(st.PeerNames) == 1
	}, 5*time.Second, 20*time.Millisecond)
	var st node.Status
	_, body := get(t, srv.URL+"/status")
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Equal(t, dfaas.NodeID("a"), st.Node)
	assert.Equal(t, "edge-a", st.Name)
	assert.Equal(t, map[dfaas.NodeID]string{"b": "edge-b"}, st.PeerNames, "names travel in adverts")
	_, metrics := get(t, srv.URL+"/metrics")
	assert.Contains(t, metrics, `dfaas_node_info{name="edge-a",node="a"} 1`)
	assert.Contains(t, metrics, `dfaas_peer_info{name="edge-b",peer="b"} 1`)
	_, fed := get(t, srv.URL+"/federation")
	var view node.View
	require.NoError(t, json.Unmarshal([]byte(fed), &view))
	names := map[dfaas.NodeID]string{}
	for _, nv := range view.Nodes {
		names[nv.ID] = nv.Name
	}
	assert.Equal(t, map[dfaas.NodeID]string{"a": "edge-a", "b": "edge-b"}, names, "the live page's view names every node")
	assert.Equal(t, []dfaas.NodeID{"b"}, st.Peers)
	assert.Equal(t, a.DataPlane.UserAddr(), st.UserAddr)
	assert.Positive(t, st.Ticks)
	assert.Equal(t, dfaas.Rate(10), st.State.Functions["hello"].Capacity)
	assert.Contains(t, st.Plan.Functions, "hello")
	assert.Contains(t, st.Counters, "hello", "the data plane's counters")
	assert.Empty(t, st.CountersError)
	// One naming for operators' tools: snake_case keys all through.
	var raw struct {
		State struct {
			Functions map[string]map[string]float64 `json:"functions"`
		} `json:"state"`
		Plan struct {
			Functions map[string]map[string]any `json:"functions"`
		} `json:"plan"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	assert.Equal(t, map[string]float64{"capacity": 10, "demand": raw.State.Functions["hello"]["demand"]}, raw.State.Functions["hello"])
	assert.Contains(t, raw.Plan.Functions["hello"], "limit")
	assert.Contains(t, raw.Plan.Functions["hello"], "peers")
	assert.NotContains(t, body, `"Functions"`)

	down := build("c", node.Platform{Handler: http.NotFoundHandler(), Capacities: downPlatform{}})
	srv2 := httptest.NewServer(down.AdminHandler())
	defer srv2.Close()
	require.Eventually(t, func() bool { return down.Agent.Status().Ticks > 0 }, 5*time.Second, 10*time.Millisecond)
	code, body = get(t, srv2.URL+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "gateway down")
}

// TestStatusKeysAreSnakeCase: every field /status can carry, however deep,
// is named in snake_case, so operators' tools (jq, dashboards) read one
// naming. It walks the type rather than one answer: fields left out of an
// answer by omitempty are checked too.
func TestStatusKeysAreSnakeCase(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	marshaler := reflect.TypeFor[json.Marshaler]()
	seen := map[reflect.Type]bool{}
	fields := 0
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.Implements(marshaler) || reflect.PointerTo(typ).Implements(marshaler) {
			return
		}
		seen[typ] = true
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			fields++
			assert.Regexp(t, snake, name, "%s.%s (%s) has no snake_case json name", path, f.Name, typ)
			walk(f.Type, path+"."+name)
		}
	}
	walk(reflect.TypeFor[node.Status](), "status")
	assert.Greater(t, fields, 60, "the walk reached the nested types")
}
