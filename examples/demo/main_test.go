package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/dfaas-go/dfaas/internal/browsertest"
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

// TestDashboardInBrowser: the demo's live page, in headless Chromium, lists
// the three nodes by name, shows node 1's flows to nodes 2 and 3 while the
// load runs, and its numbers change within 2 s of the load's end.
// DFAAS_SCREENSHOT=FILE.png saves what the page shows under load (the
// README's picture).
func TestDashboardInBrowser(t *testing.T) {
	ctx := browsertest.Start(t)
	o, err := parseFlags([]string{"-duration", "6s", "-interval", "500ms", "-json", "-dashboard", "127.0.0.1:0"}, io.Discard)
	require.NoError(t, err)
	up := make(chan string, 1)
	var ended atomic.Int64
	o.dashboardUp = func(url string) { up <- url }
	o.loadDone = func() { ended.Store(time.Now().UnixNano()) }
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(runCtx, o, io.Discard) }()
	defer func() { stop(); require.NoError(t, <-done) }()
	var url string
	select {
	case url = <-up:
	case err := <-done:
		t.Fatalf("the demo ended before its page served: %v", err)
	}

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url)))
	flow := func(from, to string) string {
		return `Number(([...document.querySelectorAll('#graph .flow')].find(f => f.dataset.from === ` + from +
			` && f.dataset.to === ` + to + `) || {dataset: {}}).dataset.rate || 0)`
	}
	// Nodes are named in the graph; flows name them by id.
	id := func(name string) string {
		return `document.querySelector('#graph .node[data-name="` + name + `"]').dataset.node`
	}
	under := flow(id("node 1"), id("node 2")) + ` > 0 && ` + flow(id("node 1"), id("node 3")) + ` > 0`
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = chromedp.Run(pctx, chromedp.Poll[bool](`document.querySelectorAll('#graph .node').length === 3 && `+under,
		chromedp.WithPollingTimeout(25*time.Second)))
	require.NoError(t, err, "the page never showed node 1 forwarding to nodes 2 and 3")
	require.Zero(t, ended.Load(), "the load ended before the page showed it: lengthen it")
	eval := func(js string) string { t.Helper(); return browsertest.Eval(t, ctx, js) }
	assert.Equal(t, "node 1,node 2,node 3", eval(`[...document.querySelectorAll('#graph .node')].map(n => n.dataset.name).sort().join()`))
	t.Logf("under load: node 1 -> 2 %s req/s, -> 3 %s req/s", eval(flow(id("node 1"), id("node 2"))), eval(flow(id("node 1"), id("node 3"))))
	if path := os.Getenv("DFAAS_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path, png, 0o644))
	}

	// The load ends: the page's numbers follow.
	served := `document.querySelector('#graph .node[data-name="node 1"]').dataset.served`
	underLoad := eval(served)
	require.Eventually(t, func() bool { return ended.Load() != 0 }, 15*time.Second, 10*time.Millisecond)
	_, err = chromedp.Run(pctx, chromedp.Poll[bool](served+` !== "`+underLoad+`" && !(`+under+`)`,
		chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "the page kept the numbers of the load after it ended")
	took := time.Since(time.Unix(0, ended.Load()))
	t.Logf("the page showed the load's end %v after it", took.Round(10*time.Millisecond))
	assert.LessOrEqual(t, took, 2*time.Second)
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
