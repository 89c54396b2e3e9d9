package testbed

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

func TestReadScenario(t *testing.T) {
	s, err := Read(strings.NewReader(`
name: x
duration: 10s
default_link: {rtt: 10ms, jitter: 2ms}
nodes:
  - {name: a, functions: {figlet: 10}}
  - {name: b, functions: {figlet: 20}}
links:
  - {between: [a, b], rtt: 60ms, loss: 20}
load:
  - {node: a, function: figlet, rate: 2.5, from: 1s, to: 9s}
events:
  - {at: 2s, kill: b}
  - {at: 3s, start: b}
  - {at: 4s, partition: [[a], [b]]}
  - {at: 5s, heal: true}
  - {at: 6s, loss: {between: [a, b], loss: 5}}
  - {at: 7s, delay: {between: [a, b], rtt: 200ms}}
`))
	require.NoError(t, err)
	assert.Equal(t, 60*time.Millisecond, s.linkOf("b", "a").RTT.D())
	assert.Equal(t, 20.0, s.linkOf("a", "b").Loss)
	assert.Equal(t, "kill b", s.Events[0].Name())
	assert.Equal(t, "delay [a b] 200ms", s.Events[5].Name())

	for name, y := range map[string]string{
		"unknown key":        "name: x\nduration: 1s\nnodes: [{name: a}]\nbogus: 1\n",
		"no nodes":           "name: x\nduration: 1s\n",
		"bad node name":      "name: x\nduration: 1s\nnodes: [{name: A}]\n",
		"twice":              "name: x\nduration: 1s\nnodes: [{name: a}, {name: a}]\n",
		"bad duration":       "name: x\nduration: soon\nnodes: [{name: a}]\n",
		"link to nobody":     "name: x\nduration: 1s\nnodes: [{name: a}]\nlinks: [{between: [a, z]}]\n",
		"jitter over rtt":    "name: x\nduration: 1s\nnodes: [{name: a}, {name: b}]\ndefault_link: {rtt: 1ms, jitter: 2ms}\n",
		"total loss":         "name: x\nduration: 1s\nnodes: [{name: a}, {name: b}]\ndefault_link: {loss: 100}\n",
		"load after the end": "name: x\nduration: 1s\nnodes: [{name: a}]\nload: [{node: a, function: f, rate: 1, from: 0s, to: 2s}]\n",
		"two actions":        "name: x\nduration: 1s\nnodes: [{name: a}]\nevents: [{at: 0s, kill: a, start: a}]\n",
		"one group":          "name: x\nduration: 1s\nnodes: [{name: a}]\nevents: [{at: 0s, partition: [[a]]}]\n",
		"out of order":       "name: x\nduration: 2s\nnodes: [{name: a}]\nevents: [{at: 1s, kill: a}, {at: 0s, start: a}]\n",
	} {
		_, err := Read(strings.NewReader(y))
		require.Error(t, err, name)
		if name != "unknown key" && name != "bad duration" {
			assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, name)
		}
	}
}

// TestCrash runs three real agents in network namespaces, 10 ms apart, at
// the reference load, and kills one with SIGKILL: the shares hold
// 10/16/24 before, the survivors' plans drop the dead node within 2 s,
// nothing that a and b had room for is lost, and nothing runs twice.
func TestCrash(t *testing.T) {
	r := runScenario(t, "crash")

	assert.Zero(t, r.Lost)
	assert.Zero(t, r.Duplicated)
	a := r.Nodes[0]
	assert.Equal(t, a.Offered, a.ServedLocal+a.ForwardedOut+a.Rejected+a.Failed)
	assert.LessOrEqual(t, a.Failed, 2, "at most the forwards in flight to c when it died")
	// Shares before the kill (at 6 s), from the second second on.
	for name, want := range map[string]float64{"a": 10, "b": 16, "c": 24} {
		var sum float64
		for _, sec := range r.Timeline[1:6] {
			sum += float64(sec.Nodes[name].Executed)
		}
		assert.InDelta(t, want, sum/5, 1.5, "node %s before the crash", name)
	}
	// After it, a and b are full and the rest is rejected. b holds its
	// capacity over a sliding second (proxy.AdmissionWindow), so a second
	// of the clock may see a request or two more or less than 20 (CI saw
	// 18 once), but not on average.
	var b float64
	for _, sec := range r.Timeline[8:13] {
		b += float64(sec.Nodes["b"].Executed)
		assert.InDelta(t, 20, sec.Nodes["b"].Executed, 3, "b after the crash, second %d", sec.T)
		assert.Zero(t, sec.Nodes["c"].Executed)
	}
	assert.InDelta(t, 20, b/5, 1, "b after the crash, on average")
	require.Len(t, r.Detection, 1)
	assert.Equal(t, "kill c", r.Detection[0].Event)
	assert.LessOrEqual(t, r.Detection[0].Seconds, 2.0)
	// One round trip per forward (kept connections): a new connection or
	// handshake per forward adds one or two more (p50 past 20 ms). The
	// bound is not tighter: p50 is 11.9-12 ms here, and 13.4 ms once on a
	// loaded machine.
	assert.Less(t, r.ForwardLatencyMS.P50, 18.0, "RTT 10 ms, once")
	assert.False(t, math.IsNaN(r.AgentCPUSeconds))
	assert.Positive(t, r.AgentRSSMB)
	assert.Positive(t, r.ControlBytesPerNodeS)
	assert.Equal(t, 100.0, r.ViewsCompletePct, "every plan made with the whole federation, away from the crash")
	assertNoLeftovers(t)
}

