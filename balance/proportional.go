package balance

import (
	"cmp"
	"hash/fnv"
	"slices"
	"sort"
	"strings"

	"github.com/dfaas-go/dfaas"
)

// Proportional is the DFaaS paper's strategy. Every node advertises its slack
// r_ext = max(0, r_max - r_loc) and whether it is overloaded. An overloaded
// node serves r_max locally and forwards r_fwd = r_loc - r_max, split among
// the peers that are not overloaded in proportion to their slack.
//
// Two additions keep it safe where the paper is silent; neither changes a
// plan when total demand fits total slack and only one node is overloaded:
//
//   - Caps. Peer j's cap for node i is slack_j·c_i/S, with S the total
//     slack and c_i node i's claim on it. When the federation's total
//     deficit D is within S, c_i = d_i + S − D: node i's deficit d_i plus
//     the slack nobody has claimed. When D > S the slack is shared max-min
//     fairly: c_i = min(d_i, L), with the level L such that the claims sum
//     to S. The claims then sum to S, so no helper is ever sent more than
//     its slack and rejections equal the excess; and a node that claims
//     more than it needs (a member that lies about its demand) gets no more
//     than an equal share, never a victim's (shared in proportion to
//     deficit, one member claiming the largest demand an advert may carry
//     took nearly all of it).
//   - Standby routes. A node that is not overloaded still gets the unclaimed
//     slack as weighted peers, so a burst that overruns its local limit before
//     the next tick is forwarded at once instead of being refused.
//
// The zero value is ready to use.
type Proportional struct{}

// Plan implements dfaas.Balancer.
func (Proportional) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	plan := dfaas.Plan{Time: self.Time, Functions: make(map[string]dfaas.FunctionPlan)}
	for _, name := range functionNames(self, peers) {
		me := self.Functions[name]
		fp := dfaas.FunctionPlan{Limit: me.Capacity, Capacity: me.Capacity}
		helpers, slack, deficits := helpersOf(name, me, peers)
		var deficit dfaas.Rate
		for _, d := range deficits {
			deficit += d
		}
		if max(slack, deficit) > 0 {
			claim := me.Deficit() + max(0, slack-deficit)
			if deficit > slack {
				claim = min(me.Deficit(), fairLevel(deficits, slack))
			}
			fp.Peers = make([]dfaas.Share, 0, len(helpers))
			for _, h := range helpers {
				c := h.slack * claim / slack
				w := float64(h.slack / slack)
				if c <= 0 || !(w > 0) { // a slack too small beside the others' to weigh anything
					continue
				}
				fp.Peers = append(fp.Peers, dfaas.Share{Node: h.node, Addr: h.addr, Weight: w, Cap: c})
			}
		}
		plan.Functions[name] = fp
	}
	return plan
}

// MaxForeignFunctions bounds the functions a plan holds that only peers
// run (this node forwards its users' requests for them). Those several
// peers advertise come first, most first; the rest are taken in turns, one
// peer's at a time, so that no peer can fill the plan with names of its
// own; ties go by a hash salted with this node's id, so that no name comes
// first everywhere. A peer advertising ever new names cannot grow this
// node's plan, data plane and metrics without end.
const MaxForeignFunctions = 64

