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
	// LeafLifetime is the agents' -leaf-lifetime (their peer TLS leaves,
	// renewed halfway through); default the agent's.
	LeafLifetime Duration `yaml:"leaf_lifetime"`
	// Admin runs the federation's administrator (see examples/members):
	// the agents trust its key (-admins), and once they are up it makes
	// the first signed membership, of every node but those a later Add
	// event names. Remove and Add events change it.
	Admin bool `yaml:"admin"`
	// Warmup lets the federation form before the load starts. Default 4 s.
	Warmup Duration `yaml:"warmup"`
	// Interval is the agents' control tick. Default 1 s.
	Interval Duration `yaml:"interval"`
	// Settle is when the report's figures of capacity and execution
	// latency start: the time the nodes are given to learn. Default 0.
	Settle Duration `yaml:"settle"`
	// Proxy is the agents' data plane (-proxy). Default embedded.
	Proxy string `yaml:"proxy"`
	// Strategy is the agents' balancing strategy (-strategy); default the
	// agent's.
	Strategy string `yaml:"strategy"`
	// MaxRTT sets a function's RTT budget (its dfaas.maxrtt label) on
	// every node.
	MaxRTT map[string]Duration `yaml:"max_rtt"`
	// Capacity is the agents' -capacity: "measured" (the default) or
	// "declared".
	Capacity string `yaml:"capacity"`
	// Work gives functions a real cost: the CPU time one call takes
	// (image dfaas/cpu). Functions not named are echoes, whose capacity is
	// their label, enforced by the platform.
	Work map[string]Duration `yaml:"work"`
	// CPUPeriod is the period of the nodes' CPU budgets (the CFS period).
	// Default 10 ms: a budget then acts as a slower CPU for calls of tens
	// of milliseconds; at Linux's default 100 ms a 10 ms call alone would
	// run at full speed and the next ones stall for the rest of the period.
	CPUPeriod Duration   `yaml:"cpu_period"`
	Nodes     []NodeSpec `yaml:"nodes"`
	// DefaultLink applies to every pair of nodes no Links entry names.
	DefaultLink LinkSpec    `yaml:"default_link"`
	Links       []LinkSpec  `yaml:"links"`
	Load        []LoadSpec  `yaml:"load"`
	Events      []EventSpec `yaml:"events"`
}

// NodeSpec is one agent and its platform.
type NodeSpec struct {
	Name string `yaml:"name"`
	// CPU is the cores the node's platform may use (the quota of a CPU
	// cgroup of its own); zero: no budget.
	CPU float64 `yaml:"cpu"`
	// Functions are deployed with their dfaas.maxrate label (req/s), or
	// with none (~).
	Functions map[string]*float64 `yaml:"functions"`
}

// Label is the dfaas.maxrate label of fn on the node, if it has one.
func (n NodeSpec) Label(fn string) (float64, bool) {
	if l := n.Functions[fn]; l != nil {
		return *l, true
	}
	return 0, false
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
	// Async makes the calls OpenFaaS's asynchronous ones
	// (/async-function/<name>, 202 at once), whose results the testbed
	// receives at its callback (Report.Async).
	Async bool `yaml:"async"`
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
	// Delay sets a link's round trip and jitter from then on (a congested
	// uplink); connections open keep going, slower.
	Delay *LinkSpec `yaml:"delay"`
	// CPU sets a node's CPU budget from then on.
	CPU *CPUSpec `yaml:"cpu"`
	// Hog starts a CPU hog in a node's cgroup (a noisy neighbour); Unhog
	// stops it.
	Hog   *HogSpec `yaml:"hog"`
	Unhog string   `yaml:"unhog"`
	// Remove has the administrator remove a node from the membership (it
	// keeps running, with the secret); Add has it add one (Scenario.Admin).
	Remove string `yaml:"remove"`
	Add    string `yaml:"add"`
}

// CPUSpec is a node's CPU budget, in cores.
type CPUSpec struct {
	Node  string  `yaml:"node"`
	Cores float64 `yaml:"cores"`
}

