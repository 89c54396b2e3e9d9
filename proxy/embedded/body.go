package embedded

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"
)

// holdBody is the most of a forward's body held in memory: a body up to it
// is held whole and can go to one peer after another; of a larger one only
// this much is held, the rest streams from the client to the first peer
// that admits the request (asked with "Expect: 100-continue", so a refusal
// comes before the body). It is h1pool.MaxBody: a held body takes the
// pool's fast path, a streamed one net/http's Transport.
const holdBody = 64 << 10

// expectContinue is how long a streamed forward waits for its peer's 100
// Continue before the body goes anyway (a peer that ignores the header).
const expectContinue = time.Second

// errBufferFull: the forwards in progress hold MaxBuffered bytes already.
var errBufferFull = errors.New("forward buffer full")

// errBodyGone: an earlier attempt took part of a streamed body from the
// client, so it cannot be sent again.
var errBodyGone = errors.New("the body went to a peer that refused it")

// replay is a forward's body as attempts send it: the held part, then (if
// the body is larger than holdBody) the rest from the client. Each attempt
// sends it from its start, until one reads any of the rest: from then on
// no other attempt can.
type replay struct {
	held   []byte
	rest   io.Reader // nil: held is the whole body
	length int64     // of the whole body, -1 if unknown

	mu   sync.Mutex
	gen  int  // the current attempt
	took bool // an attempt read from rest
}

// hold reads the start of r's body, up to holdBody, into memory, and
// returns the body as attempts will send it. The memory is reserved in
// p.buffered before it is allocated, whether the client sends the bytes
// or not, so that MaxBuffered bounds what forwards hold; the caller gives
// back *reserved once the request is done (the local platform may read
// the held bytes after the forwards).
func (p *Proxy) hold(r *http.Request, reserved *int64) (*replay, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return &replay{length: 0}, nil
	}
	size := int64(holdBody)
	if r.ContentLength >= 0 && r.ContentLength < size {
		size = r.ContentLength
	}
	*reserved = size
	if p.buffered.Add(size) > p.cfg.MaxBuffered {
		return nil, errBufferFull
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r.Body, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if r.ContentLength > int64(n) {
			return nil, err // cut off before its declared length
		}
		return &replay{held: buf[:n], length: int64(n)}, nil // the whole body, of unknown length
	case err != nil:
		return nil, err
	}
	rp := &replay{held: buf, length: size}
	if size == holdBody && r.ContentLength != holdBody {
		rp.rest, rp.length = r.Body, r.ContentLength // maybe more
	}
	return rp, nil
}

// attempt returns a reader of the whole body for one more attempt, or
// errBodyGone. Readers of earlier attempts fail from then on: a Transport
// may still read an abandoned request's body.
func (rp *replay) attempt() (io.ReadCloser, error) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.took {
		return nil, errBodyGone
	}
	rp.gen++
	return &attemptReader{rp: rp, gen: rp.gen}, nil
}

// retire makes every attempt's reader fail from now on: the request has
// its answer, and a Transport that a peer answered early may still be
// reading the body.
func (rp *replay) retire() {
	rp.mu.Lock()
	rp.gen++
	rp.mu.Unlock()
}

// streamed reports whether the body is larger than what is held.
func (rp *replay) streamed() bool { return rp.rest != nil }

type attemptReader struct {
	rp  *replay
	gen int
	off int
}

var errStaleAttempt = errors.New("a later attempt sends this body")

func (a *attemptReader) Read(b []byte) (int, error) {
	rp := a.rp
	if a.off < len(rp.held) {
		rp.mu.Lock()
		stale := rp.gen != a.gen
		rp.mu.Unlock()
		if stale {
			return 0, errStaleAttempt
		}
		n := copy(b, rp.held[a.off:])
		a.off += n
		return n, nil
	}
	if rp.rest == nil {
		return 0, io.EOF
	}
	rp.mu.Lock()
	if rp.gen != a.gen {
		rp.mu.Unlock()
		return 0, errStaleAttempt
	}
	rp.took = true
	rp.mu.Unlock()
	return rp.rest.Read(b)
}

// Close does nothing: the client's body is the handler's to close.
func (a *attemptReader) Close() error { return nil }
