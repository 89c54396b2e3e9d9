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
	rows, err := run(context.Background(), 2*time.Second, 2, 4, io.Discard)
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
			assert.Positive(t, r.Ratio, r.Path)
		}
		assert.Len(t, r.Rounds, 2, r.Path)
	}
	assert.Equal(t, []string{"direct", "nethttp/local", "nethttp/forward", "embedded/local", "embedded/forward", "embedded/forward-tls",
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

// TestSummarise: medians of the rounds, ratios within a round.
func TestSummarise(t *testing.T) {
	ms := time.Millisecond
	rows := []Row{
		{Path: "embedded/local", Rounds: []Row{{ReqPerSec: 10, P50: 3 * ms, P99: 9 * ms, Requests: 100}, {ReqPerSec: 30, P50: 1 * ms, P99: 5 * ms, Requests: 300, Errors: 1}, {ReqPerSec: 20, P50: 2 * ms, P99: 7 * ms, Requests: 200}}},
		{Path: "haproxy/local", Rounds: []Row{{ReqPerSec: 40}, {ReqPerSec: 40}, {ReqPerSec: 25}}},
	}
	summarise(rows, []time.Duration{600 * ms, 0})
	r := rows[0]
	assert.InDelta(t, 20, r.ReqPerSec, 1e-9)
	assert.Equal(t, 2*ms, r.P50)
	assert.Equal(t, 7*ms, r.P99)
	assert.Equal(t, 600, r.Requests)
	assert.Equal(t, 1, r.Errors)
	assert.Equal(t, 10*time.Second, r.CPUPer10k)
	// Ratios 0.25, 0.75, 0.8: the median is one round's, not 20/40.
	assert.InDelta(t, 0.75, r.Ratio, 1e-9)
	assert.InDelta(t, 0.25, r.RatioMin, 1e-9)
	assert.InDelta(t, 0.8, r.RatioMax, 1e-9)
	assert.InDelta(t, 1, rows[1].Ratio, 1e-9)
	assert.InDelta(t, 2.5, median([]float64{1, 4, 2, 3}), 1e-9)
}
