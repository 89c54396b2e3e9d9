package overlay

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
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
}

// neighbourhood holds both sides of the advert streams.
type neighbourhood struct {
	o *Libp2p

	mu        sync.Mutex
	following map[peer.ID]*followee
	pending   map[peer.ID]bool      // follows being opened
	barred    map[peer.ID]time.Time // left out until then
	known     map[peer.ID]time.Time // discovered members, last seen
	followers map[peer.ID]*follower
	latest    []byte // this node's latest encoded advert
	rechoose  chan struct{}

	refusedFollows atomic.Uint64 // follows this node refused (full)
}

func newNeighbourhood(o *Libp2p) *neighbourhood {
	return &neighbourhood{o: o, following: map[peer.ID]*followee{}, pending: map[peer.ID]bool{},
		barred: map[peer.ID]time.Time{}, known: map[peer.ID]time.Time{}, followers: map[peer.ID]*follower{},
		rechoose: make(chan struct{}, 1)}
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
		n.measure(ctx)
		n.choose(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.rechoose:
		}
	}
}

// candidates are the members this node could follow: those discovered and
// those connected that speak the advert protocol, less the barred ones.
func (n *neighbourhood) candidates(now time.Time) []peer.ID {
	h := n.o.host
	set := map[peer.ID]bool{}
	n.mu.Lock()
	for p := range n.known {
		set[p] = true
	}
	for p, until := range n.barred {
		if now.After(until) {
			delete(n.barred, p)
		}
	}
	n.mu.Unlock()
	for _, p := range h.Network().Peers() {
		if ok, _ := h.Peerstore().SupportsProtocols(p, n.o.proto); len(ok) > 0 {
			set[p] = true
		}
	}
	out := make([]peer.ID, 0, len(set))
	n.mu.Lock()
	for p := range set {
		if _, barred := n.barred[p]; !barred && p != h.ID() {
			out = append(out, p)
		}
	}
	n.mu.Unlock()
	slices.Sort(out)
	return out
}

// measure pings a few candidates whose round-trip time is not known yet,
// so that the nearest can be chosen.
func (n *neighbourhood) measure(ctx context.Context) {
	ps := n.o.host.Peerstore()
	var todo []peer.ID
	for _, p := range n.candidates(time.Now()) {
		if ps.LatencyEWMA(p) == 0 {
			todo = append(todo, p)
		}
		if len(todo) == measurePerRound {
			break
		}
	}
	var wg sync.WaitGroup
	for _, p := range todo {
		wg.Go(func() {
			mctx, cancel := context.WithTimeout(ctx, followTimeout)
			defer cancel()
			if rtt, err := n.o.pingOnce(mctx, p); err == nil {
				ps.RecordLatency(p, rtt)
			}
		})
	}
	wg.Wait()
}

