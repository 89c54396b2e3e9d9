package overlay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/x/rate"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/dfaas-go/dfaas"
)

// Libp2pConfig configures a Libp2p overlay. The zero value of every field
// means its default.
type Libp2pConfig struct {
	// ListenAddrs are the TCP multiaddrs to listen on (the only transport:
	// a private network rules out QUIC). A fixed port another process
	// holds is an error. Default /ip4/127.0.0.1/tcp/0 (loopback, any
	// port): set real interfaces in deployment.
	ListenAddrs []string
	// Bootstrap are full multiaddrs (with /p2p/<id>) of peers to join through.
	// The first node of a federation has none.
	Bootstrap []string
	// Namespace is the DHT rendezvous under which agents find each other, and
	// names the DHT and advert protocols, so that federations with different
	// namespaces never mix. Default "dfaas".
	Namespace string
	// DiscoveryInterval is how often the overlay re-dials bootstrap peers,
	// re-advertises itself and looks for new agents, until a lookup finds
	// none; then thirty times as long (and it re-advertises itself as
	// rarely). Default 10 s.
	DiscoveryInterval time.Duration
	// PrivateKey is the node's identity. Default: a fresh Ed25519 key (a
	// new node id at every start; see LoadOrCreateKey for a stable one).
	PrivateKey crypto.PrivKey
	// Secret is the federation secret (SecretBytes long, see LoadSecret):
	// a libp2p private network, so that only hosts holding it can connect.
	// Required unless Insecure.
	Secret pnet.PSK
	// Allow, if not empty, admits only these peers: a connection to or
	// from any other peer is closed once its identity is known, before any
	// protocol runs on it.
	Allow []peer.ID
	// AlsoAccept are other federation secrets under which this node
	// accepts connections, while it dials under Secret: the middle phases
	// of a rotation of the secret (see secrets.go).
	AlsoAccept []pnet.PSK
	// Admins are the federation administrators' keys (their peer ids,
	// Ed25519) whose signed membership documents this node takes (see
	// SignMembership): from the first one on, only its members are
	// admitted, as by Allow, and a newer one signed anywhere reaches every
	// member over GossipSub. Allow, if given, holds until then. An
	// administrator's host may connect (it publishes documents: see
	// PublishMembership) but is no member.
	Admins []peer.ID
	// MembershipFile keeps the membership document in force across
	// restarts. Default: none (a restarted node takes the document again
	// from its peers).
	MembershipFile string
	// Insecure runs an open federation without a Secret: any host that
	// reaches a listen address can join and publish adverts. For labs and
	// tests; the overlay logs a warning when it starts.
	Insecure bool
	// MaxAdvertRate bounds the adverts per second accepted from each
	// followee (with a burst of as many); the excess is dropped and counted
	// in Stats.Flooded, and a followee sending ten times as many is dropped
	// for a minute. Default 20.
	MaxAdvertRate float64
	// Neighbours is how many peers the node follows: the nearest by
	// round-trip time (Choose), whose adverts it plans with and to whom it
	// may forward. Default DefaultNeighbours; a federation no larger than
	// Neighbours+1 is one neighbourhood.
	Neighbours int
	// MaxFollowers bounds the peers that follow this node; a newcomer
	// beyond it takes the place of a follower from the network (/24, /48)
	// with the most followers, which follows someone else. Default 4 x
	// Neighbours.
	MaxFollowers int
	// ProbeInterval is how often every connected peer is pinged; a peer
	// that misses SuspectAfter probes in a row (each waits ten round trips,
	// at least 400 ms and at most ProbeTimeout) leaves the table until it
	// answers again, and the answers measure its round-trip time (RTT).
	// Defaults 500 ms, 1 s and 2.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspectAfter  int
	// Logger receives the overlay's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock that times advert expiry. Default time.Now.
	Now func() time.Time
}

// settledFor is how many discovery intervals a settled node waits between
// lookups.
const settledFor = 30

