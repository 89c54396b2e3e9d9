package overlay

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"

	"github.com/dfaas-go/dfaas"
)

// Neighbourhoods on libp2p. A node follows up to Neighbours peers, the
// nearest by round-trip time (Choose): it opens one stream to each, on
// which that peer writes its adverts, each as a uvarint length and the
// encoded advert. Adverts travel no further: a node hears its followees
// only, and its own adverts reach its followers only, so the control
// traffic of a node does not grow with the federation. The stream's
// secure channel says who wrote an advert (no per-message signature), a
// flood fills only the flooder's own stream, and a stream that closes takes
// its peer out of the plans at once.

// followProtocol names the advert streams of a federation's namespace.
func followProtocol(namespace string) protocol.ID {
	return protocol.ID("/" + namespace + "/adverts/2")
}

// Timings of the neighbourhood: how often followees are chosen again, how
// long a follow or an advert's write may take, how long a peer that refused
// or failed a follow is left out, and how long one that broke the protocol.
const (
	chooseInterval = time.Second
	followTimeout  = 2 * time.Second
	writeTimeout   = 2 * time.Second
	retryAfter     = 500 * time.Millisecond
	refusedFor     = 30 * time.Second
	bannedFor      = time.Minute
	// measurePerRound bounds the new candidates pinged per round.
	measurePerRound = 8
	// firstAdvertWithin is how long a new followee may take to write its
	// first advert.
	firstAdvertWithin = 30 * time.Second
	// swapEvery spaces the swaps of a followee for a nearer peer.
	swapEvery = 5 * time.Second
	// stableFor is how long a stream must last for its loss to count as a
	// first one (see follow).
	stableFor = 10 * time.Second
	// leaveGrace bounds how long a node leaving waits for its followers to
	// read that it leaves (see neighbourhood.leave).
	leaveGrace = 250 * time.Millisecond
	// leftFor is how long a peer that left is not followed again, unless
	// a new connection to it comes up first: longer than it takes to close.
	leftFor = 5 * time.Second
)

// followee is a peer this node follows.
type followee struct {
	s      network.Stream
	cancel context.CancelFunc
}

// follower is a peer that follows this node.
type follower struct {
	s    network.Stream
	wake chan struct{} // a new advert to write
	bye  chan struct{} // closed when it must make room: tell it and hang up
	net  string        // the network it connects from (netOf)
	// leave is closed when this node leaves the federation: the stream is
	// closed for writing, which the follower reads as a leave (errLeft);
	// ended is closed when the stream is done with.
	leave, ended chan struct{}
}

// neighbourhood holds both sides of the advert streams.
type neighbourhood struct {
	o *Libp2p

	mu        sync.Mutex
	following map[peer.ID]*followee
	pending   map[peer.ID]bool         // follows being opened
	upDuring  map[peer.ID]bool         // a connection came up while the follow was being opened
	freeUsed  map[peer.ID]bool         // a follow failure was forgiven since the last stable stream
	flaky     map[peer.ID]int          // streams in a row lost before lasting stableFor
	barred    map[peer.ID]bar          // left out until then
	known     map[peer.ID]time.Time    // members found or met, last seen
	ids       map[peer.ID]dfaas.NodeID // string forms, computed once
	near      map[peer.ID]nearness     // the lowest RTT seen of each member
	failed    map[peer.ID]int          // follows that failed in a row
	swapped   time.Time                // the last swap of a followee for a nearer one
	followers map[peer.ID]*follower
	latest    []byte // this node's latest encoded advert
	left      bool   // this node leaves: no new followers (see leave)
	rechoose  chan struct{}

	evicted atomic.Uint64 // followers told to make room for a newcomer
	salt    uint64        // Choose's secret tie-break
}

func newNeighbourhood(o *Libp2p) *neighbourhood {
	return &neighbourhood{o: o, following: map[peer.ID]*followee{}, pending: map[peer.ID]bool{},
		upDuring: map[peer.ID]bool{}, freeUsed: map[peer.ID]bool{}, flaky: map[peer.ID]int{}, barred: map[peer.ID]bar{}, known: map[peer.ID]time.Time{}, ids: map[peer.ID]dfaas.NodeID{},
		near: map[peer.ID]nearness{}, failed: map[peer.ID]int{},
		followers: map[peer.ID]*follower{},
		rechoose:  make(chan struct{}, 1), salt: mrand.Uint64()}
}

