package h1pool

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server is an httptest server that counts the connections it accepted.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	_, _ = w.Write(append([]byte(r.URL.RequestURI()+" "), b...))
}

func do(t *testing.T, p *Pool, method, url, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	resp, err := p.RoundTrip(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(b)
}

func TestReusesOneConnectionForRequestsInTurn(t *testing.T) {
	s := newServer(t, echo)
	p := New(Config{})
	defer p.Close()
	for i := range 20 {
		resp, b := do(t, p, http.MethodPost, s.URL+"/function/f?i=1", "body")
		assert.Equal(t, http.StatusOK, resp.StatusCode, i)
		assert.Equal(t, "/function/f?i=1 body", b)
	}
	resp, b := do(t, p, http.MethodGet, s.URL+"/x", "")
	assert.Equal(t, "GET", resp.Header.Get("X-Method"))
	assert.Equal(t, "/x ", b)
	assert.EqualValues(t, 1, s.conns.Load())
}

func TestConcurrentRequestsEachTakeAConnectionAndKeepIt(t *testing.T) {
	release := make(chan struct{})
	var in sync.WaitGroup
	in.Add(4)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			in.Done()
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	p := New(Config{MaxIdlePerHost: 3})
	defer p.Close()
	var done sync.WaitGroup
	for range 4 {
		done.Add(1)
		go func() {
			defer done.Done()
			_, b := do(t, p, http.MethodGet, s.URL+"/wait", "")
			assert.Equal(t, "ok", b)
		}()
	}
	in.Wait() // four requests in the server at once: four connections
	close(release)
	done.Wait()
	assert.EqualValues(t, 4, s.conns.Load())
	for range 10 { // one beyond MaxIdlePerHost was closed; the rest are reused
		do(t, p, http.MethodGet, s.URL+"/", "")
	}
	assert.EqualValues(t, 4, s.conns.Load())
}

// A server that closed an idle connection (it restarted, or its idle
// timeout came first) costs a new connection, never a failed request.
func TestAConnectionTheServerClosedIsNotUsed(t *testing.T) {
	s := newServer(t, echo)
	p := New(Config{})
	defer p.Close()
	do(t, p, http.MethodPost, s.URL+"/a", "1")
	s.CloseClientConnections()
	require.Eventually(t, func() bool { // the FIN has arrived
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.idle {
			for _, c := range l {
				if !alive(c.raw) {
					return true
				}
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	var wrote atomic.Int64
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(),
		&httptrace.ClientTrace{WroteHeaders: func() { wrote.Add(1) }}), http.MethodPost, s.URL+"/b", strings.NewReader("2"))
	require.NoError(t, err)
	resp, err := p.RoundTrip(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, "/b 2", string(b))
	assert.EqualValues(t, 1, wrote.Load(), "written once, on the new connection")
	assert.EqualValues(t, 2, s.conns.Load())
}

func TestConnectionsIdleBeyondIdleTimeoutAreNotReused(t *testing.T) {
	s := newServer(t, echo)
	p := New(Config{IdleTimeout: 50 * time.Millisecond})
	defer p.Close()
	do(t, p, http.MethodGet, s.URL+"/", "")
	do(t, p, http.MethodGet, s.URL+"/", "")
	require.EqualValues(t, 1, s.conns.Load())
	time.Sleep(100 * time.Millisecond)
	do(t, p, http.MethodGet, s.URL+"/", "")
	assert.EqualValues(t, 2, s.conns.Load())
}

func TestAnAnswerThatClosesItsConnectionIsNotReused(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, "ok")
	})
	p := New(Config{})
	defer p.Close()
	resp, _ := do(t, p, http.MethodGet, s.URL+"/close", "")
	assert.True(t, resp.Close)
	do(t, p, http.MethodGet, s.URL+"/", "")
	do(t, p, http.MethodGet, s.URL+"/", "")
	assert.EqualValues(t, 2, s.conns.Load())
}

