package haproxy

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas/proxy"
)

// logState is what the request log tells of a function.
type logState struct {
	latency proxy.LatencyHistogram
	// over is set by a user request over the local limit, and cleared by
	// every Apply. armed: the first such request fires the trigger; an
	// Apply arms it only if the function was not already over its limit, so
	// sustained overload does not fire a trigger every tick.
	over, armed atomic.Bool
}

// readLogs reads HAProxy's request log until the socket closes: per user
// request, "<function> <µs> <1 if admitted within the local limit>". Lines
// of other shapes or for functions no plan named (HAProxy's own notices, for
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
		fn, took, local, ok := parseLogLine(string(buf[:n]))
		if !ok {
			continue
		}
		v, known := d.logged.Load(fn)
		if !known {
			continue
		}
		st := v.(*logState)
		st.latency.Observe(took)
		if !local {
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

// parseLogLine reads one request log line: "<function> <µs> <1 if
// admitted within the local limit, else ->".
func parseLogLine(line string) (fn string, took time.Duration, local, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return "", 0, false, false
	}
	us, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || us < 0 || us > int64(time.Hour/time.Microsecond) {
		return "", 0, false, false
	}
	return f[0], time.Duration(us) * time.Microsecond, f[2] == "1", true
}