// DefaultProbeInterval is how often a followee is pinged by default.
const DefaultProbeInterval = 500 * time.Millisecond

// ProbeBytes is what one probe sends each way: libp2p's ping payload.
const ProbeBytes = ping.PingSize

func (c Libp2pConfig) withDefaults() Libp2pConfig {
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	}
	if c.Namespace == "" {
		c.Namespace = "dfaas"
	}
	if c.DiscoveryInterval == 0 {
		c.DiscoveryInterval = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MaxAdvertRate == 0 {
		c.MaxAdvertRate = 20
	}
	if c.Neighbours == 0 {
		c.Neighbours = DefaultNeighbours
	}
	if c.MaxFollowers == 0 {
		c.MaxFollowers = 4 * c.Neighbours
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
	if c.SuspectAfter == 0 {
		c.SuspectAfter = 2
	}
	return c
}

// Validate reports the first invalid field.
func (c Libp2pConfig) Validate() error {
	c = c.withDefaults()
	for _, s := range c.ListenAddrs {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fmt.Errorf("%w: listen address %q: %w", dfaas.ErrInvalidConfig, s, err)
		}
	}
	if _, err := bootstrapPeers(c.Bootstrap); err != nil {
		return err
	}
	for _, r := range c.Namespace {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return fmt.Errorf("%w: namespace %q: use a-z, 0-9, '-' and '.'", dfaas.ErrInvalidConfig, c.Namespace)
		}
	}
	switch {
	case c.Secret == nil && !c.Insecure:
		return fmt.Errorf("%w: no federation secret: set Secret (see GenerateSecret), or Insecure for an open federation", dfaas.ErrInvalidConfig)
	case c.Secret != nil && c.Insecure:
		return fmt.Errorf("%w: both a federation secret and Insecure", dfaas.ErrInvalidConfig)
	case c.Secret != nil && len(c.Secret) != SecretBytes:
		return fmt.Errorf("%w: federation secret of %d bytes, want %d", dfaas.ErrInvalidConfig, len(c.Secret), SecretBytes)
	case len(c.AlsoAccept) > 0 && c.Secret == nil:
		return fmt.Errorf("%w: secrets also accepted without a federation secret", dfaas.ErrInvalidConfig)
	case !(c.MaxAdvertRate > 0) || math.IsInf(c.MaxAdvertRate, 0):
		return fmt.Errorf("%w: max advert rate %v", dfaas.ErrInvalidConfig, c.MaxAdvertRate)
	}
	for _, s := range c.AlsoAccept {
		if len(s) != SecretBytes {
			return fmt.Errorf("%w: a secret also accepted of %d bytes, want %d", dfaas.ErrInvalidConfig, len(s), SecretBytes)
		}
	}
	if c.Neighbours < 1 || c.MaxFollowers < 1 {
		return fmt.Errorf("%w: neighbours %d and max followers %d: at least 1", dfaas.ErrInvalidConfig, c.Neighbours, c.MaxFollowers)
	}
	if c.ProbeInterval < 10*time.Millisecond || c.ProbeTimeout < minProbeTimeout || c.SuspectAfter < 1 {
		return fmt.Errorf("%w: probe interval %v (at least 10ms), timeout %v (at least %v), suspect after %d (at least 1)",
			dfaas.ErrInvalidConfig, c.ProbeInterval, c.ProbeTimeout, minProbeTimeout, c.SuspectAfter)
	}
	if c.DiscoveryInterval < 10*time.Millisecond {
		return fmt.Errorf("%w: discovery interval %v below 10ms", dfaas.ErrInvalidConfig, c.DiscoveryInterval)
	}
	return nil
}

