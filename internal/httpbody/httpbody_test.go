package httpbody

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheNextRequestOnTheConnectionIsNotCanceled: however a handler leaves
// its body (unread, read in part, read whole, with an answer large enough
// that net/http sends it, and drains the body, before the handler is
// done), the bounds leave no read deadline behind that would fire in
// net/http's background read of the connection: that would cancel every
// later request on the connection. (The third review found it cancelled
// 7 in 40 such requests, and every one with a pause after the handler.)
func TestTheNextRequestOnTheConnectionIsNotCanceled(t *testing.T) {
	big := strings.Repeat("a", 4<<10) // over net/http's 2 KiB: sent during the handler
	handlers := map[string]func(w http.ResponseWriter, r *http.Request){
		"unread, large answer": func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, big) },
		"part read, large answer": func(w http.ResponseWriter, r *http.Request) {
			_, _ = r.Body.Read(make([]byte, 10))
			_, _ = io.WriteString(w, big)
		},
		"unread, small answer": func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusNotFound) },
		"read whole":           func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) },
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/next" {
					time.Sleep(20 * time.Millisecond) // a deadline left behind has passed by now
					_, _ = fmt.Fprint(w, r.Context().Err())
					return
				}
				_, restore := Bound(w, r, Bounds{Idle: 5 * time.Millisecond, Timeout: 10 * time.Millisecond, Max: 1 << 20})
				h(w, r)
				restore()
				time.Sleep(5 * time.Millisecond) // the handler's last words
			}))
			defer srv.Close()
			c, err := net.Dial("tcp", srv.Listener.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			br := bufio.NewReader(c)
			for i := range 10 {
				_, err = fmt.Fprintf(c, "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("b", 1000))
				require.NoError(t, err)
				resp, err := http.ReadResponse(br, nil)
				require.NoError(t, err, "round %d", i)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				require.False(t, resp.Close, "round %d: the connection is kept", i)
				_, err = io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
				require.NoError(t, err)
				resp, err = http.ReadResponse(br, nil)
				require.NoError(t, err, "round %d", i)
				got, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				require.Equal(t, "<nil>", string(got), "round %d: the next request's context", i)
			}
		})
	}
}

// TestBodyBounds: a body passes its bounds whole, or fails with the status
// its failure earns: too large (413), too slow in all (408), broken off
// (400).
func TestBodyBounds(t *testing.T) {
	var failed, read = make(chan int, 1), make(chan int64, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, restore := Bound(w, r, Bounds{Idle: time.Second, Timeout: 300 * time.Millisecond, Max: 100})
		defer restore()
		n, _ := io.Copy(io.Discard, r.Body)
		read <- n
		failed <- b.Failed()
	}))
	defer srv.Close()
	send := func(head, body string, trickle bool) {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
		for _, ch := range body {
			if trickle {
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := io.WriteString(c, string(ch)); err != nil {
				break
			}
		}
		if !trickle {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(c)
	}
	for _, tc := range []struct {
		name, head, body string
		trickle          bool
		code             int
		n                int64
	}{
		{"whole", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", strings.Repeat("x", 100), false, 0, 100},
		{"too large, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "c8\r\n" + strings.Repeat("x", 200) + "\r\n0\r\n\r\n", false, http.StatusRequestEntityTooLarge, 100},
		{"too slow", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", strings.Repeat("x", 100), true, http.StatusRequestTimeout, -1},
		{"broken off", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "only this", false, http.StatusBadRequest, 9},
	} {
		send(tc.head, tc.body, tc.trickle)
		n := <-read
		assert.Equal(t, tc.code, <-failed, tc.name)
		if tc.n >= 0 {
			assert.Equal(t, tc.n, n, tc.name)
		} else {
			assert.Less(t, n, int64(100), tc.name)
		}
	}
}
