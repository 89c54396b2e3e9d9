// Package testbed runs real agent processes (examples/agent), each in a
// network namespace of its own, joined by a bridge, on links with latency,
// jitter and loss, under open-loop load, with crashes, freezes and
// partitions at given times, and reports what the users saw.
//
// Every directed link a->b runs through a toxiproxy proxy in the testbed's
// own namespace: the agents' libp2p and peer-port connections are sent
// there by a DNAT rule in a's namespace, and the proxy delays them
// (latency and jitter, half the round trip each way). Loss and partitions
// are iptables rules in the namespaces, so packets really go missing and
// TCP retransmits or stalls as on a real network. Each node's platform is a
// faas/local provider in the testbed (reached over the bridge, with no
// delay) whose functions record every execution by request id, so a
// request run twice or on which node is known for certain.
//
// It needs root (namespaces, veth, iptables), ip and iptables from
// Debian's iproute2 and iptables packages, and the agent binary.
package testbed

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/dfaas-go/dfaas"
)

// Duration is a time.Duration written as "10ms", "2s" in a scenario.
type Duration time.Duration

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Scenario is one testbed run, as a YAML file describes it.
type Scenario struct {
	Name string `yaml:"name"`
	// Duration is how long the run lasts after the warm-up; load and event
	// times count from its start.
	Duration Duration `yaml:"duration"`
	// Warmup lets the federation form before the load starts. Default 4 s.
	Warmup Duration `yaml:"warmup"`
	// Interval is the agents' control tick. Default 1 s.
	Interval Duration `yaml:"interval"`
	// Proxy is the agents' data plane (-proxy). Default embedded.
	Proxy string `yaml:"proxy"`
	// Strategy is the agents' balancing strategy (-strategy); default the
	// agent's.
	Strategy string `yaml:"strategy"`
	// MaxRTT sets a function's RTT budget (its dfaas.maxrtt label) on
	// every node.
	MaxRTT map[string]Duration `yaml:"max_rtt"`
	Nodes  []NodeSpec          `yaml:"nodes"`
	// DefaultLink applies to every pair of nodes no Links entry names.
	DefaultLink LinkSpec    `yaml:"default_link"`
	Links       []LinkSpec  `yaml:"links"`
	Load        []LoadSpec  `yaml:"load"`
	Events      []EventSpec `yaml:"events"`
}

// NodeSpec is one agent and its functions' capacities (req/s).
type NodeSpec struct {
	Name      string             `yaml:"name"`
	Functions map[string]float64 `yaml:"functions"`
}

// LinkSpec is the path between two nodes, the same both ways.
type LinkSpec struct {
	Between []string `yaml:"between"`
	RTT     Duration `yaml:"rtt"`
	Jitter  Duration `yaml:"jitter"`
	Loss    float64  `yaml:"loss"` // percent of packets lost, each way
}

// LoadSpec is open-loop load on one node's user port.
type LoadSpec struct {
	Node     string   `yaml:"node"`
	Function string   `yaml:"function"`
	Rate     float64  `yaml:"rate"` // req/s
	From     Duration `yaml:"from"`
	To       Duration `yaml:"to"`
}

// EventSpec is something that happens At a time: exactly one of its
// actions.
type EventSpec struct {
	At Duration `yaml:"at"`
	// Kill sends SIGKILL to a node's agent; Stop sends SIGTERM; Freeze
	// SIGSTOP and Thaw SIGCONT; Start starts a killed or stopped agent again
	// (with the same identity).
	Kill   string `yaml:"kill"`
	Stop   string `yaml:"stop"`
	Freeze string `yaml:"freeze"`
	Thaw   string `yaml:"thaw"`
	Start  string `yaml:"start"`
	// Partition cuts every link between groups (nodes in no group keep
	// their links); Heal restores them all.
	Partition [][]string `yaml:"partition"`
	Heal      bool       `yaml:"heal"`
	// Loss sets a link's loss (percent) from then on.
	Loss *LinkSpec `yaml:"loss"`
}

// Name says what the event does, for reports.
func (e EventSpec) Name() string {
	switch {
	case e.Kill != "":
		return "kill " + e.Kill
	case e.Stop != "":
		return "stop " + e.Stop
	case e.Freeze != "":
		return "freeze " + e.Freeze
	case e.Thaw != "":
		return "thaw " + e.Thaw
	case e.Start != "":
		return "start " + e.Start
	case e.Partition != nil:
		return fmt.Sprintf("partition %v", e.Partition)
	case e.Heal:
		return "heal"
	case e.Loss != nil:
		return fmt.Sprintf("loss %v %g%%", e.Loss.Between, e.Loss.Loss)
	}
	return "nothing"
}

// Read decodes and checks a scenario; unknown keys are errors.
func Read(r io.Reader) (Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("scenario: %w", err)
	}
	return s, s.Validate()
}

// ReadFile reads a scenario file.
func ReadFile(path string) (Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return Scenario{}, err
	}
	defer f.Close()
	s, err := Read(f)
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// MaxNodes bounds a scenario: the bridge's /24 and the machine.
const MaxNodes = 200

var nodeName = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