func bootstrapPeers(addrs []string) ([]peer.AddrInfo, error) {
	out := make([]peer.AddrInfo, 0, len(addrs))
	for _, s := range addrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: bootstrap peer %q: %w", dfaas.ErrInvalidConfig, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// Libp2p is the production overlay. Agents find each other by providing and
// looking up a rendezvous key in a Kademlia DHT (server mode, protocol prefix
// /<namespace>) reached through explicit bootstrap peers. Each node follows
// its nearest Neighbours peers: each writes its adverts on a stream to each
// of its followers (see follow.go), authenticated by the connection's
// secure channel, and they go no further. A followee whose stream or last
// connection drops leaves the table at once; one that stops answering its
// probes within about a second; a silent one when its advert expires.
//
// Libp2p implements dfaas.Overlay and dfaas.Trigger (fired when a peer
// leaves). It is safe for concurrent use.
type Libp2p struct {
	cfg       Libp2pConfig
	log       *slog.Logger
	host      host.Host
	dht       *dht.IpfsDHT
	proto     protocol.ID // of the advert streams
	hood      *neighbourhood
	table     *Table
	bootstrap []peer.AddrInfo
	trigger   chan struct{}
	gater     *gater   // nil without an allow-list or administrators
	fed       *fedcast // nil without administrators
	probes    *prober
	bw        *traffic
	redial    *redialer
	silent    atomic.Uint64 // adverts of suspect peers, dropped
	outcast   atomic.Bool   // the membership in force does not name this node
	flooded   atomic.Uint64 // adverts over a followee's rate, dropped
	// lastDialErr is the last error a dial to a bootstrap peer met (see
	// watchAlone).
	lastDialErr atomic.Pointer[string]

	closing   <-chan struct{} // closed when Close starts
	leaving   atomic.Bool     // set first thing in Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewLibp2p starts a libp2p host, joins the DHT, begins discovery and
// follows its nearest peers' advert streams. The returned overlay runs
// until Close; ctx bounds only the start.
func NewLibp2p(ctx context.Context, cfg Libp2pConfig) (_ *Libp2p, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	bs, _ := bootstrapPeers(cfg.Bootstrap)
	o := &Libp2p{cfg: cfg, log: cfg.Logger, bootstrap: bs, trigger: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			_ = o.Close()
		}
	}()

	o.probes = newProber(o)
	o.hood = newNeighbourhood(o)
	o.proto = followProtocol(cfg.Namespace)
	o.redial = newRedialer(o)
	key := cfg.PrivateKey
	if key == nil {
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return nil, fmt.Errorf("overlay: key: %w", err)
		}
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("overlay: key: %w", err)
	}
	o.bw = newTraffic()
	// Connections to followees and followers are protected; the others
	// (the DHT's, measurements) are trimmed beyond 2 x MaxFollowers, so a
	// node's connections do not grow with the federation either.
	cm, err := connmgr.NewConnManager(cfg.MaxFollowers, 2*cfg.MaxFollowers, connmgr.WithGracePeriod(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("overlay: connection manager: %w", err)
	}
	// libp2p admits at most 8 connections at once from one IPv4 address
	// (one /56 in IPv6), and after a burst of 16 a new one every 5 s:
	// members behind one NAT address, or one relay of links (the
	// testbed's), need more, and a removed member's redials from such an
	// address locked the others out for seconds (their connections reset
	// before the handshake). The secret keeps strangers out before any
	// protocol, at the cost of a nonce, so a member's share is what bounds
	// an address: as many connections as a node's followees and
	// followers, twice, and as many new ones a second as it has
	// neighbours.
	perAddr := 2 * (cfg.Neighbours + cfg.MaxFollowers)
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	perSec := rate.Limit{RPS: float64(cfg.Neighbours), Burst: perAddr}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), rcmgr.WithLimitPerSubnet(
		[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: perAddr}},
		[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: perAddr}, {PrefixLength: 48, ConnCount: 8 * perAddr}}),
		rcmgr.WithConnRateLimiters(&rate.Limiter{
			NetworkPrefixLimits: []rate.PrefixLimit{
				{Prefix: netip.MustParsePrefix("127.0.0.0/8")}, {Prefix: netip.MustParsePrefix("::1/128")}, // unlimited
			},
			SubnetRateLimiter: rate.SubnetLimiter{
				IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perSec}},
				IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 56, Limit: perSec},
					{PrefixLength: 48, Limit: rate.Limit{RPS: 8 * perSec.RPS, Burst: 8 * perSec.Burst}}},
				GracePeriod: time.Minute,
			},
		}))
	if err != nil {
		_ = cm.Close()
		return nil, fmt.Errorf("overlay: resource manager: %w", err)
	}
	// TCP only (a private network rules out QUIC), without SO_REUSEPORT:
	// with it a second agent, or an old one left running, binds the same
	// port without a word and the kernel splits connections between them.
	tcpTransport := libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport())
	if len(cfg.AlsoAccept) > 0 {
		tcpTransport = libp2p.Transport(newRotatingTCP(cfg.Secret, cfg.AlsoAccept))
	}
	opts := []libp2p.Option{tcpTransport,
		libp2p.ListenAddrStrings(cfg.ListenAddrs...), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.Identity(key), libp2p.BandwidthReporter(o.bw), libp2p.ConnectionManager(cm), libp2p.ResourceManager(rm)}
	switch {
	case len(cfg.AlsoAccept) > 0: // the transport protects its connections
	case cfg.Secret != nil:
		opts = append(opts, libp2p.PrivateNetwork(cfg.Secret))
	default:
		cfg.Logger.Warn("INSECURE: open federation without a secret: any host that reaches this node can join and publish adverts",
			"node", self)
	}
	if len(cfg.Allow) > 0 || len(cfg.Admins) > 0 {
		o.gater = newGater(self, cfg.Allow, cfg.Admins)
		opts = append(opts, libp2p.ConnectionGater(o.gater))
	}
	if err := portsFree(cfg.ListenAddrs); err != nil {
		_ = cm.Close()
		_ = rm.Close()
		return nil, err
	}
	if o.host, err = libp2p.New(opts...); err != nil {
		_ = cm.Close()
		return nil, fmt.Errorf("overlay: libp2p host: %w", err)
	}
	o.table = NewTable(dfaas.NodeID(o.host.ID().String()))
	o.log = cfg.Logger.With("node", o.host.ID().String())

	// Subscribe to connection events before anything can connect.
	evs, err := o.host.EventBus().Subscribe([]any{new(event.EvtPeerConnectednessChanged), new(event.EvtPeerIdentificationCompleted)})
	if err != nil {
		return nil, fmt.Errorf("overlay: event bus: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	o.cancel, o.closing = cancel, runCtx.Done()
	o.goRun(func() { o.watchPeers(runCtx, evs) })
	o.goRun(func() { o.redial.run(runCtx) })
	o.goRun(func() { o.bw.runSampler(runCtx.Done()) })
	if len(cfg.Admins) > 0 {
		if o.fed, err = startFedcast(runCtx, o); err != nil {
			return nil, err
		}
	}

	o.dht, err = dht.New(o.host, dht.Mode(dht.ModeServer), dht.ProtocolPrefix(protocol.ID("/"+cfg.Namespace)),
		dht.BootstrapPeers(bs...))
	if err != nil {
		return nil, fmt.Errorf("overlay: dht: %w", err)
	}
	o.host.SetStreamHandler(o.proto, o.hood.handle)
	o.goRun(func() { o.hood.run(runCtx) })
	o.connectBootstrap(ctx)
	after, every := aloneAfter, aloneEvery // after the first dials: their errors
	o.goRun(func() { o.watchAlone(runCtx, after, every) })
	o.goRun(func() { o.discover(runCtx) })
	return o, nil
}

func (o *Libp2p) goRun(f func()) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		f()
	}()
}

