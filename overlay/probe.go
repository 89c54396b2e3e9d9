package overlay

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"

	"github.com/dfaas-go/dfaas"
)

// Probes: every followee is pinged (libp2p's ping protocol, on one
// stream kept open) every ProbeInterval. The answers give the peer's round
// trip time (an EWMA, also recorded in the peerstore); a peer that misses
// SuspectAfter answers in a row is suspect: it leaves the table at once, as
// if its connection had dropped, and its adverts count again only after it
// answers. A frozen process or a partition keeps TCP connections open for
// minutes; the probes notice within about a second. A peer still silent
// after as many misses again loses its connection, and the redialer takes
// over: after a partition heals, a fresh connection is up within a second
// or so, where the old one would wait out TCP's retransmission back-off
// (seconds, doubling with every retry the partition cost).

// abortAfter is how long a peer stays suspect, answering no probe, before
// the data plane is told to answer its forwards in flight (SetOnSuspect).
const abortAfter = 2 * time.Second

// lossyAbortAfter replaces abortAfter for a peer whose link was lossy
// when it fell silent (under lossyBelow of its probes before the misses
// clean): there a silence is mostly TCP's back-off, which holds a
// connection 3 s when one segment is lost four times in a row (on a link
// losing 40%, one loss in forty), and a forward cut then is lost if its
// request had not arrived. 6 s waits out a segment lost five times; a
// peer that freezes behind a lossy link has its forwards answered that
// much later.
const lossyAbortAfter = 6 * time.Second

// lossyBelow is the share of clean probes under which a link is lossy.
const lossyBelow = 0.8

// minProbeTimeout bounds how fast a probe gives up: the timeout is ten
// round trips, at least this and at most Libp2pConfig.ProbeTimeout. It is
// twice TCP's shortest retransmission timeout (200 ms on Linux), so that a
// single lost packet, retransmitted, is not a miss: on a link losing 20% of
// its packets a peer would otherwise be suspect every few seconds.
const minProbeTimeout = 400 * time.Millisecond

// probeState is what the prober knows of one peer.
type probeState struct {
	rtt    time.Duration // EWMA of the answered probes; 0 before the first
	recent [rttWindow]time.Duration
	taken  int // samples in recent so far (it is a ring)
	// clean holds whether each of the latest rttWindow probes was
	// answered without a retransmission's delay (see Libp2p.Clean); sent
	// counts the probes so far (it is a ring).
	clean  [rttWindow]bool
	sent   int
	misses int // in a row
	// lossy: its link was lossy when its latest misses began (see
	// abortDelay).
	lossy   bool
	suspect bool
	cancel  context.CancelFunc
}

type prober struct {
	o  *Libp2p
	mu sync.Mutex
	ps map[peer.ID]*probeState
	// answered, if set, is the data plane's latest answer from a peer (see
	// SetAnswered).
	answered atomic.Pointer[func(dfaas.NodeID) time.Time]
	// onSuspect, if set, is told of each peer suspect for abortAfter
	// (SetOnSuspect); aborts holds the timers of those not told yet.
	onSuspect atomic.Pointer[func(dfaas.NodeID)]
	aborts    map[peer.ID]*time.Timer // under mu
	excused   atomic.Uint64
}

// SetOnSuspect has f told of each peer the probes made suspect (frozen, cut
// off, or dead without its connection dropping) that still answers no
// probe abortAfter later (lossyAbortAfter if its link was lossy before):
// the node hands it the data plane's
// AbortForwards, so that forwards in flight to the peer are answered then
// rather than at their timeout (or when a frozen peer thaws), and forwards
// on a lossy link that merely stalled a moment are left alone. f must not
// block. nil turns it off.
func (o *Libp2p) SetOnSuspect(f func(dfaas.NodeID)) {
	if f == nil {
		o.probes.onSuspect.Store(nil)
		return
	}
	o.probes.onSuspect.Store(&f)
}

// SetAnswered gives the overlay the data plane's evidence that a peer is
// reachable: the time of the latest answer it had from the peer to a
// forward (embedded.Proxy.LastAnswer). A peer that misses probes but
// answered within the last probe timeout is not made suspect, nor hung up
// on: what stalls is this node's libp2p connection to it (on a lossy link
// one segment lost twice holds every stream on that connection for a
// second or more, while the data plane's own connection carries on), not
// the peer. A frozen or partitioned peer answers nothing, so it is
// suspected at most one probe later than without. nil turns it off.
func (o *Libp2p) SetAnswered(f func(dfaas.NodeID) time.Time) {
	if f == nil {
		o.probes.answered.Store(nil)
		return
	}
	o.probes.answered.Store(&f)
}

// answeredWithin reports whether the data plane had an answer from p in
// the last d.
func (pr *prober) answeredWithin(p peer.ID, d time.Duration) bool {
	f := pr.answered.Load()
	if f == nil {
		return false
	}
	at := (*f)(dfaas.NodeID(p.String()))
	return !at.IsZero() && time.Since(at) < d
}

func newProber(o *Libp2p) *prober { return &prober{o: o, ps: map[peer.ID]*probeState{}} }

