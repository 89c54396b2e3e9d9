package haproxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// newHoldingPeer is a peer listener stand-in that holds the first
// request it gets until release (called at the test's end if not before)
// and answers the others at once; it returns its address and its count of
// requests.
func newHoldingPeer(t *testing.T) (addr string, calls *atomic.Int64, release func()) {
	t.Helper()
	held := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	calls = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-held:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release) // before srv.Close: cleanups run last first
	return strings.TrimPrefix(srv.URL, "http://"), calls, release
}

func startSlotted(t *testing.T, slots int) *Driver {
	t.Helper()
	return startFree(t, Config{Node: "a", Platform: newPlatform(t, "a").addr, RouteSlots: slots, Logger: slog.New(slog.DiscardHandler)})
}

// startFree starts a driver of cfg on free ports: a port found free may be
// taken before HAProxy binds it (other packages' tests run meanwhile), so
// it tries again with others, as the registered data plane does.
func startFree(t *testing.T, cfg Config) *Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for try := 0; ; try++ {
		cfg.UserAddr, cfg.PeerAddr = freeAddr(t), freeAddr(t)
		d, err := Start(ctx, cfg)
		if err != nil && try < 3 && strings.Contains(err.Error(), "Address already in use") {
			continue
		}
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, d.Close()) })
		return d
	}
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
	assert.Equal(t, SlotUse{Used: 5}, a.Slots(), "figlet's route and the other four")

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
	assert.Equal(t, SlotUse{Used: 2, Shared: 1, Unslotted: 1}, a.Slots(), "f4 shares f1's slot, f5 has none")
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
	apply(t, a, plan) // a slot freed by one Apply takes a route from the next on
	assert.Equal(t, SlotUse{Used: 2}, a.Slots(), "pb's route, pc's: a slot each")
	before := pa.calls.Load()
	for _, fn := range []string{"f1", "f2", "f4", "f5"} {
		code, _, _ := get(t, "http://"+a.cfg.UserAddr+"/function/"+fn, nil)
		assert.Equal(t, http.StatusOK, code, fn)
	}
	assert.Equal(t, before, pa.calls.Load(), "nothing for pa once out of the plans")
}

