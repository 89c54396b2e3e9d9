package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas/proxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-functions", "hello=10, figlet=2.5", "-bootstrap", " a , b "}, io.Discard)
	require.NoError(t, err)
	assert.Len(t, o.functions, 2)
	assert.Equal(t, []string{"a", "b"}, o.bootstrap)
	for _, bad := range [][]string{{"-functions", "hello"}, {"-functions", "Bad=1"}, {"-functions", "x=-1"}, {"-strategy", "nope"}} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
}

// TestAgentServes starts the agent binary's composition and calls its
// function through the user port.
func TestAgentServes(t *testing.T) {
	o, err := parseFlags([]string{"-user", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-interval", "100ms"}, io.Discard)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *proxy.Proxy, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.DiscardHandler), func(p *proxy.Proxy) { ready <- p }) }()
	var px *proxy.Proxy
	select {
	case px = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	url := "http://" + px.UserAddr() + "/function/hello"
	require.Eventually(t, func() bool { // until the first plan is applied
		resp, err := http.Post(url, "text/plain", strings.NewReader("world"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "hello: world"
	}, 5*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	http.DefaultClient.CloseIdleConnections()
}