// TestMembership: the administrator removes c under load (signed
// membership over GossipSub): a's and b's plans drop it within 2 s of the
// publish and it runs nothing from then on, also once restarted with the
// secret; d, refused since the start, is added with nothing edited on a, b
// or c and takes a's excess within 2 s; nothing is lost or runs twice.
func TestMembership(t *testing.T) {
	r := runScenario(t, "membership")

	assert.Zero(t, r.Lost)
	assert.Zero(t, r.Duplicated)
	a := r.Nodes[0]
	assert.Equal(t, a.Offered, a.ServedLocal+a.ForwardedOut+a.Rejected+a.Failed)
	assert.Zero(t, a.Failed, "nothing a could serve, or send to b, c or d, failed")
	detected := map[string]float64{}
	for _, d := range r.Detection {
		detected[d.Event] = d.Seconds
	}
	for _, e := range []string{"remove c", "add d"} {
		require.Contains(t, detected, e)
		assert.LessOrEqual(t, detected[e], 2.0, e)
	}
	require.Len(t, r.CutOff, 1, "c held a connection with a or b 5 s after its removal")
	assert.Positive(t, r.CutOff[0].Held, "c's connections with a and b, before its removal")
	assert.LessOrEqual(t, r.CutOff[0].Seconds, 2.0, "c held a connection with a or b")
	for _, sec := range r.Timeline[1:6] {
		assert.Zero(t, sec.Nodes["d"].Executed, "d is no member yet, second %d", sec.T)
		assert.Positive(t, sec.Nodes["c"].Executed, "c takes its share, second %d", sec.T)
	}
	for _, sec := range r.Timeline[8:] {
		assert.Zero(t, sec.Nodes["c"].Executed, "c removed (and restarted), second %d", sec.T)
	}
	for _, sec := range r.Timeline[15:18] { // a, b and d have room for all 50
		assert.Positive(t, sec.Nodes["d"].Executed, "d takes part of a's excess, second %d", sec.T)
		assert.Zero(t, sec.Nodes["a"].Rejected, "second %d", sec.T)
	}
	assertNoLeftovers(t)
}

// TestPartition cuts a off from b and c for 10 s (iptables drops their
// packets) and heals: both sides notice within 2 s, a serves its own
// capacity meanwhile and b its own load, plans are whole again within 2 s
// of the heal, and then nothing is rejected; nothing runs twice, and what
// is lost is at most what was in flight when the partition struck.
func TestPartition(t *testing.T) {
	r := runScenario(t, "partition")

	assert.Zero(t, r.Duplicated)
	assert.Less(t, r.Lost, 40, "fewer than the forwarded rate x 1 s")
	require.Len(t, r.Detection, 2)
	for _, d := range r.Detection {
		assert.LessOrEqual(t, d.Seconds, 2.0, d.Event)
	}
	for _, sec := range r.Timeline[9:15] { // partitioned, and noticed
		assert.InDelta(t, 10, sec.Nodes["a"].Executed, 1.5, "a serves its own capacity, second %d", sec.T)
		assert.Zero(t, sec.Nodes["b"].Rejected, "b serves its own load, second %d", sec.T)
	}
	for _, sec := range r.Timeline[18:23] { // healed
		assert.Zero(t, sec.Nodes["a"].Rejected, "after the heal, second %d", sec.T)
	}
	assertNoLeftovers(t)
}

