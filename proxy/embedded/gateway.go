package embedded

import (
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/dfaas-go/dfaas/internal/onheaders"
	"github.com/dfaas-go/dfaas/proxy"
)

// gatewayCall is what the user listener answers of a call as an OpenFaaS
// gateway would, and the status it was answered.
type gatewayCall struct {
	start, callID string
	status        int // once the answer's headers went out
}

// gatewayHeaders returns w answering r as an OpenFaaS gateway would: with
// the call's id (proxy.HeaderCallID) made and sent on with r if the caller
// gave none, and answered then, and with the time r arrived
// (proxy.HeaderStartTime) on every answer, in place of any the platform or
// a peer set (a gateway behind this node sets its own start time, later).
func gatewayHeaders(w http.ResponseWriter, r *http.Request) (*onheaders.Writer, *gatewayCall) {
	g := &gatewayCall{start: strconv.FormatInt(time.Now().UnixNano(), 10)}
	if r.Header.Get(proxy.HeaderCallID) == "" {
		g.callID = uuid.NewString()
		r.Header.Set(proxy.HeaderCallID, g.callID)
	}
	return onheaders.Wrap(w, func(status int, h http.Header) {
		g.status = status
		h.Set(proxy.HeaderStartTime, g.start)
		if g.callID != "" {
			h.Set(proxy.HeaderCallID, g.callID)
		}
	}), g
}
