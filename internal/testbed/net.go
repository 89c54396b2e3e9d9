package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Ports every agent listens on, inside its own namespace.
const (
	portP2P   = 4001
	portUser  = 8080
	portPeer  = 8081
	portAdmin = 9100
)

// linkedPorts are the ports whose traffic between nodes crosses the links:
// the overlay's and the peer port's. The user and admin ports are the
// testbed's own, reached over the bridge directly.
var linkedPorts = []int{portP2P, portPeer}

// network is the bridge, one namespace per node, and the link proxies.
type network struct {
	subnet   int    // the bridge is 10.77.<subnet>.254/24
	bridge   string // interface name
	names    []string
	ns       []string // namespace per node
	up       []bool   // namespace made (for teardown)
	bridgeUp bool
	server   *toxiproxy.ApiServer

	mu      sync.Mutex
	proxies map[[2]int][]*toxiproxy.Proxy // (from, to) -> one per linked port
}

// sh runs a command and returns its error with its output.
func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNS runs a command in a node's namespace.
func (n *network) inNS(i int, args ...string) error {
	return sh(append([]string{"ip", "netns", "exec", n.ns[i]}, args...)...)
}

// linkConns counts the TCP connections node i holds with other nodes, in
// either direction: its own to their linked ports (the sockets see the
// node's address, not the link's proxy), and theirs to its linked ports,
// which arrive from the hub (a link's proxy). The load's connections reach
// the user port, which is not a linked port.
func (n *network) linkConns(i int) (int, error) {
	out, err := exec.Command("ip", "netns", "exec", n.ns[i], "ss", "-Htn", "state", "established").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ss: %w: %s", err, strings.TrimSpace(string(out)))
	}
	linked := func(port string) bool {
		p, err := strconv.Atoi(port)
		return err == nil && slices.Contains(linkedPorts, p)
	}
	count := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			return 0, fmt.Errorf("ss: a line of %d fields: %q", len(f), line)
		}
		// ss writes an interface's zone as 127.0.0.53%lo:53 or [fe80::1]%eth0:80.
		noZone := func(s string) string {
			if z, p := strings.Index(s, "%"), strings.LastIndex(s, ":"); z >= 0 && p > z {
				return s[:z] + s[p:]
			}
			return s
		}
		local, err1 := netip.ParseAddrPort(noZone(f[2]))
		peer, err2 := netip.ParseAddrPort(noZone(f[3]))
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("ss: %q: %v %v", line, err1, err2)
		}
		lhost, phost := local.Addr().Unmap().String(), peer.Addr().Unmap().String()
		lport, pport := strconv.Itoa(int(local.Port())), strconv.Itoa(int(peer.Port()))
		if lhost != n.ip(i) {
			continue // loopback: the node's platform
		}
		other := phost != n.hub() && phost != n.ip(i) && strings.HasPrefix(phost, fmt.Sprintf("10.77.%d.", n.subnet))
		if (other && linked(pport)) || (phost == n.hub() && linked(lport)) {
			count++
		}
	}
	return count, nil
}

// Check reports what the testbed needs and this machine lacks.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("testbed: needs root (network namespaces, veth, iptables)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("testbed: %s not found: apt-get install iproute2 iptables", tool)
		}
	}
	return nil
}