// TestRollingRestart: SIGTERM to one agent of three under a load the other
// two can carry, and a start 6 s later: the agent drains before it leaves,
// so no request is lost, rejected or failed, and none runs twice.
func TestRollingRestart(t *testing.T) {
	r := runScenario(t, "restart")
	a := r.Nodes[0]
	assert.Equal(t, 500, a.Offered)
	assert.Zero(t, a.Rejected+a.Failed, "every request served")
	assert.Zero(t, r.Lost+r.Duplicated+r.Unanswered)
	assert.Positive(t, r.Nodes[2].Received, "c served before it stopped and after it started")
	require.Len(t, r.Detection, 2)
	assertNoLeftovers(t)
}

// runScenario runs one of the shipped scenarios with a freshly built agent,
// changed by each of with, printing its report to the test log.
func runScenario(t *testing.T, name string, with ...func(*Scenario)) *Report {
	t.Helper()
	require.NoError(t, Check(), "the testbed runs as root with ip and iptables (CI does)")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	agent, err := BuildAgent(ctx, dir)
	require.NoError(t, err)
	platform, err := BuildPlatform(ctx, dir)
	require.NoError(t, err)
	s, err := ReadFile("../../examples/testbed/scenarios/" + name + ".yaml")
	require.NoError(t, err)
	for _, f := range with {
		f(&s)
	}
	r, err := Run(ctx, s, Options{Agent: agent, Platform: platform, Progress: testWriter{t}})
	require.NoError(t, err)
	Print(testWriter{t}, r)
	return r
}

