package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync"
)

// CopyResponse relays resp, an answer from the platform or a peer, to w
// and closes its body: its headers less those of one connection (added to
// what w holds), its status, its body (flushed piece by piece when it is
// a stream: of unknown length, or server-sent events) and its trailers.
// An answer cut off upstream is cut off to the client too: under
// net/http's server, by aborting the handler (http.ErrAbortHandler), so
// that the client cannot take a part for the whole. An answer whose status
// is not a final one (below 200, or above 999) is answered 502.
func CopyResponse(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 999 {
		http.Error(w, "the upstream answer has no valid status", http.StatusBadGateway)
		return
	}
	RemoveHopByHop(resp.Header)
	resp.Header.Del(HeaderRejected) // the relaying data plane's word only
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = append(h[k], vv...)
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	stream := resp.ContentLength < 0 ||
		strings.HasPrefix(strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Type"))), "text/event-stream")
	var flush func() error
	if stream {
		flush = http.NewResponseController(w).Flush
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client left
			}
			if flush != nil {
				_ = flush()
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
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

// copyBuffers lends CopyResponse its buffers: 32 KiB allocated per answer
// would be the garbage collector's to pay.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
