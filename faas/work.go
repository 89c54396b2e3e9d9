package faas

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"time"
)

// Functions with a real cost: they compute until the thread they run on
// has used a given CPU time, so their service time and their capacity come
// from the CPU the node gives them - a quota, other busy processes - not
// from a limiter. On Linux the cost is counted in the thread's own CPU time
// (CLOCK_THREAD_CPUTIME_ID), elsewhere in wall time while computing.

// MaxWorkBody bounds the body the work functions read: beyond it they
// answer 413.
const MaxWorkBody = 1 << 20

// CPU returns a function that costs cost of CPU time per call, whatever
// its input. It answers with the cost it did and the request body. A call
// whose client goes away stops at once.
//
// On a node whose functions get q cores (a CPU quota of q < 1 core, say),
// one call alone takes about cost/q, and the node runs at most q/cost calls
// per second: that is the capacity a node learns for it.
func CPU(cost time.Duration) http.Handler {
	return work(func(int) time.Duration { return cost })
}

// CPUPerKiB returns a function whose cost grows with its input: cost of
// CPU time per KiB of request body, started KiBs counted, and at least one.
func CPUPerKiB(cost time.Duration) http.Handler {
	return work(func(n int) time.Duration { return cost * time.Duration(max(1, (n+1023)/1024)) })
}

func work(cost func(bodyLen int) time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxWorkBody+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > MaxWorkBody {
			http.Error(w, fmt.Sprintf("request body over %d bytes", MaxWorkBody), http.StatusRequestEntityTooLarge)
			return
		}
		c := cost(len(body))
		if err := Burn(r.Context(), c, body); err != nil {
			return // the client left: nobody to answer
		}
		w.Header().Set("X-Dfaas-Cost", strconv.FormatInt(c.Microseconds(), 10)+"us")
		_, _ = fmt.Fprintf(w, "worked %v: ", c)
		_, _ = w.Write(body)
	})
}

// burnChunk is how many SHA-256 rounds Burn runs between looks at the
// clock and ctx: about 20-40 µs of work.
const burnChunk = 16

// Burn computes SHA-256 rounds over seed until the calling goroutine's
// thread has used cost of CPU time, or ctx ends (its error is returned).
// It holds its goroutine on one thread meanwhile, so that the thread's CPU
// clock counts this work alone.
func Burn(ctx context.Context, cost time.Duration, seed []byte) error {
	if cost <= 0 {
		return ctx.Err()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clock := newWorkClock()
	sum := sha256.Sum256(seed)
	for {
		for range burnChunk {
			sum = sha256.Sum256(sum[:])
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if clock.used() >= cost {
			return nil
		}
	}
}
