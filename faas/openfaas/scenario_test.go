package openfaas_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/faas"
	"github.com/dfaas-go/dfaas/faas/local"
	"github.com/dfaas-go/dfaas/faas/openfaas"
	"github.com/dfaas-go/dfaas/internal/gatewaytest"
	"github.com/dfaas-go/dfaas/internal/scenario"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/async"
)

var quiet = slog.New(slog.DiscardHandler)

// federation runs one faas/local provider behind one real gateway; every
// node of a scenario gets its own namespace there, node-<n>, and a backend
// for it.
type federation struct {
	provider *local.Provider
	gateway  *gatewaytest.Gateway
	client   *sdk.Client
	backends []*openfaas.Backend
}

func newFederation(t *testing.T, ctx context.Context) *federation {
	t.Helper()
	return newFederationWith(t, ctx, gatewaytest.Options{})
}

// newFederationWith is newFederation with the gateway run with o.
func newFederationWith(t *testing.T, ctx context.Context, o gatewaytest.Options) *federation {
	t.Helper()
	p, err := local.New(local.Config{Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	gw, err := gatewaytest.StartWith(ctx, p.URL(), o)
	require.NoError(t, err)
	u, _ := url.Parse(gatewaytest.URL)
	f := &federation{provider: p, gateway: gw, client: sdk.NewClient(u, nil, http.DefaultClient)}
	t.Cleanup(func() { _ = f.gateway.Stop() })
	t.Cleanup(func() {
		for _, b := range f.backends {
			_ = b.Close()
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return f
}

// platform deploys the scenario's function for node through the gateway and
// returns the node's backend as its platform.
func (f *federation) platform(ctx context.Context, name, function string, capacity dfaas.Rate) (node.Platform, error) {
	ns := "node-" + name
	image := "dfaas/hello-" + name
	if err := f.provider.RegisterImage(image, scenario.Hello(name)); err != nil {
		return node.Platform{}, err
	}
	if _, err := f.client.Deploy(ctx, types.FunctionDeployment{Service: function, Image: image, Namespace: ns,
		Labels: &map[string]string{openfaas.LabelMaxRate: fmt.Sprint(float64(capacity))}}); err != nil {
		return node.Platform{}, err
	}
	b, err := openfaas.New(openfaas.Config{Gateway: gatewaytest.URL, Namespace: ns, Logger: quiet})
	if err != nil {
		return node.Platform{}, err
	}
	f.backends = append(f.backends, b)
	return node.Platform{Handler: b.Handler(), Capacities: b}, nil
}

// TestReferenceScenarioBehindTheGateway: the paper's experiment with every
// node's function served by faas/local behind the real OpenFaaS gateway.
func TestReferenceScenarioBehindTheGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fed := newFederation(t, ctx)
	c, err := scenario.StartCluster(ctx, scenario.ClusterConfig{Capacities: []dfaas.Rate{10, 20, 30}, Platform: fed.platform})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WaitFormed(ctx))
	rep, err := scenario.Run(ctx, c, scenario.LoadConfig{Rates: []dfaas.Rate{50, 0, 0}, Duration: 8 * time.Second})
	require.NoError(t, err)
	t.Logf("served %v / %v / %v, convergence %.0f s, rejected %d of %d",
		rep.Nodes[0].Served, rep.Nodes[1].Served, rep.Nodes[2].Served, rep.ConvergenceS, rep.RejectedAfterConvergence, rep.Requests)
	for i, want := range []float64{10, 16, 24} {
		assert.InDelta(t, want, rep.Nodes[i].SteadyServedRPS, 1.5, "node %d", i+1)
	}
	assert.LessOrEqual(t, float64(rep.RejectedAfterConvergence), 0.01*float64(rep.Requests))
}

// TestFunctionsFollowTheGateway: a function deployed or removed while the
// agents run enters or leaves the plan of the node that serves it within two
// of its ticks, and its peers follow; an unknown function gets 404 at the
// proxy without being forwarded.
func TestFunctionsFollowTheGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fed := newFederation(t, ctx)
	const tick = 200 * time.Millisecond
	c, err := scenario.StartCluster(ctx, scenario.ClusterConfig{Capacities: []dfaas.Rate{10, 20}, Platform: fed.platform, Interval: tick})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WaitFormed(ctx))
	n1, n2 := c.Nodes[0], c.Nodes[1]
	planned := func(n *scenario.Node, fn string) bool {
		_, ok := n.Agent.Status().LastPlan.Functions[fn]
		return ok
	}
	// ticksUntil counts n's ticks from now until cond holds.
	ticksUntil := func(n *scenario.Node, cond func() bool) uint64 {
		since := n.Agent.Status().Ticks
		var ticks uint64
		require.Eventually(t, func() bool {
			ok := cond()
			ticks = n.Agent.Status().Ticks - since // read after cond: never an undercount
			return ok
		}, 10*time.Second, time.Millisecond)
		return ticks
	}
	require.NoError(t, fed.provider.RegisterImage("dfaas/extra", scenario.Hello("2")))

	var deployErr error
	ticks := ticksUntil(n2, func() bool {
		if deployErr == nil && !planned(n2, "extra") {
			_, deployErr = fed.client.Deploy(ctx, types.FunctionDeployment{Service: "extra", Image: "dfaas/extra", Namespace: "node-2",
				Labels: &map[string]string{openfaas.LabelMaxRate: "5"}})
		}
		return planned(n2, "extra")
	})
	require.NoError(t, deployErr)
	assert.LessOrEqual(t, ticks, uint64(2), "deployed function planned within two ticks")
	require.Eventually(t, func() bool { return planned(n1, "extra") }, 10*time.Second, time.Millisecond, "the peer follows")
	// Deployed on node 2 only: node 1 forwards it there.
	resp, err := http.Post("http://"+n1.DataPlane.UserAddr()+"/function/extra", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, uint64(1), counts(t, n1)["extra"].ForwardedOut)
	// Node 1 advertises the function while its users asked for it recently.
	require.Eventually(t, func() bool {
		_, ok := n1.Agent.Status().LastState.Functions["extra"]
		return !ok
	}, 10*time.Second, time.Millisecond)

	require.NoError(t, fed.client.DeleteFunction(ctx, "extra", "node-2"))
	ticks = ticksUntil(n2, func() bool { return !planned(n2, "extra") })
	assert.LessOrEqual(t, ticks, uint64(2), "removed function leaves the plan within two ticks")
	require.Eventually(t, func() bool { return !planned(n1, "extra") }, 10*time.Second, time.Millisecond, "the peer follows")

	resp, err = http.Post("http://"+n1.DataPlane.UserAddr()+"/function/never-deployed", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.NotContains(t, counts(t, n2), "never-deployed", "not forwarded")
}

// TestGatewayDownDegradesAndRecovers: while the gateway is down the agents
// keep ticking, report the error, and advertise no capacity; when it comes
// back, so does the capacity.
func TestGatewayDownDegradesAndRecovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fed := newFederation(t, ctx)
	c, err := scenario.StartCluster(ctx, scenario.ClusterConfig{Capacities: []dfaas.Rate{10, 20}, Platform: fed.platform, Interval: 200 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WaitFormed(ctx))
	n1, n2 := c.Nodes[0], c.Nodes[1]
	peerCapacity := func() dfaas.Rate { // node 1 as node 2 sees it
		for _, a := range n2.Overlay.Adverts(time.Now()) {
			if a.Node == n1.Overlay.Self() {
				return a.Functions[c.Function].Capacity
			}
		}
		return -1
	}
	require.Equal(t, dfaas.Rate(10), peerCapacity())

	require.NoError(t, fed.gateway.Stop())
	require.Eventually(t, func() bool {
		st := n1.Agent.Status()
		return errors.Is(st.LastErr, dfaas.ErrDegraded) && st.LastState.Functions[c.Function].Capacity == 0 && peerCapacity() == 0
	}, 10*time.Second, 10*time.Millisecond)
	assert.ErrorContains(t, n1.Agent.Status().LastErr, "openfaas: list functions")
	before := n1.Agent.Status().Ticks
	require.Eventually(t, func() bool { return n1.Agent.Status().Ticks > before+2 }, 10*time.Second, 10*time.Millisecond, "the agent keeps ticking")

	fed.gateway, err = gatewaytest.Start(ctx, fed.provider.URL())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st := n1.Agent.Status()
		return st.LastErr == nil && st.LastState.Functions[c.Function].Capacity == 10 && peerCapacity() == 10
	}, 10*time.Second, 10*time.Millisecond)
}

