// Package onheaders calls a function as a response's headers go out, so
// that a proxy or a platform can set headers from the status a handler
// chose, in place of any the handler set.
package onheaders

import "net/http"

// Writer is an http.ResponseWriter that calls its function once, with the
// status and the headers, just before the first final (not 1xx) status is
// written, whether the handler writes it or its first body bytes do.
type Writer struct {
	http.ResponseWriter
	f    func(status int, h http.Header)
	done bool
}

// Wrap returns w calling f as its headers go out.
func Wrap(w http.ResponseWriter, f func(status int, h http.Header)) *Writer {
	return &Writer{ResponseWriter: w, f: f}
}

// WriteHeader implements http.ResponseWriter.
func (w *Writer) WriteHeader(status int) {
	if !w.done && status >= 200 {
		w.done = true
		w.f(status, w.ResponseWriter.Header())
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write implements http.ResponseWriter.
func (w *Writer) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Finish sends the headers, through the function, as a 200 if nothing was
// written yet: what net/http sends when a handler returns without writing
// (it would bypass the function). Call it after the handler returned, not
// after a panic (an aborted answer sends nothing).
func (w *Writer) Finish() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
}

// FlushError sends the headers through the function first, then flushes
// (http.ResponseController.Flush finds it before Unwrap).
func (w *Writer) FlushError() error {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
