package overlay

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Network is an in-memory overlay network. Members joined to it exchange
// adverts synchronously, through the same wire encoding and Table as the
// libp2p overlay. Links can be cut and restored to test membership changes.
// A Network is safe for concurrent use.
type Network struct {
	now func() time.Time

	mu      sync.Mutex
	members map[dfaas.NodeID]*Memory
	cut     map[link]bool
}

type link struct{ a, b dfaas.NodeID }

func linkOf(a, b dfaas.NodeID) link {
	if b < a {
		a, b = b, a
	}
	return link{a, b}
}

// NewNetwork returns an empty network on the wall clock.
func NewNetwork() *Network { return NewNetworkClock(time.Now) }

// NewNetworkClock returns an empty network whose members time adverts with now.
func NewNetworkClock(now func() time.Time) *Network {
	return &Network{now: now, members: map[dfaas.NodeID]*Memory{}, cut: map[link]bool{}}
}

// Join adds a member called id, linked to every current member.
func (n *Network) Join(id dfaas.NodeID) (*Memory, error) {
	if id == "" {
		return nil, fmt.Errorf("overlay: join: empty node id")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.members[id]; ok {
		return nil, fmt.Errorf("overlay: join: node %s already a member", id)
	}
	m := &Memory{net: n, id: id, table: NewTable(id), trigger: make(chan struct{}, 1)}
	n.members[id] = m
	return m, nil
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

// peersOf returns the members linked to id.
func (n *Network) peersOf(id dfaas.NodeID) []*Memory {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*Memory, 0, len(n.members))
	for other, m := range n.members {
		if other != id && !n.cut[linkOf(id, other)] {
			out = append(out, m)
		}
	}
	return out
}

func (n *Network) leave(id dfaas.NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.members, id)
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
	now := m.net.now()
	for _, p := range m.net.peersOf(m.id) {
		_, _ = p.table.Receive(raw, m.id, now) // failures are counted by the receiver
	}
	return nil
}

// Adverts implements dfaas.Overlay.
func (m *Memory) Adverts(now time.Time) []dfaas.Advert { return m.table.Adverts(now) }

// Trigger implements dfaas.Trigger.
func (m *Memory) Trigger() <-chan struct{} { return m.trigger }

// Stats returns the advert reception counters.
func (m *Memory) Stats() Stats { return m.table.Stats() }

// Receive hands raw bytes to this member as if sender had published them;
// tests use it to inject malformed adverts.
func (m *Memory) Receive(raw []byte, sender dfaas.NodeID) error {
	_, err := m.table.Receive(raw, sender, m.net.now())
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
