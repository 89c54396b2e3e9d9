package proxy

import "go.opentelemetry.io/otel/attribute"

// The attributes of both data planes' spans (see Spec.Tracer).
var (
	AttrNode     = attribute.Key("dfaas.node")     // the node that made the span
	AttrFunction = attribute.Key("dfaas.function") // the function called
	// AttrOutcome is what became of the request at that node: on the user
	// listener local, forwarded or rejected; on the peer listener executed
	// or refused; of a forward attempt answered, refused, not sent or
	// failed after sending.
	AttrOutcome = attribute.Key("dfaas.outcome")
	AttrPeer    = attribute.Key("dfaas.peer") // the peer a request was forwarded to
	AttrFrom    = attribute.Key("dfaas.from") // the node a peer's request came from
	AttrStatus  = attribute.Key("http.response.status_code")
	AttrMethod  = attribute.Key("http.request.method")
)
