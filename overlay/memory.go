package overlay

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Network is an in-memory overlay network. Members joined to it exchange
// adverts through the same wire encoding and Table as the libp2p overlay,
// optionally late and lossy. Links can be cut and restored to test
// membership changes. A Network is safe for concurrent use and, for a given
// seed and order of calls, deterministic.
type Network struct {
	cfg NetworkConfig

	mu      sync.Mutex
	members map[dfaas.NodeID]*Memory
	order   []dfaas.NodeID // members, sorted: a deterministic delivery order
	cut     map[link]bool
	rng     *rand.Rand
	stats   NetworkStats
	// followers of each member, sorted, when Neighbours is set; nil when
	// the membership changed since they were chosen.
	followers map[dfaas.NodeID][]dfaas.NodeID
}

// NetworkConfig tunes a Network. The zero value means the wall clock, no
// delay and no loss.
type NetworkConfig struct {
	// Now is the clock that times delivery and expiry. Default time.Now.
	Now func() time.Time
	// Delay is how long after its publication an advert reaches each member.
	// A delayed advert is handed over when the member next calls Adverts.
	Delay time.Duration
	// Loss is the probability, in [0, 1), that an advert is lost on its way to
	// one member.
	Loss float64
	// Seed seeds the loss draws.
	Seed uint64
	// Direct hands each advert over as a deep copy instead of decoding its
	// wire form. Adverts are still encoded once, to count their bytes.
	// Simulators set it: decoding is the bulk of a large in-memory network's
	// work, and the codec has its own tests.
	Direct bool
	// Neighbours, if positive, is how many peers each member follows, as
	// the libp2p overlay's members do (Choose, by RTT): a member's adverts
	// go to its followers only. Zero: every member hears every other.
	Neighbours int
	// RTT, if set, is the round-trip time between two members, by which
	// they choose whom to follow; nil: a LAN, where none is measured.
	RTT func(a, b dfaas.NodeID) time.Duration
}

// NetworkStats counts the adverts a Network carried. Every field only grows.
type NetworkStats struct {
	Sent  uint64 // advert copies sent, one per receiving member
	Lost  uint64 // copies lost on the way
	Bytes uint64 // encoded bytes of the copies sent
}

type link struct{ a, b dfaas.NodeID }

func linkOf(a, b dfaas.NodeID) link {
	if b < a {
		a, b = b, a
	}
	return link{a, b}
}

// NewNetwork returns an empty network on the wall clock, with no delay and
// no loss.
func NewNetwork() *Network {
	n, _ := NewNetworkWith(NetworkConfig{})
	return n
}

// NewNetworkClock returns an empty network whose members time adverts with now.
func NewNetworkClock(now func() time.Time) *Network {
	n, _ := NewNetworkWith(NetworkConfig{Now: now})
	return n
}

// Validate reports an invalid delay or loss.
func (c NetworkConfig) Validate() error {
	if c.Delay < 0 || !(c.Loss >= 0 && c.Loss < 1) {
		return fmt.Errorf("%w: network delay %v, loss %v", dfaas.ErrInvalidConfig, c.Delay, c.Loss)
	}
	if c.Neighbours < 0 {
		return fmt.Errorf("%w: network: negative neighbours", dfaas.ErrInvalidConfig)
	}
	return nil
}

// NewNetworkWith returns an empty network configured by cfg.
func NewNetworkWith(cfg NetworkConfig) (*Network, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Network{cfg: cfg, members: map[dfaas.NodeID]*Memory{}, cut: map[link]bool{},
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x646661617321))}, nil
}

// Stats returns what the network carried.
func (n *Network) Stats() NetworkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Join adds a member called id, linked to every current member.
func (n *Network) Join(id dfaas.NodeID) (*Memory, error) {
	if err := dfaas.ValidateNodeID(id); err != nil {
		return nil, fmt.Errorf("overlay: join: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.members[id]; ok {
		return nil, fmt.Errorf("overlay: join: node %s already a member", id)
	}
	m := &Memory{net: n, id: id, table: NewTable(id), trigger: make(chan struct{}, 1)}
	n.members[id] = m
	i, _ := slices.BinarySearch(n.order, id)
	n.order = slices.Insert(n.order, i, id)
	n.followers = nil
	return m, nil
}

// receivers returns who hears from's adverts: its followers, or every
// other member without neighbourhoods. The caller holds n.mu.
func (n *Network) receivers(from dfaas.NodeID) []dfaas.NodeID {
	if n.cfg.Neighbours <= 0 {
		return n.order
	}
	if n.followers == nil {
		n.chooseLocked()
	}
	return n.followers[from]
}

// chooseLocked lets every member choose whom to follow.
func (n *Network) chooseLocked() {
	n.followers = make(map[dfaas.NodeID][]dfaas.NodeID, len(n.order))
	cands := make([]Candidate, len(n.order))
	for i, id := range n.order {
		cands[i].Node = id
	}
	for _, self := range n.order {
		if n.cfg.RTT != nil {
			for i := range cands {
				cands[i].RTT = n.cfg.RTT(self, cands[i].Node)
			}
		}
		for _, peer := range Choose(self, 0, cands, n.cfg.Neighbours) {
			n.followers[peer] = append(n.followers[peer], self) // self ascends: sorted
		}
	}
}

// FollowPairs counts who follows whom: the pairs (follower, followee).
func (n *Network) FollowPairs() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cfg.Neighbours <= 0 {
		return len(n.order) * (len(n.order) - 1)
	}
	if n.followers == nil {
		n.chooseLocked()
	}
	pairs := 0
	for _, f := range n.followers {
		pairs += len(f)
	}
	return pairs
}