// nudge asks for an early round of choosing.
func (n *neighbourhood) nudge() {
	select {
	case n.rechoose <- struct{}{}:
	default:
	}
}

// discovered records members found through the rendezvous.
func (n *neighbourhood) discovered(p peer.ID) {
	n.mu.Lock()
	_, seen := n.known[p]
	n.known[p] = time.Now()
	n.mu.Unlock()
	if !seen {
		n.nudge()
	}
}

// met asks for a round at once if p, a member just identified, is not
// followed and there is room for it: a node starting, or one a member
// restarted, follows within milliseconds of the connection, not at the
// next round.
func (n *neighbourhood) met(p peer.ID) {
	n.mu.Lock()
	room := n.following[p] == nil && !n.pending[p] && len(n.following)+len(n.pending) < n.o.cfg.Neighbours
	n.mu.Unlock()
	if room {
		n.nudge()
	}
}

// knownCount is how many members discovery found.
func (n *neighbourhood) knownCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.known)
}

// Following returns the peers this node follows, sorted.
func (o *Libp2p) Following() []dfaas.NodeID {
	n := o.hood
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]dfaas.NodeID, 0, len(n.following))
	for p := range n.following {
		out = append(out, dfaas.NodeID(p.String()))
	}
	slices.Sort(out)
	return out
}

// Followers returns how many peers follow this node.
func (o *Libp2p) Followers() int {
	o.hood.mu.Lock()
	defer o.hood.mu.Unlock()
	return len(o.hood.followers)
}

// run chooses followees every chooseInterval, and at once when nudged.
func (n *neighbourhood) run(ctx context.Context) {
	t := time.NewTicker(chooseInterval)
	defer t.Stop()
	for {
		cands := n.candidates(time.Now())
		n.measure(ctx, cands)
		n.choose(ctx, cands)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.rechoose:
		}
	}
}

// nearness is the lowest round-trip time seen of a peer since a time.
// Followees are probed twice a second and candidates pinged once: by their
// averages, a followee slowed by load would look farther than a candidate
// measured idle, and be swapped for it, again and again. The lowest sample
// is the distance, the rest is queueing.
type nearness struct {
	rtt   time.Duration
	since time.Time
}

// nearnessFor is how long a lowest sample counts; then the next sample
// starts a new window (a route may have changed).
const nearnessFor = 5 * time.Minute

// sawRTT records a round-trip sample of p.
func (n *neighbourhood) sawRTT(p peer.ID, rtt time.Duration, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cur, ok := n.near[p]
	if !ok || rtt < cur.rtt || now.Sub(cur.since) > nearnessFor {
		n.near[p] = nearness{rtt: rtt, since: now}
	}
}

// rttOf is p's lowest recent RTT, zero if none was seen.
func (n *neighbourhood) rttOf(p peer.ID) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.near[p].rtt
}

// forgetAfter is how long a member neither found again nor connected stays
// a candidate; at most maxKnown members are candidates.
const (
	forgetAfter = 3 * time.Minute
	maxKnown    = 4096
)

// forgetLocked drops what the neighbourhood knows of member p.
func (n *neighbourhood) forgetLocked(p peer.ID) {
	delete(n.known, p)
	delete(n.ids, p)
	delete(n.near, p)
	delete(n.failed, p)
	delete(n.freeUsed, p)
	delete(n.flaky, p)
}