// assertNoLeftovers: the run removed its namespaces, bridges and cgroups.
func assertNoLeftovers(t *testing.T) {
	t.Helper()
	if root, _, err := findCPUCgroups(); err == nil {
		groups, _ := os.ReadDir(root)
		for _, g := range groups {
			assert.False(t, strings.HasPrefix(g.Name(), "dfaas-testbed-"), "cgroup %s left behind", g.Name())
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "dfaas"), "namespace %s left behind", e.Name())
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		assert.False(t, strings.HasPrefix(l.Name(), "dfb") || strings.HasPrefix(l.Name(), "dfv"), "interface %s left behind", l.Name())
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestDefaultOnly(t *testing.T) {
	assert.True(t, defaultOnly(""))
	assert.True(t, defaultOnly("default via 172.16.0.1 dev eth0 \n"))
	assert.False(t, defaultOnly("default via 172.16.0.1 dev eth0 \n10.77.5.0/24 dev br0 proto kernel scope link src 10.77.5.1 \n"))
}

// TestLearnedCapacity: the capacity-drop scenario on real agents, each
// node's platform a process in a CPU cgroup of its own, a function of real
// cost and no capacity declared anywhere. The nodes learn what they can
// run, b follows its quota's halving within 5 s, nothing runs twice, few
// requests are turned away, and the executions keep near their
// objective. (The figures themselves are in docs/capacity.md.)
func TestLearnedCapacity(t *testing.T) {
	_, _, err := findCPUCgroups()
	require.NoError(t, err, "the testbed gives nodes CPU budgets with the cpu cgroup controller (v2's cpu.max or v1's cpu)")
	r := runScenario(t, "capacity-drop")
	// Lost is judged against the capacity each node advertised, sampled
	// once a second: a rejection in the second a capacity moved can count.
	assert.LessOrEqual(t, r.Lost, r.Nodes[0].Offered/100)
	assert.Zero(t, r.Duplicated)
	require.Len(t, r.Calibration, 3)
	b := func(sec int) float64 { return r.Timeline[sec].Nodes["b"].Capacity }
	var before float64
	for sec := 16; sec < 20; sec++ {
		before = max(before, b(sec))
	}
	assert.Greater(t, before, 8.0, "b learned a good part of its ~20 req/s before the drop")
	// What b runs follows the halving within 5 s: a measures b's forwards
	// slower and moves their share to c (balance.Nearest), often before b
	// is overloaded enough for its own estimate to be cut; b's advertised
	// capacity follows too, from its calls alone taking twice as long.
	ran := func(from, to int) (sum float64) {
		for sec := from; sec < to; sec++ {
			sum += float64(r.Timeline[sec].Nodes["b"].Executed)
		}
		return sum / float64(to-from)
	}
	t.Logf("b ran %.1f/s before the drop and %.1f/s in the 5 s after; advertised %.1f, then %.1f", ran(15, 20), ran(21, 26), before, b(25))
	assert.Less(t, ran(21, 26), 0.75*ran(15, 20), "what b runs followed the halving within 5 s")
	assert.Less(t, b(25), 0.75*before, "what b advertises followed the halving within 5 s")
	a := r.Nodes[0]
	assert.LessOrEqual(t, a.RejectedAfter+a.FailedAfter, a.OfferedAfter/20, "at most 5% turned away once learned (the objective: 1%)")
	for i, n := range r.Nodes {
		assert.Zero(t, n.Timeouts, n.Name)
		assert.LessOrEqual(t, n.LongestOverS, 5, "%s: seconds in a row over its objective", n.Name)
		if n.Name != "b" { // b's calls alone take twice as long after the drop
			alone := r.Calibration[i].UnloadedP95MS
			assert.LessOrEqual(t, n.Exec.P95, 3*alone, "%s: executions' p95 against a call's alone (%.0f ms)", n.Name, alone)
		}
	}
	assertNoLeftovers(t)
}

// TestLossyLinkBesideACleanOne: 20% packet loss between a and b, c with
// room for all of a's excess. a measures its forwards to b slower (TCP
// retransmissions) and moves b's share to c: nothing is lost or run twice,
// b keeps a trickle, and the forwards' p95 stays near the clean link's.
func TestLossyLinkBesideACleanOne(t *testing.T) {
	r := runScenario(t, "degraded-loss")
	assert.Zero(t, r.Lost)
	assert.Zero(t, r.Duplicated)
	assert.LessOrEqual(t, r.Share("b", 5, 30), 0.1, "b's share after the first 5 s")
	// About 13 ms on a clean link, and the bound is three times
	// that. Nineteen forwards in twenty keep to it: b's share is small. The
	// p99 does not yet, reliably (issue 24's open point): b still gets 1-2
	// forwards a second, a third of which wait for a retransmission, and
	// in 12 runs on 2026-12-07 (before and after that day's HAProxy work,
	// which this embedded run does not use) the settled p99 passed 40 ms in
	// 3, at 55-162 ms. It is reported, not held, until the tail is mended.
	assert.Less(t, r.ForwardLatencySettledMS.P95, 40.0, "forwarded p95 after the first 5 s")
	t.Logf("forwarded after the first 5 s: p95 %.1f ms, p99 %.1f ms (the issue's bound: 40)", r.ForwardLatencySettledMS.P95, r.ForwardLatencySettledMS.P99)
	assertNoLeftovers(t)
}

// TestSlowPeer: b's CPU quota falls tenfold at 20 s beside an equal c, on
// HAProxy data planes (whose forwards are measured from the request log):
// within 5 s at most a tenth of a's forwards still go to b, and 5 s after
// b gets its CPU back it has a part again.
func TestSlowPeer(t *testing.T) {
	_, _, err := findCPUCgroups()
	require.NoError(t, err, "the testbed gives nodes CPU budgets with the cpu cgroup controller (v2's cpu.max or v1's cpu)")
	r := runScenario(t, "degraded-slow", func(s *Scenario) { s.Proxy = "haproxy" })
	assert.Zero(t, r.Duplicated)
	before, slow, back := r.Share("b", 15, 20), r.Share("b", 25, 35), r.Share("b", 40, 50)
	t.Logf("b's share of the forwards: %.0f%% before, %.0f%% slowed, %.0f%% back", 100*before, 100*slow, 100*back)
	// b's part before depends on what b and c measure of themselves and on
	// b answering a little slower than c (less CPU, within the quarter
	// balance.Nearest allows): 9-27% in runs before that allowance, 33-34%
	// with it.
	assert.Positive(t, before, "b takes a part before")
	// From 5 s after the slowdown, at most a tenth of the forwards go to b
	// while c has room: per second, a tenth of the forwards or what c's
	// advertised capacity left over, whichever is more. c's estimator, at
	// three times its former load, may cut itself short for a while (issue
	// 21), and a then sends b what b advertises, or rejects it; a helper
	// within a tenth of its capacity refuses some of a burst (its admission
	// holds it over any second), so its room is counted from 90% of it.
	var atB, allowed float64
	for _, sec := range r.Timeline {
		if sec.T < 25 || sec.T >= 35 {
			continue
		}
		fwd := float64(sec.Nodes["b"].Received + sec.Nodes["c"].Received)
		atB += float64(sec.Nodes["b"].Received)
		allowed += max(0.1*fwd, fwd-0.9*sec.Nodes["c"].Capacity)
	}
	t.Logf("b's forwards from 25 s to 35 s: %.0f, allowed %.0f", atB, allowed)
	assert.LessOrEqual(t, atB, allowed, "from 5 s after the slowdown, beyond a tenth while c had room")
	assert.LessOrEqual(t, slow, before/2, "b's share falls with its speed")
	// How much comes back is first b's capacity as it learns it again (a
	// helper asked a part of its room runs too little of the time to learn
	// its rate anew, and grows back to 60% of what it ran when busy, which
	// it last measured in the slow spans: issue 21), then a's weight for b,
	// which this test is about: b has its part of the room it advertises
	// again (9-32% of the forwards in the runs of 2026-12-07, 0.82-0.86 of
	// b's part of the room each time).
	var roomB, roomC float64
	for _, sec := range r.Timeline {
		if sec.T >= 40 && sec.T < 50 {
			roomB, roomC = roomB+sec.Nodes["b"].Capacity, roomC+sec.Nodes["c"].Capacity
		}
	}
	require.Positive(t, roomB+roomC)
	room := roomB / (roomB + roomC)
	t.Logf("b's part of the room from 40 s: %.0f%%", 100*room)
	assert.GreaterOrEqual(t, back, 0.6*room, "from 5 s after b recovered, its part of the room again")
	assert.Greater(t, back, slow, "more than while slowed")
	assertNoLeftovers(t)
}

// TestRisingRTT: the round trip between a and b rises from 10 ms to
// 200 ms at 12 s and falls back at 24 s: b's share moves to c within
// seconds, hardly anything is lost (a few rejections as the plan changes,
// in some runs), and b has its share back after the fall.
func TestRisingRTT(t *testing.T) {
	r := runScenario(t, "degraded-rtt")
	assert.LessOrEqual(t, r.Lost, r.Nodes[0].Offered/100)
	assert.Zero(t, r.Duplicated)
	before, far, back := r.Share("b", 5, 12), r.Share("b", 15, 24), r.Share("b", 30, 36)
	t.Logf("b's share of the forwards: %.0f%% before, %.0f%% far, %.0f%% back", 100*before, 100*far, 100*back)
	assert.Greater(t, before, 0.3)
	assert.LessOrEqual(t, far, 0.1, "from 3 s after the rise")
	assert.Greater(t, back, 0.25, "6 s after the fall")
	assertNoLeftovers(t)
}

// TestAsyncBacklog: 1000 asynchronous calls in 5 s at a node of 10 req/s
// beside idle peers of 20 and 30 drain at the federation's pace, each run
// once and called back once.
func TestAsyncBacklog(t *testing.T) {
	r := runScenario(t, "async-backlog")
	a := r.Async
	require.NotNil(t, a)
	assert.Equal(t, 1000, a.Accepted)
	assert.Zero(t, a.Refused)
	assert.Equal(t, a.Accepted, a.CalledBack, "every call called back")
	assert.Zero(t, a.Missing+a.CalledBackTwice+a.RanTwice+a.NotOK, "once each, and served")
	assert.Positive(t, a.RanAt["b"])
	assert.Positive(t, a.RanAt["c"])
	// 1000 calls at 60 req/s: about 17 s; a alone would take 100 s.
	assert.Less(t, a.DrainedS, 28.0)
	assertNoLeftovers(t)
}

// TestAsyncCrash: a node killed with asynchronous calls queued runs them
// after its restart: every accepted call runs and is called back; only one
// in progress at the kill may run (and be called back) again.
func TestAsyncCrash(t *testing.T) {
	r := runScenario(t, "async-crash")
	a := r.Async
	require.NotNil(t, a)
	assert.Positive(t, a.Accepted)
	assert.Equal(t, a.Accepted, a.CalledBack, "every accepted call called back")
	assert.Zero(t, a.Missing+a.NotOK)
	// At least once: a call whose run was in progress at the kill runs
	// again; the queue runs at most 64 at once.
	assert.LessOrEqual(t, a.RanTwice, 64)
	assert.LessOrEqual(t, a.CalledBackTwice, 64)
	assertNoLeftovers(t)
}
