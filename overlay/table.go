package overlay

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Errors of advert reception, counted in Stats.
var (
	ErrOversized          = errors.New("overlay: oversized advert")
	ErrUnsupportedVersion = errors.New("overlay: unsupported advert version")
	ErrSpoofed            = errors.New("overlay: advert node differs from its sender")
)

// Stats counts adverts received, by fate. Every field only grows.
type Stats struct {
	Accepted  uint64 `json:"accepted"`   // stored as a peer's newest advert
	Malformed uint64 `json:"malformed"`  // undecodable, invalid or of an unknown version
	Oversized uint64 `json:"oversized"`  // over MaxAdvertBytes
	Stale     uint64 `json:"stale"`      // sequence number not above the last accepted
	Spoofed   uint64 `json:"spoofed"`    // claims another node than the one that sent it
	Expired   uint64 `json:"expired"`    // dropped when their time-to-live ran out
	PeersDown uint64 `json:"peers_down"` // peers removed because their connection dropped
	Flooded   uint64 `json:"flooded"`    // over their followee's advert rate (Libp2p only)
	Denied    uint64 `json:"denied"`     // connections refused by the allow-list (Libp2p only)
	Silent    uint64 `json:"silent"`     // adverts of a peer that does not answer its probes (Libp2p only)
	Evicted   uint64 `json:"evicted"`    // followers told to make room for a newcomer (Libp2p only)
	Excused   uint64 `json:"excused"`    // probe misses of a peer whose forwards were answered meanwhile (Libp2p only, see SetAnswered)
	Redialled uint64 `json:"redialled"`  // losses redialled: followees lost against this node's will, bootstrap peers (Libp2p only)
}

type counters struct {
	accepted, malformed, oversized, stale, spoofed, expired, down atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{Accepted: c.accepted.Load(), Malformed: c.malformed.Load(), Oversized: c.oversized.Load(),
		Stale: c.stale.Load(), Spoofed: c.spoofed.Load(), Expired: c.expired.Load(), PeersDown: c.down.Load()}
}

// count records the fate of an advert that failed with err.
func (c *counters) count(err error) {
	switch {
	case errors.Is(err, ErrOversized):
		c.oversized.Add(1)
	case errors.Is(err, dfaas.ErrStaleAdvert):
		c.stale.Add(1)
	case errors.Is(err, ErrSpoofed):
		c.spoofed.Add(1)
	default:
		c.malformed.Add(1)
	}
}

// peerState is what a Table knows of one node.
type peerState struct {
	node    dfaas.NodeID
	advert  dfaas.Advert
	expires time.Time
	seq     uint64 // highest sequence accepted, kept after expiry and removal (for a while)
	name    string // the name of the latest advert accepted, kept like seq
	live    bool   // advert holds the node's live advert
}

// A node whose advert expired or was removed is remembered (its sequence
// number) for forgetNodesAfter past its advert's expiry, and at most
// maxGoneNodes such nodes are, the longest gone forgotten first: members
// coming and going, or one minting ids, do not grow the table without end.
// A node forgotten and back starts afresh; its adverts reach this node on
// a stream from itself only, so there is nobody to replay an old one.
const (
	forgetNodesAfter = dfaas.MaxAdvertTTL
	maxGoneNodes     = 4096
)

// Table holds the newest live advert of each peer. Expiry is measured from
// receipt on the local clock, so peers' clocks need not agree. A Table is
// safe for concurrent use; its zero value is not: use NewTable.
type Table struct {
	self dfaas.NodeID

	mu    sync.Mutex
	peers map[dfaas.NodeID]*peerState
	order []*peerState // the values of peers, sorted by node
	stats counters
}

// NewTable returns an empty table for node self, whose own adverts it ignores.
func NewTable(self dfaas.NodeID) *Table {
	return &Table{self: self, peers: map[dfaas.NodeID]*peerState{}}
}

// Receive decodes raw and stores it as sender's newest advert at now. An
// empty sender skips the sender check. Every failure is counted in Stats.
func (t *Table) Receive(raw []byte, sender dfaas.NodeID, now time.Time) (dfaas.Advert, error) {
	return t.receive(raw, sender, now, false)
}

// receive is Receive; again also takes the advert the table last took of
// sender once more, if it is not live any more (the first advert on a new
// stream from that node).
func (t *Table) receive(raw []byte, sender dfaas.NodeID, now time.Time, again bool) (dfaas.Advert, error) {
	a, err := Decode(raw)
	if err == nil {
		err = t.putValid(a, sender, now, again)
	} else {
		t.stats.count(err)
	}
	return a, err
}

// Put stores a decoded advert from sender at now. It fails, and counts, if
// the advert is invalid, claims another node than sender, or is not newer
// than what the table already took from that node. The node's own adverts
// are ignored without error.
func (t *Table) Put(a dfaas.Advert, sender dfaas.NodeID, now time.Time) error {
	if err := a.Validate(); err != nil {
		t.stats.count(err)
		return err
	}
	return t.putValid(a, sender, now, false)
}

