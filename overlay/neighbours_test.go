package overlay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/stretchr/testify/assert"

	"github.com/dfaas-go/dfaas"
)

func TestChooseNearestFirst(t *testing.T) {
	cands := []Candidate{
		{Node: "far", RTT: 80 * time.Millisecond},
		{Node: "self", RTT: time.Microsecond},
		{Node: "unmeasured"},
		{Node: "near", RTT: 3 * time.Millisecond},
		{Node: "mid", RTT: 20 * time.Millisecond},
		{Node: "near", RTT: 3 * time.Millisecond},
	}
	assert.Equal(t, []dfaas.NodeID{"near", "mid"}, Choose("self", 0, cands, 2))
	assert.Equal(t, []dfaas.NodeID{"near", "mid", "far", "unmeasured"}, Choose("self", 0, cands, 10),
		"unmeasured last, self never, each node once")
	assert.Empty(t, Choose("self", 0, cands, 0))
	assert.Equal(t, "far", string(cands[0].Node), "the candidates keep their order")

	// Within a band, RTT samples do not reorder: the pair hash does.
	lan := func(rtts ...time.Duration) []dfaas.NodeID {
		var cs []Candidate
		for i, r := range rtts {
			cs = append(cs, Candidate{Node: dfaas.NodeID(fmt.Sprint("p", i)), RTT: r})
		}
		return Choose("self", 0, cs, 2)
	}
	us := time.Microsecond
	assert.Equal(t, lan(100*us, 900*us, 1500*us, 300*us), lan(1900*us, 200*us, 100*us, 1200*us), "a LAN's jitter changes nothing")
	assert.Equal(t, []dfaas.NodeID{"p2"}, Choose("self", 0, []Candidate{{"p0", 4 * time.Millisecond}, {"p1", 7 * time.Millisecond}, {"p2", time.Millisecond}}, 1))
}

// TestChooseSpreadsFollowersOnALAN: where no RTT tells peers apart, each
// node follows its own k, and every node has about k followers.
func TestChooseSpreadsFollowersOnALAN(t *testing.T) {
	const n, k = 200, 16
	cands := make([]Candidate, n)
	for i := range cands {
		cands[i] = Candidate{Node: dfaas.NodeID(fmt.Sprintf("n%03d", i))}
	}
	followers := map[dfaas.NodeID]int{}
	for _, c := range cands {
		chosen := Choose(c.Node, 0, cands, k)
		assert.Len(t, chosen, k)
		for _, p := range chosen {
			followers[p]++
		}
	}
	most, least := 0, n
	for _, c := range cands {
		most, least = max(most, followers[c.Node]), min(least, followers[c.Node])
	}
	t.Logf("followers per node: %d to %d (k = %d)", least, most, k)
	assert.LessOrEqual(t, most, 3*k)
	assert.GreaterOrEqual(t, least, 1)
	assert.Equal(t, Choose("n001", 0, cands, k), Choose("n001", 0, cands, k), "deterministic")
	assert.NotEqual(t, Choose("n001", 0, cands, k), Choose("n002", 0, cands, k), "each its own")
	assert.NotEqual(t, Choose("n001", 0, cands, k), Choose("n001", 1, cands, k), "and its salt's")
}

// TestKnownMembersAreBounded: members met are many (ids are cheap); the
// neighbourhood keeps at most maxKnown as candidates, the longest unseen
// going first and a followee never.
func TestKnownMembersAreBounded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := quietNode(t, ctx)
	n := newNeighbourhood(o) // not running: only this test touches it
	now := time.Now()
	n.mu.Lock()
	for i := range maxKnown + 500 {
		n.known[peer.ID(fmt.Sprintf("member-%05d", i))] = now.Add(time.Duration(i) * time.Millisecond)
	}
	followed := peer.ID("member-00000") // the longest unseen, but followed
	n.following[followed] = &followee{}
	n.mu.Unlock()
	cands := n.candidates(now.Add(time.Minute))
	n.mu.Lock()
	defer n.mu.Unlock()
	assert.Len(t, n.known, maxKnown)
	assert.Contains(t, n.known, followed)
	assert.NotContains(t, n.known, peer.ID("member-00001"))
	assert.NotContains(t, n.known, peer.ID("member-00500"))
	assert.Contains(t, n.known, peer.ID("member-00501"))
	assert.Len(t, cands, maxKnown)
}
