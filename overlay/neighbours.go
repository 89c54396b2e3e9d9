package overlay

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/dfaas-go/dfaas"
)

// DefaultNeighbours is how many peers a node follows by default: the
// adverts it hears and the peers it may forward to. A federation of at
// most DefaultNeighbours+1 nodes is one neighbourhood, as if there were
// none.
const DefaultNeighbours = 16

// Candidate is a peer a node could follow, with the round-trip time the
// node measured to it (zero: not measured).
type Candidate struct {
	Node dfaas.NodeID
	RTT  time.Duration
}

// Choose returns the k candidates self follows: the nearest by round-trip
// time in bands that double (under 2 ms, 2-4 ms, 4-8 ms ...), those without
// a measurement after every measured one, ties broken by a hash of the
// pair and salt. On a LAN, where RTTs are all in the first band (or unknown), each
// node so follows its own pseudo-random k, followers spread evenly over the
// federation, and a jittery RTT sample changes nothing; between sites, each
// follows its nearest. self is never chosen. Choose is deterministic and
// leaves cands in its order.
//
// A node on a network keeps its salt secret and random: with a public
// tie-break a member could grind peer ids that rank first for a victim and
// surround it. The in-memory network uses 0, for repeatable runs.
func Choose(self dfaas.NodeID, salt uint64, cands []Candidate, k int) []dfaas.NodeID {
	type ranked struct {
		Candidate
		hash uint64
	}
	less := func(a, b ranked) int {
		if c := cmp.Compare(rttBand(a.RTT), rttBand(b.RTT)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.Node, b.Node)
	}
	if k <= 0 {
		return nil
	}
	// The best k so far, in order: most candidates of a large federation
	// lose against the last of them at once.
	best := make([]ranked, 0, k+1)
	for _, c := range cands {
		if c.Node == self {
			continue
		}
		r := ranked{c, pairHash(self, c.Node, salt)}
		if len(best) == k && less(r, best[k-1]) >= 0 {
			continue
		}
		i, dup := slices.BinarySearchFunc(best, r, less)
		if dup {
			continue
		}
		best = slices.Insert(best, i, r)
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]dfaas.NodeID, len(best))
	for i, r := range best {
		out[i] = r.Node
	}
	return out
}

// rttBand is the band of a round-trip time: 0 under 2 ms, then one more for
// every doubling; unmeasured (zero) after all.
func rttBand(rtt time.Duration) int {
	if rtt <= 0 {
		return math.MaxInt
	}
	band := 0
	for d := 2 * time.Millisecond; rtt >= d && band < 62; d *= 2 {
		band++
	}
	return band
}

// pairHash mixes the two ids, so that the same peer ranks differently for
// different followers.
func pairHash(self, peer dfaas.NodeID, salt uint64) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], salt)
	_, _ = h.Write(b[:])
	_, _ = h.Write([]byte(self))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(peer))
	// FNV alone ranks peers alike for ids that differ little (n001, n002):
	// the splitmix64 finalizer decorrelates them.
	z := h.Sum64()
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
