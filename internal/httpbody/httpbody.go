// Package httpbody bounds the request bodies a net/http server reads: each
// wait for more of a body, the time from the request's headers to the end
// of its body, and its size. net/http's own bounds do not fit a function
// call: ReadTimeout stays on the connection after the body, and its
// background read then cancels a function that runs longer; MaxBytesReader
// bounds the size only. The bounds here work through the connection's read
// deadline, lifted once the body is whole.
package httpbody

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Bounds are what a Body holds to. A zero field bounds nothing.
type Bounds struct {
	// Idle bounds each wait for more of the body: a client that stops
	// sending it is cut off after this much silence.
	Idle time.Duration
	// Timeout bounds the time from the request's headers (the call to
	// Bound) to the end of its body, however steadily it trickles.
	Timeout time.Duration
	// Max is the largest body: a read past it fails with an
	// *http.MaxBytesError.
	Max int64
}

// Body is a request body under Bounds. It may be read from another
// goroutine than the handler's (a Transport sending it on), one at a time.
type Body struct {
	rc       io.ReadCloser
	ctl      *http.ResponseController
	bounds   Bounds
	deadline time.Time // the whole body by then, if bounds.Timeout is set
	left     int64     // bytes it may still have, if bounds.Max is set
	whole    bool      // read to its end: no deadline from now on
	err      error     // the first failure, returned from then on
	failure  atomic.Pointer[int]
}

// Bound puts r's body, if any, under b, and returns it (nil for a request
// without a body) with what puts net/http's own body back when the handler
// returns: net/http looks at it to decide what to do with a body the
// handler left. The rest of such a body (a handler that answered without
// it) is not waited for: the answer goes at once and the connection closes
// after it, and a client waiting for a 100 Continue is not sent one.
func Bound(w http.ResponseWriter, r *http.Request, b Bounds) (_ *Body, restore func()) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, func() {}
	}
	orig := r.Body
	body := &Body{rc: orig, ctl: http.NewResponseController(w), bounds: b, left: b.Max}
	if b.Timeout > 0 {
		body.deadline = time.Now().Add(b.Timeout)
	}
	r.Body = body
	return body, func() {
		r.Body = orig
		if !body.whole {
			_ = body.ctl.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// Read reads the body within its bounds.
func (b *Body) Read(buf []byte) (int, error) {
	switch {
	case b.err != nil:
		return 0, b.err
	case b.whole:
		return b.rc.Read(buf)
	}
	var dl time.Time
	if b.bounds.Idle > 0 {
		dl = time.Now().Add(b.bounds.Idle)
	}
	if !b.deadline.IsZero() && (dl.IsZero() || b.deadline.Before(dl)) {
		dl = b.deadline
	}
	if !dl.IsZero() {
		_ = b.ctl.SetReadDeadline(dl)
	}
	if b.bounds.Max > 0 && int64(len(buf)) > b.left+1 {
		buf = buf[:b.left+1] // one more than allowed tells an excess
	}
	n, err := b.rc.Read(buf)
	if b.bounds.Max > 0 {
		if int64(n) > b.left {
			b.fail(&http.MaxBytesError{Limit: b.bounds.Max}, http.StatusRequestEntityTooLarge)
			return int(b.left), b.err
		}
		b.left -= int64(n)
	}
	switch {
	case errors.Is(err, io.EOF):
		b.whole = true
		if !dl.IsZero() {
			_ = b.ctl.SetReadDeadline(time.Time{})
		}
	case err != nil:
		code := http.StatusBadRequest // the client left, or sent a broken body
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			code = http.StatusRequestTimeout
		}
		b.fail(err, code)
	}
	return n, err
}

func (b *Body) fail(err error, code int) {
	b.err = err
	b.failure.Store(&code)
}

// Close closes the request's body.
func (b *Body) Close() error { return b.rc.Close() }

// Failed returns the status the body's failure earns (413 too large, 408
// too slow, 400 broken off), or 0 if it has not failed. Safe on nil and
// from any goroutine.
func (b *Body) Failed() int {
	if b == nil {
		return 0
	}
	if c := b.failure.Load(); c != nil {
		return *c
	}
	return 0
}

// Reason says in a few words why a body failed with status code.
func Reason(code int) string {
	switch code {
	case http.StatusRequestEntityTooLarge:
		return "request body too large"
	case http.StatusRequestTimeout:
		return "request body too slow"
	default:
		return "request body broken off"
	}
}
