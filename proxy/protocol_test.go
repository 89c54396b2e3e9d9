package proxy

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFunctionName(t *testing.T) {
	for path, want := range map[string]string{"/function/figlet": "figlet", "/function/figlet/x/y": "figlet", "/function/": "", "/function/Bad": "", "/system/functions": ""} {
		got, ok := FunctionName(path)
		assert.Equal(t, want != "", ok, path)
		assert.Equal(t, want, got, path)
	}
}

func TestRemoveHopByHop(t *testing.T) {
	h := http.Header{}
	h.Set("Connection", "keep-alive, X-Private ,x-other")
	for _, k := range []string{"Keep-Alive", "X-Private", "X-Other", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "X-Kept"} {
		h.Set(k, "v")
	}
	RemoveHopByHop(h)
	assert.Equal(t, http.Header{"X-Kept": {"v"}}, h)
}
