package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Len(t, o.capacities, 3)
	assert.Equal(t, "proportional", o.strategy)
	for _, bad := range [][]string{
		{"-capacities", "10,x"},
		{"-rates", "50,0"},
		{"-rates", "-1,0,0"},
		{"-duration", "10ms"},
		{"-strategy", "nope"},
		{"-forecast", "oracle"},
		{"-proxy", "nginx"},
	} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
}

// TestDemoJSONAndPlot runs a short demo on the in-memory overlay and checks
// the JSON document the README promises and the plot file.
func TestDemoJSONAndPlot(t *testing.T) {
	png := filepath.Join(t.TempDir(), "served.png")
	o, err := parseFlags([]string{"-overlay", "memory", "-duration", "3s", "-json", "-plot", png}, io.Discard)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), o, &out))
	var doc struct {
		Nodes []struct {
			ID              string  `json:"id"`
			Capacity        float64 `json:"capacity"`
			Offered         float64 `json:"offered"`
			ServedLocal     uint64  `json:"served_local"`
			ForwardedOut    uint64  `json:"forwarded_out"`
			Received        uint64  `json:"received"`
			Rejected        uint64  `json:"rejected"`
			ClientOK        uint64  `json:"client_ok"`
			CountedRejected uint64  `json:"counted_rejected"`
			SteadyServedRPS float64 `json:"steady_served_rps"`
		} `json:"nodes"`
		Latency struct {
			P50, P99, Max float64
		} `json:"latency_ms"`
		ConvergenceS             *float64 `json:"convergence_s"`
		RejectedAfterConvergence *uint64  `json:"rejected_after_convergence"`
		Requests                 uint64   `json:"requests"`
	}
	raw := out.String()
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&doc), raw)
	require.Len(t, doc.Nodes, 3)
	assert.Equal(t, "1", doc.Nodes[0].ID)
	assert.Equal(t, 10.0, doc.Nodes[0].Capacity)
	assert.Equal(t, 50.0, doc.Nodes[0].Offered)
	assert.Positive(t, doc.Nodes[0].ServedLocal)
	assert.Positive(t, doc.Nodes[0].ForwardedOut)
	assert.Equal(t, doc.Nodes[0].ForwardedOut, doc.Nodes[1].Received+doc.Nodes[2].Received)
	assert.Equal(t, doc.Nodes[0].ClientOK, doc.Nodes[0].ServedLocal+doc.Nodes[0].ForwardedOut, "the clients' 200s")
	assert.Equal(t, doc.Nodes[0].Rejected, doc.Nodes[0].CountedRejected)
	assert.Positive(t, doc.Latency.P50)
	require.NotNil(t, doc.ConvergenceS)
	require.NotNil(t, doc.RejectedAfterConvergence)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(raw), "\n")+1, "one JSON object on one line")
	assert.Equal(t, uint64(150), doc.Requests, "3 s at 50 req/s")
	st, err := os.Stat(png)
	require.NoError(t, err)
	assert.Positive(t, st.Size())
}

func TestDemoTable(t *testing.T) {
	o, err := parseFlags([]string{"-overlay", "memory", "-proxy", "haproxy", "-duration", "2s", "-capacities", "5,5", "-rates", "8,0"}, io.Discard)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), o, &out))
	s := out.String()
	assert.Contains(t, s, "node 2 (cap 5)")
	assert.Contains(t, s, "haproxy proxies")
	assert.Contains(t, s, "converged ")
	assert.Contains(t, s, "latency p50")
}
