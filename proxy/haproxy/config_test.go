package haproxy

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dfaas-go/dfaas"
)

func testLayout(dir string) Layout {
	return Layout{Node: "node-1", UserAddr: "127.0.0.1:18080", PeerAddr: "127.0.0.1:18081", LocalAddr: "127.0.0.1:18082",
		Socket: filepath.Join(dir, "admin.sock"), LimitsMap: filepath.Join(dir, "limits.map"), CapacityMap: filepath.Join(dir, "capacity.map"),
		RoutesMap: filepath.Join(dir, "routes.map"), Lua: filepath.Join(dir, "dfaas.lua"), PeersSocket: filepath.Join(dir, "peers.sock"), Functions: []string{"figlet", "echo"}, MaxPeers: 16, Timeout: 30 * time.Second}
}

// TestRenderedConfigIsValid asks HAProxy itself to check the configuration.
func TestRenderedConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	l := testLayout(dir)
	cfg, err := l.Render()
	require.NoError(t, err)
	path := filepath.Join(dir, "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	for _, m := range []string{l.LimitsMap, l.CapacityMap, l.RoutesMap} {
		require.NoError(t, os.WriteFile(m, nil, 0o600))
	}
	require.NoError(t, os.WriteFile(l.Lua, Script(), 0o600))
	out, err := exec.Command("haproxy", "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, cfg)
	assert.Contains(t, cfg, "backend fwd_echo")
	assert.Contains(t, cfg, "backend fwd_figlet")
}

func TestRenderRejects(t *testing.T) {
	dir := t.TempDir()
	for name, mutate := range map[string]func(*Layout){
		"bad function":  func(l *Layout) { l.Functions = []string{"fig let\n    use_backend x"} },
		"bad node":      func(l *Layout) { l.Node = "a b" },
		"bad address":   func(l *Layout) { l.UserAddr = "nohost" },
		"bad path":      func(l *Layout) { l.Socket = "/tmp/a b" },
		"no peers room": func(l *Layout) { l.MaxPeers = 0 },
		"long socket":   func(l *Layout) { l.PeersSocket = "/tmp/" + strings.Repeat("d", 120) + "/peers.sock" },
		// Control characters end a line for HAProxy, or hide what follows.
		"carriage return in a server address": func(l *Layout) {
			l.Servers = map[string][]Server{"figlet": {{Name: "p1", Addr: "10.0.0.1:80\r    server evil 192.0.2.9:80", Weight: 1}}}
		},
		"vertical tab in a server address": func(l *Layout) {
			l.Servers = map[string][]Server{"figlet": {{Name: "p1", Addr: "10.0.0.1:80\vx", Weight: 1}}}
		},
		"control character in a server name": func(l *Layout) {
			l.Servers = map[string][]Server{"figlet": {{Name: "p\x01", Addr: "10.0.0.1:80", Weight: 1}}}
		},
		"carriage return in the node": func(l *Layout) { l.Node = "a\rb" },
		"form feed in a path":         func(l *Layout) { l.Lua = "/tmp/a\fb.lua" },
		"non-ASCII in a path":         func(l *Layout) { l.Lua = "/tmp/\u00e9.lua" },
	} {
		l := testLayout(dir)
		mutate(&l)
		_, err := l.Render()
		if name == "bad function" {
			assert.ErrorIs(t, err, dfaas.ErrInvalidName, name)
			continue
		}
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, name)
	}
}

func TestRateAndWeight(t *testing.T) {
	for in, want := range map[float64]int{-1: 0, 0: 0, 0.4: 0, 2.5: 3, 16: 16, math.NaN(): 0, math.Inf(1): 1e9, math.Inf(-1): 0} {
		assert.Equal(t, want, rate(dfaas.Rate(in)), "%v", in)
	}
	assert.Equal(t, 1, weight(1e-6), "a standby route keeps a server HAProxy can redispatch to")
	assert.Equal(t, 256, weight(1))
	assert.Equal(t, 256, weight(50))
}

// TestConfigValidate: what the configuration could not take is refused
// before a file is written or a process started.
func TestConfigValidate(t *testing.T) {
	ok := Config{Node: "a", UserAddr: "127.0.0.1:18080", PeerAddr: "127.0.0.1:18081", Platform: "127.0.0.1:8080", Functions: []string{"figlet"}}
	require.NoError(t, ok.Validate())
	for name, mutate := range map[string]func(c *Config){
		"no node":           func(c *Config) { c.Node = "" },
		"node with space":   func(c *Config) { c.Node = "a b" },
		"user without port": func(c *Config) { c.UserAddr = "127.0.0.1" },
		"no platform":       func(c *Config) { c.Platform = "" },
		"bad namespace":     func(c *Config) { c.Namespace = "a b" },
		"bad function":      func(c *Config) { c.Functions = []string{"Fig let"} },
		"negative timeout":  func(c *Config) { c.Timeout = -time.Second },
		"negative burst":    func(c *Config) { c.Burst = -1 },
		"negative peers":    func(c *Config) { c.MaxPeers = -1 },
		"deep directory":    func(c *Config) { c.Dir = "/tmp/" + strings.Repeat("d", 120) },
		"dir with a quote":  func(c *Config) { c.Dir = "/tmp/a'b" },
	} {
		c := ok
		mutate(&c)
		err := c.Validate()
		require.Error(t, err, name)
		if name == "bad function" {
			assert.ErrorIs(t, err, dfaas.ErrInvalidName, name)
			continue
		}
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, name)
	}
}