// candidates are the members this node could follow: those discovered and
// those connected that speak the advert protocol, less the barred ones,
// sorted.
func (n *neighbourhood) candidates(now time.Time) []peer.ID {
	h := n.o.host
	var met []peer.ID
	for _, p := range h.Network().Peers() {
		n.mu.Lock()
		_, ok := n.known[p]
		n.mu.Unlock()
		if ok {
			met = append(met, p)
		} else if speaks, _ := h.Peerstore().SupportsProtocols(p, n.o.proto); len(speaks) > 0 {
			met = append(met, p)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range met {
		n.known[p] = now
	}
	for p, b := range n.barred {
		if now.After(b.until) {
			delete(n.barred, p)
		}
	}
	if over := len(n.known) - maxKnown; over > 0 {
		// Members met are many (ids are cheap to a member): the longest
		// unseen go first, never a followee.
		old := make([]peer.ID, 0, len(n.known))
		for p := range n.known {
			if n.following[p] == nil && !n.pending[p] {
				old = append(old, p)
			}
		}
		slices.SortFunc(old, func(a, b peer.ID) int { return n.known[a].Compare(n.known[b]) })
		for _, p := range old[:min(over, len(old))] {
			n.forgetLocked(p)
		}
	}
	out := make([]peer.ID, 0, len(n.known))
	for p, seen := range n.known {
		if now.Sub(seen) > forgetAfter {
			n.forgetLocked(p)
			continue
		}
		if _, barred := n.barred[p]; !barred && p != h.ID() {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// id is p's node id, its string form computed once.
func (n *neighbourhood) id(p peer.ID) dfaas.NodeID {
	n.mu.Lock()
	defer n.mu.Unlock()
	id, ok := n.ids[p]
	if !ok {
		id = dfaas.NodeID(p.String())
		n.ids[p] = id
	}
	return id
}

// measure pings a few candidates whose round-trip time is not known yet,
// so that the nearest can be chosen.
func (n *neighbourhood) measure(ctx context.Context, cands []peer.ID) {
	ps := n.o.host.Peerstore()
	var todo []peer.ID
	for _, p := range cands {
		if n.rttOf(p) == 0 {
			todo = append(todo, p)
		}
	}
	// In the order Choose breaks ties in, so that on a LAN each node first
	// measures the peers it will follow (not all the same few).
	self := n.o.Self()
	slices.SortFunc(todo, func(a, b peer.ID) int {
		return cmp.Compare(pairHash(self, n.id(a), n.salt), pairHash(self, n.id(b), n.salt))
	})
	todo = todo[:min(len(todo), measurePerRound)]
	var wg sync.WaitGroup
	for _, p := range todo {
		wg.Go(func() {
			mctx, cancel := context.WithTimeout(ctx, followTimeout)
			defer cancel()
			rtt, err := n.o.pingOnce(mctx, p)
			if err != nil {
				n.backOff(p) // not tried again each round
				return
			}
			ps.RecordLatency(p, rtt)
			n.sawRTT(p, rtt, time.Now())
		})
	}
	wg.Wait()
}

// choose follows the nearest candidates, and lets go of a followee only
// for a nearer one (one every swapEvery) or when it falls out of the wider
// neighbourhood, so that followees do not churn with every RTT sample.
func (n *neighbourhood) choose(ctx context.Context, cands []peer.ID) {
	k := n.o.cfg.Neighbours
	cs := make([]Candidate, len(cands))
	byID := make(map[dfaas.NodeID]peer.ID, len(cands))
	for i, p := range cands {
		cs[i] = Candidate{Node: n.id(p), RTT: n.rttOf(p)}
		byID[cs[i].Node] = p
	}
	self := n.o.Self()
	// rank is a candidate's place among the nearest k+k/2; the first k are
	// wanted, the rest may stay.
	wider := Choose(self, n.salt, cs, k+k/2)
	rank := make(map[peer.ID]int, len(wider))
	for i, id := range wider {
		rank[byID[id]] = i
	}

	n.mu.Lock()
	// At most one followee goes a round, nearer ones or not: a burst of new
	// candidates cannot replace a neighbourhood at once.
	var drop []peer.ID
	for p := range n.following {
		if _, ok := rank[p]; !ok {
			drop = append(drop, p)
			break
		}
	}
	var add []peer.ID
	for _, id := range wider[:min(k, len(wider))] {
		p := byID[id]
		if n.following[p] == nil && !n.pending[p] {
			add = append(add, p)
		}
	}
	room := k - (len(n.following) - len(drop)) - len(n.pending)
	if len(add) > 0 && room <= 0 && len(drop) == 0 && time.Since(n.swapped) >= swapEvery {
		n.swapped = time.Now()
		// Full of followees from the wider ring: swap the farthest of
		// those not wanted for the nearest wanted one.
		var worst peer.ID
		worstAt := -1
		for p := range n.following {
			if i, ok := rank[p]; ok && i >= k && i > worstAt {
				worst, worstAt = p, i
			}
		}
		if worstAt >= 0 {
			drop = append(drop, worst)
			room++
		}
	}
	add = add[:max(0, min(len(add), room))]
	for _, p := range add {
		n.pending[p] = true
	}
	n.mu.Unlock()

	for _, p := range drop {
		n.unfollow(p, "a nearer peer")
	}
	for _, p := range add {
		n.o.goRun(func() { n.follow(ctx, p) })
	}
}

// backOff bars p after a failed dial, for twice as long as the last time,
// from retryAfter up to refusedFor: a peer that cannot be reached now (or a
// host too busy to dial) is not tried every round.
func (n *neighbourhood) backOff(p peer.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.backOffLocked(p)
}

func (n *neighbourhood) backOffLocked(p peer.ID) {
	n.failed[p]++
	n.barred[p] = bar{until: time.Now().Add(min(refusedFor, retryAfter<<min(n.failed[p]-1, 6)))}
}

// bar leaves a peer out of the candidates until a time. A hard bar is the
// peer's doing (it refused the follow, or broke the protocol); a soft one
// follows a failed dial or a lost connection, and ends early when a
// connection to the peer comes up (reconnected).
type bar struct {
	until time.Time
	hard  bool
}

// reconnected lifts p's soft bar and asks for a round at once, now that a
// connection to it is up again (the redialer's, or the peer's own): a
// healed partition is followed again without waiting out the back-off. Not
// for a peer whose streams keep ending early (flaky): reconnecting must not
// let a member that drops its stream (and its connection) at will be
// followed again and again.
func (n *neighbourhood) reconnected(p peer.ID) {
	n.mu.Lock()
	b, ok := n.barred[p]
	lift := ok && !b.hard && n.flaky[p] <= 1
	if lift {
		delete(n.barred, p)
		delete(n.failed, p)
	}
	if n.pending[p] {
		n.upDuring[p] = true // a dial from before may still fail: see follow
	}
	n.mu.Unlock()
	if lift {
		n.nudge()
	}
}

// follow opens the advert stream to p and reads it until it ends.
func (n *neighbourhood) follow(ctx context.Context, p peer.ID) {
	began := time.Now()
	fctx, cancel := context.WithTimeout(ctx, followTimeout)
	s, err := n.o.host.NewStream(fctx, p, n.o.proto)
	cancel()
	n.mu.Lock()
	delete(n.pending, p)
	up := n.upDuring[p]
	delete(n.upDuring, p)
	if err != nil {
		// A dial that began before a connection to p came up (a healed
		// partition) may time out with that connection up: tried again on
		// it at once, not barred, once per stable stream (a member cannot
		// make this node dial it in a loop).
		free := up && !n.freeUsed[p] && n.o.host.Network().Connectedness(p) == network.Connected
		if free {
			n.freeUsed[p] = true
			n.failed[p]++
		} else {
			n.backOffLocked(p)
		}
		n.mu.Unlock()
		n.o.log.Debug("follow failed", "peer", p, "err", err, "retry_now", free)
		if free {
			n.nudge()
		}
		return
	}
	delete(n.failed, p)
	rctx, stop := context.WithCancel(ctx)
	n.following[p] = &followee{s: s, cancel: stop}
	n.mu.Unlock()
	n.o.host.ConnManager().Protect(p, "dfaas-followee")
	n.o.probes.watch(rctx, p)
	n.o.log.Debug("following", "peer", p)

	why := n.read(rctx, p, s)
	left := rctx.Err() != nil // unfollowed, or this node is closing
	stop()
	_ = s.Reset()
	n.mu.Lock()
	if f := n.following[p]; f != nil && f.s == s {
		delete(n.following, p)
		n.o.host.ConnManager().Unprotect(p, "dfaas-followee") // else a newer stream keeps it
	}
	switch {
	case left:
	case errors.Is(why, errRefused):
		n.barred[p] = bar{until: time.Now().Add(refusedFor), hard: true}
	case errors.Is(why, errBroke):
		n.barred[p] = bar{until: time.Now().Add(bannedFor), hard: true}
	case errors.Is(why, errLeft):
		// Gone on purpose: not redialled, and left alone while it closes
		// (a follow now would be refused, and barred for refusedFor); a
		// new connection, as when it restarts, lifts the bar at once. A
		// stream that did not last stableFor counts as early as a loss
		// would: a member that leaves and comes back again and again
		// backs off as one that drops its connection does.
		if time.Since(began) >= stableFor {
			delete(n.flaky, p)
		} else {
			n.flaky[p]++
		}
		delete(n.freeUsed, p)
		wait := leftFor
		if k := n.flaky[p]; k > 1 {
			wait = max(leftFor, min(refusedFor, retryAfter<<min(k-1, 6)))
		}
		n.barred[p] = bar{until: time.Now().Add(wait)}
	default:
		// Lost, not let go. A stream that lasted is a first loss (a crash,
		// a partition, a restart): redialled soon and often, and followed
		// again as soon as it can be reached. Streams lost early again and
		// again back off, twice as long each time, and are not redialled.
		if time.Since(began) >= stableFor {
			n.flaky[p] = 1
			delete(n.freeUsed, p)
		} else {
			n.flaky[p]++
		}
		k := n.flaky[p]
		n.barred[p] = bar{until: time.Now().Add(min(refusedFor, retryAfter<<min(k-1, 6)))}
	}
	unwanted := left || errors.Is(why, errRefused) || errors.Is(why, errBroke) || errors.Is(why, errLeft)
	redial := !unwanted && n.flaky[p] == 1
	n.mu.Unlock()
	switch {
	case redial:
		n.o.redial.dropped(p, time.Now())
	case unwanted:
		n.o.redial.forget(p) // nor by an earlier loss's redial
	}
	// A stream lost early again keeps an earlier loss's redial (a follow
	// opened while the peer's connections were closing one by one); its bar
	// still decides when it is followed again.
	n.o.probes.forget(p)
	if n.o.table.Remove(dfaas.NodeID(p.String())) && !n.o.isClosing() {
		n.o.log.Info("peer left", "peer", p, "peer_name", n.o.table.Name(dfaas.NodeID(p.String())), "why", why)
		n.o.fire()
	}
	n.nudge()
}

// welcome forgets why p was left out (bars, failed and early-lost
// streams) and asks for a round: p has just been admitted (a membership
// that names it), and what it cost before it was admitted says nothing of
// it now.
func (n *neighbourhood) welcome(p peer.ID) {
	n.mu.Lock()
	delete(n.barred, p)
	delete(n.failed, p)
	delete(n.flaky, p)
	n.mu.Unlock()
	n.nudge()
}

// unfollow closes the stream to p; follow's reader then cleans up.
func (n *neighbourhood) unfollow(p peer.ID, why string) {
	n.mu.Lock()
	f := n.following[p]
	n.mu.Unlock()
	if f != nil {
		n.o.log.Debug("unfollowing", "peer", p, "why", why)
		f.cancel()
		_ = f.s.Reset()
	}
}

var (
	errRefused = errors.New("refused the follow")
	errBroke   = errors.New("broke the advert protocol")
	errLeft    = errors.New("it left the federation")
)

// maxMalformed is how many bad frames a followee may write before its
// stream is closed and it is barred for bannedFor.
const maxMalformed = 3

// read takes p's adverts from s: at most MaxAdvertRate a second (with as
// many in a burst; the excess is dropped and counted in Stats.Flooded,
// and ten times the rate closes the stream), each of at most
// MaxAdvertBytes, signed by the channel: an advert must name p.
func (n *neighbourhood) read(ctx context.Context, p peer.ID, s network.Stream) error {
	o := n.o
	r := bufio.NewReaderSize(s, 4096)
	lim := rate.NewLimiter(rate.Limit(o.cfg.MaxAdvertRate), max(1, int(o.cfg.MaxAdvertRate)))
	var flooded, malformed int
	floodFrom := time.Now()
	sender := dfaas.NodeID(p.String())
	first, opening := true, true
	idle := firstAdvertWithin
	for ctx.Err() == nil {
		// A followee that stops writing (half a frame, or nothing while it
		// still answers pings) gives up its place after twice its adverts'
		// time to live.
		if err := s.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return err
		}
		size, err := binary.ReadUvarint(r)
		if err != nil {
			// A refusal ends the stream before its first frame; so does a
			// connection that drops, which is a loss (a crash as the
			// follow opened), not a refusal.
			if first && (errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset)) && !s.Conn().IsClosed() {
				return fmt.Errorf("%w: %w", errRefused, err)
			}
			// A clean end after whole frames: see neighbourhood.leave. Only
			// io.EOF itself: a connection that drops ends its streams with
			// a reset that wraps io.EOF.
			if err == io.EOF && malformed == 0 { // a stream that broke the protocol gets no leave
				return errLeft
			}
			return err
		}
		first = false
		if size == 0 {
			return fmt.Errorf("%w: made room for another follower", errRefused)
		}
		if size > MaxAdvertBytes {
			o.table.stats.count(ErrOversized)
			return fmt.Errorf("%w: a frame of %d bytes", errBroke, size)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		if !lim.Allow() {
			o.flooded.Add(1)
			if now := time.Now(); now.Sub(floodFrom) > time.Second {
				flooded, floodFrom = 0, now
			}
			if flooded++; flooded > 10*max(1, int(o.cfg.MaxAdvertRate)) {
				return fmt.Errorf("%w: flooding", errBroke)
			}
			continue
		}
		if o.probes.suspect(p) {
			o.silent.Add(1) // an old advert on its way: the peer does not answer
			continue
		}
		if o.gater != nil && !o.gater.isMember(p) {
			return fmt.Errorf("%w: no member of the membership in force", errRefused) // read as a change of membership cut it
		}
		back := !o.table.Live(sender)
		// The first advert of a stream may be one this node took before
		// the followee was lost (it writes its latest at once): taken
		// again, so that a followee back is in the plans now, not at its
		// next advert.
		a, err := o.table.receive(buf, sender, o.cfg.Now(), opening)
		opening = false
		switch {
		case err == nil:
			idle = 2 * a.TTL
			if back {
				o.fire()
			}
		case errors.Is(err, dfaas.ErrStaleAdvert):
		default:
			o.log.Debug("advert dropped", "from", p, "err", err)
			if malformed++; malformed >= maxMalformed || errors.Is(err, ErrSpoofed) {
				return fmt.Errorf("%w: %w", errBroke, err)
			}
		}
	}
	return ctx.Err()
}

// handle serves a follower's stream: this node's latest advert at once,
// then each new one, until either side closes it. A node keeps at most
// MaxFollowers followers: a newcomer beyond that takes the place of one of
// the followers from the network with the most of them (a /24 for IPv4, a
// /48 for IPv6), chosen at random, which follows someone else. So no one
// can fill a node's places once and for all, and a member with many ids on
// few networks mostly evicts itself.
func (n *neighbourhood) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	f := &follower{s: s, wake: make(chan struct{}, 1), bye: make(chan struct{}), net: netOf(s.Conn().RemoteMultiaddr()),
		leave: make(chan struct{}), ended: make(chan struct{})}
	defer close(f.ended)
	var gone network.Stream
	evicted := peer.ID("")
	n.mu.Lock()
	if n.left {
		n.mu.Unlock()
		_ = s.Reset()
		return
	}
	if old := n.followers[p]; old != nil {
		gone = old.s // a follower that came back: the new stream wins
	} else if len(n.followers) >= n.o.cfg.MaxFollowers {
		evicted = n.evictLocked()
		close(n.followers[evicted].bye)
		delete(n.followers, evicted)
	}
	n.followers[p] = f
	if n.latest != nil {
		f.wake <- struct{}{}
	}
	n.mu.Unlock()
	if gone != nil {
		_ = gone.Reset()
	}
	if evicted != "" {
		n.evicted.Add(1)
		n.o.host.ConnManager().Unprotect(evicted, "dfaas-follower")
	}
	n.o.host.ConnManager().Protect(p, "dfaas-follower")

	done := make(chan struct{})
	go func() { // the follower writes nothing: a read ends when it leaves
		_, _ = io.Copy(io.Discard, io.LimitReader(s, 1))
		close(done)
	}()
	defer func() {
		_ = s.Reset()
		n.mu.Lock()
		last := n.followers[p] == f
		if last {
			delete(n.followers, p)
		}
		n.mu.Unlock()
		if last { // a newer stream of p keeps the protection
			n.o.host.ConnManager().Unprotect(p, "dfaas-follower")
		}
	}()
	var frame []byte
	for {
		select {
		case <-done:
			return
		case <-n.o.closing:
			return
		case <-f.leave:
			// Closed for writing after whole frames: the follower reads a
			// clean end of stream, which nothing else sends, as a leave.
			_ = s.SetWriteDeadline(time.Now().Add(leaveGrace))
			if s.CloseWrite() == nil {
				select {
				case <-done:
				case <-time.After(leaveGrace):
				}
			}
			return
		case <-f.bye:
			// An empty frame says: follow someone else. It is closed
			// for writing, not reset (a reset could overtake the frame),
			// and hung up on once the follower leaves or writeTimeout.
			_ = s.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := s.Write([]byte{0}); err == nil && s.CloseWrite() == nil {
				select {
				case <-done:
				case <-time.After(writeTimeout):
				}
			}
			return
		case <-f.wake:
		}
		n.mu.Lock()
		frame = binary.AppendUvarint(frame[:0], uint64(len(n.latest)))
		frame = append(frame, n.latest...)
		n.mu.Unlock()
		if err := s.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return
		}
		if _, err := s.Write(frame); err != nil {
			return
		}
	}
}

// evictLocked picks the follower to make room for a newcomer: one at random
// among those from the network with the most followers.
func (n *neighbourhood) evictLocked() peer.ID {
	count := map[string]int{}
	for _, f := range n.followers {
		count[f.net]++
	}
	most, top := "", 0
	for net, c := range count {
		if c > top || (c == top && net < most) {
			most, top = net, c
		}
	}
	var from []peer.ID
	for p, f := range n.followers {
		if f.net == most {
			from = append(from, p)
		}
	}
	slices.Sort(from)
	return from[mrand.IntN(len(from))]
}

// netOf names the network an address is on: its /24 (IPv4) or /48 (IPv6).
func netOf(a ma.Multiaddr) string {
	ip, err := manet.ToIP(a)
	if err != nil {
		return a.String()
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String()
	}
	return ip.Mask(net.CIDRMask(48, 128)).String()
}

// publish hands raw to every follower; a follower still writing the
// previous advert gets only the newest when it is done.
func (n *neighbourhood) publish(raw []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latest = raw
	for _, f := range n.followers {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

// closeAll ends every advert stream. Streams are reset outside the lock:
// a reset may wait for a connection's send queue.
// leave tells every follower that this node leaves the federation, so
// that its peers log a leave and do not redial it, and waits for them to
// take it, at most leaveGrace. New followers are refused from then on.
func (n *neighbourhood) leave() {
	n.mu.Lock()
	n.left = true
	ended := make([]chan struct{}, 0, len(n.followers))
	for _, f := range n.followers {
		close(f.leave)
		ended = append(ended, f.ended)
	}
	n.mu.Unlock()
	deadline := time.NewTimer(leaveGrace + 50*time.Millisecond)
	defer deadline.Stop()
	for _, e := range ended {
		select {
		case <-e:
		case <-deadline.C:
			return
		}
	}
}

func (n *neighbourhood) closeAll() {
	var streams []network.Stream
	n.mu.Lock()
	for _, f := range n.following {
		f.cancel()
		streams = append(streams, f.s)
	}
	for _, f := range n.followers {
		streams = append(streams, f.s)
	}
	n.mu.Unlock()
	for _, s := range streams {
		_ = s.Reset()
	}
}
