package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFunctionName(t *testing.T) {
	for path, want := range map[string]string{"/function/figlet": "figlet", "/function/figlet/x/y": "figlet", "/function/": "", "/function/Bad": "", "/system/functions": ""} {
		got, ok := FunctionName(path)
		assert.Equal(t, want != "", ok, path)
		assert.Equal(t, want, got, path)
	}
}