// Self implements dfaas.Overlay: the host's peer ID.
func (o *Libp2p) Self() dfaas.NodeID { return dfaas.NodeID(o.host.ID().String()) }

// Addrs returns the full multiaddrs (with /p2p/<id>) other nodes can
// bootstrap from.
func (o *Libp2p) Addrs() []string {
	out := make([]string, 0, len(o.host.Addrs()))
	for _, a := range o.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+o.host.ID().String())
	}
	return out
}

// Peers returns the number of peers connected to the host.
func (o *Libp2p) Peers() int { return len(o.host.Network().Peers()) }

// Members returns the nodes this node currently counts as members of the
// federation, sorted: the peers connected to it (who passed the secret
// and the allow-list to connect) and those whose advert is live. The data
// plane admits forwards from these nodes only.
func (o *Libp2p) Members() []dfaas.NodeID {
	seen := map[dfaas.NodeID]bool{}
	var out []dfaas.NodeID
	add := func(n dfaas.NodeID) {
		if !seen[n] && n != o.Self() {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, p := range o.host.Network().Peers() {
		if o.gater == nil || o.gater.isMember(p) { // not an administrator's host
			add(dfaas.NodeID(p.String()))
		}
	}
	for _, a := range o.table.Adverts(o.cfg.Now()) {
		// An advert checked just before a membership removed its node
		// can land after the table dropped it: the gater decides.
		if o.gater != nil {
			if id, err := peer.Decode(string(a.Node)); err != nil || !o.gater.isMember(id) {
				continue
			}
		}
		add(a.Node)
	}
	slices.Sort(out)
	return out
}

// Publish implements dfaas.Overlay.
func (o *Libp2p) Publish(ctx context.Context, a dfaas.Advert) error {
	if a.Node != o.Self() {
		return fmt.Errorf("overlay: publish: %w: advert of %s on %s", dfaas.ErrInvalidAdvert, a.Node, o.Self())
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("overlay: publish: %w", err)
	}
	select {
	case <-o.closing:
		return fmt.Errorf("overlay: publish: %w", dfaas.ErrClosed)
	default:
	}
	raw, err := Encode(a)
	if err != nil {
		return err
	}
	o.hood.publish(raw)
	return nil
}

// isClosing reports whether Close has started: peers leaving then are
// this node leaving, not news for the log.
func (o *Libp2p) isClosing() bool { return o.leaving.Load() }

// Adverts implements dfaas.Overlay.
func (o *Libp2p) Adverts(now time.Time) []dfaas.Advert { return o.table.Adverts(now) }

// Trigger implements dfaas.Trigger.
func (o *Libp2p) Trigger() <-chan struct{} { return o.trigger }

// Stats returns the advert reception counters.
func (o *Libp2p) Stats() Stats {
	s := o.table.Stats()
	s.Flooded = o.flooded.Load()
	s.Silent = o.silent.Load()
	s.Evicted = o.hood.evicted.Load()
	s.Excused = o.probes.excused.Load()
	s.Redialled = o.redial.started.Load()
	if o.gater != nil {
		s.Denied = o.gater.denied.Load()
	}
	return s
}

func (o *Libp2p) watchPeers(ctx context.Context, sub event.Subscription) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			if id, ok := e.(event.EvtPeerIdentificationCompleted); ok {
				// A member met (a newcomer, or one that restarted) can be
				// followed now rather than at the next round.
				if slices.Contains(id.Protocols, o.proto) {
					o.hood.met(id.Peer)
				}
				continue
			}
			ev := e.(event.EvtPeerConnectednessChanged)
			if ev.Connectedness == network.Connected {
				o.log.Debug("peer connected", "peer", ev.Peer)
				o.redial.forget(ev.Peer)
				o.hood.reconnected(ev.Peer)
				continue
			}
			o.probes.forget(ev.Peer)
			// Redialled here: bootstrap peers. Followees lost against this
			// node's will are redialled by the neighbourhood; peers it let go
			// of, and hosts that merely connected, are not (the connection
			// manager's trimming would be undone, or a stranger would make
			// this node dial the addresses it claimed).
			if o.isBootstrap(ev.Peer) {
				o.redial.dropped(ev.Peer, time.Now())
			}
			if o.table.Remove(dfaas.NodeID(ev.Peer.String())) && !o.isClosing() {
				o.log.Info("peer left", "peer", ev.Peer, "peer_name", o.table.Name(dfaas.NodeID(ev.Peer.String())), "why", "its connection dropped")
				o.fire()
			}
			o.hood.nudge()
		}
	}
}

