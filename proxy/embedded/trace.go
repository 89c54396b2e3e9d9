package embedded

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// instrumentation names the proxy's tracer.
const instrumentation = "github.com/dfaas-go/dfaas/proxy/embedded"

// propagator reads and writes W3C trace context (traceparent, tracestate).
// With tracing off the proxy leaves both headers as they came: a caller's
// context reaches the peer and the platform untouched.
var propagator = propagation.TraceContext{}

// serverSpan starts a server span for a request on one of the listeners,
// the child of the context the request carries, if any. The returned
// writer records the status for the span's end (endServer).
func (p *Proxy) serverSpan(w http.ResponseWriter, r *http.Request, name, fn string, attrs ...attribute.KeyValue) (*http.Request, *traceWriter, trace.Span) {
	ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	attrs = append(attrs, proxy.AttrNode.String(string(p.cfg.Node)), proxy.AttrFunction.String(fn), proxy.AttrMethod.String(method(r.Method)))
	ctx, span := p.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	return r.WithContext(ctx), &traceWriter{ResponseWriter: w}, span
}

// endServer ends a server span with the status its request was answered.
func endServer(span trace.Span, tw *traceWriter) {
	status := tw.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http answers 200
	}
	span.SetAttributes(proxy.AttrStatus.Int(status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}

// outcome notes what became of a request on its span, and the peer it
// went to if any (nil span: not traced, and nothing is spent).
func outcome(span trace.Span, what string, peer dfaas.NodeID) {
	if span == nil {
		return
	}
	span.SetAttributes(proxy.AttrOutcome.String(what))
	if peer != "" {
		span.SetAttributes(proxy.AttrPeer.String(string(peer)))
	}
}

// endAttempt ends a forward attempt's span: what became of it, and the
// peer's status if it answered.
func endAttempt(span trace.Span, what string, status int, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(proxy.AttrOutcome.String(what))
	if status != 0 {
		span.SetAttributes(proxy.AttrStatus.Int(status))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// inject writes the context of r's span into h, replacing a caller's.
func inject(r *http.Request, h http.Header) {
	propagator.Inject(r.Context(), propagation.HeaderCarrier(h))
}

// traceWriter records the status a traced request was answered with.
type traceWriter struct {
	http.ResponseWriter
	status int
}

func (t *traceWriter) WriteHeader(code int) {
	if t.status == 0 && code >= 200 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *traceWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	return t.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (t *traceWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// method is a request's method as a span attribute: one of HTTP's, or
// _OTHER (OpenTelemetry's convention), never a caller's arbitrary token.
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// from is the node a peer's request says it comes from, if it is a valid
// node id; "" otherwise.
func from(r *http.Request) string {
	f := r.Header.Get(proxy.HeaderFrom)
	if dfaas.ValidateNodeID(dfaas.NodeID(f)) != nil {
		return ""
	}
	return f
}