func TestABodyClosedBeforeItsEndTakesItsConnection(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 100<<10))
	})
	p := New(Config{})
	defer p.Close()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/", nil)
	resp, err := p.RoundTrip(req)
	require.NoError(t, err)
	_, _ = resp.Body.Read(make([]byte, 10))
	require.NoError(t, resp.Body.Close())
	_, b := do(t, p, http.MethodGet, s.URL+"/", "")
	assert.Len(t, b, 100<<10)
	assert.EqualValues(t, 2, s.conns.Load())
}

// An answer whose end is the connection's end (no length, not chunked).
func TestAnAnswerReadToTheConnectionsEnd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			if _, err := http.ReadRequest(br); err == nil {
				_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil the end")
			}
			_ = c.Close()
		}
	}()
	p := New(Config{})
	defer p.Close()
	resp, b := do(t, p, http.MethodGet, "http://"+l.Addr().String()+"/", "")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the interim answer is skipped")
	assert.Equal(t, "until the end", b)
	p.mu.Lock()
	defer p.mu.Unlock()
	assert.Empty(t, p.idle)
}

func TestHeadIsAnsweredWithoutABody(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "hello")
		}
	})
	p := New(Config{})
	defer p.Close()
	resp, b := do(t, p, http.MethodHead, s.URL+"/", "")
	assert.EqualValues(t, 5, resp.ContentLength)
	assert.Empty(t, b)
	_, b = do(t, p, http.MethodGet, s.URL+"/", "")
	assert.Equal(t, "hello", b)
	assert.EqualValues(t, 1, s.conns.Load())
}

func TestCancelingTheContextEndsTheExchangeAtOnce(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.(http.Flusher).Flush()
		}
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	p := New(Config{})
	defer p.Close()
	for _, path := range []string{"/headers", "/body"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		resp, err := p.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		require.Error(t, err, path)
		assert.Less(t, time.Since(start), 5*time.Second, path)
		if path == "/headers" {
			assert.ErrorIs(t, err, context.Canceled)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	assert.Empty(t, p.idle, "a canceled exchange's connection is closed")
}

func TestResponseHeaderTimeoutIsATimeout(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-stop
		}
		_, _ = io.WriteString(w, "ok")
	})
	p := New(Config{ResponseHeaderTimeout: 100 * time.Millisecond})
	defer p.Close()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/slow", nil)
	_, err := p.RoundTrip(req)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
	// A slow body after timely headers is not cut: the timeout was lifted.
	s2 := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "late")
	})
	_, b := do(t, p, http.MethodGet, s2.URL+"/", "")
	assert.Equal(t, "late", b)
}

// A large body goes through http.Transport, which reads the answer while
// it writes: a server that answers without reading the body is heard.
func TestALargeBodyAnsweredEarlyGetsItsAnswer(t *testing.T) {
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	p := New(Config{})
	defer p.Close()
	resp, b := do(t, p, http.MethodPost, s.URL+"/", strings.Repeat("x", 8<<20))
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "too large\n", b)
	// A body of unknown length streams, chunked.
	s2 := newServer(t, echo)
	req, _ := http.NewRequest(http.MethodPost, s2.URL+"/", io.NopCloser(strings.NewReader("streamed")))
	resp, err := p.RoundTrip(req)
	require.NoError(t, err)
	got, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, "/ streamed", string(got))
}

func TestNothingIsWrittenWhenTheConnectionFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	var wrote atomic.Bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader("x"))
	_, err = New(Config{}).RoundTrip(req)
	require.Error(t, err)
	assert.False(t, wrote.Load())
}

func TestRefusesWhatCannotBeSentIntact(t *testing.T) {
	p := New(Config{})
	for name, mutate := range map[string]func(*http.Request){
		"header name":  func(r *http.Request) { r.Header["Bad Name"] = []string{"x"} },
		"header value": func(r *http.Request) { r.Header.Set("X", "a\r\nInjected: 1") },
		"method":       func(r *http.Request) { r.Method = "GET /x" },
		"https":        func(r *http.Request) { r.URL.Scheme = "https" },
		"scheme":       func(r *http.Request) { r.URL.Scheme = "ftp" },
		"host":         func(r *http.Request) { r.URL.Host = "" },
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
		mutate(req)
		_, err := p.RoundTrip(req)
		assert.Error(t, err, name)
	}
}