// isBootstrap reports whether p is one of the configured bootstrap peers.
func (o *Libp2p) isBootstrap(p peer.ID) bool {
	return slices.ContainsFunc(o.bootstrap, func(ai peer.AddrInfo) bool { return ai.ID == p })
}

// bootstrapAddrs are p's configured addresses if it is a bootstrap peer,
// else nil.
func (o *Libp2p) bootstrapAddrs(p peer.ID) []ma.Multiaddr {
	for _, ai := range o.bootstrap {
		if ai.ID == p {
			return ai.Addrs
		}
	}
	return nil
}

// connectBootstrap dials the bootstrap peers not connected yet.
func (o *Libp2p) connectBootstrap(ctx context.Context) {
	if o.outcast.Load() {
		return // see fedcast.apply
	}
	for _, ai := range o.bootstrap {
		if o.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if err := o.host.Connect(ctx, ai); err != nil {
			o.log.Debug("bootstrap dial failed", "peer", ai.ID, "err", err)
			o.bootstrapErr(err)
			// Not up yet (agents of a federation start together), or
			// unreachable for now: the redialer tries again soon and often.
			o.redial.dropped(ai.ID, time.Now())
		}
	}
}

// discover advertises this node under the rendezvous namespace and hands
// the members found there (at most four times Neighbours a lookup) to the
// neighbourhood as candidates to follow.
func (o *Libp2p) discover(ctx context.Context) {
	rd := drouting.NewRoutingDiscovery(o.dht)
	var advertisedUntil time.Time
	advertisedWith := 0 // the routing table's size then
	settled := false    // the last lookup found no new member
	for {
		// Fast until the first peer, then every DiscoveryInterval while
		// lookups find new members; once one finds none, every settledFor
		// intervals: a newcomer looks fast and follows its nearest, whose
		// connection makes it their candidate, so the slow lookups only
		// catch newcomers near a node that are not near it. DHT walks are
		// most of what a settled node's control traffic costs.
		wait := o.cfg.DiscoveryInterval
		switch {
		case o.Peers() == 0:
			wait = min(wait, 250*time.Millisecond)
		case settled:
			wait = settledFor * wait
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		o.connectBootstrap(ctx)
		if o.dht.RoutingTable().Size() == 0 {
			continue
		}
		// Again when the routing table has doubled since: a record stored
		// while it held one or two peers (a federation starting together)
		// sits where later lookups do not look. Doubling bounds that to a
		// few advertisements at start.
		if rt := o.dht.RoutingTable().Size(); time.Now().After(advertisedUntil) || rt >= 2*advertisedWith {
			ttl, err := rd.Advertise(ctx, o.cfg.Namespace)
			if err != nil {
				o.log.Debug("rendezvous advertise failed", "err", err)
			} else {
				advertisedUntil = time.Now().Add(min(ttl/2, settledFor*o.cfg.DiscoveryInterval))
				advertisedWith = rt
			}
		}
		found, err := rd.FindPeers(ctx, o.cfg.Namespace, discovery.Limit(4*o.cfg.Neighbours))
		if err != nil {
			o.log.Debug("rendezvous lookup failed", "err", err)
			continue
		}
		// Found members are candidates to follow: the neighbourhood dials
		// those it measures or follows, not every member of the federation.
		before := o.hood.knownCount()
		for ai := range found {
			if ai.ID == o.host.ID() || len(ai.Addrs) == 0 {
				continue
			}
			o.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, 10*o.cfg.DiscoveryInterval)
			o.hood.discovered(ai.ID)
		}
		// Settled once a lookup finds nobody new and the node knows more
		// members than it follows: a small federation keeps looking, which
		// costs it little, and never settles on a partial view.
		settled = o.hood.knownCount() == before && before > o.cfg.Neighbours
	}
}

