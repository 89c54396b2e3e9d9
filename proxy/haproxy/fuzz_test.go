package haproxy

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas"
)

var (
	routeEntry = regexp.MustCompile(`^p[0-9a-z]+:[0-9.e+-]+:[0-9.e+-]+:[0-9]+$`)
	serverLine = regexp.MustCompile(`^    server (p[0-9a-z]+) (\S+) weight ([0-9]+) check .*$`)
	plainAddr  = regexp.MustCompile(`^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|[0-9.]+):[0-9]{1,5}$`)
)

// FuzzRenderPeers: whatever a peer's advert says (function name, node id,
// address, weight, cap), what reaches HAProxy - the configuration's server
// lines, the runtime API's add server arguments and the routes map entry -
// is either refused or a plain address and numbers: no advert changes what
// the configuration means. A short run is part of the test suite; the long
// one is
//
//	go test -run '^$' -fuzz FuzzRenderPeers -fuzztime 60s ./proxy/haproxy/
func FuzzRenderPeers(f *testing.F) {
	for _, addr := range []string{"10.0.0.2:8081", "127.0.0.1:1/admin/deploy#", "10.6.6.6:8080\r", "\vredir\v//evil.example",
		"a:1;show info", "10.6.6.6:notaport", "[::1]:80", "host:0", "h:80 ssl verify none"} {
		f.Add("figlet", "12D3KooWpeer", addr, 0.5, 10.0)
	}
	f.Add("figlet", "n\nserver x", "10.0.0.2:8081", 1e300, 1.7976931348623157e308)
	f.Add("Bad Name", "n", "10.0.0.2:8081", -1.0, -1.0)
	f.Fuzz(func(t *testing.T, fn, node, addr string, w, capacity float64) {
		d := &Driver{cfg: Config{MaxPeers: 64, Burst: 100 * time.Millisecond}, log: slog.New(slog.DiscardHandler),
			nodes: map[string]dfaas.NodeID{}, wanted: map[string]time.Time{}, servers: map[dfaas.NodeID]server{}}
		peers := []dfaas.Share{{Node: dfaas.NodeID(node), Addr: addr, Weight: w, Cap: dfaas.Rate(capacity)}}
		want := d.wantServers(dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{fn: {Peers: peers}}}, []string{fn})
		route := d.route(peers, want)
		if route != "" && !routeEntry.MatchString(route) {
			t.Fatalf("routes map entry %q", route)
		}
		l := testLayout("/run/dfaas-fuzz") // rendered only, never written
		if dfaas.ValidateFunctionName(fn) != nil {
			return // Apply refuses the plan
		}
		for _, s := range want {
			if !plainAddr.MatchString(s.addr) {
				t.Fatalf("address %q reaches HAProxy", s.addr)
			}
			args := fmt.Sprintf("%s weight %d%s%s", s.addr, serverWeight, dynamicPool, serverHealth)
			if strings.ContainsAny(args, "\r\n\v\f\t;#") {
				t.Fatalf("add server arguments %q", args)
			}
			l.Servers = append(l.Servers, Server{Name: s.name, Addr: s.addr, Weight: serverWeight})
		}
		cfg, err := l.Render()
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		servers := 0
		for _, line := range strings.Split(cfg, "\n") {
			for _, r := range line {
				if r < 0x20 || r > 0x7e {
					t.Fatalf("control or non-ASCII character in %q", line)
				}
			}
			if f := strings.Fields(line); len(f) > 1 && f[0] == "server" && f[1] != peersSection && f[1] != "platform" {
				m := serverLine.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("server line %q", line)
				}
				servers++
			}
		}
		if servers != len(want) {
			t.Fatalf("%d server lines for %d servers", servers, len(want))
		}
	})
}
