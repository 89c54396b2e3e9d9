package proxytest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/dfaas-go/dfaas"
)

// churnFor is how long testFunctionsComeAndGo replaces functions under
// load (examples/scalebench -churn runs it for minutes).
const churnFor = 4 * time.Second

// testFunctionsComeAndGo: a node of a thousand functions whose plans name
// 16 peers, ten functions replaced a second - each plan a new one, as
// functions come and go locally and at peers - while four clients call
// one that runs locally and ten that are forwarded: none of their
// requests fails, a function gone answers 404 and a new one is served.
func testFunctionsComeAndGo(t *testing.T, s *suite) {
	a, pa := s.node("a")
	var peers []dfaas.Share
	var stubs []*Platform
	for i := range 16 {
		p := newPlatform(t, fmt.Sprintf("p%d", i)) // a peer that runs anything
		stubs = append(stubs, p)
		peers = append(peers, dfaas.Share{Node: dfaas.NodeID(p.Name), Addr: p.addr, Weight: 1.0 / 16, Cap: 1e6})
	}
	plan := map[string]dfaas.FunctionPlan{"echo": unlimited}
	for i := range 999 {
		plan[fmt.Sprintf("f%d", i)] = dfaas.FunctionPlan{Peers: peers}
	}
	s.apply(a, plan)

	var ok, failed, local atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				fn := "echo"
				if i%4 != 0 {
					fn = fmt.Sprintf("f%d", i%10) // never replaced
				}
				resp, err := client.Post("http://"+a.UserAddr()+"/function/"+fn, "text/plain", strings.NewReader("x"))
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != http.StatusOK:
					if failed.Add(1) <= 3 {
						t.Logf("%s: %d %s", fn, resp.StatusCode, body)
					}
				case fn == "echo":
					local.Add(1)
					ok.Add(1)
				default:
					ok.Add(1)
				}
			}
		}()
	}
	replaced := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(churnFor); time.Now().Before(end) && replaced < 989; replaced++ {
		<-tick.C
		delete(plan, fmt.Sprintf("f%d", 10+replaced)) // f0-f9 stay
		plan[fmt.Sprintf("g%d", replaced)] = dfaas.FunctionPlan{Peers: peers}
		s.apply(a, plan)
	}
	close(done)
	wg.Wait()
	t.Logf("%d functions replaced in %v: %d requests served (%d locally), %d failed", replaced, churnFor, ok.Load(), local.Load(), failed.Load())
	assert.Zero(t, failed.Load(), "requests to functions that stayed failed")
	assert.Greater(t, ok.Load(), int64(100), "load ran")
	assert.Equal(t, local.Load(), pa.Calls.Load(), "the local function ran here, the others at peers")
	var atPeers int64
	for _, p := range stubs {
		atPeers += p.Calls.Load()
	}
	assert.Equal(t, ok.Load()-local.Load(), atPeers)
	assert.Equal(t, http.StatusNotFound, s.do(a.UserAddr(), "/function/f10", nil).code, "a function gone")
	got := s.do(a.UserAddr(), fmt.Sprintf("/function/g%d", replaced-1), nil)
	assert.Equal(t, http.StatusOK, got.code, "a function new with the last plan")
	assert.True(t, strings.HasPrefix(got.body, "p"), "served at a peer: %q", got.body)
}