func TestTLS(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	s.EnableHTTP2 = true // offered by the server; the pool speaks HTTP/1.1 only
	s.StartTLS()
	defer s.Close()
	tc := s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tc.NextProtos = []string{"h2", "http/1.1"}
	p := New(Config{TLS: tc})
	defer p.Close()
	for range 3 {
		resp, b := do(t, p, http.MethodPost, s.URL+"/s", "secret")
		assert.Equal(t, "/s secret", b)
		assert.Equal(t, 1, resp.ProtoMajor)
	}
	p.mu.Lock()
	assert.Len(t, p.idle, 1)
	p.mu.Unlock()

	// A server this client cannot verify: refused in the handshake, before
	// anything of the request was written.
	var wrote atomic.Bool
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/", nil)
	_, err := New(Config{TLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}}).RoundTrip(req)
	var unknown x509.UnknownAuthorityError
	assert.ErrorAs(t, err, &unknown)
	assert.False(t, wrote.Load())
}

// rawServer answers each request it reads with answer(i, conn), i counting
// the requests of its connection.
func rawServer(t *testing.T, l net.Listener, answer func(i int, c net.Conn) bool) string {
	t.Helper()
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if !answer(i, c) {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l
}

// A hostile peer cannot make a forwarder hold an endless header.
func TestAnswerHeadersAreBounded(t *testing.T) {
	big := strings.Repeat("a", 4<<20)
	addr := rawServer(t, listen(t), func(i int, c net.Conn) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+big+"\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	_, err := New(Config{}).RoundTrip(req)
	assert.ErrorIs(t, err, errHeaderTooLarge)
	// Nor through interim answers.
	addr = rawServer(t, listen(t), func(i int, c net.Conn) bool {
		for range 4 {
			_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: "+big[:400<<10]+"\r\n\r\n")
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	_, err = New(Config{}).RoundTrip(req)
	assert.ErrorIs(t, err, errHeaderTooLarge)
}

// A request whose client has left is not sent: it would run for nobody.
func TestACanceledRequestIsNotSent(t *testing.T) {
	var hits atomic.Int64
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/canceled" {
			hits.Add(1)
		}
	})
	p := New(Config{})
	defer p.Close()
	for range 50 {
		do(t, p, http.MethodGet, s.URL+"/warm", "") // a kept connection waits
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/canceled", strings.NewReader("x"))
		_, err := p.RoundTrip(req)
		assert.ErrorIs(t, err, context.Canceled)
	}
	do(t, p, http.MethodGet, s.URL+"/warm", "") // after every canceled one, if any was sent
	assert.Zero(t, hits.Load())
	assert.EqualValues(t, 1, s.conns.Load(), "the unused connection was kept")
}

// Over TLS, bytes the peer sent past an answer may already sit decrypted in
// the TLS layer, out of the socket's sight: such a connection is not
// reused, or the next request would get them as its answer.
func TestATLSConnectionHoldingMoreThanItsAnswerIsNotReused(t *testing.T) {
	s := httptest.NewUnstartedServer(nil)
	s.StartTLS()
	cert := s.TLS.Certificates[0]
	tc := s.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	s.Close()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		DynamicRecordSizingDisabled: true})
	require.NoError(t, err)
	var first atomic.Bool
	first.Store(true)
	addr := rawServer(t, l, func(i int, c net.Conn) bool {
		if first.Swap(false) { // one answer, and a stray one in the same record
			body := strings.Repeat("1", 12000)
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%sHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale", len(body), body)
		} else {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
		}
		return true
	})
	p := New(Config{TLS: tc})
	defer p.Close()
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/", nil)
	resp, err := p.RoundTrip(req)
	require.NoError(t, err)
	n, _ := io.Copy(io.Discard, resp.Body) // large reads: none beyond the body is buffered above TLS
	require.NoError(t, resp.Body.Close())
	require.EqualValues(t, 12000, n)
	_, b := do(t, p, http.MethodGet, "https://"+addr+"/", "")
	assert.Equal(t, "fresh", b)
}