// counts reads a node's counters.
func counts(t *testing.T, n *scenario.Node) map[string]proxy.Counts {
	t.Helper()
	c, err := n.DataPlane.Counts(t.Context())
	require.NoError(t, err)
	return c
}

// TestUnlabelledFunctionIsMeasured: an OpenFaaS function deployed without
// any dfaas label - a function of real cost, 5 ms of CPU a call - is served
// locally by a node with no peer, up to what the node measures it runs: it
// starts at 1 req/s, learns within seconds, and then serves its users
// locally, nothing forwarded (there is nobody) and nearly nothing turned
// away. (With declared capacities only, it would get 0 and every call a
// 503.)
func TestUnlabelledFunctionIsMeasured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fed := newFederation(t, ctx)
	_, err := fed.client.Deploy(ctx, types.FunctionDeployment{Service: "work", Image: "dfaas/cpu", Namespace: "openfaas-fn",
		EnvVars: map[string]string{local.EnvCost: "5ms"}})
	require.NoError(t, err)
	b, err := openfaas.New(openfaas.Config{Gateway: gatewaytest.URL, Logger: quiet})
	require.NoError(t, err)
	fed.backends = append(fed.backends, b)
	caps, err := b.Capacities(ctx)
	require.NoError(t, err)
	require.Equal(t, faas.Undeclared, caps["work"], "no label: nothing declared")

	ov, err := overlay.NewNetwork().Join("solo")
	require.NoError(t, err)
	n, err := node.Build(ctx, node.Config{Overlay: ov, Platform: node.Platform{Handler: b.Handler(), Capacities: b},
		Interval: 250 * time.Millisecond, PlainPeers: true, Logger: quiet})
	require.NoError(t, err)
	defer n.Close()

	// 20 req/s for 6 s, evenly.
	codes := make([]int, 0, 120)
	for i := range 120 {
		time.Sleep(time.Until(time.Now().Truncate(50 * time.Millisecond).Add(50 * time.Millisecond)))
		resp, err := http.Post("http://"+n.DataPlane.UserAddr()+"/function/work", "text/plain", nil)
		require.NoError(t, err, "call %d", i)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	late := 0
	for _, c := range codes[60:] { // the last 3 s
		if c == http.StatusOK {
			late++
		}
	}
	st := n.Monitor.Estimates()["work"]
	t.Logf("last 3 s: %d of 60 served; capacity %.1f, service %v, phase %s", late, st.Capacity, st.Service, st.Phase)
	assert.GreaterOrEqual(t, late, 57, "served once learned")
	assert.GreaterOrEqual(t, float64(st.Capacity), 19.0, "the node measured room for its users")
	assert.Positive(t, st.Service, "from executions that ran alone")
	all, err := n.DataPlane.Counts(ctx)
	require.NoError(t, err)
	c := all["work"]
	assert.Zero(t, c.ForwardedOut)
	assert.Equal(t, c.Arrivals, c.ServedLocal+c.Rejected, "served here or turned away while it learned")
}