// newNetwork makes the bridge and a namespace per node, with addresses
// 10.77.<subnet>.1, .2, ... in node order.
func newNetwork(names []string) (_ *network, err error) {
	n := &network{names: names, proxies: map[[2]int][]*toxiproxy.Proxy{},
		server: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	// A subnet (and names) nothing on this machine uses now: no route to
	// it (a real network there would be shadowed for the run), no bridge
	// of that name (another run).
	base := os.Getpid() % 200
	for try := range 200 {
		n.subnet = 1 + (base+try)%250
		n.bridge = "dfb" + strconv.Itoa(n.subnet)
		routes, err := exec.Command("ip", "route", "show", "to", "match", n.hub()).Output()
		if err == nil && !defaultOnly(string(routes)) {
			continue
		}
		if sh("ip", "link", "add", n.bridge, "type", "bridge") == nil {
			break
		}
		if try == 199 {
			return nil, errors.New("testbed: no free bridge name")
		}
	}
	n.bridgeUp = true
	if err := sh("ip", "addr", "add", n.hub()+"/24", "dev", n.bridge); err != nil {
		return nil, err
	}
	if err := sh("ip", "link", "set", n.bridge, "up"); err != nil {
		return nil, err
	}
	n.ns = make([]string, len(names))
	n.up = make([]bool, len(names))
	for i, name := range names {
		n.ns[i] = fmt.Sprintf("dfaas%d-%s", n.subnet, name)
		veth := n.veth(i)
		steps := [][]string{
			{"ip", "netns", "add", n.ns[i]},
			{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.ns[i]},
			{"ip", "link", "set", veth, "master", n.bridge, "up"},
			{"ip", "netns", "exec", n.ns[i], "ip", "addr", "add", n.ip(i) + "/24", "dev", "eth0"},
			{"ip", "netns", "exec", n.ns[i], "ip", "link", "set", "eth0", "up"},
			{"ip", "netns", "exec", n.ns[i], "ip", "link", "set", "lo", "up"},
			// Loss and partitions: two chains, flushed separately.
			{"ip", "netns", "exec", n.ns[i], "iptables", "-N", "dfaas-loss"},
			{"ip", "netns", "exec", n.ns[i], "iptables", "-N", "dfaas-cut"},
		}
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			steps = append(steps,
				[]string{"ip", "netns", "exec", n.ns[i], "iptables", "-A", chain, "-j", "dfaas-cut"},
				[]string{"ip", "netns", "exec", n.ns[i], "iptables", "-A", chain, "-j", "dfaas-loss"})
		}
		for j, step := range steps {
			if err := sh(step...); err != nil {
				return nil, err
			}
			if j == 0 {
				n.up[i] = true
			}
		}
	}
	return n, nil
}

// veth is the bridge's end of node i's link.
func (n *network) veth(i int) string { return fmt.Sprintf("dfv%dn%d", n.subnet, i) }

// defaultOnly reports whether the routes "ip route show to match" printed
// are at most the default route: nothing more specific covers the address.
func defaultOnly(routes string) bool {
	for _, line := range strings.Split(strings.TrimSpace(routes), "\n") {
		if line != "" && !strings.HasPrefix(line, "default ") {
			return false
		}
	}
	return true
}

// hub is the testbed's own address on the bridge: link proxies and
// platforms listen there.
func (n *network) hub() string { return fmt.Sprintf("10.77.%d.254", n.subnet) }

// ip is node i's address.
func (n *network) ip(i int) string { return fmt.Sprintf("10.77.%d.%d", n.subnet, i+1) }

// connect makes the directed link from -> to: a proxy per linked port on
// the hub, and DNAT in from's namespace so that its connections to to's
// ports go through them.
func (n *network) connect(from, to int) error {
	var ps []*toxiproxy.Proxy
	for _, port := range linkedPorts {
		p := toxiproxy.NewProxy(n.server, fmt.Sprintf("%s-%s-%d", n.names[from], n.names[to], port), net.JoinHostPort(n.hub(), "0"),
			net.JoinHostPort(n.ip(to), strconv.Itoa(port)))
		if err := p.Start(); err != nil {
			return fmt.Errorf("testbed: link proxy: %w", err)
		}
		ps = append(ps, p)
		if err := n.inNS(from, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", n.ip(to), "--dport", strconv.Itoa(port),
			"-j", "DNAT", "--to-destination", p.Listen); err != nil {
			return err
		}
	}
	n.mu.Lock()
	n.proxies[[2]int{from, to}] = ps
	n.mu.Unlock()
	return nil
}

