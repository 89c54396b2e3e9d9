package openfaas

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"

	"github.com/dfaas-go/dfaas/proxy"
)

// invoke passes a request on to the gateway and relays its answer: what
// httputil.ReverseProxy does in Rewrite mode, without what a function call
// never needs (protocol upgrades, interim answers, a rewrite hook), which
// cost a tenth of the proxy's CPU on a local hop. A path with a dot
// segment is refused (400): the gateway would clean it into another path.
func (b *Backend) invoke(w http.ResponseWriter, r *http.Request) {
	if proxy.HasDotSegment(r.URL.Path) {
		http.Error(w, "the path has a dot segment", http.StatusBadRequest)
		return
	}
	body := &userBody{rc: r.Body}
	defer body.over.Store(true)
	out := (&http.Request{
		Method:        r.Method,
		URL:           &url.URL{Scheme: b.gateway.Scheme, Host: b.gateway.Host, Path: b.invokePath(r.URL.Path), RawQuery: cleanQuery(r.URL.RawQuery)},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, len(r.Header)+1),
		Body:          body,
		ContentLength: r.ContentLength,
		Host:          b.gateway.Host,
	}).WithContext(r.Context())
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		out.Body = nil // no body: nothing to wait for
	}
	for k, vv := range r.Header {
		out.Header[k] = vv // read-only below: keys are deleted, values never edited
	}
	proxy.RemoveHopByHop(out.Header)
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		out.Header["Te"] = []string{"trailers"} // end to end: the client reads trailers
	}
	// The client's own claims about where it is are not passed on, as
	// ReverseProxy's Rewrite mode does not.
	delete(out.Header, "Forwarded")
	delete(out.Header, "X-Forwarded-For")
	delete(out.Header, "X-Forwarded-Host")
	delete(out.Header, "X-Forwarded-Proto")
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's
	}
	resp, err := b.invoker.RoundTrip(out)
	if err != nil {
		switch {
		case errors.Is(err, errBody) || body.failed.Load():
			http.Error(w, "reading the request body failed", http.StatusBadRequest)
		case r.Context().Err() != nil:
			w.WriteHeader(http.StatusBadGateway) // the client left: nobody to tell
		default:
			b.log.Warn("gateway unreachable", "path", r.URL.Path, "err", err)
			http.Error(w, "function platform unreachable", http.StatusBadGateway)
		}
		return
	}
	proxy.CopyResponse(w, r, resp)
}

// userBody is the client's request body as the invocation reads it. Its
// Close does nothing: a round trip that fails before it sends closes the
// body, and closing net/http's server body would read (up to 256 KiB of)
// what the client has not sent yet, with no deadline, or wait for a body
// whose client waits for a 100 Continue. Once the invocation returns, it
// reads nothing more. failed records that reading it failed: the
// client's fault, not the gateway's.
type userBody struct {
	rc     io.Reader
	over   atomic.Bool
	failed atomic.Bool
}

var errInvocationOver = errors.New("openfaas: the invocation is over")

func (u *userBody) Read(p []byte) (int, error) {
	if u.over.Load() {
		return 0, errInvocationOver
	}
	n, err := u.rc.Read(p)
	if err != nil && err != io.EOF {
		u.failed.Store(true)
	}
	return n, err
}

func (u *userBody) Close() error { return nil }

// cleanQuery returns q, or q parsed and encoded again if it does not parse
// (a ";" separator, a bad escape), so that the function reads the same
// parameters any Go code before it would. A query that parses, the usual
// one, is only scanned: parsing it would build a map per invocation.
func cleanQuery(q string) string {
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return reencode(q)
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reencode(q)
			}
			i += 2
		}
	}
	return q
}

func reencode(q string) string {
	v, _ := url.ParseQuery(q) // what parses of it
	return v.Encode()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