// Close leaves the overlay: it stops discovery, closes the advert streams,
// the DHT and the host. It is idempotent and safe after a failed start.
func (o *Libp2p) Close() error {
	o.closeOnce.Do(func() {
		o.leaving.Store(true) // before the streams close: see isClosing
		o.probes.stopAborts()
		var errs []error
		if o.hood != nil {
			o.hood.leave()
			o.hood.closeAll()
		}
		if o.cancel != nil {
			o.cancel()
		}
		if o.dht != nil {
			errs = append(errs, o.dht.Close())
		}
		if o.host != nil {
			errs = append(errs, o.host.Close())
		}
		o.wg.Wait()
		o.closeErr = errors.Join(errs...)
	})
	return o.closeErr
}

// Interface guards.
var (
	_ dfaas.Overlay = (*Libp2p)(nil)
	_ dfaas.Trigger = (*Libp2p)(nil)
)

// Traffic returns what the host's streams have carried since it started,
// over every protocol (adverts, DHT, probes, identify), with its rates over
// the last RateWindow.
func (o *Libp2p) Traffic() Traffic {
	all, _ := o.bw.totals(time.Now())
	return all
}

// TrafficByProtocol returns Traffic per libp2p protocol.
func (o *Libp2p) TrafficByProtocol() map[string]Traffic {
	_, byProto := o.bw.totals(time.Now())
	out := make(map[string]Traffic, len(byProto))
	for p, s := range byProto {
		name := string(p)
		if name == "" {
			name = NegotiationTraffic
		}
		out[name] = s
	}
	return out
}

