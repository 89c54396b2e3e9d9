package overlay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/dfaas-go/dfaas"
)

// Libp2pConfig configures a Libp2p overlay. The zero value of every field
// means its default.
type Libp2pConfig struct {
	// ListenAddrs are the multiaddrs to listen on. Default
	// /ip4/127.0.0.1/tcp/0 (loopback, any port): set real interfaces in
	// deployment.
	ListenAddrs []string
	// Bootstrap are full multiaddrs (with /p2p/<id>) of peers to join through.
	// The first node of a federation has none.
	Bootstrap []string
	// Namespace is the DHT rendezvous under which agents find each other, and
	// names the DHT protocol and the GossipSub topic, so that federations with
	// different namespaces never mix. Default "dfaas".
	Namespace string
	// DiscoveryInterval is how often the overlay re-dials bootstrap peers,
	// re-advertises itself and looks for new agents. Default 10 s.
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
	// Insecure runs an open federation without a Secret: any host that
	// reaches a listen address can join and publish adverts. For labs and
	// tests; the overlay logs a warning when it starts.
	Insecure bool
	// MaxAdvertRate bounds the adverts per second accepted from each peer
	// (with a burst of as many); the excess is dropped, counted in
	// Stats.Flooded and not relayed, so a flooding member cannot crowd out
	// the others. Default 20.
	MaxAdvertRate float64
	// Quarantine is how long after a peer's connection dropped its adverts
	// count only if it is connected again: the last adverts of a peer that
	// died are still on their way through others, and would bring it back
	// into the plans until their time to live ran out. A live peer that lost
	// only its direct connection is out of the plans for at most this long.
	// The dropped adverts count in Stats.Departed. Default 2 s.
	Quarantine time.Duration
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
	if c.Quarantine == 0 {
		c.Quarantine = 2 * time.Second
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 500 * time.Millisecond
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
	case !(c.MaxAdvertRate > 0) || math.IsInf(c.MaxAdvertRate, 0):
		return fmt.Errorf("%w: max advert rate %v", dfaas.ErrInvalidConfig, c.MaxAdvertRate)
	}
	if c.Quarantine < 0 {
		return fmt.Errorf("%w: negative quarantine", dfaas.ErrInvalidConfig)
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
// /<namespace>) reached through explicit bootstrap peers. Adverts travel on
// a GossipSub topic; messages are signed, checked against their author, and
// validated before they propagate, so a malformed, spoofed or stale advert
// goes no further than the first honest node. A peer whose last connection
// drops leaves the table at once; a silent one when its advert expires.
//
// Libp2p implements dfaas.Overlay and dfaas.Trigger (fired when a peer
// leaves). It is safe for concurrent use.
type Libp2p struct {
	cfg       Libp2pConfig
	log       *slog.Logger
	host      host.Host
	dht       *dht.IpfsDHT
	topic     *pubsub.Topic
	sub       *pubsub.Subscription
	joins     *pubsub.TopicEventHandler // peers joining the topic
	table     *Table
	bootstrap []peer.AddrInfo
	trigger   chan struct{}
	gater     *gater // nil without an allow-list
	limits    *authorLimits
	outsiders atomic.Uint64
	departed  departures
	// leave orders a departure against the delivery of an advert validated
	// before it: without it such an advert could land after the peer's
	// removal and keep a dead peer live until its TTL.
	leave  sync.Mutex
	probes *prober
	bw     *traffic
	redial *redialer
	silent atomic.Uint64 // adverts of suspect peers, dropped

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewLibp2p starts a libp2p host, joins the DHT and the advert topic, and
// begins discovery. The returned overlay runs until Close; ctx bounds only
// the start.
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

	o.limits = newAuthorLimits(cfg.MaxAdvertRate)
	o.probes = newProber(o)
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
	opts := []libp2p.Option{libp2p.ListenAddrStrings(cfg.ListenAddrs...), libp2p.DisableRelay(), libp2p.DisableMetrics(),
		libp2p.Identity(key), libp2p.BandwidthReporter(o.bw)}
	if cfg.Secret != nil {
		opts = append(opts, libp2p.PrivateNetwork(cfg.Secret))
	} else {
		cfg.Logger.Warn("INSECURE: open federation without a secret: any host that reaches this node can join and publish adverts",
			"node", self)
	}
	if len(cfg.Allow) > 0 {
		o.gater = newGater(self, cfg.Allow)
		opts = append(opts, libp2p.ConnectionGater(o.gater))
	}
	if o.host, err = libp2p.New(opts...); err != nil {
		return nil, fmt.Errorf("overlay: libp2p host: %w", err)
	}
	o.table = NewTable(dfaas.NodeID(o.host.ID().String()))
	o.log = cfg.Logger.With("node", o.host.ID().String())

	// Subscribe to connection events before anything can connect.
	evs, err := o.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return nil, fmt.Errorf("overlay: event bus: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	o.goRun(func() { o.watchPeers(runCtx, evs) })
	o.goRun(func() { o.redial.run(runCtx) })

	o.dht, err = dht.New(o.host, dht.Mode(dht.ModeServer), dht.ProtocolPrefix(protocol.ID("/"+cfg.Namespace)),
		dht.BootstrapPeers(bs...))
	if err != nil {
		return nil, fmt.Errorf("overlay: dht: %w", err)
	}
	topicName := "/" + cfg.Namespace + "/adverts/1"
	// Flood publishing: a node sends its own adverts to every peer on the
	// topic (above the publish score threshold), not only to its mesh, so a
	// peer that just (re)connected hears them at once rather than after the
	// next heartbeat grafts it (a second, seen here after every heal).
	// A validation queue of 256 (GossipSub's default is 32): a flooding
	// member's messages wait for their signature check ahead of everyone
	// else's, and a full queue drops honest adverts with the flood's; at
	// most 256 x 256 KB wait.
	ps, err := pubsub.NewGossipSub(runCtx, o.host, pubsub.WithMaxMessageSize(4*MaxAdvertBytes),
		pubsub.WithPeerScore(scoreParams(topicName, o.limits.penalty), scoreThresholds()), pubsub.WithFloodPublish(true),
		pubsub.WithValidateQueueSize(256))
	if err != nil {
		return nil, fmt.Errorf("overlay: gossipsub: %w", err)
	}
	if err := ps.RegisterTopicValidator(topicName, o.validate); err != nil {
		return nil, fmt.Errorf("overlay: topic validator: %w", err)
	}
	if o.topic, err = ps.Join(topicName); err != nil {
		return nil, fmt.Errorf("overlay: join topic: %w", err)
	}
	if o.sub, err = o.topic.Subscribe(); err != nil {
		return nil, fmt.Errorf("overlay: subscribe: %w", err)
	}
	if o.joins, err = o.topic.EventHandler(); err != nil {
		return nil, fmt.Errorf("overlay: topic events: %w", err)
	}
	o.goRun(func() { o.watchJoins(runCtx, o.joins) })
	o.goRun(func() { o.receive(runCtx) })
	o.connectBootstrap(ctx)
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
		add(dfaas.NodeID(p.String()))
	}
	for _, a := range o.table.Adverts(o.cfg.Now()) {
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
	raw, err := Encode(a)
	if err != nil {
		return err
	}
	if err := o.topic.Publish(ctx, raw); err != nil {
		if errors.Is(err, pubsub.ErrTopicClosed) {
			err = dfaas.ErrClosed
		}
		return fmt.Errorf("overlay: publish: %w", err)
	}
	return nil
}

// Adverts implements dfaas.Overlay.
func (o *Libp2p) Adverts(now time.Time) []dfaas.Advert { return o.table.Adverts(now) }

// Trigger implements dfaas.Trigger.
func (o *Libp2p) Trigger() <-chan struct{} { return o.trigger }

// Stats returns the advert reception counters.
func (o *Libp2p) Stats() Stats {
	s := o.table.Stats()
	s.Flooded = o.limits.dropped.Load()
	s.Outsider = o.outsiders.Load()
	s.Departed = o.departed.dropped.Load()
	s.Silent = o.silent.Load()
	if o.gater != nil {
		s.Denied = o.gater.denied.Load()
	}
	return s
}

// validate runs before a message is delivered or forwarded. Own messages
// pass; others must be within their author's advert rate, decode, be signed
// by the node they name, and be newer than what this node holds. An
// invalid advert is rejected, which lowers the GossipSub score of the peer
// that sent it; one over the rate or stale is ignored, because honest
// peers relay those too.
func (o *Libp2p) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	author := msg.GetFrom()
	if author == o.host.ID() {
		return pubsub.ValidationAccept
	}
	if o.gater != nil && !o.gater.allow[author] {
		o.outsiders.Add(1) // relayed by a member without the allow-list
		return pubsub.ValidationIgnore
	}
	if o.quarantined(author) {
		return pubsub.ValidationIgnore // counted by within; not relayed either
	}
	if o.probes.suspect(author) {
		o.silent.Add(1) // an old advert on its way: the peer does not answer
		return pubsub.ValidationIgnore
	}
	// Stale adverts (replays of an author's old ones) are dropped before
	// the rate check, so that no one can spend an author's rate for it.
	a, err := Decode(msg.Data)
	if err == nil {
		err = o.table.Fresh(a, dfaas.NodeID(author.String()))
	}
	if err == nil && !o.limits.allow(author, from, time.Now()) {
		return pubsub.ValidationIgnore
	}
	switch {
	case err == nil:
		msg.ValidatorData = a
		return pubsub.ValidationAccept
	case errors.Is(err, dfaas.ErrStaleAdvert):
		o.table.stats.count(err)
		return pubsub.ValidationIgnore
	default:
		o.table.stats.count(err)
		o.log.Debug("advert dropped", "from", author, "err", err)
		return pubsub.ValidationReject
	}
}

func (o *Libp2p) receive(ctx context.Context) {
	for {
		msg, err := o.sub.Next(ctx)
		if err != nil {
			return // closed
		}
		a, ok := msg.ValidatorData.(dfaas.Advert)
		if !ok {
			continue // our own advert
		}
		o.deliver(a, msg.GetFrom())
	}
}

// quarantined reports, and counts, whether author's connection dropped
// within the quarantine and has not come back.
func (o *Libp2p) quarantined(author peer.ID) bool {
	return o.host.Network().Connectedness(author) != network.Connected &&
		o.departed.within(author, time.Now(), o.cfg.Quarantine)
}

// deliver puts a validated advert of author in the table, unless author
// departed since the validation. A concurrent newer advert may have won the
// race since validation; Put counts that as stale. A peer new to the table
// (or back in it) asks for a tick, so plans take it in at once (the Agent's
// holdoff bounds how often). It reports whether the advert was taken.
func (o *Libp2p) deliver(a dfaas.Advert, author peer.ID) bool {
	o.leave.Lock()
	if o.quarantined(author) {
		o.leave.Unlock()
		return false
	}
	back := !o.table.Live(a.Node)
	err := o.table.Put(a, dfaas.NodeID(author.String()), o.cfg.Now())
	o.leave.Unlock()
	if err == nil && back {
		o.fire()
	}
	return err == nil
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
			ev := e.(event.EvtPeerConnectednessChanged)
			if ev.Connectedness == network.Connected {
				o.log.Info("peer connected", "peer", ev.Peer)
				o.probes.watch(ctx, ev.Peer)
				o.redial.connected(ev.Peer)
				continue
			}
			o.probes.forget(ev.Peer)
			// Only members are redialled (a peer whose adverts were taken,
			// live or not since, or a bootstrap peer): a host that merely
			// connected must not make this node dial the addresses it claimed.
			if o.table.Known(dfaas.NodeID(ev.Peer.String())) || o.isBootstrap(ev.Peer) {
				o.redial.dropped(ev.Peer, time.Now())
			}
			o.limits.forget(ev.Peer)
			o.leave.Lock()
			o.departed.mark(ev.Peer, time.Now(), o.cfg.Quarantine)
			removed := o.table.Remove(dfaas.NodeID(ev.Peer.String()))
			o.leave.Unlock()
			if removed {
				o.log.Info("peer left", "peer", ev.Peer)
				o.fire()
			}
		}
	}
}