// nodeServing deploys function (image, in the default namespace, 100
// req/s) on the gateway and builds a node alone in front of it, with cfg's
// extra settings; it returns the node and its user port's URL once the
// node serves the function.
func (f *federation) nodeServing(t *testing.T, ctx context.Context, function, image string, cfg node.Config) (*node.Node, string) {
	t.Helper()
	_, err := f.client.Deploy(ctx, types.FunctionDeployment{Service: function, Image: image, Namespace: "openfaas-fn",
		Labels: &map[string]string{openfaas.LabelMaxRate: "100"}})
	require.NoError(t, err)
	b, err := openfaas.New(openfaas.Config{Gateway: gatewaytest.URL, Logger: quiet})
	require.NoError(t, err)
	f.backends = append(f.backends, b)
	cfg.Overlay, err = overlay.NewNetwork().Join("solo")
	require.NoError(t, err)
	cfg.Platform = node.Platform{Handler: b.Handler(), Capacities: b}
	cfg.Interval, cfg.PlainPeers, cfg.DeclaredCapacity, cfg.Logger = 250*time.Millisecond, true, true, quiet
	n, err := node.Build(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	through := "http://" + n.DataPlane.UserAddr()
	require.Eventually(t, func() bool {
		resp, err := http.Post(through+"/function/"+function, "text/plain", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 100*time.Millisecond, "the node serves the gateway's function")
	return n, through
}

// TestSameAnswersAsTheGatewayAlone: a call through a node in front of the
// real gateway gets the status and the gateway's headers it gets from the
// gateway alone (a call id made when the caller gave none, the start time,
// the gateway's X-Served-By, the watchdog's X-Duration-Seconds), plus the
// node that ran it; a caller's call id reaches the function either way.
func TestSameAnswersAsTheGatewayAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fed := newFederation(t, ctx)
	var mu sync.Mutex
	var ids []string   // the call ids the function saw
	var starts []int64 // and the start time the gateway told it
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(ids)
	}
	require.NoError(t, fed.provider.RegisterImage("dfaas/call-id", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := strconv.ParseInt(r.Header.Get(proxy.HeaderStartTime), 10, 64)
		mu.Lock()
		ids = append(ids, r.Header.Get(proxy.HeaderCallID))
		starts = append(starts, st)
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	})))
	n, through := fed.nodeServing(t, ctx, "ids", "dfaas/call-id", node.Config{})

	call := func(base, fn, id string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", base+"/function/"+fn, nil)
		require.NoError(t, err)
		if id != "" {
			req.Header.Set(proxy.HeaderCallID, id)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	for _, id := range []string{"", "caller-7"} {
		alone, via := call(gatewaytest.URL, "ids", id), call(through, "ids", id)
		assert.Equal(t, alone.StatusCode, via.StatusCode)
		for _, h := range []string{proxy.HeaderCallID, proxy.HeaderStartTime, "X-Served-By", "X-Duration-Seconds", "Content-Type"} {
			assert.Len(t, via.Header.Values(h), len(alone.Header.Values(h)), "%s (id %q): alone %v, through the node %v", h, id, alone.Header, via.Header)
		}
		assert.Equal(t, alone.Header.Get("X-Served-By"), via.Header.Get("X-Served-By"))
		assert.Equal(t, string(n.Overlay.Self()), via.Header.Get(proxy.HeaderNode), "the node that ran it")
		assert.Empty(t, alone.Header.Get(proxy.HeaderNode))
		got := seen()
		via0, err := strconv.ParseInt(via.Header.Get(proxy.HeaderStartTime), 10, 64)
		require.NoError(t, err)
		mu.Lock()
		gatewayStart := starts[len(starts)-1]
		mu.Unlock()
		assert.Positive(t, gatewayStart, "the gateway tells the function when the call reached it")
		assert.LessOrEqual(t, via0, gatewayStart, "the node answers when the call reached the node, before the gateway")
		if id != "" {
			assert.Equal(t, []string{id, id}, got[len(got)-2:], "the caller's id reached the function both ways")
		} else {
			assert.Equal(t, via.Header.Get(proxy.HeaderCallID), got[len(got)-1], "the id the node made reached the function")
		}
	}
	alone, via := call(gatewaytest.URL, "nothere", ""), call(through, "nothere", "")
	assert.Equal(t, alone.StatusCode, via.StatusCode, "an unknown function")
	assert.NotEmpty(t, via.Header.Get(proxy.HeaderCallID))
	assert.NotEmpty(t, via.Header.Get(proxy.HeaderStartTime))
}

// TestSameAsyncAnswersAsTheGatewayAlone: an asynchronous call through a
// node's queue gets what it gets from the gateway alone with OpenFaaS's own
// asynchronous path (NATS Streaming and its queue worker): 202 and a call
// id at once (the caller's if it gave one), then one callback with the
// function's status, body and headers and the gateway's X-Call-Id,
// X-Function-Name, X-Function-Status and X-Duration-Seconds; the node's
// callback also says which node ran the call. One difference is kept on
// purpose: a function the node does not know is answered 404 at once, where
// the gateway accepts the call and calls back its 404.
func TestSameAsyncAnswersAsTheGatewayAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fed := newFederationWith(t, ctx, gatewaytest.Options{Async: true})
	require.NoError(t, fed.provider.RegisterImage("dfaas/answer", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		code, _ := strconv.Atoi(r.URL.Query().Get("status"))
		w.Header().Set("Content-Type", "text/x-answer")
		w.Header().Set("X-Answer", "from "+r.Method)
		w.WriteHeader(max(code, http.StatusOK))
		fmt.Fprintf(w, "%s saw %q", r.Header.Get(proxy.HeaderCallID), body)
	})))
	n, through := fed.nodeServing(t, ctx, "answer", "dfaas/answer", node.Config{
		AsyncQueue: filepath.Join(t.TempDir(), "queue"), AsyncCallbacks: async.AnyCallbacks}) // the receiver is on loopback

	type callback struct {
		header http.Header
		body   string
	}
	var mu sync.Mutex
	got := map[string][]callback{} // by the receiver's path
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], callback{r.Header.Clone(), string(body)})
		mu.Unlock()
	}))
	defer receiver.Close()
	callbackOf := func(path string) callback {
		t.Helper()
		var cb []callback
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			cb = slices.Clone(got[path])
			return len(cb) > 0
		}, 30*time.Second, 20*time.Millisecond, "no callback to %s", path)
		return cb[0]
	}
	call := func(base, fn, query, id, body, cbPath string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+"/async-function/"+fn+query, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set(async.HeaderCallback, receiver.URL+cbPath)
		if id != "" {
			req.Header.Set(proxy.HeaderCallID, id)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i, c := range []struct{ query, id, body string }{
		{"", "", "hello"},
		{"?status=500", "", "fails"},
		{"", "caller-9", "named"},
	} {
		alone := call(gatewaytest.URL, "answer", c.query, c.id, c.body, fmt.Sprintf("/alone/%d", i))
		via := call(through, "answer", c.query, c.id, c.body, fmt.Sprintf("/via/%d", i))
		assert.Equal(t, http.StatusAccepted, alone.StatusCode)
		assert.Equal(t, alone.StatusCode, via.StatusCode, "case %d", i)
		// A call id at once; the caller's, if it gave one, is the call's
		// (the gateway does not repeat it in its 202, the node does).
		if c.id == "" {
			require.NotEmpty(t, alone.Header.Get(proxy.HeaderCallID), "case %d", i)
		} else {
			alone.Header.Set(proxy.HeaderCallID, c.id)
		}
		require.NotEmpty(t, via.Header.Get(proxy.HeaderCallID), "case %d: a call id at once", i)
		if c.id != "" {
			assert.Equal(t, c.id, via.Header.Get(proxy.HeaderCallID), "case %d: the caller's call id", i)
		}
		for _, h := range []string{proxy.HeaderStartTime, proxy.HeaderServedBy} {
			assert.Equal(t, len(alone.Header.Values(h)), len(via.Header.Values(h)), "case %d: %s: alone %v, through the node %v", i, h, alone.Header, via.Header)
		}
		assert.Equal(t, proxy.ServedBy, via.Header.Get(proxy.HeaderServedBy), "the node's own answer")
		a, v := callbackOf(fmt.Sprintf("/alone/%d", i)), callbackOf(fmt.Sprintf("/via/%d", i))
		for _, h := range []string{"X-Function-Status", "X-Function-Name", "Content-Type", "X-Answer"} {
			assert.Equal(t, a.header.Get(h), v.header.Get(h), "case %d: %s: alone %v, through the node %v", i, h, a.header, v.header)
		}
		assert.Equal(t, strconv.Itoa(max(http.StatusOK, atoi(strings.TrimPrefix(c.query, "?status=")))), v.header.Get("X-Function-Status"))
		assert.Equal(t, alone.Header.Get(proxy.HeaderCallID), a.header.Get(proxy.HeaderCallID), "case %d: the gateway calls back with the call's id", i)
		assert.Equal(t, via.Header.Get(proxy.HeaderCallID), v.header.Get(proxy.HeaderCallID), "case %d: so does the node", i)
		for _, cb := range []callback{a, v} {
			d, err := strconv.ParseFloat(cb.header.Get("X-Duration-Seconds"), 64)
			assert.NoError(t, err, "case %d: X-Duration-Seconds %q", i, cb.header.Get("X-Duration-Seconds"))
			assert.GreaterOrEqual(t, d, 0.0)
		}
		// The function saw the call's id both ways, and the same body.
		assert.Equal(t, fmt.Sprintf("%s saw %q", alone.Header.Get(proxy.HeaderCallID), c.body), a.body, "case %d", i)
		assert.Equal(t, fmt.Sprintf("%s saw %q", via.Header.Get(proxy.HeaderCallID), c.body), v.body, "case %d", i)
		assert.Equal(t, string(n.Overlay.Self()), v.header.Get(proxy.HeaderNode), "case %d: the node that ran it", i)
		assert.Empty(t, a.header.Get(proxy.HeaderNode))
	}

	// A function neither knows: the gateway calls back its 404; the node
	// answers 404 at once, as it answers a synchronous call.
	alone := call(gatewaytest.URL, "nothere", "", "", "", "/alone/unknown")
	via := call(through, "nothere", "", "", "", "/via/unknown")
	assert.Equal(t, http.StatusAccepted, alone.StatusCode)
	assert.Equal(t, "404", callbackOf("/alone/unknown").header.Get("X-Function-Status"))
	assert.Equal(t, http.StatusNotFound, via.StatusCode)

	// Each call called back once, both ways.
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	for path, cb := range got {
		assert.Len(t, cb, 1, "callbacks to %s", path)
	}
	assert.Len(t, got, 7)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
