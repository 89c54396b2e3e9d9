package haproxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// logState is what the request log tells of a function.
type logState struct {
	latency          proxy.LatencyHistogram // user requests
	statuses         proxy.Statuses         // user requests
	executions, solo proxy.LatencyHistogram // local executions (see proxy.Counts)
	busy, failed     atomic.Uint64
	// rejected counts user requests answered 5xx without running here (no
	// peer with a cap left, every peer refused, a peer's 5xx, no answer);
	// retried the forward attempts retried.
	rejected, retried atomic.Uint64
	// occupied is the time at least one local execution was in progress,
	// in ns, from the log's lines in the order they come (at each
	// execution's end): each adds what of it lies past the latest end seen.
	// An execution that began before shorter ones and ended after them may
	// span idle gaps between them that are then not counted: exact for
	// calls that end in the order they began.
	occupied atomic.Int64
	lastEnd  time.Time // the latest end seen (the log reader's own)
	// over is set by a user request over the local limit, and cleared by
	// every Apply. armed: the first such request fires the trigger; an
	// Apply arms it only if the function was not already over its limit, so
	// sustained overload does not fire a trigger every tick.
	over, armed atomic.Bool
}

// logLine is one request log line (see logFormat).
type logLine struct {
	fn     string
	took   time.Duration
	user   bool // a user request (else a peer's)
	local  bool // a user request admitted within the local limit
	ran    bool // executed here
	status int
	solo   bool   // no other execution of the function was in progress from its start to its end
	server string // that answered: a peer's server name, the platform's, or <NOSRV>
	// answer is the server's time to its response headers (%Tr), to the
	// millisecond; -1 if none came.
	answer time.Duration
	// picked is the peer's server dfaas.lua picked for a forward ("" if
	// none); retries the attempts before the final one, and queued the
	// time from the request's headers to the final attempt (%Tw: the
	// earlier attempts' time; -1 if no attempt was made).
	picked  string
	retries int
	queued  time.Duration
	// With Layout.Trace: the request's traceparent and the node a peer's
	// request came from ("" if none).
	traceparent, from string
}

// readLogs reads HAProxy's request log until the socket closes. Lines of
// other shapes or for functions no plan named (HAProxy's own notices, for
// one) are skipped.
func (d *Driver) readLogs() {
	defer close(d.logDone)
	buf := make([]byte, 512)
	for {
		n, err := d.logs.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // no hot loop on a lasting error
			continue
		}
		l, ok := parseLogLine(string(buf[:n]))
		if !ok {
			continue
		}
		v, known := d.logged.Load(l.fn)
		if !known {
			continue
		}
		st := v.(*logState)
		d.span(l, time.Now())
		if l.status >= http.StatusInternalServerError && d.log.Enabled(context.Background(), slog.LevelDebug) {
			d.log.Debug("request failed", "function", l.fn, "user", l.user, "ran", l.ran, "status", l.status,
				"server", l.server, "answer", l.answer, "took", l.took)
		}
		if peer, ok := d.named.Load(l.picked); ok && l.user && l.retries > 0 && l.queued >= connectStall {
			// The picked peer's attempt spent connectStall or more without
			// a connection (a SYN lost on a lossy link waits out timeout
			// connect) before HAProxy tried again, mostly at another peer:
			// a failed attempt, as the embedded proxy counts one. (A
			// refusal, 425, takes a round trip: not a failure.)
			d.forwards.Failed(l.fn, peer.(dfaas.NodeID), time.Now())
			d.log.Debug("forward attempt stalled", "function", l.fn, "picked", l.picked, "server", l.server, "retries", l.retries,
				"queued", l.queued, "status", l.status)
		}
		if peer, ok := d.named.Load(l.server); ok && l.user && !l.ran && l.status != http.StatusServiceUnavailable && l.answer >= 0 {
			// A forward's final attempt: the peer's time to its response
			// headers, and whether it failed. A 503 is every try refused,
			// or no connection made: HAProxy's own checks mark a peer it
			// cannot reach down.
			d.forwards.Answered(l.fn, peer.(dfaas.NodeID), l.status, l.answer, time.Now())
		}
		if l.ran {
			end := time.Now()
			if end.After(st.lastEnd) {
				st.occupied.Add(int64(end.Sub(later(end.Add(-l.took), st.lastEnd))))
				st.lastEnd = end
			}
			st.executions.Observe(l.took)
			if l.solo {
				st.solo.Observe(l.took)
			}
			switch {
			case l.status == http.StatusTooManyRequests:
				st.busy.Add(1)
			case proxy.PlatformFailed(l.status):
				st.failed.Add(1)
			}
		}
		if !l.user {
			continue
		}
		st.latency.Observe(l.took)
		st.statuses.Observe(l.status, l.took)
		if !l.ran && l.status >= http.StatusInternalServerError {
			st.rejected.Add(1)
		}
		st.retried.Add(uint64(l.retries))
		if !l.local {
			st.over.Store(true)
			if st.armed.CompareAndSwap(true, false) {
				select {
				case d.trigger <- struct{}{}:
				default:
				}
			}
		}
	}
}

// connectStall is how long a forward's earlier attempts must have taken
// for the picked peer's to count as failed: half the forwarding backends'
// timeout connect, many round trips of any peer within an RTT budget.
const connectStall = 500 * time.Millisecond

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// parseLogLine reads one request log line: "<user or peer> <function>
// <µs> <1 if admitted within the local limit> <u, s or p if run here>
// <status> <executions in progress as it started> <executions begun by its
// start> <by its end>", unset fields "-".
func parseLogLine(line string) (logLine, bool) {
	f := strings.Fields(line)
	if (len(f) != 14 && len(f) != 16) || f[1] == "-" || (f[0] != "user" && f[0] != "peer") {
		return logLine{}, false
	}
	unset := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	// millis reads a timer: ms, or -1 for none.
	millis := func(s string) (time.Duration, bool) {
		ms, err := strconv.Atoi(s)
		if err != nil || ms < -1 || ms > int(time.Hour/time.Millisecond) {
			return 0, false
		}
		if ms < 0 {
			return -1, true
		}
		return time.Duration(ms) * time.Millisecond, true
	}
	l := logLine{server: f[9], picked: unset(f[11])}
	var ok1, ok2 bool
	l.answer, ok1 = millis(f[10])
	l.queued, ok2 = millis(f[13])
	retries, err := strconv.Atoi(strings.TrimPrefix(f[12], "+"))
	if !ok1 || !ok2 || err != nil || retries < 0 || retries > 100 {
		return logLine{}, false
	}
	l.retries = retries
	if len(f) == 16 { // traceFormat
		l.traceparent, l.from = unset(f[14]), unset(f[15])
	}
	user := f[0] == "user"
	f = f[1:]
	us, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || us < 0 || us > int64(time.Hour/time.Microsecond) {
		return logLine{}, false
	}
	status, err := strconv.Atoi(f[4])
	if err != nil || status < 100 || status > 999 {
		return logLine{}, false
	}
	l.fn, l.took, l.user, l.local, l.status = f[0], time.Duration(us)*time.Microsecond, user, f[2] == "1", status
	switch f[3] {
	case "u", "s":
		l.ran = user
	case "p":
		l.ran = !user
	case "-":
	default:
		return logLine{}, false
	}
	if l.ran {
		cur, err1 := strconv.Atoi(f[5])
		began, err2 := strconv.ParseUint(f[6], 10, 64)
		ended, err3 := strconv.ParseUint(f[7], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || cur < 1 {
			return logLine{}, false
		}
		l.solo = cur == 1 && ended == began
	}
	return l, true
}
