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
	assert.Contains(t, o.strategies, "resilient")
	assert.Contains(t, o.workloads, "reference")
	for _, bad := range [][]string{
		{"-strategies", "nope"},
		{"-workloads", "nope"},
		{"-forecast", "oracle"},
		{"-trace", "x.csv"},
		{"-loss", "1"},
	} {
		_, err := parseFlags(bad, io.Discard)
		assert.Error(t, err, "%v", bad)
	}
}

func TestTableJSONAndPlots(t *testing.T) {
	dir := t.TempDir()
	o, err := parseFlags([]string{"-workloads", "reference", "-strategies", "resilient,recalc", "-json", "-plot", dir}, io.Discard)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), o, &out))
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &rows), out.String())
	require.Len(t, rows, 2)
	assert.Equal(t, "resilient", rows[0]["strategy"])
	assert.Equal(t, "reference", rows[0]["workload"])
	assert.InDelta(t, 1, rows[0]["served_over_optimum"], 1e-9)
	assert.InDelta(t, 0.7, rows[1]["served_over_optimum"], 1e-9, "recalc gets half of each helper's slack")
	for _, k := range []string{"rejected_pct", "forwarded_pct", "control_bytes_per_node_s"} {
		assert.Contains(t, rows[0], k)
	}
	_, err = os.Stat(filepath.Join(dir, "reference.png"))
	assert.NoError(t, err)

	o, err = parseFlags([]string{"-workloads", "reference", "-strategies", "resilient"}, io.Discard)
	require.NoError(t, err)
	out.Reset()
	require.NoError(t, run(context.Background(), o, &out))
	assert.Contains(t, out.String(), "served/opt")
	assert.Contains(t, out.String(), "resilient")
}

func TestTraceReplayAndForecastTable(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace.csv")
	caps := filepath.Join(dir, "caps.csv")
	require.NoError(t, os.WriteFile(trace, []byte("time_s,node,function,rate\n0,edge-a,figlet,50\n10,edge-a,figlet,20\n20,edge-a,figlet,0\n"), 0o644))
	require.NoError(t, os.WriteFile(caps, []byte("node,function,capacity\nedge-a,figlet,10\nedge-b,figlet,20\nedge-c,figlet,30\n"), 0o644))
	o, err := parseFlags([]string{"-trace", trace, "-capacities", caps, "-strategies", "proportional", "-json"}, io.Discard)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), o, &out))
	var rows []Row
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &rows))
	require.Len(t, rows, 1)
	assert.Equal(t, "trace.csv", rows[0].Workload)
	assert.InDelta(t, 1, rows[0].ServedOverOptimum, 1e-9)

	o, err = parseFlags([]string{"-trace", trace, "-capacities", caps, "-forecasters", "last,holt"}, io.Discard)
	require.NoError(t, err)
	out.Reset()
	require.NoError(t, run(context.Background(), o, &out))
	assert.Contains(t, out.String(), "MAPE")
	assert.Contains(t, out.String(), "holt")
}