// HogSpec is a process that keeps Threads threads busy in a node's cgroup.
type HogSpec struct {
	Node    string `yaml:"node"`
	Threads int    `yaml:"threads"`
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
	case e.Remove != "":
		return "remove " + e.Remove
	case e.Add != "":
		return "add " + e.Add
	case e.Partition != nil:
		return fmt.Sprintf("partition %v", e.Partition)
	case e.Heal:
		return "heal"
	case e.Loss != nil:
		return fmt.Sprintf("loss %v %g%%", e.Loss.Between, e.Loss.Loss)
	case e.Delay != nil:
		return fmt.Sprintf("delay %v %v", e.Delay.Between, e.Delay.RTT.D())
	case e.CPU != nil:
		return fmt.Sprintf("cpu %s %g", e.CPU.Node, e.CPU.Cores)
	case e.Hog != nil:
		return fmt.Sprintf("hog %s %d", e.Hog.Node, e.Hog.Threads)
	case e.Unhog != "":
		return "unhog " + e.Unhog
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
	if s.Capacity == "" {
		s.Capacity = "measured"
	}
	if s.CPUPeriod == 0 {
		s.CPUPeriod = Duration(10 * time.Millisecond)
	}
	return s
}

// budgets reports whether any node has a CPU budget, at the start or by
// an event.
func (s Scenario) budgets() bool {
	for _, n := range s.Nodes {
		if n.CPU > 0 {
			return true
		}
	}
	for _, e := range s.Events {
		if e.CPU != nil || e.Hog != nil {
			return true
		}
	}
	return false
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
	case s.Warmup < 0 || s.Interval < 0 || s.Settle < 0 || s.Settle > s.Duration:
		return bad("negative warmup or interval")
	case len(s.Nodes) == 0 || len(s.Nodes) > MaxNodes:
		return bad("%d nodes: want 1 to %d", len(s.Nodes), MaxNodes)
	}
	for fn, d := range s.MaxRTT {
		if err := dfaas.ValidateFunctionName(fn); err != nil || d <= 0 || d.D() > time.Minute {
			return bad("max_rtt: %s: %v: want a function and a duration up to 1m", fn, d.D())
		}
	}
	for fn, d := range s.Work {
		if err := dfaas.ValidateFunctionName(fn); err != nil || d <= 0 || d.D() > time.Minute {
			return bad("work: %s: %v: want a function and a CPU time up to 1m", fn, d.D())
		}
	}
	if s.Capacity != "measured" && s.Capacity != "declared" {
		return bad("capacity %q: want measured or declared", s.Capacity)
	}
	if s.CPUPeriod.D() < time.Millisecond || s.CPUPeriod.D() > time.Second {
		return bad("cpu_period %v: want 1ms to 1s", s.CPUPeriod.D())
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
		if !(n.CPU >= 0 && n.CPU <= 64) {
			return bad("nodes[%d]: cpu %v: want 0 to 64 cores", i, n.CPU)
		}
		for fn, c := range n.Functions {
			if err := dfaas.ValidateFunctionName(fn); err != nil {
				return bad("nodes[%d]: %v", i, err)
			}
			if c != nil && !(*c >= 0 && *c <= float64(dfaas.MaxRate)) {
				return bad("nodes[%d]: capacity %v of %s", i, *c, fn)
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
		if (e.Remove != "" || e.Add != "") && !s.Admin {
			return bad("events[%d]: remove and add need admin: true", i)
		}
		for _, n := range []string{e.Kill, e.Stop, e.Freeze, e.Thaw, e.Start, e.Unhog, e.Remove, e.Add} {
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
		if e.Delay != nil {
			acts++
			if err := link(fmt.Sprintf("events[%d]: delay", i), *e.Delay, true); err != nil {
				return err
			}
		}
		if e.CPU != nil {
			acts++
			if !names[e.CPU.Node] || !(e.CPU.Cores > 0 && e.CPU.Cores <= 64) {
				return bad("events[%d]: cpu: node %q, %v cores: want a node and 0 to 64 cores", i, e.CPU.Node, e.CPU.Cores)
			}
		}
		if e.Hog != nil {
			acts++
			if !names[e.Hog.Node] || e.Hog.Threads < 1 || e.Hog.Threads > 64 {
				return bad("events[%d]: hog: node %q, %d threads: want a node and 1 to 64 threads", i, e.Hog.Node, e.Hog.Threads)
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
