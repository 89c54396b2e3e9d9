package haproxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas/proxy"
)

func TestParseTable(t *testing.T) {
	raw := "# table: st_total, type: string, size:10240, used:2\n" +
		"0x55cfc2dc0048: key=figlet use=3 exp=0 conn_cur=3 gpc0=2 gpc1=1 http_req_cnt=12 http_req_rate(1000)=4\n" +
		"0x55cfc2dc0050: key=echo use=0 exp=0 http_req_cnt=7\n" +
		"garbage line without a key\n\n"
	got := parseTable(raw)
	assert.Equal(t, map[string]tableEntry{"figlet": {requests: 12, current: 3, busyUser: 2, busyPeer: 1}, "echo": {requests: 7}}, got)
	assert.Empty(t, parseTable(""))
}

// TestCountsNeverRunBackwards: a request counted as executed when it
// arrived and then answered 429 by the platform moves to rejected; the
// served count holds until the real count passes it again.
func TestCountsNeverRunBackwards(t *testing.T) {
	d := &Driver{reported: map[string]counted{}}
	steps := []struct{ computed, want uint64 }{{5, 5}, {4, 5}, {5, 5}, {7, 7}, {6, 7}}
	for i, s := range steps {
		c := d.monotonic("f", proxy.Counts{ServedLocal: s.computed, ReceivedIn: s.computed})
		assert.Equal(t, s.want, c.ServedLocal, "step %d", i)
		assert.Equal(t, s.want, c.ReceivedIn, "step %d", i)
	}
	assert.Equal(t, uint64(1), d.monotonic("g", proxy.Counts{ServedLocal: 1}).ServedLocal, "functions are apart")
}

func TestResynced(t *testing.T) {
	line := "0x55a6: [26/Nov/2026:01:32:46] id=dfaas disabled=0 flags=%s resync_timeout=4s task_calls=3\n" +
		"  0x55a6: id=dfaas(local,inactive) addr=unix:0 last_status=ESTA\n        flags=0x0\n"
	for flags, want := range map[string]bool{"0x1103": true, "0x403": true, "0x0": false, "0x3": false, "0xzz": false} {
		assert.Equal(t, want, resynced(fmt.Sprintf(line, flags)), flags)
	}
	assert.False(t, resynced("Unknown command"))
}

