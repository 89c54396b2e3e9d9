package haproxy

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// instrumentation names the driver's tracer.
const instrumentation = "github.com/dfaas-go/dfaas/proxy/haproxy"

// span makes the span of a request the log line l tells of, which ended at
// end, if it came with a trace context (see Config.Tracer).
func (d *Driver) span(l logLine, end time.Time) {
	if d.tracer == nil || l.traceparent == "" {
		return
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": l.traceparent})
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	name, outcome := "dfaas.peer", "refused"
	attrs := []attribute.KeyValue{proxy.AttrNode.String(string(d.cfg.Node)), proxy.AttrFunction.String(l.fn),
		proxy.AttrStatus.Int(l.status), attribute.String("dfaas.span.source", "haproxy request log")}
	peer, forwarded := d.named.Load(l.server)
	switch {
	case l.user && l.ran:
		name, outcome = "dfaas.user", "local"
	case l.user && forwarded && l.status != http.StatusTooManyRequests:
		name, outcome = "dfaas.user", "forwarded"
		attrs = append(attrs, proxy.AttrPeer.String(string(peer.(dfaas.NodeID))))
	case l.user:
		name, outcome = "dfaas.user", "rejected"
	case l.ran:
		outcome = "executed"
	}
	if !l.user && l.from != "" {
		attrs = append(attrs, proxy.AttrFrom.String(l.from))
	}
	attrs = append(attrs, proxy.AttrOutcome.String(outcome))
	_, s := d.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(end.Add(-l.took)),
		trace.WithAttributes(attrs...))
	if l.status >= 500 {
		s.SetStatus(codes.Error, http.StatusText(l.status))
	}
	s.End(trace.WithTimestamp(end))
}
