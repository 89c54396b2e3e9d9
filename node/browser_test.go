package node_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/internal/browsertest"
	"github.com/dfaas-go/dfaas/overlay"
)

// offer posts rate requests per second to url until ctx ends.
func offer(ctx context.Context, url string, rate int) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				wg.Go(func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("hi"))
					if resp, err := client.Do(req); err == nil {
						_ = resp.Body.Close()
					}
				})
			}
		}
	})
	return &wg
}

// TestLivePage: a real browser opens node a's admin page while a, over
// capacity, forwards to b. The page shows every node of the federation,
// the flow a -> b with its rate, each node's functions, and refreshes at
// least every second; a peer whose id is markup is shown as text and runs
// nothing.
func TestLivePage(t *testing.T) {
	ctx := browsertest.Start(t)
	network := overlay.NewNetwork()
	a := startNode(t, network, "embedded", "a", 5, nil)
	startNode(t, network, "embedded", "b", 50, nil)
	const hostile = `<img/src=x/onerror=window.pwned=1>` // a valid id: no spaces
	startNode(t, network, "embedded", hostile, 1, nil)
	srv := httptest.NewServer(a.AdminHandler())
	defer srv.Close()

	loadCtx, stopLoad := context.WithCancel(t.Context())
	load := offer(loadCtx, "http://"+a.DataPlane.UserAddr()+"/function/hello", 25)
	defer func() { stopLoad(); load.Wait() }()

	// The first Run starts the browser; a timeout on its context would stop
	// the browser with it.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")))
	// Navigate returns at the load event: the page drew the view it came
	// with by then, before any refresh (a one-shot screenshot has it).
	firstPaint, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('updated').dataset.count + ' ' + `+
		`document.querySelectorAll('#graph .node').length + ' ' + document.querySelectorAll('article.card').length`))
	require.NoError(t, err)
	assert.Regexp(t, `^1 [1-3] [1-3]$`, firstPaint, "drawn at load: views, nodes, cards")
	pctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	const flowAB = `[...document.querySelectorAll('#graph .flow')].find(f => f.dataset.from === 'a' && f.dataset.to === 'b')`
	_, err = chromedp.Run(pctx, chromedp.Poll[bool](`document.querySelectorAll('#graph .node').length === 3 && `+
		`Number((`+flowAB+` || {dataset: {}}).dataset.rate) >= 10`, chromedp.WithPollingTimeout(30*time.Second)))
	require.NoError(t, err, "the page never showed three nodes and a's flow to b")

	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(`+js+`)`))
		require.NoError(t, err, js)
		return v
	}
	assert.Equal(t, "3", eval(`document.querySelectorAll('#graph .node').length`))
	label := eval(flowAB + `.querySelector('text').textContent`)
	assert.Regexp(t, `^\d+(\.\d)?/s$`, label)
	t.Logf("flow a -> b: %s req/s, labelled %q", eval(flowAB+`.dataset.rate`), label)

	// a's card lists its function with the capacity it advertises (what
	// it measures, at most the declared 5), and what it measures of its
	// executions: in flight, latency, and how its capacity is learned.
	row := `document.querySelector('article.card[data-node="a"] tr[data-function="hello"]')`
	capacity, err := strconv.ParseFloat(eval(row+`.querySelector('td:nth-child(2)').textContent`), 64)
	require.NoError(t, err)
	assert.True(t, capacity > 0 && capacity <= 5, "capacity %v", capacity)
	assert.Regexp(t, `^\d+$`, eval(row+`.querySelector('td.in-flight').textContent`))
	assert.Regexp(t, `^\d+(\.\d)?$`, eval(row+`.querySelector('td.exec-p95').textContent`))
	assert.Regexp(t, `^measured · (start|probe|fill|hold|cut)`, eval(row+`.querySelector('td.capacity-is').textContent`))
	assert.Equal(t, "0", eval(`document.querySelectorAll('article.card[data-node="b"] td.in-flight').length`), "a peer's executions are not a's to show")
	assert.Contains(t, eval(`document.getElementById('summary').textContent`), "3 nodes")

	// The hostile id is text in its card and ran nothing.
	assert.Equal(t, hostile, eval(`[...document.querySelectorAll('article.card h2')].map(h => h.textContent).find(s => s.includes('img'))`))
	assert.Equal(t, "false", eval(`window.pwned === 1`), "markup from an advert ran")
	assert.Equal(t, "0", eval(`document.querySelectorAll('img').length`))

	// It refreshes: the view's counter moves on by at least two in 3.5 s.
	before, err := strconv.Atoi(eval(`document.getElementById('updated').dataset.count`))
	require.NoError(t, err)
	time.Sleep(3500 * time.Millisecond)
	after, err := strconv.Atoi(eval(`document.getElementById('updated').dataset.count`))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, after-before, 2, fmt.Sprintf("refreshes %d -> %d", before, after))
}
