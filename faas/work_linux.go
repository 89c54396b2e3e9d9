package faas

import (
	"time"

	"golang.org/x/sys/unix"
)

// workClock measures the CPU time the calling thread used since it was
// made (the goroutine must stay locked to its thread), or wall time if the
// thread's CPU clock cannot be read.
type workClock struct {
	start time.Duration
	wall  time.Time // set when the thread's clock failed
}

func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

func newWorkClock() workClock {
	if t, ok := threadCPU(); ok {
		return workClock{start: t}
	}
	return workClock{wall: time.Now()}
}

func (c workClock) used() time.Duration {
	if !c.wall.IsZero() {
		return time.Since(c.wall)
	}
	t, ok := threadCPU()
	if !ok {
		return time.Duration(1<<63 - 1) // a clock that worked and stopped: end the work
	}
	return t - c.start
}