// watch starts probing p, unless it is probed already.
func (pr *prober) watch(ctx context.Context, p peer.ID) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if st := pr.ps[p]; st != nil && st.cancel != nil {
		return
	}
	st := pr.ps[p]
	if st == nil {
		st = &probeState{}
		pr.ps[p] = st
	}
	ctx, st.cancel = context.WithCancel(ctx)
	pr.o.goRun(func() { pr.loop(ctx, p) })
}

// forget stops probing p (its connection closed); what was learnt of it
// goes too.
func (pr *prober) forget(p peer.ID) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if st := pr.ps[p]; st != nil && st.cancel != nil {
		st.cancel()
	}
	delete(pr.ps, p)
}

// suspect reports whether p missed its last probes.
func (pr *prober) suspect(p peer.ID) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := pr.ps[p]
	return st != nil && st.suspect
}

// rttWindow is how many of the latest probes distance takes its lowest of,
// and cleanShare its share of.
const rttWindow = 10

// lateBy is how much later than the lowest of the latest round trips a
// probe's answer may come and still count as clean: less than TCP's
// shortest retransmission timeout (200 ms on Linux), more than a busy
// machine's scheduling delays.
const lateBy = 150 * time.Millisecond

// minCleanProbes is how many probes cleanShare needs before it tells.
const minCleanProbes = 5

// noteClean records whether a probe was clean: answered within lateBy of
// the lowest round trip of the latest (this one's included; a
// retransmission costs at least TCP's shortest timeout). It is called
// before the probe's round trip joins recent.
func (st *probeState) noteClean(rtt time.Duration, answered bool) {
	clean := answered
	if lowest, ok := st.lowest(); clean && ok {
		clean = rtt <= lowest+lateBy
	}
	st.clean[st.sent%rttWindow] = clean
	st.sent++
}

// cleanShare returns the share of p's latest probes (up to rttWindow)
// answered without a retransmission's delay, once minCleanProbes were sent.
func (pr *prober) cleanShare(p peer.ID) (float64, bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := pr.ps[p]
	if st == nil {
		return 0, false
	}
	return st.cleanShare()
}

func (st *probeState) cleanShare() (float64, bool) {
	return st.cleanShareBefore(0)
}

// cleanShareBefore is cleanShare of the latest probes but the newest skip:
// the link as it was before them.
func (st *probeState) cleanShareBefore(skip int) (float64, bool) {
	n := min(st.sent, rttWindow) - skip
	if n < minCleanProbes {
		return 0, false
	}
	clean := 0
	for i := range n {
		if st.clean[(st.sent-skip-1-i)%rttWindow] {
			clean++
		}
	}
	return float64(clean) / float64(n), true
}

// abortDelay is how long p, suspect after its latest misses, stays silent
// before its forwards are cut: lossyAbortAfter if its link was lossy when
// the misses began, else abortAfter.
func (st *probeState) abortDelay() time.Duration {
	if st.lossy {
		return lossyAbortAfter
	}
	return abortAfter
}

// distance returns p's round-trip time as plans use it, if it answered a
// probe: the lowest of its last rttWindow probes (5 s at the default
// interval). A probe retransmitted on a lossy link, or queued behind a
// burst, does not move a peer to a farther tier or past a function's RTT
// budget; a longer route shows within the window.
func (pr *prober) distance(p peer.ID) (time.Duration, bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := pr.ps[p]
	if st == nil {
		return 0, false
	}
	return st.lowest()
}

// lowest returns the lowest of the latest rttWindow answered probes' round
// trips, if there was one.
func (st *probeState) lowest() (time.Duration, bool) {
	if st.taken == 0 {
		return 0, false
	}
	lowest := st.recent[0]
	for _, d := range st.recent[1:min(st.taken, rttWindow)] {
		lowest = min(lowest, d)
	}
	return lowest, true
}

// rtt returns the EWMA of p's answered probes, if it answered one: what a
// probe waits for scales with it.
func (pr *prober) rtt(p peer.ID) (time.Duration, bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	st := pr.ps[p]
	if st == nil || st.rtt == 0 {
		return 0, false
	}
	return st.rtt, true
}

func (pr *prober) timeout(p peer.ID) time.Duration {
	rtt, _ := pr.rtt(p)
	return max(minProbeTimeout, min(pr.o.cfg.ProbeTimeout, 10*rtt))
}

func (pr *prober) loop(ctx context.Context, p peer.ID) {
	var s network.Stream
	defer func() {
		if s != nil {
			_ = s.Reset()
		}
	}()
	t := time.NewTicker(pr.o.cfg.ProbeInterval)
	defer t.Stop()
	for {
		began := time.Now()
		rtt, err := pr.probe(ctx, p, &s)
		if ctx.Err() != nil {
			return
		}
		pr.record(p, rtt, err)
		if err != nil && s != nil {
			_ = s.Reset() // an answer may still come: never read it as the next one's
			s = nil
		}
		wait := t.C
		if err != nil {
			// The next probe as soon as this one's time is up (a second miss
			// makes the peer suspect), not sooner: an error that comes at
			// once (a refused stream) must not use up the misses in a burst.
			wait = time.After(time.Until(began.Add(pr.timeout(p))))
		}
		select {
		case <-ctx.Done():
			return
		case <-wait:
		}
	}
}