// functionNames is the sorted union of the functions known to self and
// peers, with at most MaxForeignFunctions of the peers' only.
func functionNames(self dfaas.State, peers []dfaas.Advert) []string {
	names := make([]string, 0, len(self.Functions))
	for name := range self.Functions {
		names = append(names, name)
	}
	sort.Strings(names)
	var count map[string]int // foreign name -> peers advertising it
	var byPeer [][]string    // each peer's foreign names
	for _, p := range peers {
		if hasOnly(p.Functions, names) {
			continue // the common case, and cheaper than ranging over the map
		}
		var theirs []string
		for name := range p.Functions {
			// Federations mostly agree on their functions: a binary search
			// of the sorted names beats a set here.
			if _, found := slices.BinarySearch(names, name); !found {
				if count == nil {
					count = map[string]int{}
				}
				count[name]++
				theirs = append(theirs, name)
			}
		}
		byPeer = append(byPeer, theirs)
	}
	if len(count) == 0 {
		return names
	}
	salt := fnv.New64a()
	hash := func(name string) uint64 {
		salt.Reset()
		_, _ = salt.Write([]byte(self.Node))
		_, _ = salt.Write([]byte{0})
		_, _ = salt.Write([]byte(name))
		return salt.Sum64()
	}
	rank := map[string]uint64{}
	for name := range count {
		rank[name] = hash(name)
	}
	order := func(a, b string) int {
		if c := cmp.Compare(count[b], count[a]); c != 0 {
			return c
		}
		if c := cmp.Compare(rank[a], rank[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	}
	taken := map[string]bool{}
	var shared []string
	for name, c := range count {
		if c > 1 {
			shared = append(shared, name)
		}
	}
	slices.SortFunc(shared, order)
	for _, name := range shared[:min(len(shared), MaxForeignFunctions)] {
		taken[name] = true
	}
	for _, theirs := range byPeer {
		slices.SortFunc(theirs, order)
	}
	for turn := 0; len(taken) < MaxForeignFunctions; turn++ {
		more := false
		for _, theirs := range byPeer {
			if turn < len(theirs) {
				more = true
				if len(taken) < MaxForeignFunctions {
					taken[theirs[turn]] = true
				}
			}
		}
		if !more {
			break
		}
	}
	for name := range taken {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// hasOnly reports whether every key of fns is in names.
func hasOnly(fns map[string]dfaas.FunctionState, names []string) bool {
	if len(fns) > len(names) {
		return false
	}
	found := 0
	for _, n := range names {
		if _, ok := fns[n]; ok {
			found++
		}
	}
	return found == len(fns)
}

// helper is a peer with slack for a function.
type helper struct {
	node  dfaas.NodeID
	addr  string
	slack dfaas.Rate
}

// helpersOf returns the peers with slack for function name, sorted by node,
// their total slack S, and the federation's deficits, mine first, then
// every overloaded peer's.
func helpersOf(name string, me dfaas.FunctionState, peers []dfaas.Advert) (helpers []helper, slack dfaas.Rate, deficits []dfaas.Rate) {
	deficits = append(deficits, me.Deficit())
	for _, p := range peers {
		f, ok := p.Functions[name]
		if !ok {
			continue
		}
		if d := f.Deficit(); d > 0 {
			deficits = append(deficits, d)
		}
		if !f.Overloaded() && f.Slack() > 0 {
			helpers = append(helpers, helper{node: p.Node, addr: p.Addr, slack: f.Slack()})
			slack += f.Slack()
		}
	}
	if !slices.IsSortedFunc(helpers, byNode) { // overlays hand adverts sorted
		slices.SortFunc(helpers, byNode)
	}
	return helpers, slack, deficits
}

// fairLevel is the max-min fair level of slack shared among deficits whose
// sum exceeds it: the L at which the sum of min(d, L) over deficits is
// slack. It sorts deficits.
func fairLevel(deficits []dfaas.Rate, slack dfaas.Rate) dfaas.Rate {
	slices.Sort(deficits)
	left := slack
	for i, d := range deficits {
		n := dfaas.Rate(len(deficits) - i)
		if d*n > left {
			return left / n
		}
		left -= d
	}
	return deficits[len(deficits)-1] // not reached when the sum exceeds slack
}

func byNode(a, b helper) int { return strings.Compare(string(a.node), string(b.node)) }

// AllLocal never forwards: every node serves what it can and rejects the rest.
// It is the baseline the other strategies are measured against. The zero
// value is ready to use.
type AllLocal struct{}

// Plan implements dfaas.Balancer.
func (AllLocal) Plan(self dfaas.State, peers []dfaas.Advert) dfaas.Plan {
	plan := dfaas.Plan{Time: self.Time, Functions: make(map[string]dfaas.FunctionPlan)}
	for _, name := range functionNames(self, peers) {
		c := self.Functions[name].Capacity
		plan.Functions[name] = dfaas.FunctionPlan{Limit: c, Capacity: c}
	}
	return plan
}

// Interface guards.
var (
	_ dfaas.Balancer = Proportional{}
	_ dfaas.Balancer = AllLocal{}
)
