package openfaas

import (
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/dfaas-go/dfaas/proxy"
)

// invoke passes a request on to the gateway and relays its answer: what
// httputil.ReverseProxy does in Rewrite mode, without what a function call
// never needs (protocol upgrades, interim answers, a rewrite hook), which
// cost a tenth of the proxy's CPU on a local hop.
func (b *Backend) invoke(w http.ResponseWriter, r *http.Request) {
	out := (&http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: b.gateway.Scheme, Host: b.gateway.Host, Path: b.invokePath(r.URL.Path), RawQuery: r.URL.RawQuery},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, len(r.Header)+1),
		Body:          r.Body,
		ContentLength: r.ContentLength,
		Host:          b.gateway.Host,
	}).WithContext(r.Context())
	if r.ContentLength == 0 {
		out.Body = nil // no body: nothing to wait for
	}
	for k, vv := range r.Header {
		out.Header[k] = vv // read-only below: keys are deleted, values never edited
	}
	proxy.RemoveHopByHop(out.Header)
	// The client's own claims about where it is are not passed on, as
	// ReverseProxy's Rewrite mode does not.
	delete(out.Header, "X-Forwarded-For")
	delete(out.Header, "X-Forwarded-Host")
	delete(out.Header, "X-Forwarded-Proto")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's
	}
	resp, err := b.invoker.RoundTrip(out)
	if err != nil {
		switch {
		case errors.Is(err, errBody):
			http.Error(w, err.Error(), http.StatusBadRequest)
		case r.Context().Err() != nil:
			w.WriteHeader(http.StatusBadGateway) // the client left: nobody to tell
		default:
			b.log.Warn("gateway unreachable", "path", r.URL.Path, "err", err)
			http.Error(w, "function platform unreachable", http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	proxy.RemoveHopByHop(h)
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	buf := buffers.Get()
	defer buffers.Put(buf)
	// An answer of unknown length may be a stream: each piece leaves as
	// it comes.
	stream := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// Cut short: under net/http's server, abort the answer, so
			// that the client cannot take a part for the whole.
			if r.Context().Value(http.ServerContextKey) != nil {
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}
