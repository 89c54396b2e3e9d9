package procstat

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSelf(t *testing.T) {
	x := 0
	for i := range 50_000_000 { // burn a little CPU
		x += i
	}
	assert.Positive(t, x)
	assert.Positive(t, CPU(os.Getpid()))
	assert.Positive(t, RSSMiB(os.Getpid()))
	assert.Zero(t, CPU(1<<30), "no such process")
	assert.Zero(t, RSSMiB(1<<30))
}