// probe sends one ping on *s (opening it if nil) and waits for its echo.
func (pr *prober) probe(ctx context.Context, p peer.ID, s *network.Stream) (time.Duration, error) {
	timeout := pr.timeout(p)
	deadline := time.Now().Add(timeout)
	start := time.Now()
	if *s == nil {
		sctx, cancel := context.WithDeadline(ctx, deadline)
		st, err := pr.o.host.NewStream(sctx, p, ping.ID)
		cancel()
		if err != nil {
			return 0, err
		}
		*s = st
	}
	if err := (*s).SetDeadline(deadline); err != nil {
		return 0, err
	}
	if err := pingOn(*s); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// pingOn sends one ping on s and waits for its echo.
func pingOn(s network.Stream) error {
	out := make([]byte, ping.PingSize)
	if _, err := rand.Read(out); err != nil {
		return err
	}
	if _, err := s.Write(out); err != nil {
		return err
	}
	in := make([]byte, ping.PingSize)
	if _, err := io.ReadFull(s, in); err != nil {
		return err
	}
	if !bytes.Equal(in, out) {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// pingOnce measures the round trip to p with one ping on a stream of its
// own, dialling p if need be; ctx bounds it all.
func (o *Libp2p) pingOnce(ctx context.Context, p peer.ID) (time.Duration, error) {
	s, err := o.host.NewStream(ctx, p, ping.ID)
	if err != nil {
		return 0, err
	}
	defer func() { _ = s.Reset() }()
	if dl, ok := ctx.Deadline(); ok {
		if err := s.SetDeadline(dl); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if err := pingOn(s); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// record takes a probe's outcome: the RTT, or a miss.
func (pr *prober) record(p peer.ID, rtt time.Duration, err error) {
	// Asked before the lock: the data plane's clock is not the prober's.
	excused := err != nil && pr.answeredWithin(p, pr.timeout(p))
	pr.mu.Lock()
	st := pr.ps[p]
	if st == nil {
		pr.mu.Unlock()
		return
	}
	var became, cleared, hangUp bool
	st.noteClean(rtt, err == nil)
	if err != nil && st.misses == 0 { // a silence begins: how was the link before it?
		c, ok := st.cleanShareBefore(1)
		st.lossy = ok && c < lossyBelow
	}
	if err == nil {
		if st.rtt == 0 {
			st.rtt = rtt
		} else {
			st.rtt = (st.rtt*7 + rtt*3) / 10
		}
		st.recent[st.taken%rttWindow] = rtt
		st.taken++
		st.misses = 0
		cleared, st.suspect = st.suspect, false
		if t := pr.aborts[p]; t != nil { // it answers: its forwards were only slow
			t.Stop()
			delete(pr.aborts, p)
		}
	} else if excused {
		// Counted up to, not past, the threshold: once the data plane's
		// answers stop too, the next miss makes the peer suspect.
		st.misses = min(st.misses+1, pr.o.cfg.SuspectAfter-1)
		pr.excused.Add(1)
	} else {
		st.misses++
		if st.misses >= pr.o.cfg.SuspectAfter && !st.suspect {
			st.suspect, became = true, true
			if f := pr.onSuspect.Load(); f != nil && pr.aborts[p] == nil {
				// Told only if still silent abortAfter later: on a lossy
				// link a suspicion is mostly brief, and aborting then
				// would cut forwards that were only slow.
				node := dfaas.NodeID(p.String())
				if pr.aborts == nil {
					pr.aborts = map[peer.ID]*time.Timer{}
				}
				pr.aborts[p] = time.AfterFunc(st.abortDelay(), func() {
					pr.mu.Lock()
					_, pending := pr.aborts[p]
					delete(pr.aborts, p)
					pr.mu.Unlock()
					if pending {
						(*f)(node)
					}
				})
			}
		}
		hangUp = st.misses == 2*pr.o.cfg.SuspectAfter
	}
	pr.mu.Unlock()
	o := pr.o
	switch {
	case excused:
		o.log.Debug("probe unanswered, but the data plane has answers from the peer: not suspect", "peer", p, "err", err)
	case err == nil:
		o.host.Peerstore().RecordLatency(p, rtt)
		o.hood.sawRTT(p, rtt, time.Now())
		if cleared {
			o.log.Info("peer answers again", "peer", p, "rtt", rtt)
			o.fire()
		}
	case became:
		o.log.Info("peer suspect: probes unanswered", "peer", p, "misses", pr.o.cfg.SuspectAfter, "err", err)
		o.table.Remove(dfaas.NodeID(p.String()))
		o.fire()
	case hangUp:
		o.log.Info("peer still silent: closing its connection to dial afresh", "peer", p)
		_ = o.host.Network().ClosePeer(p)
	}
}

// stopAborts cancels the aborts not told yet: the overlay closes.
func (pr *prober) stopAborts() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for p, t := range pr.aborts {
		t.Stop()
		delete(pr.aborts, p)
	}
}
