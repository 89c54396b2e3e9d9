package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary be the platform stand-in too, as the
// command's own binary is.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == backendFlag {
		serveBackend(os.Args[2])
		return
	}
	os.Exit(m.Run())
}

// TestRunAllPaths: a short run loads every path through real proxies with
// wrk and gets answers, and no errors, on all of them. (The figures are
// for reading, not for asserting.)
func TestRunAllPaths(t *testing.T) {
	rows, err := run(context.Background(), time.Second, 4, io.Discard)
	require.NoError(t, err)
	var paths []string
	for _, r := range rows {
		paths = append(paths, r.Path)
		assert.Positive(t, r.ReqPerSec, r.Path)
		assert.Positive(t, r.P50, r.Path)
		assert.GreaterOrEqual(t, r.P99, r.P50, r.Path)
		assert.Zero(t, r.Errors, r.Path)
		if r.Path != "direct" {
			assert.Positive(t, r.CPUPer10k, "%s: the proxies' CPU", r.Path)
		}
	}
	assert.Equal(t, []string{"direct", "embedded/local", "embedded/forward", "embedded/forward-tls",
		"haproxy/local", "haproxy/forward", "haproxy/forward-tls"}, paths)
}

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:1/function/figlet
  2 threads and 4 connections
  Latency Distribution
     50%  120.00us
     75%  150.00us
     90%  300.00us
     99%    2.50ms
  12345 requests in 1.00s, 1.2MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:  12345.67
`
	r, err := parseWrk(out)
	require.NoError(t, err)
	assert.InDelta(t, 12345.67, r.ReqPerSec, 0.001)
	assert.Equal(t, 120*time.Microsecond, r.P50)
	assert.Equal(t, 2500*time.Microsecond, r.P99)
	assert.Equal(t, 12345, r.Requests)
	assert.Equal(t, 7, r.Errors)
	_, err = parseWrk("garbage")
	assert.Error(t, err)
}