// TestAPeerBackSoonTakesItsRouteAgain: a peer that leaves every plan while
// a forward to it is in flight, and comes back before that forward ends,
// serves its route again, in a slot; the slots of other routes are not
// held up meanwhile. (Its old slot server, draining, once stayed in
// maintenance for good, and the routes after its own got no slot.)
func TestAPeerBackSoonTakesItsRouteAgain(t *testing.T) {
	a := startSlotted(t, 2)
	paAddr, paCalls, _ := newHoldingPeer(t)
	pb, pc := newStubPeer(t, http.StatusOK), newStubPeer(t, http.StatusOK)
	share := func(node, addr string) dfaas.Share {
		return dfaas.Share{Node: dfaas.NodeID(node), Addr: addr, Weight: 1, Cap: 1000}
	}
	apply(t, a, map[string]dfaas.FunctionPlan{"f1": {Peers: []dfaas.Share{share("pa", paAddr)}}})
	go func() { _, _, _ = get(t, "http://"+a.cfg.UserAddr+"/function/f1", nil) }()
	require.Eventually(t, func() bool { return paCalls.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	// pa out of every plan for one tick, its forward still in flight.
	apply(t, a, map[string]dfaas.FunctionPlan{"f2": {Peers: []dfaas.Share{share("pb", pb.addr)}}})
	plan := map[string]dfaas.FunctionPlan{
		"f1": {Peers: []dfaas.Share{share("pa", paAddr)}},
		"f6": {Peers: []dfaas.Share{share("pa", paAddr)}},
		"f2": {Peers: []dfaas.Share{share("pb", pb.addr)}},
		"f5": {Peers: []dfaas.Share{share("pc", pc.addr)}},
	}
	apply(t, a, plan)
	apply(t, a, plan)
	use := a.Slots()
	assert.Equal(t, 2, use.Used, "both slots serve a route")
	assert.Equal(t, 1, use.Unslotted, "the route of fewest functions waits")
	assert.NotEmpty(t, a.maps[a.layout.SlotsMap]["f1"], "pa's route has a slot")
	before := paCalls.Load()
	for range 5 {
		code, _, _ := get(t, "http://"+a.cfg.UserAddr+"/function/f1", nil)
		assert.Equal(t, http.StatusOK, code)
	}
	assert.Equal(t, before+5, paCalls.Load(), "f1 runs at pa, its route")
}

// TestAFreedSlotLingersWhileItHoldsForwards: a slot freed while a forward
// is in flight there keeps the servers of peers still planned in its turn
// (a retry of that forward goes to one of them, not to a 503), and takes no
// new route while the forward goes on, for lingerMax at most.
func TestAFreedSlotLingersWhileItHoldsForwards(t *testing.T) {
	a := startSlotted(t, 2)
	pb, pbCalls, release := newHoldingPeer(t)
	pc, pd := newStubPeer(t, http.StatusOK), newStubPeer(t, http.StatusOK)
	share := func(node, addr string) dfaas.Share {
		return dfaas.Share{Node: dfaas.NodeID(node), Addr: addr, Weight: 1, Cap: 1000}
	}
	apply(t, a, map[string]dfaas.FunctionPlan{"f1": {Peers: []dfaas.Share{share("pb", pb)}}})
	slot := a.maps[a.layout.SlotsMap]["f1"]
	require.NotEmpty(t, slot)
	done := make(chan int, 1)
	go func() {
		resp, err := client.Get("http://" + a.cfg.UserAddr + "/function/f1")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return pbCalls.Load() == 1 }, 5*time.Second, 10*time.Millisecond)

	// f1's route grows to pb and pc: its old slot is freed, pb still planned.
	plan := map[string]dfaas.FunctionPlan{"f1": {Peers: []dfaas.Share{share("pb", pb), share("pc", pc.addr)}}}
	apply(t, a, plan)
	require.NotEqual(t, slot, a.maps[a.layout.SlotsMap]["f1"])
	plan["f3"] = dfaas.FunctionPlan{Peers: []dfaas.Share{share("pd", pd.addr)}}
	apply(t, a, plan)
	apply(t, a, plan)
	st, err := a.stats()
	require.NoError(t, err)
	row, ok := st[[2]string{slot, serverName("pb")}]
	require.True(t, ok, "pb's server in the freed slot")
	assert.NotContains(t, row["status"], "MAINT", "pb's server in the freed slot stays in the turn")
	assert.Equal(t, 1, a.Slots().Unslotted, "f3 waits: the freed slot still holds a forward")

	// For lingerMax at most: a forward held longer (a slow call or body)
	// does not keep the slot from other routes.
	assert.Eventually(t, func() bool {
		apply(t, a, plan)
		return a.Slots().Unslotted == 0
	}, lingerMax+5*time.Second, 200*time.Millisecond, "f3 takes the slot after lingerMax")
	select {
	case code := <-done:
		t.Fatalf("the held forward ended early (%d): the slot was not held", code)
	default:
	}
	code, _, _ := get(t, "http://"+a.cfg.UserAddr+"/function/f3", nil)
	assert.Equal(t, http.StatusOK, code)
	release()
	assert.Equal(t, http.StatusOK, <-done, "the held forward finishes")
}

// TestSharedSlotsAreCounted: a route without a slot of its own that shares
// a larger route's slot is counted as shared (its retries may go to a peer
// its plan does not name).
func TestSharedSlotsAreCounted(t *testing.T) {
	a := startSlotted(t, 1)
	pa, pb := newStubPeer(t, http.StatusOK), newStubPeer(t, http.StatusOK)
	share := func(node, addr string) dfaas.Share {
		return dfaas.Share{Node: dfaas.NodeID(node), Addr: addr, Weight: 1, Cap: 1000}
	}
	apply(t, a, map[string]dfaas.FunctionPlan{
		"f1": {Peers: []dfaas.Share{share("pa", pa.addr), share("pb", pb.addr)}},
		"f9": {Peers: []dfaas.Share{share("pa", pa.addr), share("pb", pb.addr)}},
		"g":  {Peers: []dfaas.Share{share("pb", pb.addr)}},
	})
	assert.Equal(t, SlotUse{Used: 1, Shared: 1}, a.Slots())
	assert.Equal(t, a.maps[a.layout.SlotsMap]["f1"], a.maps[a.layout.SlotsMap]["g"])
}

// TestAbortReachesRouteBackends: the forwards in flight to a peer the
// overlay declared down are cut in its route backend, even once the peer
// has left the plans and its server in the forwarding backend is gone.
func TestAbortReachesRouteBackends(t *testing.T) {
	a := startFree(t, Config{Node: "a", Platform: newPlatform(t, "a").addr, Timeout: 8 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	release := make(chan struct{})
	frozen := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer frozen.Close()
	defer close(release)
	other := newStubPeer(t, http.StatusOK)
	fz := dfaas.Share{Node: "fz", Addr: strings.TrimPrefix(frozen.URL, "http://"), Weight: 1, Cap: 1000}
	ok := dfaas.Share{Node: "ok", Addr: other.addr, Weight: 1, Cap: 1000}
	apply(t, a, map[string]dfaas.FunctionPlan{"f1": {Peers: []dfaas.Share{fz}}, "f2": {Peers: []dfaas.Share{ok}}})
	done := make(chan time.Duration)
	start := time.Now()
	go func() {
		_, _, _ = get(t, "http://"+a.cfg.UserAddr+"/function/f1", nil)
		done <- time.Since(start)
	}()
	time.Sleep(500 * time.Millisecond)
	apply(t, a, map[string]dfaas.FunctionPlan{"f2": {Peers: []dfaas.Share{ok}}}) // fz out of the plans
	a.AbortForwards("fz")
	assert.Less(t, <-done, 4*time.Second, "cut, not left to the 8-s timeout")
}
