package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTheREADMEShowsThisProgram: the README's "Compose an agent" is this
// file, whole, so what it shows compiles (go vet builds it) and stays so.
func TestTheREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	prog, err := os.ReadFile("main.go")
	require.NoError(t, err)
	s := string(readme)
	i := strings.Index(s, "\n## Compose an agent\n")
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, s[i:], "```go\n"+string(prog)+"```\n")
}
