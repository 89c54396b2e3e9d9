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
		RoutesMap: filepath.Join(dir, "routes.map"), SlotsMap: filepath.Join(dir, "slots.map"), Lua: filepath.Join(dir, "dfaas.lua"), PeersSocket: filepath.Join(dir, "peers.sock"),
		MaxPeers: 16, RouteSlots: 4, Timeout: 30 * time.Second}
}

// TestRenderedConfigIsValid asks HAProxy itself to check the configuration.
func TestRenderedConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	l := testLayout(dir)
	cfg, err := l.Render()
	require.NoError(t, err)
	path := filepath.Join(dir, "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	for _, m := range []string{l.LimitsMap, l.CapacityMap, l.RoutesMap, l.SlotsMap} {
		require.NoError(t, os.WriteFile(m, nil, 0o600))
	}
	require.NoError(t, os.WriteFile(l.Lua, Script(), 0o600))
	out, err := exec.Command("haproxy", "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, cfg)
	assert.Equal(t, 1, strings.Count(cfg, "\nbackend "+backendForward+"\n"), "one forwarding backend, whatever the functions")
	assert.NotContains(t, cfg, "figlet", "no function is in the configuration")

	// With peers: one server line each, whose checks are the peer's.
	l.Servers = []Server{{Name: "p2", Addr: "127.0.0.1:18084", Weight: 1}, {Name: "p1", Addr: "127.0.0.1:18083", Weight: 1}}
	cfg, err = l.Render()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	out, err = exec.Command("haproxy", "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, cfg)
	assert.Contains(t, cfg, "    server p1 127.0.0.1:18083 weight 1"+serverHealth)
	assert.Contains(t, cfg, "    server p2 127.0.0.1:18084 weight 1"+serverHealth)

	// Route backends, whatever the functions; a reload writes the servers
	// the runtime API added to them.
	for k := range l.RouteSlots {
		assert.Equal(t, 1, strings.Count(cfg, "\nbackend "+slotName(k)+"\n"))
	}
	assert.Equal(t, 0, strings.Count(cfg, "\nbackend "+slotName(l.RouteSlots)+"\n"))
	l.Slots = [][]Server{nil, {{Name: "p1", Addr: "127.0.0.1:18083", Weight: 1}, {Name: "p2", Addr: "127.0.0.1:18084", Weight: 1}}}
	cfg, err = l.Render()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	out, err = exec.Command("haproxy", "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, cfg)
	_, route1, _ := strings.Cut(cfg, "\nbackend route1\n")
	route1, _, _ = strings.Cut(route1, "\nbackend ")
	assert.Contains(t, route1, "    server p1 127.0.0.1:18083 weight 1"+slotHealth)
	assert.Contains(t, route1, "    server p2 127.0.0.1:18084 weight 1"+slotHealth)
	l.Slots = make([][]Server, l.RouteSlots+1)
	_, err = l.Render()
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "more slots held than configured")

	// With asynchronous calls: their paths go to the node's queue.
	l.Slots, l.Async = nil, "127.0.0.1:18099"
	cfg, err = l.Render()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	out, err = exec.Command("haproxy", "-c", "-f", path).CombinedOutput()
	require.NoError(t, err, "%s\n%s", out, cfg)
	assert.Contains(t, cfg, "\nbackend async\n    server async 127.0.0.1:18099\n")
	l.Async = "127.0.0.1:1 x"
	_, err = l.Render()
	assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, "an address that would break the line")
}

func TestRenderRejects(t *testing.T) {
	dir := t.TempDir()
	for name, mutate := range map[string]func(*Layout){
		"bad node":      func(l *Layout) { l.Node = "a b" },
		"bad address":   func(l *Layout) { l.UserAddr = "nohost" },
		"bad path":      func(l *Layout) { l.Socket = "/tmp/a b" },
		"no peers room": func(l *Layout) { l.MaxPeers = 0 },
		"long socket":   func(l *Layout) { l.PeersSocket = "/tmp/" + strings.Repeat("d", 120) + "/peers.sock" },
		// Control characters end a line for HAProxy, or hide what follows.
		"carriage return in a server address": func(l *Layout) {
			l.Servers = []Server{{Name: "p1", Addr: "10.0.0.1:80\r    server evil 192.0.2.9:80", Weight: 1}}
		},
		"vertical tab in a server address": func(l *Layout) {
			l.Servers = []Server{{Name: "p1", Addr: "10.0.0.1:80\vx", Weight: 1}}
		},
		"control character in a server name": func(l *Layout) {
			l.Servers = []Server{{Name: "p\x01", Addr: "10.0.0.1:80", Weight: 1}}
		},
		"carriage return in the node": func(l *Layout) { l.Node = "a\rb" },
		"form feed in a path":         func(l *Layout) { l.Lua = "/tmp/a\fb.lua" },
		"non-ASCII in a path":         func(l *Layout) { l.Lua = "/tmp/\u00e9.lua" },
	} {
		l := testLayout(dir)
		mutate(&l)
		_, err := l.Render()
		assert.ErrorIs(t, err, dfaas.ErrInvalidConfig, name)
	}
}

func TestRate(t *testing.T) {
	for in, want := range map[float64]int{-1: 0, 0: 0, 0.4: 0, 2.5: 3, 16: 16, math.NaN(): 0, math.Inf(1): 1e9, math.Inf(-1): 0} {
		assert.Equal(t, want, rate(dfaas.Rate(in)), "%v", in)
	}
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