// Follows returns the members id follows, sorted; every other member
// without neighbourhoods.
func (n *Network) Follows(id dfaas.NodeID) []dfaas.NodeID {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []dfaas.NodeID
	for _, other := range n.order {
		if other != id && slices.Contains(n.receivers(other), id) {
			out = append(out, other)
		}
	}
	return out
}

// Connect restores the link between a and b.
func (n *Network) Connect(a, b dfaas.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, linkOf(a, b))
}

// Disconnect cuts the link between a and b; each forgets the other's advert
// at once, as a libp2p node does when a connection drops.
func (n *Network) Disconnect(a, b dfaas.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.disconnectLocked(a, b)
}

func (n *Network) disconnectLocked(a, b dfaas.NodeID) {
	n.cut[linkOf(a, b)] = true
	if m, ok := n.members[a]; ok {
		m.peerDown(b)
	}
	if m, ok := n.members[b]; ok {
		m.peerDown(a)
	}
}

// Partition cuts every link between members of different groups. Members
// not named in any group keep their links.
func (n *Network) Partition(groups ...[]dfaas.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					n.disconnectLocked(a, b)
				}
			}
		}
	}
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// send hands an advert from one member to every member linked to it, in
// member order, drawing losses and counting what it sends.
func (n *Network) send(from dfaas.NodeID, a dfaas.Advert, size int) {
	now := n.cfg.Now()
	n.mu.Lock()
	var to []*Memory
	for _, id := range n.receivers(from) {
		if id == from || n.cut[linkOf(from, id)] {
			continue
		}
		n.stats.Sent++
		n.stats.Bytes += uint64(size)
		if n.cfg.Loss > 0 && n.rng.Float64() < n.cfg.Loss {
			n.stats.Lost++
			continue
		}
		to = append(to, n.members[id])
	}
	n.mu.Unlock()
	for _, m := range to {
		m.deliver(delivery{advert: a, from: from, at: now.Add(n.cfg.Delay)}, n.cfg.Delay == 0)
	}
}

func (n *Network) leave(id dfaas.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.members, id)
	if i, ok := slices.BinarySearch(n.order, id); ok {
		n.order = slices.Delete(n.order, i, i+1)
	}
	n.followers = nil
	for _, m := range n.members {
		m.peerDown(id)
	}
}

// Memory is one member of a Network; it implements dfaas.Overlay and
// dfaas.Trigger (fired when a peer leaves).
type Memory struct {
	net     *Network
	id      dfaas.NodeID
	table   *Table
	trigger chan struct{}

	once   sync.Once
	mu     sync.Mutex
	closed bool
	inbox  []delivery // delayed adverts, in order of arrival
}

type delivery struct {
	advert dfaas.Advert
	from   dfaas.NodeID
	at     time.Time
}

// deliver stores an advert now, or queues it until its arrival time.
func (m *Memory) deliver(d delivery, now bool) {
	if now {
		_ = m.table.putValid(d.advert, d.from, d.at, false) // failures are counted by the table
		return
	}
	m.mu.Lock()
	m.inbox = append(m.inbox, d)
	m.mu.Unlock()
}

// receiveDue stores the queued adverts that have arrived by now.
func (m *Memory) receiveDue(now time.Time) {
	m.mu.Lock()
	i := 0
	for i < len(m.inbox) && !m.inbox[i].at.After(now) {
		i++
	}
	due := m.inbox[:i:i]
	m.inbox = m.inbox[i:]
	m.mu.Unlock()
	for _, d := range due {
		_ = m.table.putValid(d.advert, d.from, d.at, false)
	}
}

// Self implements dfaas.Overlay.
func (m *Memory) Self() dfaas.NodeID { return m.id }

// Publish implements dfaas.Overlay: the advert is encoded and delivered to
// every linked member before Publish returns.
func (m *Memory) Publish(ctx context.Context, a dfaas.Advert) error {
	if m.isClosed() {
		return fmt.Errorf("overlay: publish: %w", dfaas.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("overlay: publish: %w", err)
	}
	raw, err := Encode(a)
	if err != nil {
		return err
	}
	// Decode once for every receiver: the wire form is exercised, and the
	// receivers share one immutable advert.
	var wire dfaas.Advert
	if m.net.cfg.Direct {
		wire = a
		wire.Functions = maps.Clone(a.Functions)
	} else if wire, err = Decode(raw); err != nil {
		return fmt.Errorf("overlay: publish: %w", err)
	}
	m.net.send(m.id, wire, len(raw))
	return nil
}

// Adverts implements dfaas.Overlay. The adverts returned are shared with
// other members: treat them as read-only.
func (m *Memory) Adverts(now time.Time) []dfaas.Advert {
	m.receiveDue(now)
	return m.table.Adverts(now)
}

// Trigger implements dfaas.Trigger.
func (m *Memory) Trigger() <-chan struct{} { return m.trigger }

// Stats returns the advert reception counters.
func (m *Memory) Stats() Stats { return m.table.Stats() }

// Receive hands raw bytes to this member as if sender had published them;
// tests use it to inject malformed adverts.
func (m *Memory) Receive(raw []byte, sender dfaas.NodeID) error {
	_, err := m.table.Receive(raw, sender, m.net.cfg.Now())
	return err
}

// Close leaves the network; the other members forget this node at once.
func (m *Memory) Close() error {
	m.once.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.net.leave(m.id)
	})
	return nil
}

func (m *Memory) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

func (m *Memory) peerDown(node dfaas.NodeID) {
	if m.table.Remove(node) {
		select {
		case m.trigger <- struct{}{}:
		default:
		}
	}
}

// Interface guards.
var (
	_ dfaas.Overlay = (*Memory)(nil)
	_ dfaas.Trigger = (*Memory)(nil)
)
