package proxy

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestStatuses(t *testing.T) {
	var s Statuses
	assert.Nil(t, s.Snapshot())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				s.Observe(200, time.Millisecond)
			}
			s.Observe(503, 2*time.Millisecond)
		})
	}
	wg.Wait()
	s.Observe(99, time.Second)   // not a status
	s.Observe(1000, time.Second) // nor this
	got := s.Snapshot()
	assert.Equal(t, map[int]StatusCount{200: {400, 400 * time.Millisecond}, 503: {4, 8 * time.Millisecond}}, got)

	// Counts carry them over a restart and take differences.
	a := Counts{Statuses: got}
	b := Counts{Statuses: map[int]StatusCount{200: {1, time.Millisecond}, 404: {2, time.Millisecond}}}
	sum := a.Add(b)
	assert.Equal(t, map[int]StatusCount{200: {401, 401 * time.Millisecond}, 503: {4, 8 * time.Millisecond}, 404: {2, time.Millisecond}}, sum.Statuses)
	assert.Equal(t, got, a.Statuses, "Add leaves its operands alone")
	assert.Equal(t, map[int]StatusCount{200: {1, time.Millisecond}, 503: {0, 0}, 404: {2, time.Millisecond}}, sum.Sub(a).Statuses)
	assert.Equal(t, b.Statuses, b.Sub(a).Statuses, "a count below the old one was reset: all of it is new")
}