func (s Scenario) withDefaults() Scenario {
	if s.Warmup == 0 {
		s.Warmup = Duration(4 * time.Second)
	}
	if s.Interval == 0 {
		s.Interval = Duration(time.Second)
	}
	if s.Proxy == "" {
		s.Proxy = "embedded"
	}
	return s
}

// Validate reports the first mistake in s, naming where it is.
func (s Scenario) Validate() error {
	s = s.withDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: scenario %q: %s", dfaas.ErrInvalidConfig, s.Name, fmt.Sprintf(format, a...))
	}
	switch {
	case s.Duration <= 0:
		return bad("duration must be positive")
	case s.Warmup < 0 || s.Interval < 0:
		return bad("negative warmup or interval")
	case len(s.Nodes) == 0 || len(s.Nodes) > MaxNodes:
		return bad("%d nodes: want 1 to %d", len(s.Nodes), MaxNodes)
	}
	for fn, d := range s.MaxRTT {
		if err := dfaas.ValidateFunctionName(fn); err != nil || d <= 0 || d.D() > time.Minute {
			return bad("max_rtt: %s: %v: want a function and a duration up to 1m", fn, d.D())
		}
	}
	names := map[string]bool{}
	for i, n := range s.Nodes {
		if !nodeName.MatchString(n.Name) {
			return bad("nodes[%d]: name %q: a-z then up to 7 of a-z, 0-9", i, n.Name)
		}
		if names[n.Name] {
			return bad("nodes[%d]: %q twice", i, n.Name)
		}
		names[n.Name] = true
		for fn, c := range n.Functions {
			if err := dfaas.ValidateFunctionName(fn); err != nil {
				return bad("nodes[%d]: %v", i, err)
			}
			if !(c >= 0 && c <= float64(dfaas.MaxRate)) {
				return bad("nodes[%d]: capacity %v of %s", i, c, fn)
			}
		}
	}
	link := func(where string, l LinkSpec, pair bool) error {
		if pair {
			if len(l.Between) != 2 || !names[l.Between[0]] || !names[l.Between[1]] || l.Between[0] == l.Between[1] {
				return bad("%s: between %v: want two different nodes", where, l.Between)
			}
		}
		if l.RTT < 0 || l.Jitter < 0 || l.Jitter > l.RTT || !(l.Loss >= 0 && l.Loss < 100) {
			return bad("%s: rtt %v, jitter %v (at most the rtt), loss %v%% (0 to under 100)", where, l.RTT.D(), l.Jitter.D(), l.Loss)
		}
		return nil
	}
	if err := link("default_link", s.DefaultLink, false); err != nil {
		return err
	}
	seen := map[[2]string]bool{}
	for i, l := range s.Links {
		if err := link(fmt.Sprintf("links[%d]", i), l, true); err != nil {
			return err
		}
		k := pairKey(l.Between[0], l.Between[1])
		if seen[k] {
			return bad("links[%d]: %v twice", i, l.Between)
		}
		seen[k] = true
	}
	for i, l := range s.Load {
		if !names[l.Node] {
			return bad("load[%d]: unknown node %q", i, l.Node)
		}
		if err := dfaas.ValidateFunctionName(l.Function); err != nil {
			return bad("load[%d]: %v", i, err)
		}
		if !(l.Rate > 0 && l.Rate <= 10000) || l.From < 0 || l.To <= l.From || l.To > s.Duration {
			return bad("load[%d]: rate %v (0 to 10000), from %v to %v (within the duration)", i, l.Rate, l.From.D(), l.To.D())
		}
	}
	for i, e := range s.Events {
		if e.At < 0 || e.At > s.Duration {
			return bad("events[%d]: at %v: outside the run", i, e.At.D())
		}
		var acts int
		for _, n := range []string{e.Kill, e.Stop, e.Freeze, e.Thaw, e.Start} {
			if n != "" {
				acts++
				if !names[n] {
					return bad("events[%d]: unknown node %q", i, n)
				}
			}
		}
		if e.Partition != nil {
			acts++
			in := map[string]bool{}
			for _, g := range e.Partition {
				for _, n := range g {
					if !names[n] || in[n] {
						return bad("events[%d]: partition: node %q unknown or in two groups", i, n)
					}
					in[n] = true
				}
			}
			if len(e.Partition) < 2 {
				return bad("events[%d]: partition: want at least two groups", i)
			}
		}
		if e.Heal {
			acts++
		}
		if e.Loss != nil {
			acts++
			if err := link(fmt.Sprintf("events[%d]: loss", i), *e.Loss, true); err != nil {
				return err
			}
		}
		if acts != 1 {
			return bad("events[%d]: %d actions: want exactly one", i, acts)
		}
	}
	if !slices.IsSortedFunc(s.Events, func(a, b EventSpec) int { return int(a.At - b.At) }) {
		return errors.Join(bad("events: not in time order"))
	}
	return nil
}

// pairKey names an unordered pair of nodes.
func pairKey(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// linkOf returns the link between nodes a and b.
func (s Scenario) linkOf(a, b string) LinkSpec {
	for _, l := range s.Links {
		if pairKey(l.Between[0], l.Between[1]) == pairKey(a, b) {
			return l
		}
	}
	l := s.DefaultLink
	l.Between = []string{a, b}
	return l
}
