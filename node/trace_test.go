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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

// seenContexts records the trace context each call reached the platform
// with, by trace id.
type seenContexts struct {
	mu   sync.Mutex
	seen map[trace.TraceID]trace.SpanContext
}

func (s *seenContexts) handler(node, _ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		if sc.IsValid() {
			s.mu.Lock()
			s.seen[sc.TraceID()] = sc
			s.mu.Unlock()
		}
		_, _ = w.Write([]byte("hello from " + node))
	})
}

func (s *seenContexts) get(id trace.TraceID) (trace.SpanContext, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.seen[id]
	return sc, ok
}

// tracedNode starts a node like startNode, with a tracer provider whose
// spans rec records (none if rec is nil), and a platform that records what
// reached it.
func tracedNode(t *testing.T, network *overlay.Network, dp, name string, capacity dfaas.Rate, rec *tracetest.SpanRecorder, seen *seenContexts) *node.Node {
	t.Helper()
	mem, err := network.Join(dfaas.NodeID(name))
	require.NoError(t, err)
	platform := "runtime"
	if dp == "haproxy" {
		platform = "local"
	}
	pf, err := node.OpenPlatform(t.Context(), platform, node.PlatformSpec{Node: name, Functions: map[string]dfaas.Rate{"hello": capacity},
		Handler: seen.handler, Logger: quiet})
	require.NoError(t, err)
	cfg := node.Config{Overlay: mem, Platform: pf, DataPlane: dp, Interval: 200 * time.Millisecond, Logger: quiet, PlainPeers: true}
	if rec != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		cfg.Tracer = tp
	}
	n, err := node.Build(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	return n
}

// call makes one call to url under a new span of client's, its context in
// traceparent, and returns the span's context, the status and the body.
func call(t *testing.T, client *sdktrace.TracerProvider, url string) (trace.SpanContext, int, string) {
	t.Helper()
	ctx, span := client.Tracer("test").Start(t.Context(), "call")
	defer span.End()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return span.SpanContext(), resp.StatusCode, string(body)
}

