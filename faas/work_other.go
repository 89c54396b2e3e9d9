//go:build !linux

package faas

import "time"

// workClock measures wall time where no thread CPU clock is used.
type workClock struct{ start time.Time }

func newWorkClock() workClock { return workClock{start: time.Now()} }

func (c workClock) used() time.Duration { return time.Since(c.start) }