// delay sets the latency of the link between a and b, both ways: half the
// round trip on each direction of each proxy, with half the jitter,
// replacing any set before (connections open carry on, delayed anew).
func (n *network) delay(a, b int, rtt, jitter time.Duration) error {
	half, j := rtt.Milliseconds()/2, jitter.Milliseconds()/2
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range [][2]int{{a, b}, {b, a}} {
		for _, p := range n.proxies[k] {
			for _, dir := range []string{"upstream", "downstream"} {
				_ = p.Toxics.RemoveToxic(context.Background(), "delay-"+dir) // none before: an error to ignore
				if rtt == 0 {
					continue
				}
				spec := fmt.Sprintf(`{"name":"delay-%s","type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":%d}}`, dir, dir, half, j)
				if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
					return fmt.Errorf("testbed: latency on %s: %w", p.Name, err)
				}
			}
		}
	}
	return nil
}

// setLoss makes pct percent of the packets between a and b go missing, each
// way, replacing any loss set before. Each namespace drops packets of the
// connections it opened to the other (matched by their original
// destination, before DNAT), so every connection on the link is hit.
func (n *network) setLoss(a, b int, pct float64) error {
	for _, k := range [][2]int{{a, b}, {b, a}} {
		from, to := k[0], k[1]
		rule := []string{"-m", "conntrack", "--ctorigdst", n.ip(to), "-m", "statistic", "--mode", "random",
			"--probability", strconv.FormatFloat(pct/100, 'f', 4, 64), "-j", "DROP"}
		// Remove whatever loss was set for this peer before.
		if err := n.dropRules(from, "dfaas-loss", n.ip(to)); err != nil {
			return err
		}
		if pct > 0 {
			if err := n.inNS(from, append([]string{"iptables", "-A", "dfaas-loss"}, rule...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// dropRules deletes the rules of chain in node i's namespace that name ip.
func (n *network) dropRules(i int, chain, ip string) error {
	out, err := exec.Command("ip", "netns", "exec", n.ns[i], "iptables", "-S", chain).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables -S %s: %w: %s", chain, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A "+chain+" ") || !strings.Contains(line, " "+ip+"/32 ") {
			continue
		}
		args := append([]string{"iptables", "-D"}, strings.Fields(line)[1:]...)
		if err := n.inNS(i, args...); err != nil {
			return err
		}
	}
	return nil
}

// partition drops every packet between nodes of different groups (both
// ways, existing connections included: they stall, as on a cut link).
func (n *network) partition(groups [][]int) error {
	group := map[int]int{}
	for g, members := range groups {
		for _, i := range members {
			group[i] = g
		}
	}
	for a, ga := range group {
		for b, gb := range group {
			if ga == gb {
				continue
			}
			if err := n.inNS(a, "iptables", "-A", "dfaas-cut", "-m", "conntrack", "--ctorigdst", n.ip(b), "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// heal removes every partition.
func (n *network) heal() error {
	for i := range n.ns {
		if err := n.inNS(i, "iptables", "-F", "dfaas-cut"); err != nil {
			return err
		}
	}
	return nil
}

// close removes the proxies, the namespaces (with their interfaces and
// rules) and the bridge.
func (n *network) close() {
	n.mu.Lock()
	for _, ps := range n.proxies {
		for _, p := range ps {
			p.Stop()
		}
	}
	n.proxies = map[[2]int][]*toxiproxy.Proxy{}
	n.mu.Unlock()
	for i, ok := range n.up {
		if ok {
			// Deleting one end of the veth pair removes both at once; the
			// kernel would otherwise remove them only when it frees the
			// namespace, some time after.
			_ = sh("ip", "link", "del", n.veth(i))
			_ = sh("ip", "netns", "del", n.ns[i])
		}
	}
	if n.bridgeUp {
		_ = sh("ip", "link", "del", n.bridge)
	}
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never listened: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