func TestParseLogLine(t *testing.T) {
	l, ok := parseLogLine("user figlet 386 1 u 200 1 7 7 local 0 - 0 0\n")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 386 * time.Microsecond, user: true, local: true, ran: true, status: 200, solo: true, server: "local"}, l)
	l, ok = parseLogLine("user figlet 1200 - - 503 - - - <NOSRV> -1 - 0 -1")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 1200 * time.Microsecond, user: true, status: 503, server: "<NOSRV>", answer: -1, queued: -1}, l, "over the limit, not run here")
	l, ok = parseLogLine("user figlet 900 - s 429 3 9 9 local 0 - 0 0")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 900 * time.Microsecond, user: true, ran: true, status: 429, server: "local"}, l, "run beyond the limit, with two others")
	l, ok = parseLogLine("user figlet 2100 - - 200 - - - p1abc 3 p1abc 0 0")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 2100 * time.Microsecond, user: true, status: 200, server: "p1abc", answer: 3 * time.Millisecond, picked: "p1abc"}, l, "forwarded to a peer")
	l, ok = parseLogLine("user figlet 1003500 - - 200 - - - p2def 2 p1abc +1 1001")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 1003500 * time.Microsecond, user: true, status: 200, server: "p2def", answer: 2 * time.Millisecond,
		picked: "p1abc", retries: 1, queued: 1001 * time.Millisecond}, l, "picked one peer, answered by another after a second")
	l, ok = parseLogLine("peer figlet 700 - p 200 2 5 5 local 0 - 0 0")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 700 * time.Microsecond, ran: true, status: 200, server: "local"}, l, "a peer's, run here")
	l, ok = parseLogLine("peer figlet 700 - p 200 1 5 6 local 0 - 0 0")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 700 * time.Microsecond, ran: true, status: 200, server: "local"}, l, "started alone, another began before its end")
	l, ok = parseLogLine("peer figlet 30 - - 425 - - - <NOSRV> -1 - 0 -1")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 30 * time.Microsecond, status: 425, server: "<NOSRV>", answer: -1, queued: -1}, l, "a peer's, refused")
	// With a Layout that traces, two more fields.
	l, ok = parseLogLine("user figlet 386 - - 200 - - - p1abc 0 p1abc 0 0 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 -")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 386 * time.Microsecond, user: true, status: 200,
		traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", server: "p1abc", picked: "p1abc"}, l, "forwarded, traced")
	l, ok = parseLogLine("peer figlet 700 - p 200 1 5 5 local 0 - 0 0 - 12D3KooWabc")
	assert.True(t, ok)
	assert.Equal(t, logLine{fn: "figlet", took: 700 * time.Microsecond, ran: true, status: 200, solo: true, server: "local", from: "12D3KooWabc"}, l,
		"a peer's without a trace context")
	// The wrong number of fields.
	for _, bad := range []string{"", "figlet", "user figlet 1 1 u 200 1 1 1", "user figlet 1 1 u 200 1 1 1 local 0",
		"user figlet 1 1 u 200 1 1 1 local 0 - 0 0 tp", "user figlet 1 1 u 200 1 1 1 local 0 - 0 0 tp from extra",
		"Proxy user stopped (cumulated conns: FE: 1, BE: 0)."} {
		_, ok := parseLogLine(bad)
		assert.False(t, ok, bad)
	}
	// Every field there, one of them wrong.
	_, ok = parseLogLine("user figlet 1 1 u 200 1 1 1 local 0 - 0 0")
	require.True(t, ok, "the lines below differ from this one in one field")
	for _, bad := range []string{"user figlet x 1 u 200 1 1 1 local 0 - 0 0", "user figlet -5 1 u 200 1 1 1 local 0 - 0 0",
		"other figlet 1 1 u 200 1 1 1 local 0 - 0 0", "user - 1 - - 404 - - - <NOSRV> -1 - 0 -1",
		"user figlet 1 1 u 200 0 1 1 local 0 - 0 0", "user figlet 1 1 x 200 1 1 1 local 0 - 0 0", "user figlet 1 1 u 2000 1 1 1 local 0 - 0 0",
		"peer figlet 1 - p 200 - - - local 0 - 0 0", "peer figlet 1 - p 200 1 - 2 local 0 - 0 0", "user figlet 1 1 u 200 1 1 1 local x - 0 0",
		"user figlet 1 - - 200 - - - p1 0 p1 x 0", "user figlet 1 - - 200 - - - p1 0 p1 -1 0", "user figlet 1 - - 200 - - - p1 0 p1 0 -2"} {
		_, ok := parseLogLine(bad)
		assert.False(t, ok, bad)
	}
}

// FuzzParsers: whatever HAProxy (or anything else writing to its sockets)
// sends, the parsers return without panicking.
func FuzzParsers(f *testing.F) {
	f.Add("0x1: key=figlet use=0 exp=0 conn_cur=1 http_req_cnt=2\n")
	f.Add("0x1: [date] id=dfaas disabled=0 flags=0x1103 resync_timeout=4s")
	f.Add("user figlet 386 1 u 200 1 4 4 local 0")
	f.Fuzz(func(t *testing.T, s string) {
		_ = parseTable(s)
		_ = resynced(s)
		l, ok := parseLogLine(s)
		if ok && l.took < 0 {
			t.Fatalf("negative latency from %q", s)
		}
	})
}

// TestSplitOutputs: the answer to commands separated by ";" is each
// command's output followed by an empty line, an empty output the empty
// line alone (HAProxy 2.6, as the batch tests against it show).
func TestSplitOutputs(t *testing.T) {
	raw := "\n\n[3]: entry not found.\n\n\n0x5651302e6960 k1 w\n0x5651302e6a80 k2 v\n\n"
	outs := splitOutputs(raw)
	assert.Equal(t, []string{"", "", "[3]: entry not found.", "", "0x5651302e6960 k1 w\n0x5651302e6a80 k2 v"}, outs)
	assert.True(t, failed(outs[2]))
	for _, out := range []string{outs[0], outs[3], outs[4], "[3]", "entry not found."} {
		assert.False(t, failed(out), "%q", out)
	}
	assert.Equal(t, []string{""}, splitOutputs("\n"))
}