// A large body goes through http.Transport, which would send a request
// again on a new connection if its kept one failed after the write and the
// method or an Idempotency-Key said it may: the request may have run.
func TestALargeBodyIsNeverSentTwice(t *testing.T) {
	var executed atomic.Int64
	addr := rawServer(t, listen(t), func(i int, c net.Conn) bool {
		if executed.Add(1) == 2 {
			return false // ran it, and the connection dies before the answer
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	p := New(Config{})
	defer p.Close()
	body := bytes.Repeat([]byte("x"), MaxBody+1)
	var errs int
	for range 2 {
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/", bytes.NewReader(body))
		req.Header.Set("Idempotency-Key", "from-the-user")
		resp, err := p.RoundTrip(req)
		if err != nil {
			errs++
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	assert.EqualValues(t, 2, executed.Load())
	assert.Equal(t, 1, errs, "the second failed after it was sent: an error, not a second run")
}

func TestIdleConnectionsAreClosedWithoutTraffic(t *testing.T) {
	var open atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(echo))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	s.Start()
	defer s.Close()
	p := New(Config{IdleTimeout: 100 * time.Millisecond, MaxIdlePerHost: 2})
	defer p.Close()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, p, http.MethodGet, s.URL+"/", "")
		}()
	}
	wg.Wait()
	assert.Eventually(t, func() bool { return open.Load() == 0 }, 5*time.Second, 10*time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	assert.Empty(t, p.idle)
	assert.Nil(t, p.sweeper, "no timer once nothing is kept")
}

// TestAGivenUpExchangeIsReset: a request whose client gave up before the
// answer came is dropped with a reset, not a FIN: a FIN would make the
// kernel deliver what it still held (a request written into a partition,
// once the network heals) and the request would run for nobody.
func TestAGivenUpExchangeIsReset(t *testing.T) {
	seen := make(chan error, 1)
	addr := rawServer(t, listen(t), func(i int, c net.Conn) bool {
		_, err := c.Read(make([]byte, 1)) // no answer: wait for what the client does
		seen <- err
		return false
	})
	p := New(Config{})
	defer p.Close()
	// A small body (the pool's own exchange) and a large one (http.Transport's).
	for _, body := range []string{"x", strings.Repeat("x", MaxBody+1)} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader(body))
		_, err := p.RoundTrip(req)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded, "%d bytes", len(body))
		select {
		case err := <-seen:
			assert.ErrorIs(t, err, syscall.ECONNRESET, "%d bytes", len(body))
		case <-time.After(5 * time.Second):
			t.Fatalf("%d bytes: the server saw nothing of the client leaving", len(body))
		}
	}
}

// TestAFreedConnectionBeatsASlowDial: on a lossy link a dial can take a
// second (a lost SYN); a connection another request frees meanwhile is
// taken instead, and the dial's connection is kept for later.
func TestAFreedConnectionBeatsASlowDial(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	dials, slow, dial := stallingDials()
	p := New(Config{Dial: dial})
	defer p.Close()
	first := make(chan string)
	go func() {
		_, b := do(t, p, http.MethodGet, s.URL+"/wait", "")
		first <- b
	}()
	require.Eventually(t, func() bool { return s.conns.Load() == 1 }, 5*time.Second, time.Millisecond)
	second := make(chan string)
	go func() {
		_, b := do(t, p, http.MethodGet, s.URL+"/", "")
		second <- b
	}()
	require.Eventually(t, func() bool { return dials.Load() == 2 }, 5*time.Second, time.Millisecond)
	close(release) // the first request frees its connection; the second dial still stalls
	assert.Equal(t, "ok", <-first)
	select {
	case b := <-second:
		assert.Equal(t, "ok", b)
	case <-time.After(5 * time.Second):
		t.Fatal("the second request waited for its dial")
	}
	close(slow)
	assert.Eventually(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle[connKeyOf(t, s.URL)]) == 2 && len(p.waiters) == 0
	}, 5*time.Second, 10*time.Millisecond, "the dialed connection is kept")
}

func connKeyOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	key, _ := connKey(u)
	return key
}

func waiting(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.waiters {
		n += len(l)
	}
	return n
}

// A connection freed while a request waits is checked as a kept one is: a
// hostile peer that appended a second answer after the first does not get
// it read as the waiting request's answer.
func TestAHandedConnectionWithBytesLeftIsNotUsed(t *testing.T) {
	addr := rawServer(t, listen(t), func(i int, c net.Conn) bool {
		if i == 0 {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"+
				"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		} else {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
		}
		return true
	})
	_, slow, dial := stallingDials()
	p := New(Config{Dial: dial})
	defer p.Close()
	defer close(slow)
	reqA, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/a", nil)
	respA, err := p.RoundTrip(reqA)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the planted answer is in
	got := make(chan string, 1)
	go func() {
		reqB, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/b", nil)
		resp, err := p.RoundTrip(reqB)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		got <- string(b)
	}()
	require.Eventually(t, func() bool { return waiting(p) == 1 }, 5*time.Second, time.Millisecond)
	b, _ := io.ReadAll(respA.Body) // EOF: put hands the connection to B
	_ = respA.Body.Close()
	assert.Equal(t, "ok", string(b))
	select {
	case s := <-got:
		assert.NotEqual(t, "evil", s, "B got the answer the peer planted before B's request")
	case <-time.After(500 * time.Millisecond): // B waits for its dial: the connection was refused
	}
}

// A peer closes a connection right after its answer (a server shutting
// down closes connections as they go idle): a request waiting for a
// connection is not written into it, which would fail it as sent.
func TestAHandedConnectionThePeerClosedIsNotUsed(t *testing.T) {
	addr := rawServer(t, listen(t), func(i int, c net.Conn) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false // closes after the answer
	})
	_, slow, dial := stallingDials()
	p := New(Config{Dial: dial})
	defer p.Close()
	reqA, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/a", nil)
	respA, err := p.RoundTrip(reqA)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the FIN is in
	var wrote atomic.Int64
	errc := make(chan error, 1)
	go func() {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteHeaders: func() { wrote.Add(1) }})
		reqB, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/b", nil)
		resp, err := p.RoundTrip(reqB)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	require.Eventually(t, func() bool { return waiting(p) == 1 }, 5*time.Second, time.Millisecond)
	_, _ = io.ReadAll(respA.Body)
	_ = respA.Body.Close()
	time.Sleep(100 * time.Millisecond)
	close(slow)
	err = <-errc
	assert.NoError(t, err, "B was written into a connection the peer had closed (wrote=%d)", wrote.Load())
}

// A dial whose request has gone goes on for the pool, but within twice
// DialTimeout even for a Dial bounded by its context alone.
func TestADialItsRequestLeftIsBounded(t *testing.T) {
	ended := make(chan struct{})
	p := New(Config{DialTimeout: 50 * time.Millisecond, Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		<-ctx.Done() // a dial to a black hole, bounded by ctx alone
		close(ended)
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://192.0.2.1/", nil)
	_, err := p.RoundTrip(req)
	require.Error(t, err)
	p.Close()
	select {
	case <-ended:
	case <-time.After(time.Second):
		t.Fatal("the orphaned dial still runs after DialTimeout and Close")
	}
}

// stallingDials is a Dial whose every dial after the first waits until
// slow is closed (a lost SYN), counting them.
func stallingDials() (dials *atomic.Int64, slow chan struct{}, dial func(context.Context, string, string) (net.Conn, error)) {
	dials, slow = new(atomic.Int64), make(chan struct{})
	d := &net.Dialer{}
	return dials, slow, func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			<-slow
		}
		return d.DialContext(ctx, network, addr)
	}
}
