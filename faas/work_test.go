package faas

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// processCPU is the CPU time this process has used.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestCPUCostsItsCPUTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Handler
		body string
		cost time.Duration
	}{
		{"fixed", CPU(30 * time.Millisecond), "x", 30 * time.Millisecond},
		{"fixed, whatever the input", CPU(30 * time.Millisecond), strings.Repeat("x", 5000), 30 * time.Millisecond},
		{"per KiB, one at least", CPUPerKiB(10 * time.Millisecond), "", 10 * time.Millisecond},
		{"per KiB, started KiBs", CPUPerKiB(10 * time.Millisecond), strings.Repeat("x", 3*1024+1), 40 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := processCPU(t)
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, httptest.NewRequest("POST", "/function/cpu", strings.NewReader(tc.body)))
			used := processCPU(t) - before
			assert.Equal(t, http.StatusOK, rec.Code)
			assert.Equal(t, "worked "+tc.cost.String()+": "+tc.body, rec.Body.String())
			assert.Equal(t, tc.cost.Microseconds(), mustMicros(t, rec.Header().Get("X-Dfaas-Cost")))
			// The work is CPU time of its own: the process used at least
			// that much (and the test's own bookkeeping is far below it).
			assert.GreaterOrEqual(t, used, tc.cost, "process CPU during the call")
		})
	}
}

func mustMicros(t *testing.T, v string) int64 {
	d, err := time.ParseDuration(v)
	require.NoError(t, err, v)
	return d.Microseconds()
}

func TestCPUStopsWhenTheClientLeaves(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	rec := httptest.NewRecorder()
	CPU(time.Minute).ServeHTTP(rec, httptest.NewRequest("POST", "/function/cpu", nil).WithContext(ctx))
	assert.Less(t, time.Since(start), 10*time.Second, "a minute of work given up")
	assert.Empty(t, rec.Body.String(), "nobody to answer")
	assert.ErrorIs(t, Burn(ctx, time.Second, nil), context.Canceled)
}

func TestCPURefusesHugeBodies(t *testing.T) {
	rec := httptest.NewRecorder()
	CPUPerKiB(time.Millisecond).ServeHTTP(rec, httptest.NewRequest("POST", "/function/cpu", strings.NewReader(strings.Repeat("x", MaxWorkBody+1))))
	assert.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
}