// putValid is Put for an advert already validated (by Decode).
func (t *Table) putValid(a dfaas.Advert, sender dfaas.NodeID, now time.Time, again bool) error {
	if sender != "" && a.Node != sender {
		err := fmt.Errorf("%w: %q from %q", ErrSpoofed, a.Node, sender)
		t.stats.count(err)
		return err
	}
	if a.Node == t.self {
		return nil
	}
	t.mu.Lock()
	p := t.peers[a.Node]
	err := staleErr(p, a)
	if again && p != nil && !p.live && a.Seq == p.seq {
		err = nil
	}
	if err == nil {
		if p == nil {
			p = &peerState{node: a.Node}
			t.peers[a.Node] = p
			i, _ := slices.BinarySearchFunc(t.order, a.Node, func(q *peerState, n dfaas.NodeID) int {
				return strings.Compare(string(q.node), string(n))
			})
			t.order = slices.Insert(t.order, i, p)
		}
		*p = peerState{node: a.Node, advert: a, expires: now.Add(a.TTL), seq: a.Seq, name: a.Name, live: true}
	}
	t.mu.Unlock()
	if err != nil {
		t.stats.count(err)
		return err
	}
	t.stats.accepted.Add(1)
	return nil
}

// Fresh reports whether a is valid, from sender and newer than the table's;
// it stores and counts nothing. Overlays use it to stop stale adverts from
// propagating.
func (t *Table) Fresh(a dfaas.Advert, sender dfaas.NodeID) error {
	if err := t.check(a, sender); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return staleErr(t.peers[a.Node], a)
}

func staleErr(p *peerState, a dfaas.Advert) error {
	if p != nil && a.Seq <= p.seq {
		return fmt.Errorf("%w: %s seq %d after %d", dfaas.ErrStaleAdvert, a.Node, a.Seq, p.seq)
	}
	return nil
}

func (t *Table) check(a dfaas.Advert, sender dfaas.NodeID) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if sender != "" && a.Node != sender {
		return fmt.Errorf("%w: %q from %q", ErrSpoofed, a.Node, sender)
	}
	return nil
}

// Known reports whether the table took an advert of node and still
// remembers it (it keeps its sequence number after the advert expires or
// the node leaves, for forgetNodesAfter).
func (t *Table) Known(node dfaas.NodeID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[node] != nil
}

// Live reports whether the table holds a live advert of node (one that
// may have expired since the last Adverts).
func (t *Table) Live(node dfaas.NodeID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[node]
	return p != nil && p.live
}

// Name returns the name node gave in its latest advert the table took, also
// after that advert expired or the node left (for as long as Known); "" if
// none.
func (t *Table) Name(node dfaas.NodeID) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[node]; p != nil {
		return p.name
	}
	return ""
}

// Remove forgets node's advert (not its sequence number): the peer left.
// It reports whether there was one.
func (t *Table) Remove(node dfaas.NodeID) bool {
	t.mu.Lock()
	p := t.peers[node]
	ok := p != nil && p.live
	if ok {
		p.live, p.advert = false, dfaas.Advert{}
	}
	t.mu.Unlock()
	if ok {
		t.stats.down.Add(1)
	}
	return ok
}

// Adverts returns the live adverts at now, sorted by node, drops the
// expired ones, and forgets nodes gone for long (forgetNodesAfter,
// maxGoneNodes).
func (t *Table) Adverts(now time.Time) []dfaas.Advert {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]dfaas.Advert, 0, len(t.order))
	var gone []*peerState
	for _, p := range t.order {
		if p.live && !now.Before(p.expires) {
			p.live, p.advert = false, dfaas.Advert{}
			t.stats.expired.Add(1)
		}
		if !p.live {
			gone = append(gone, p)
			continue
		}
		out = append(out, p.advert)
	}
	var forget map[dfaas.NodeID]bool // rarely any: made when needed
	drop := func(n dfaas.NodeID) {
		if forget == nil {
			forget = map[dfaas.NodeID]bool{}
		}
		forget[n] = true
	}
	if len(gone) > maxGoneNodes {
		slices.SortFunc(gone, func(a, b *peerState) int { return a.expires.Compare(b.expires) })
		for _, p := range gone[:len(gone)-maxGoneNodes] {
			drop(p.node)
		}
	}
	for _, p := range gone {
		if now.Sub(p.expires) > forgetNodesAfter {
			drop(p.node)
		}
	}
	if forget != nil {
		for n := range forget {
			delete(t.peers, n)
		}
		t.order = slices.DeleteFunc(t.order, func(p *peerState) bool { return forget[p.node] })
	}
	return out
}

// Stats returns the reception counters.
func (t *Table) Stats() Stats { return t.stats.snapshot() }
