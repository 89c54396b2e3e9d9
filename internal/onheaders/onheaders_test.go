package onheaders

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrap(t *testing.T) {
	var mu sync.Mutex
	var calls []int
	set := func(status int, h http.Header) {
		mu.Lock()
		calls = append(calls, status)
		mu.Unlock()
		h.Set("X-Set", "ours")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w = Wrap(w, set)
		w.Header().Set("X-Set", "the handler's")
		switch r.URL.Path {
		case "/status":
			w.WriteHeader(http.StatusEarlyHints) // informational: not yet
			w.WriteHeader(http.StatusTeapot)
			w.WriteHeader(http.StatusOK) // superfluous: no second call
		case "/body":
			_, _ = io.WriteString(w, "x")
			_ = http.NewResponseController(w).Flush()
		case "/flush":
			_ = http.NewResponseController(w).Flush()
		case "/nothing":
			w.(*Writer).Finish()
		}
	}))
	defer srv.Close()
	for path, want := range map[string]int{"/status": http.StatusTeapot, "/body": http.StatusOK, "/flush": http.StatusOK, "/nothing": http.StatusOK} {
		mu.Lock()
		calls = nil
		mu.Unlock()
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, path)
		assert.Equal(t, "ours", resp.Header.Get("X-Set"), path)
		mu.Lock()
		assert.Equal(t, []int{want}, calls, path)
		mu.Unlock()
	}
}
