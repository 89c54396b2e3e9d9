package haproxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

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
	fn, took, local, ok := parseLogLine("figlet 386 1\n")
	assert.True(t, ok)
	assert.Equal(t, "figlet", fn)
	assert.Equal(t, 386*time.Microsecond, took)
	assert.True(t, local)
	_, _, local, ok = parseLogLine("figlet 1200 -")
	assert.True(t, ok)
	assert.False(t, local, "over the limit")
	for _, bad := range []string{"", "figlet", "figlet x 1", "figlet -5 1", "Proxy user stopped (cumulated conns: FE: 1, BE: 0).", "a 1 1 extra"} {
		_, _, _, ok := parseLogLine(bad)
		assert.False(t, ok, bad)
	}
}

// FuzzParsers: whatever HAProxy (or anything else writing to its sockets)
// sends, the parsers return without panicking.
func FuzzParsers(f *testing.F) {
	f.Add("0x1: key=figlet use=0 exp=0 conn_cur=1 http_req_cnt=2\n")
	f.Add("0x1: [date] id=dfaas disabled=0 flags=0x1103 resync_timeout=4s")
	f.Add("figlet 386 1")
	f.Fuzz(func(t *testing.T, s string) {
		_ = parseTable(s)
		_ = resynced(s)
		_, took, _, ok := parseLogLine(s)
		if ok && took < 0 {
			t.Fatalf("negative latency from %q", s)
		}
	})
}
