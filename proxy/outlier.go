package proxy

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dfaas-go/dfaas"
)

// Outlier detection, passive, as Envoy's: a peer whose forwards fail
// Consecutive times in a row, or are refused for capacity Refusals times in
// a row, is ejected - skipped by the pick - for an ejection time that
// doubles with every ejection in a row, from BaseEjection up to
// MaxEjection. Refusals take more: a peer whose measured capacity just fell
// refuses what senders planned on its last advert until its next one
// reaches them (a second's worth), and that is no fault; one that refuses
// everything for longer lies about its capacity. When its time is up the peer is probed:
// the next forward decides, a success makes it healthy again (and halves
// the next ejection's time), a failure ejects it again at once.

// OutlierConfig tunes an Outliers. The zero value of a field means its
// default; a MaxEjection under BaseEjection means 30 s or BaseEjection,
// whichever is longer.
type OutlierConfig struct {
	// Consecutive is the number of failures in a row that eject a peer.
	// Default 5.
	Consecutive int
	// Refusals is the number of refusals for capacity in a row that eject
	// a peer. Default 30.
	Refusals int
	// BaseEjection is the first ejection's length. Default 1 s.
	BaseEjection time.Duration
	// MaxEjection bounds an ejection's length. Default 30 s.
	MaxEjection time.Duration
}

// Validate reports a negative field.
func (c OutlierConfig) Validate() error {
	if c.Consecutive < 0 || c.Refusals < 0 || c.BaseEjection < 0 || c.MaxEjection < 0 {
		return fmt.Errorf("%w: outliers: negative count or ejection", dfaas.ErrInvalidConfig)
	}
	return nil
}

func (c OutlierConfig) withDefaults() OutlierConfig {
	if c.Consecutive == 0 {
		c.Consecutive = 5
	}
	if c.Refusals == 0 {
		c.Refusals = 30
	}
	if c.BaseEjection == 0 {
		c.BaseEjection = time.Second
	}
	if c.MaxEjection < c.BaseEjection {
		c.MaxEjection = max(c.BaseEjection, 30*time.Second)
	}
	return c
}

type outlier struct {
	failures int           // in a row
	refusals int           // in a row
	next     time.Duration // the next ejection's length
	until    time.Time     // ejected until then
	probing  bool          // ejection over: the next result decides
	last     time.Time     // the latest failure, or the end of an ejection
}

// Outliers tracks the health of peers from the outcomes of forwards. It is
// safe for concurrent use; the zero value is not: use NewOutliers.
type Outliers struct {
	cfg   OutlierConfig
	mu    sync.Mutex
	peers map[dfaas.NodeID]*outlier
}

// NewOutliers returns an Outliers with no peer ejected.
func NewOutliers(cfg OutlierConfig) (*Outliers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Outliers{cfg: cfg.withDefaults(), peers: map[dfaas.NodeID]*outlier{}}, nil
}

// Usable reports whether node may be picked at now: not ejected. A peer
// whose ejection is over becomes a probe.
func (o *Outliers) Usable(node dfaas.NodeID, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.peers[node]
	if p == nil || p.until.IsZero() {
		return true
	}
	if now.Before(p.until) {
		return false
	}
	p.until, p.probing, p.last = time.Time{}, true, now
	return true
}

// Success records a forward node answered.
func (o *Outliers) Success(node dfaas.NodeID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.peers[node]
	if p == nil {
		return
	}
	p.failures, p.refusals = 0, 0
	if p.probing {
		p.probing = false
		p.next = max(o.cfg.BaseEjection, p.next/2)
	}
	if p.next == o.cfg.BaseEjection && p.until.IsZero() {
		delete(o.peers, node)
	}
}

// Failure records a forward node failed, at now. It reports whether that
// ejected the peer.
func (o *Outliers) Failure(node dfaas.NodeID, now time.Time) bool { return o.record(node, now, false) }

// Refused records a forward node refused for capacity, at now. It reports
// whether that ejected the peer.
func (o *Outliers) Refused(node dfaas.NodeID, now time.Time) bool { return o.record(node, now, true) }

func (o *Outliers) record(node dfaas.NodeID, now time.Time, refusal bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.peers[node]
	if p == nil {
		p = &outlier{next: o.cfg.BaseEjection}
		o.peers[node] = p
	}
	if !p.until.IsZero() && now.Before(p.until) {
		return false // already out: a forward that started before
	}
	p.last = now
	if refusal {
		p.refusals++
	} else {
		p.failures++
	}
	if !p.probing && p.failures < o.cfg.Consecutive && p.refusals < o.cfg.Refusals {
		return false
	}
	p.until, p.probing, p.failures, p.refusals = now.Add(p.next), false, 0, 0
	p.next = min(2*p.next, o.cfg.MaxEjection)
	return true
}

// Ejected lists the peers ejected at now, sorted.
func (o *Outliers) Ejected(now time.Time) []dfaas.NodeID {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []dfaas.NodeID
	for n, p := range o.peers {
		if !p.until.IsZero() && now.Before(p.until) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Forget forgets, at now, the failures in a row of peers not in keep. Their
// ejections stay: a peer that left the plans because it was ejected comes
// back ejected, or on probation once its time is up. A record quiet for
// MaxEjection (no failure, no ejection ending) goes too: a crashed peer
// never answers again to clear it, and one minting ids would grow the
// records without end.
func (o *Outliers) Forget(keep func(dfaas.NodeID) bool, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for n, p := range o.peers {
		if keep(n) {
			continue
		}
		quiet := p.last
		if p.until.After(quiet) {
			quiet = p.until
		}
		if p.until.IsZero() && p.next == o.cfg.BaseEjection || now.Sub(quiet) >= o.cfg.MaxEjection {
			delete(o.peers, n)
		}
	}
}