// byTrace returns the ended spans of one trace, by name.
func byTrace(rec *tracetest.SpanRecorder, id trace.TraceID) map[string]sdktrace.ReadOnlySpan {
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == id {
			out[s.Name()] = s
		}
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// TestOneTraceSpansTwoNodes: a user call that node a forwards to node b is
// one trace, from the caller's span through both nodes to b's platform: a
// server span at a's user port (forwarded, to b), a's forward attempt, a
// server span at b's peer port (from a, executed), b's execution; each the
// child of the one before, and the platform's parent b's execution.
func TestOneTraceSpansTwoNodes(t *testing.T) {
	network := overlay.NewNetwork()
	recA, recB := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	seen := &seenContexts{seen: map[trace.TraceID]trace.SpanContext{}}
	a := tracedNode(t, network, "embedded", "a", 1, recA, seen)
	tracedNode(t, network, "embedded", "b", 100, recB, seen)

	client := sdktrace.NewTracerProvider()
	defer func() { _ = client.Shutdown(context.Background()) }()
	url := "http://" + a.DataPlane.UserAddr() + "/function/hello"
	var root trace.SpanContext
	var at sdktrace.ReadOnlySpan
	// Calls until one is forwarded (the first plan may keep a to itself).
	require.Eventually(t, func() bool {
		var code int
		root, code, _ = call(t, client, url)
		at = byTrace(recA, root.TraceID())["dfaas.user"]
		return code == http.StatusOK && at != nil && attrs(at)["dfaas.outcome"].AsString() == "forwarded"
	}, 10*time.Second, 50*time.Millisecond, "no call was forwarded to b")

	id := root.TraceID()
	spansA, spansB := byTrace(recA, id), byTrace(recB, id)
	user, fwd := spansA["dfaas.user"], spansA["dfaas.forward"]
	peer, exec := spansB["dfaas.peer"], spansB["dfaas.execute"]
	require.NotNil(t, fwd, "a's forward attempt")
	require.NotNil(t, peer, "b's peer-port span")
	require.NotNil(t, exec, "b's execution")
	assert.Nil(t, spansA["dfaas.execute"], "a ran nothing of it")

	assert.Equal(t, root.SpanID(), user.Parent().SpanID(), "a's span is the caller's child")
	assert.True(t, user.Parent().IsRemote())
	assert.Equal(t, trace.SpanKindServer, user.SpanKind())
	assert.Equal(t, user.SpanContext().SpanID(), fwd.Parent().SpanID())
	assert.Equal(t, trace.SpanKindClient, fwd.SpanKind())
	assert.Equal(t, fwd.SpanContext().SpanID(), peer.Parent().SpanID(), "b's span is a's forward's child")
	assert.True(t, peer.Parent().IsRemote())
	assert.Equal(t, peer.SpanContext().SpanID(), exec.Parent().SpanID())
	got, ok := seen.get(id)
	require.True(t, ok, "the platform saw the trace")
	assert.Equal(t, exec.SpanContext().SpanID(), got.SpanID(), "the platform's parent is b's execution")

	assert.Equal(t, "a", attrs(user)["dfaas.node"].AsString())
	assert.Equal(t, "hello", attrs(user)["dfaas.function"].AsString())
	assert.Equal(t, "b", attrs(user)["dfaas.peer"].AsString())
	assert.Equal(t, int64(200), attrs(user)["http.response.status_code"].AsInt64())
	assert.Equal(t, "b", attrs(fwd)["dfaas.peer"].AsString())
	assert.Equal(t, "answered", attrs(fwd)["dfaas.outcome"].AsString())
	assert.Equal(t, "b", attrs(peer)["dfaas.node"].AsString())
	assert.Equal(t, "a", attrs(peer)["dfaas.from"].AsString())
	assert.Equal(t, "executed", attrs(peer)["dfaas.outcome"].AsString())
	assert.Equal(t, int64(200), attrs(exec)["http.response.status_code"].AsInt64())
	assert.False(t, user.EndTime().Before(fwd.EndTime()), "the forward ends within the user's span")
}

// TestTraceContextPassesWhenNotTracing: a node without a tracer leaves the
// caller's traceparent alone, on both data planes: the platform of the
// node that runs a forwarded call sees the caller's own span as parent.
func TestTraceContextPassesWhenNotTracing(t *testing.T) {
	for _, dp := range []string{"embedded", "haproxy"} {
		t.Run(dp, func(t *testing.T) {
			network := overlay.NewNetwork()
			seen := &seenContexts{seen: map[trace.TraceID]trace.SpanContext{}}
			a := tracedNode(t, network, dp, "a", 1, nil, seen)
			tracedNode(t, network, dp, "b", 100, nil, seen)
			client := sdktrace.NewTracerProvider()
			defer func() { _ = client.Shutdown(context.Background()) }()
			url := "http://" + a.DataPlane.UserAddr() + "/function/hello"
			require.Eventually(t, func() bool {
				sc, code, body := call(t, client, url)
				if code != http.StatusOK || body != "hello from b" {
					return false // not forwarded (yet)
				}
				got, ok := seen.get(sc.TraceID())
				return assert.True(t, ok, "b's platform saw no trace context") &&
					assert.Equal(t, sc.SpanID(), got.SpanID(), "the caller's span is the platform's parent")
			}, 15*time.Second, 50*time.Millisecond, "no call was forwarded to b")
		})
	}
}

// TestOneTraceSpansTwoNodesOnHAProxy: on HAProxy data planes a forwarded
// call is one trace too: HAProxy passes the caller's traceparent on, and
// each node's driver makes its span from the request log, the caller's
// child: a's user-port span (forwarded, to b) and b's peer-port span
// (from a, executed), timed by HAProxy, and b's platform sees the caller's
// context.
func TestOneTraceSpansTwoNodesOnHAProxy(t *testing.T) {
	network := overlay.NewNetwork()
	recA, recB := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	seen := &seenContexts{seen: map[trace.TraceID]trace.SpanContext{}}
	a := tracedNode(t, network, "haproxy", "a", 1, recA, seen)
	b := tracedNode(t, network, "haproxy", "b", 100, recB, seen)

	client := sdktrace.NewTracerProvider()
	defer func() { _ = client.Shutdown(context.Background()) }()
	url := "http://" + a.DataPlane.UserAddr() + "/function/hello"
	var root trace.SpanContext
	// Calls until one is forwarded (the first plan may keep a to itself).
	require.Eventually(t, func() bool {
		var code int
		var body string
		root, code, body = call(t, client, url)
		return code == http.StatusOK && body == "hello from b"
	}, 15*time.Second, 50*time.Millisecond, "no call was forwarded to b")
	id := root.TraceID()
	var user, peer sdktrace.ReadOnlySpan
	require.Eventually(t, func() bool { // the log lines come after the answers
		user, peer = byTrace(recA, id)["dfaas.user"], byTrace(recB, id)["dfaas.peer"]
		return user != nil && peer != nil
	}, 5*time.Second, 10*time.Millisecond, "spans from the request logs")

	assert.Equal(t, root.SpanID(), user.Parent().SpanID(), "a's span is the caller's child")
	assert.Equal(t, root.SpanID(), peer.Parent().SpanID(), "so is b's: HAProxy passes the caller's context on")
	got, _ := seen.get(id)
	assert.Equal(t, root.SpanID(), got.SpanID(), "b's platform sees the caller's context")
	assert.Equal(t, "a", attrs(user)["dfaas.node"].AsString())
	assert.Equal(t, "forwarded", attrs(user)["dfaas.outcome"].AsString())
	assert.Equal(t, "b", attrs(user)["dfaas.peer"].AsString())
	assert.Equal(t, int64(200), attrs(user)["http.response.status_code"].AsInt64())
	assert.Equal(t, "b", attrs(peer)["dfaas.node"].AsString())
	assert.Equal(t, "a", attrs(peer)["dfaas.from"].AsString())
	assert.Equal(t, "executed", attrs(peer)["dfaas.outcome"].AsString())
	assert.False(t, peer.StartTime().Before(user.StartTime()), "b's part lies within a's")
	assert.False(t, peer.EndTime().After(user.EndTime().Add(time.Millisecond)), "b's part lies within a's")
	assert.Positive(t, user.EndTime().Sub(user.StartTime()))

	// A traceparent that is not one (too long, with spaces) leaves the log
	// line as it is: the call is measured, and traced by nobody.
	executions := func() uint64 {
		c, err := b.DataPlane.Counts(t.Context())
		require.NoError(t, err)
		return c["hello"].Executions.Count()
	}
	before, spans := executions(), len(recB.Ended())
	req, err := http.NewRequest(http.MethodGet, "http://"+b.DataPlane.UserAddr()+"/function/hello", nil)
	require.NoError(t, err)
	req.Header.Set("traceparent", "00-"+strings.Repeat("4bf92f35 77b34da6", 200)+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool { return executions() == before+1 }, 5*time.Second, 10*time.Millisecond, "the call was not measured")
	assert.Len(t, recB.Ended(), spans, "a span from a traceparent that is not one")
}