// choose follows the nearest candidates, and lets go of a followee only
// for a nearer one (one a round) or when it falls out of the wider
// neighbourhood, so that followees do not churn with every RTT sample.
func (n *neighbourhood) choose(ctx context.Context) {
	k := n.o.cfg.Neighbours
	ps := n.o.host.Peerstore()
	cands := n.candidates(time.Now())
	cs := make([]Candidate, len(cands))
	for i, p := range cands {
		cs[i] = Candidate{Node: dfaas.NodeID(p.String()), RTT: ps.LatencyEWMA(p)}
	}
	self := n.o.Self()
	want := Choose(self, cs, k)
	wider := Choose(self, cs, k+k/2)

	n.mu.Lock()
	var drop []peer.ID
	for p := range n.following {
		if !slices.Contains(wider, dfaas.NodeID(p.String())) {
			drop = append(drop, p)
		}
	}
	var add []peer.ID
	for _, id := range want {
		p, _ := peer.Decode(string(id))
		if n.following[p] == nil && !n.pending[p] {
			add = append(add, p)
		}
	}
	room := k - (len(n.following) - len(drop)) - len(n.pending)
	if len(add) > room && room <= 0 {
		// Full of followees from the wider ring: swap the farthest of
		// those not wanted for the nearest wanted one.
		var worst peer.ID
		worstAt := -1
		for p := range n.following {
			i := slices.Index(wider, dfaas.NodeID(p.String()))
			if !slices.Contains(want, dfaas.NodeID(p.String())) && !slices.Contains(drop, p) && i > worstAt {
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

// follow opens the advert stream to p and reads it until it ends.
func (n *neighbourhood) follow(ctx context.Context, p peer.ID) {
	fctx, cancel := context.WithTimeout(ctx, followTimeout)
	s, err := n.o.host.NewStream(fctx, p, n.o.proto)
	cancel()
	n.mu.Lock()
	delete(n.pending, p)
	if err != nil {
		n.barred[p] = time.Now().Add(retryAfter)
		n.mu.Unlock()
		n.o.log.Debug("follow failed", "peer", p, "err", err)
		return
	}
	rctx, stop := context.WithCancel(ctx)
	n.following[p] = &followee{s: s, cancel: stop}
	n.mu.Unlock()
	n.o.probes.watch(rctx, p)
	n.o.log.Debug("following", "peer", p)

	why := n.read(rctx, p, s)
	stop()
	_ = s.Reset()
	n.mu.Lock()
	if f := n.following[p]; f != nil && f.s == s {
		delete(n.following, p)
	}
	switch {
	case errors.Is(why, errRefused):
		n.barred[p] = time.Now().Add(refusedFor)
	case errors.Is(why, errBroke):
		n.barred[p] = time.Now().Add(bannedFor)
	case ctx.Err() == nil:
		n.barred[p] = time.Now().Add(retryAfter)
	}
	n.mu.Unlock()
	n.o.probes.forget(p)
	if n.o.table.Remove(dfaas.NodeID(p.String())) {
		n.o.log.Info("peer left", "peer", p, "why", why)
		n.o.fire()
	}
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
	sender := dfaas.NodeID(p.String())
	first := true
	for ctx.Err() == nil {
		size, err := binary.ReadUvarint(r)
		if err != nil {
			if first && (errors.Is(err, io.EOF) || errors.Is(err, network.ErrReset)) {
				return fmt.Errorf("%w: %w", errRefused, err)
			}
			return err
		}
		first = false
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
			if flooded++; flooded > 10*max(1, int(o.cfg.MaxAdvertRate)) {
				return fmt.Errorf("%w: flooding", errBroke)
			}
			continue
		}
		if o.probes.suspect(p) {
			o.silent.Add(1) // an old advert on its way: the peer does not answer
			continue
		}
		back := !o.table.Live(sender)
		_, err = o.table.Receive(buf, sender, o.cfg.Now())
		switch {
		case err == nil:
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
// then each new one, until either side closes it. A node takes at most
// MaxFollowers followers; the others' streams are reset, and they follow
// someone else.
func (n *neighbourhood) handle(s network.Stream) {
	p := s.Conn().RemotePeer()
	f := &follower{s: s, wake: make(chan struct{}, 1)}
	n.mu.Lock()
	if old := n.followers[p]; old != nil {
		_ = old.s.Reset() // a follower that came back: the new stream wins
	}
	if len(n.followers) >= n.o.cfg.MaxFollowers && n.followers[p] == nil {
		n.mu.Unlock()
		n.refusedFollows.Add(1)
		_ = s.Reset()
		return
	}
	n.followers[p] = f
	if n.latest != nil {
		f.wake <- struct{}{}
	}
	n.mu.Unlock()

	done := make(chan struct{})
	go func() { // the follower writes nothing: a read ends when it leaves
		_, _ = io.Copy(io.Discard, io.LimitReader(s, 1))
		close(done)
	}()
	defer func() {
		_ = s.Reset()
		n.mu.Lock()
		if n.followers[p] == f {
			delete(n.followers, p)
		}
		n.mu.Unlock()
	}()
	var frame []byte
	for {
		select {
		case <-done:
			return
		case <-n.o.closing:
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

// closeAll ends every advert stream.
func (n *neighbourhood) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.following {
		f.cancel()
		_ = f.s.Reset()
	}
	for _, f := range n.followers {
		_ = f.s.Reset()
	}
}
