package embedded

import (
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/dfaas-go/dfaas/proxy"
)

// gatewayHeaders returns w answering r as an OpenFaaS gateway would: with
// the call's id (proxy.HeaderCallID) made and sent on with r if the caller
// gave none, and answered then, and with the time r arrived
// (proxy.HeaderStartTime) on every answer.
func gatewayHeaders(w http.ResponseWriter, r *http.Request) *gatewayWriter {
	gw := &gatewayWriter{ResponseWriter: w, start: strconv.FormatInt(time.Now().UnixNano(), 10)}
	if r.Header.Get(proxy.HeaderCallID) == "" {
		gw.callID = uuid.NewString()
		r.Header.Set(proxy.HeaderCallID, gw.callID)
	}
	return gw
}

// gatewayWriter sets the gateway's headers as the answer's headers go out,
// in place of any the platform or a peer set (a gateway behind this node
// sets its own start time, later).
type gatewayWriter struct {
	http.ResponseWriter
	start, callID string
	done          bool
	status        int // the answer's, once its headers went out
}

func (g *gatewayWriter) WriteHeader(code int) {
	if !g.done && code >= 200 {
		g.done, g.status = true, code
		h := g.ResponseWriter.Header()
		h.Set(proxy.HeaderStartTime, g.start)
		if g.callID != "" {
			h.Set(proxy.HeaderCallID, g.callID)
		}
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *gatewayWriter) Write(b []byte) (int, error) {
	if !g.done {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (g *gatewayWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }
