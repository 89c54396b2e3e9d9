package haproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// stubPeer is a peer listener stand-in that answers every request with
// status and counts them.
type stubPeer struct {
	calls atomic.Int64
	addr  string
}

func newStubPeer(t *testing.T, status int) *stubPeer {
	t.Helper()
	p := &stubPeer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.calls.Add(1)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func startSlotted(t *testing.T, slots int) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Start(ctx, Config{Node: "a", UserAddr: freeAddr(t), PeerAddr: freeAddr(t), Platform: newPlatform(t, "a").addr,
		RouteSlots: slots, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// TestRetriesStayOnTheRoute: a forward the picked peer refuses is retried
// on another peer of its function's route, never on a peer the plan named
// only for other functions. figlet's route is a peer that refuses
// everything (most of the weight) and one that serves; four other peers,
// each the route of another function, refuse everything. In one backend of
// every peer, a retry went to the next peer in turn: 503s, and the other
// functions' peers asked to run figlet.
func TestRetriesStayOnTheRoute(t *testing.T) {
	a := startSlotted(t, 0)
	refuser, server := newStubPeer(t, proxy.StatusRefused), newStubPeer(t, http.StatusOK)
	fns := map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{
		{Node: "refuser", Addr: refuser.addr, Weight: 0.8, Cap: 1000},
		{Node: "server", Addr: server.addr, Weight: 0.2, Cap: 1000}}}}
	var others []*stubPeer
	for i := range 4 {
		o := newStubPeer(t, proxy.StatusRefused)
		others = append(others, o)
		fns[fmt.Sprintf("other%d", i)] = dfaas.FunctionPlan{Peers: []dfaas.Share{{Node: dfaas.NodeID(fmt.Sprintf("other%d", i)), Addr: o.addr, Weight: 1, Cap: 1000}}}
	}
	apply(t, a, fns)

	const n = 40
	round := func(when string) {
		t.Helper()
		served := server.calls.Load()
		codes := map[int]int{}
		for range n {
			code, _, _ := get(t, "http://"+a.cfg.UserAddr+"/function/figlet", nil)
			codes[code]++
		}
		assert.Equal(t, map[int]int{http.StatusOK: n}, codes, "every call served by figlet's other peer, %s", when)
		assert.Equal(t, served+n, server.calls.Load(), when)
		for i, o := range others {
			assert.Zero(t, o.calls.Load(), "other%d never asked to run figlet, %s", i, when)
		}
		peers, err := a.Peers("figlet")
		require.NoError(t, err)
		assert.Equal(t, []dfaas.NodeID{"refuser", "server"}, peers, when)
	}
	round("at first")
	assert.Positive(t, refuser.calls.Load(), "most first attempts went to the refuser")
	used, unslotted := a.Slots()
	assert.Equal(t, 5, used, "figlet's route and the other four")
	assert.Zero(t, unslotted)

	// A reloaded worker has the route backends' servers from the files.
	a.mu.Lock()
	err := a.reload(context.Background(), "test")
	a.mu.Unlock()
	require.NoError(t, err)
	round("after a reload")
	apply(t, a, fns)
	round("after a reload and an Apply")
}

// TestRouteSlotsShareAndRunOut: functions of the same peers share a route
// backend; with fewer slots than routes, a route shares the slot of a
// route that holds its peers, else goes to the forwarding backend
// (counted); a peer out of every plan leaves every route backend.
func TestRouteSlotsShareAndRunOut(t *testing.T) {
	a := startSlotted(t, 2)
	pa, pb, pc := newStubPeer(t, http.StatusOK), newStubPeer(t, http.StatusOK), newStubPeer(t, http.StatusOK)
	share := func(node string, p *stubPeer) dfaas.Share {
		return dfaas.Share{Node: dfaas.NodeID(node), Addr: p.addr, Weight: 1, Cap: 1000}
	}
	plan := map[string]dfaas.FunctionPlan{
		"f1": {Peers: []dfaas.Share{share("pa", pa), share("pb", pb)}},
		"f2": {Peers: []dfaas.Share{share("pb", pb), share("pa", pa)}},
		"f3": {Peers: []dfaas.Share{share("pa", pa)}},
		"f6": {Peers: []dfaas.Share{share("pa", pa)}},
		"f4": {Peers: []dfaas.Share{share("pb", pb)}},
		"f5": {Peers: []dfaas.Share{share("pc", pc)}},
	}
	apply(t, a, plan)
	slots := a.maps[a.layout.SlotsMap]
	assert.Equal(t, slots["f1"], slots["f2"], "one set of peers, one slot")
	assert.NotEmpty(t, slots["f1"])
	assert.NotEmpty(t, slots["f3"])
	assert.NotEqual(t, slots["f1"], slots["f3"], "two slots, for the routes of the most functions")
	assert.Equal(t, slots["f1"], slots["f4"], "out of slots: the slot of a route that holds its peer")
	assert.Empty(t, slots["f5"], "no slot holds pc: the forwarding backend")
	used, unslotted := a.Slots()
	assert.Equal(t, 2, used)
	assert.Equal(t, 1, unslotted)
	for _, fn := range []string{"f1", "f2", "f3", "f4", "f5"} {
		code, _, _ := get(t, "http://"+a.cfg.UserAddr+"/function/"+fn, nil)
		assert.Equal(t, http.StatusOK, code, fn)
	}
	peers, err := a.Peers("f4")
	require.NoError(t, err)
	assert.Equal(t, []dfaas.NodeID{"pb"}, peers)

	// pa leaves every plan: its servers leave the route backends (once
	// their idle connections are gone), and f1's set is pb alone.
	delete(plan, "f3")
	delete(plan, "f6")
	plan["f1"] = dfaas.FunctionPlan{Peers: []dfaas.Share{share("pb", pb)}}
	plan["f2"] = dfaas.FunctionPlan{Peers: []dfaas.Share{share("pb", pb)}}
	paName := serverName("pa")
	assert.Eventually(t, func() bool {
		apply(t, a, plan)
		st, err := a.stats()
		require.NoError(t, err)
		for key := range st {
			if key[1] == paName {
				return false
			}
		}
		return true
	}, 15*time.Second, 500*time.Millisecond, "pa's servers deleted")
	used, unslotted = a.Slots()
	assert.Equal(t, 2, used, "pb's route, pc's")
	assert.Zero(t, unslotted, "pc's route has a slot now")
	before := pa.calls.Load()
	for _, fn := range []string{"f1", "f2", "f4", "f5"} {
		code, _, _ := get(t, "http://"+a.cfg.UserAddr+"/function/"+fn, nil)
		assert.Equal(t, http.StatusOK, code, fn)
	}
	assert.Equal(t, before, pa.calls.Load(), "nothing for pa once out of the plans")
}