// NegotiationTraffic is TrafficByProtocol's key for the bytes of streams
// before they had a protocol (multistream-select's negotiation).
const NegotiationTraffic = "(negotiation)"

// fire asks the agent for an early tick.
func (o *Libp2p) fire() {
	select {
	case o.trigger <- struct{}{}:
	default:
	}
}

// RTT returns the round-trip time to a followee, measured by the probes,
// if it answered one: the lowest of its last ten probes (5 s at the default
// interval), so that a probe retransmitted on a lossy link does not make it
// look far.
func (o *Libp2p) RTT(node dfaas.NodeID) (time.Duration, bool) {
	p, err := peer.Decode(string(node))
	if err != nil {
		return 0, false
	}
	return o.probes.distance(p)
}

// Clean returns the share of the latest probes to a followee (up to ten: 5 s
// at the default interval) answered without a retransmission's delay -
// within 150 ms of the lowest round trip among them -, once five were
// sent: a link that loses packets shows here before any forward has
// crossed it. It implements dfaas.LinkMeter.
func (o *Libp2p) Clean(node dfaas.NodeID) (float64, bool) {
	p, err := peer.Decode(string(node))
	if err != nil {
		return 0, false
	}
	return o.probes.cleanShare(p)
}

var _ dfaas.LinkMeter = (*Libp2p)(nil)

// portsFree checks that each TCP listen address with a fixed port can be
// bound, so that a port another process holds is a clear error at start
// (libp2p would fail too, without SO_REUSEPORT, but leave its host's
// goroutines behind).
func portsFree(addrs []string) error {
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue // libp2p reports it
		}
		na, err := manet.ToNetAddr(a)
		if err != nil {
			continue
		}
		if ta, ok := na.(*net.TCPAddr); !ok || ta.Port == 0 {
			continue
		}
		l, err := net.Listen("tcp", na.String())
		if err != nil {
			return fmt.Errorf("overlay: listen address %s: %w (another agent still running?)", s, err)
		}
		_ = l.Close()
	}
	return nil
}