// watchJoins asks for a tick whenever a peer joins the advert topic (a new
// or restored connection, once the peers have told each other their
// subscriptions): the fresh advert reaches it at once, where one published
// on the connection alone could go out before it was known to listen.
func (o *Libp2p) watchJoins(ctx context.Context, h *pubsub.TopicEventHandler) {
	for {
		ev, err := h.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			o.fire()
		}
	}
}

// isBootstrap reports whether p is one of the configured bootstrap peers.
func (o *Libp2p) isBootstrap(p peer.ID) bool {
	for _, ai := range o.bootstrap {
		if ai.ID == p {
			return true
		}
	}
	return false
}

// connectBootstrap dials the bootstrap peers not connected yet.
func (o *Libp2p) connectBootstrap(ctx context.Context) {
	for _, ai := range o.bootstrap {
		if o.host.Network().Connectedness(ai.ID) == network.Connected {
			continue
		}
		if err := o.host.Connect(ctx, ai); err != nil {
			o.log.Debug("bootstrap dial failed", "peer", ai.ID, "err", err)
		}
	}
}

// discover advertises this node under the rendezvous namespace and connects
// to every agent found there, every DiscoveryInterval (faster until the first
// peer is found).
func (o *Libp2p) discover(ctx context.Context) {
	rd := drouting.NewRoutingDiscovery(o.dht)
	var advertisedUntil time.Time
	for {
		wait := o.cfg.DiscoveryInterval
		if o.Peers() == 0 {
			wait = min(wait, 250*time.Millisecond)
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
		if time.Now().After(advertisedUntil) {
			ttl, err := rd.Advertise(ctx, o.cfg.Namespace)
			if err != nil {
				o.log.Debug("rendezvous advertise failed", "err", err)
			} else {
				advertisedUntil = time.Now().Add(min(ttl/2, 10*o.cfg.DiscoveryInterval))
			}
		}
		found, err := rd.FindPeers(ctx, o.cfg.Namespace)
		if err != nil {
			o.log.Debug("rendezvous lookup failed", "err", err)
			continue
		}
		for ai := range found {
			if ai.ID == o.host.ID() || len(ai.Addrs) == 0 || o.host.Network().Connectedness(ai.ID) == network.Connected {
				continue
			}
			if err := o.host.Connect(ctx, ai); err != nil {
				o.log.Debug("dial of discovered peer failed", "peer", ai.ID, "err", err)
			}
		}
	}
}

// Close leaves the overlay: it stops discovery and closes the topic, the DHT
// and the host. It is idempotent and safe after a failed start.
func (o *Libp2p) Close() error {
	o.closeOnce.Do(func() {
		var errs []error
		if o.sub != nil {
			o.sub.Cancel()
		}
		if o.joins != nil {
			o.joins.Cancel()
		}
		if o.topic != nil {
			errs = append(errs, o.topic.Close())
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

// Traffic returns the stream bytes the host has received and sent since it
// started, over every protocol (adverts, gossip, DHT, probes, identify).
func (o *Libp2p) Traffic() (in, out int64) {
	t := o.bw.GetBandwidthTotals()
	return t.TotalIn, t.TotalOut
}

// TrafficByProtocol returns Traffic per libp2p protocol.
func (o *Libp2p) TrafficByProtocol() map[string]metrics.Stats {
	out := map[string]metrics.Stats{}
	for p, s := range o.bw.GetBandwidthByProtocol() {
		out[string(p)] = s
	}
	return out
}

// fire asks the agent for an early tick.
func (o *Libp2p) fire() {
	select {
	case o.trigger <- struct{}{}:
	default:
	}
}

// RTT returns the round-trip time to a connected peer, measured by the
// probes (an EWMA), if it answered one.
func (o *Libp2p) RTT(node dfaas.NodeID) (time.Duration, bool) {
	p, err := peer.Decode(string(node))
	if err != nil {
		return 0, false
	}
	return o.probes.rtt(p)
}

// departures remembers when peers' connections dropped, for the quarantine.
type departures struct {
	mu      sync.Mutex
	at      map[peer.ID]time.Time
	dropped atomic.Uint64
}

// mark records that p's connection dropped at now, and forgets the
// departures older than q.
func (d *departures) mark(p peer.ID, now time.Time, q time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = map[peer.ID]time.Time{}
	}
	for other, t := range d.at {
		if now.Sub(t) >= q {
			delete(d.at, other)
		}
	}
	d.at[p] = now
}

// within reports, and counts as a dropped advert, whether p's connection
// dropped less than q before now. An older departure is forgotten.
func (d *departures) within(p peer.ID, now time.Time, q time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.at[p]
	if !ok {
		return false
	}
	if now.Sub(t) >= q {
		delete(d.at, p)
		return false
	}
	d.dropped.Add(1)
	return true
}
