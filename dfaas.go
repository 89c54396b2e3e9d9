package dfaas

import (
	"context"
	"time"
)

// Overlay is the peer-to-peer network that carries adverts between agents.
//
// Constructors return a running overlay. Publish and Adverts may be called
// from any goroutine. Close is idempotent; after it Publish returns ErrClosed.
type Overlay interface {
	// Self is this node's identifier on the overlay.
	Self() NodeID
	// Publish sends this node's advert to its peers. It may block on I/O
	// and honours ctx.
	Publish(ctx context.Context, a Advert) error
	// Adverts returns the newest advert of every peer that is still alive at
	// now: validated, deduplicated (the highest sequence number wins), not
	// expired, from a peer that has not left. It never includes Self and
	// never blocks.
	Adverts(now time.Time) []Advert
	// Close leaves the overlay and releases its resources.
	Close() error
}

// Monitor measures this node's load per function.
//
// Sample is called by the Agent from one goroutine at a time.
type Monitor interface {
	// Sample returns the rates observed over the most recent window, with one
	// entry for every function that the node can serve.
	Sample(ctx context.Context) (Sample, error)
}

// Forecaster predicts the user demand of each function for the next interval.
//
// Observe and Predict are called by the Agent from one goroutine at a time.
type Forecaster interface {
	// Observe feeds one sample.
	Observe(s Sample)
	// Predict returns the expected user arrival rate of each function over
	// (now, now+horizon]. Functions never observed are absent.
	Predict(now time.Time, horizon time.Duration) map[string]Rate
}

// RTTMeter is an Overlay that measures the round-trip time to its peers;
// the Agent hands the times to the Balancer in State.RTT.
type RTTMeter interface {
	RTT(node NodeID) (time.Duration, bool)
}

// LinkMeter is an Overlay that measures how cleanly its links to its peers
// carry packets: the share of its latest probes to node answered without a
// retransmission's delay, once enough were sent to tell. The Agent hands
// the shares to the Balancer in State.Clean.
type LinkMeter interface {
	Clean(node NodeID) (float64, bool)
}

// Balancer decides how much of each function this node serves and how much
// it forwards to which peer.
//
// Plan is a pure function of its inputs: it performs no I/O, keeps no hidden
// state that changes its answer, and is safe for concurrent use.
type Balancer interface {
	Plan(self State, peers []Advert) Plan
}

// ProxyDriver makes the node's data plane follow a Plan.
//
// Apply is called by the Agent from one goroutine at a time. It changes each
// function atomically (a request sees the old or the new plan, never a mix)
// and never drops an in-flight request.
type ProxyDriver interface {
	Apply(ctx context.Context, p Plan) error
}

// Trigger is an optional interface of an Overlay, Monitor or ProxyDriver
// that wants the Agent to run a control tick before the next period: a
// function that crossed its local limit, a peer that left. The channel is
// never closed; a send on it must not block.
type Trigger interface {
	Trigger() <-chan struct{}
}

// Sequencer hands out the sequence numbers of a node's adverts. Each
// number must be above every number the node used before, in this run and
// in earlier ones: receivers ignore an advert whose number is not above the
// last one they took from the node.
type Sequencer interface {
	Next() (uint64, error)
}

// ForwardMeter is implemented by a ProxyDriver that measures its forwards,
// per function and peer: how long peers take to answer and how many of the
// attempts fail. The Agent hands the measures to the Balancer in
// State.Forwards, so that a peer that degrades (slower, lossy) loses its
// share before it fails outright (see balance.Nearest).
type ForwardMeter interface {
	// Forwards returns the measures at now of the forwards of the last
	// ForwardStale, per function and peer.
	Forwards(now time.Time) map[string]map[NodeID]ForwardHealth
}

// ForwardHealth is what a node measured of its recent forwards of one
// function to one peer.
type ForwardHealth struct {
	// Latency is a peak-EWMA of the time from sending a forward to the
	// peer's response headers, over the answered attempts: it jumps to a
	// slower answer at once and decays toward faster ones (half-life
	// about 1.4 s of answers), as Finagle's and Linkerd's balancers weigh
	// endpoints.
	Latency time.Duration `json:"latency_ns"`
	// Success is an EWMA of the share of attempts that did not fail (a
	// connection that failed, was reset or timed out, or a 502 or 504
	// from the peer; refusals for capacity are not failures), in [0, 1].
	Success float64 `json:"success"`
	// Attempts counts the attempts measured.
	Attempts uint64 `json:"attempts"`
	// Age is the time since the latest attempt.
	Age time.Duration `json:"age_ns"`
}

// ForwardStale is how long a ForwardMeter keeps a measure without a new
// attempt: older ones say nothing of the peer now.
const ForwardStale = 30 * time.Second

// PeerHealth is implemented by a ProxyDriver that ejects peers whose
// forwards keep failing (outlier detection). The Agent plans without the
// peers it names, so that their share goes to the others; a driver that is
// also a Trigger should fire when it ejects one.
type PeerHealth interface {
	// Ejected lists the peers ejected now.
	Ejected() []NodeID
}
