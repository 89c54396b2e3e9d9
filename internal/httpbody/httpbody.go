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
	"strings"
	"sync"
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
// goroutine than the handler's (a Transport sending it on), one read at a
// time; once the handler has returned (restore), reads fail.
type Body struct {
	rc       io.ReadCloser
	w        http.ResponseWriter
	ctl      *http.ResponseController
	bounds   Bounds
	deadline time.Time // the whole body by then, if bounds.Timeout is set
	expect   bool      // the client waits for a 100 Continue

	mu      sync.Mutex
	left    int64 // bytes it may still have, if bounds.Max is set
	touched bool  // read from at least once
	whole   bool  // read to its end
	over    bool  // the handler returned
	err     error // the first failure, returned from then on
	failure atomic.Pointer[int]
}

// drainGrace is how long a handler's return waits for the rest of a body
// it left, which net/http must read before the connection can carry
// another request; drainMax is how much of it (net/http's own bound).
const (
	drainGrace = 500 * time.Millisecond
	drainMax   = 256 << 10
)

// errOver: the handler has returned; its body is no more to be read.
var errOver = errors.New("httpbody: the request's handler has returned")

// Bound puts r's body, if any, under b, and returns it (nil for a request
// without a body) with what the handler must call when it returns (defer
// it): it puts net/http's own body back, and settles what the handler
// left of it. The rest of such a body (the function was unknown, say) is
// waited for briefly (drainGrace), as net/http would wait for it without
// a bound: a client that has not sent it gets its answer at once after
// that, and the connection closes after the answer; a client waiting for
// a 100 Continue is not sent one, and gets its answer at once.
//
// The bounds work through the connection's read deadline, set only while
// a read waits and cleared after it: net/http reads the connection in the
// background once a body ends (to notice a client leaving), and a deadline
// left behind would cancel the request, and every later one on the
// connection, when it passed.
func Bound(w http.ResponseWriter, r *http.Request, b Bounds) (_ *Body, restore func()) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, func() {}
	}
	orig := r.Body
	body := &Body{rc: orig, w: w, ctl: http.NewResponseController(w), bounds: b, left: b.Max,
		expect: strings.EqualFold(strings.TrimSpace(r.Header.Get("Expect")), "100-continue")}
	if b.Timeout > 0 {
		body.deadline = time.Now().Add(b.Timeout)
	}
	r.Body = body
	return body, func() {
		r.Body = orig
		body.settle()
	}
}

// settle ends the handler's use of the body and reads what it left of it,
// within drainGrace and drainMax, or leaves the connection to close.
func (b *Body) settle() {
	b.mu.Lock()
	b.over = true
	done := b.whole || b.err != nil || (!b.touched && b.expect)
	b.mu.Unlock()
	if done {
		return
	}
	dl := time.Now().Add(drainGrace)
	if !b.deadline.IsZero() && b.deadline.Before(dl) {
		dl = b.deadline
	}
	_ = b.ctl.SetReadDeadline(dl)
	_, err := io.CopyN(io.Discard, b.rc, drainMax+1)
	if errors.Is(err, io.EOF) || errors.Is(err, http.ErrBodyReadAfterClose) {
		// All of it (net/http may have read the rest itself, answering
		// before the handler read it): no deadline from now on.
		_ = b.ctl.SetReadDeadline(time.Time{})
	}
	// Else more than drainMax is left, or the client did not send it in
	// time: the deadline stays, net/http's own reading of the rest fails
	// or gives up, and the connection closes after the answer.
}

// Read reads the body within its bounds.
func (b *Body) Read(buf []byte) (int, error) {
	b.mu.Lock()
	switch {
	case b.over:
		b.mu.Unlock()
		return 0, errOver
	case b.err != nil:
		b.mu.Unlock()
		return 0, b.err
	case b.whole:
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.touched = true
	left := b.left
	b.mu.Unlock()

	var dl time.Time
	if b.bounds.Idle > 0 {
		dl = time.Now().Add(b.bounds.Idle)
	}
	if !b.deadline.IsZero() && (dl.IsZero() || b.deadline.Before(dl)) {
		dl = b.deadline
	}
	if b.bounds.Max > 0 && int64(len(buf)) > left+1 {
		buf = buf[:left+1] // one more than allowed tells an excess
	}
	if !dl.IsZero() {
		_ = b.ctl.SetReadDeadline(dl)
	}
	n, err := b.rc.Read(buf)
	if !dl.IsZero() && (err == nil || errors.Is(err, io.EOF)) {
		_ = b.ctl.SetReadDeadline(time.Time{}) // see Bound
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if errors.Is(err, io.EOF) {
		b.whole = true
	}
	if b.bounds.Max > 0 {
		if int64(n) > left {
			b.fail(&http.MaxBytesError{Limit: b.bounds.Max}, http.StatusRequestEntityTooLarge)
			tooLarge(b.w)
			return int(left), b.err
		}
		b.left -= int64(n)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		code := http.StatusBadRequest // the client left, or sent a broken body
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			code = http.StatusRequestTimeout
		}
		b.fail(err, code)
	}
	return n, err
}

// tooLarge tells net/http's server, through w, that a request's body went
// past its bound, as http.MaxBytesReader does when it finds an excess (a
// reader of one byte bound to none): the server then closes the
// connection after the answer the way that lets the client read it
// (a FIN, then a pause, then the close), rather than at once with the
// unread body turning the close into a reset that can beat the answer to
// a client still sending.
func tooLarge(w http.ResponseWriter) {
	_, _ = http.MaxBytesReader(w, io.NopCloser(strings.NewReader("x")), 0).Read(make([]byte, 1))
}

func (b *Body) fail(err error, code int) {
	b.err = err
	b.failure.Store(&code)
}

// Close does nothing: the request's body is net/http's to close, after
// the handler (a Transport sending it on closes what it sends).
func (b *Body) Close() error { return nil }

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
