package overlay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/dfaas-go/dfaas"
)

// Federation-wide events: what must reach every member, not only a
// node's neighbours, travels on GossipSub (go-libp2p-pubsub) over the
// connections the overlay keeps anyway (followees, followers, the DHT's).
// Today that is the membership document (membership.go). Its topic has a
// validator: a message over MaxMembershipBytes, undecodable, or not signed
// by a trusted administrator key is rejected, which costs its sender peer
// score (a peer that relays two is graylisted); one whose version is not
// above the document in force, or past its ValidUntil, is ignored (honest
// peers relay old ones). Message ids are the content's digest, so the same
// document published by several nodes travels once.
//
// GossipSub carries only what is published while a node listens: two
// members also exchange their documents when each learns that the other
// is on the topic (a stream on /<namespace>/membership/2: each says its
// version, and the newer side sends its document), take the other's if it
// is newer, and
// publish it again, so that a newcomer, a restarted node, the far side of
// a healed partition, or a peer whose subscription the publisher had not
// heard of yet when it published, catches up.

// fetchTimeout bounds one exchange of documents with a peer.
const fetchTimeout = 5 * time.Second

// maxExchanges bounds the exchanges a member answers at once; beyond
// them, a request is reset (its asker has the document from gossip, or
// asks again at its next join).
const maxExchanges = 8

func membershipTopic(namespace string) string { return "/" + namespace + "/membership/1" }

func membershipProtocol(namespace string) protocol.ID {
	return protocol.ID("/" + namespace + "/membership/2")
}

// contentID is a GossipSub message id: the digest of the message's data.
func contentID(m *pb.Message) string {
	sum := sha256.Sum256(m.Data)
	return string(sum[:])
}

// gossipOptions are the GossipSub options of members and administrators.
func gossipOptions(topic string, log *slog.Logger) []pubsub.Option {
	return []pubsub.Option{
		pubsub.WithMessageIdFn(contentID),
		pubsub.WithMaxMessageSize(MaxMembershipBytes + 64<<10),
		pubsub.WithLogger(log),
		// From its publisher a document goes to every peer on the topic,
		// not only to the mesh, which is empty until the first heartbeat
		// after a connection: a publish then would reach no one.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerScore(&pubsub.PeerScoreParams{
			SkipAtomicValidation: true,
			AppSpecificScore:     func(peer.ID) float64 { return 0 },
			DecayInterval:        time.Second,
			DecayToZero:          0.01,
			Topics: map[string]*pubsub.TopicScoreParams{topic: {
				SkipAtomicValidation:           true,
				TopicWeight:                    1,
				TimeInMeshQuantum:              time.Second, // unweighted, but divided by
				InvalidMessageDeliveriesWeight: -100,
				InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(10 * time.Minute),
			}},
		}, &pubsub.PeerScoreThresholds{
			SkipAtomicValidation: true,
			GossipThreshold:      -50,
			PublishThreshold:     -100,
			GraylistThreshold:    -300,
		}),
	}
}

// fedcast is a member's side of federation-wide events.
type fedcast struct {
	o     *Libp2p
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	sub   *pubsub.Subscription
	proto protocol.ID

	// adoptMu serialises adoptions from check to apply: two versions
	// arriving at once are applied in order, never the older last.
	adoptMu sync.Mutex
	mu      sync.Mutex
	signed  *SignedMembership
	doc     *Membership
	// serving bounds the exchanges answered at once.
	serving chan struct{}
	// wasOut: the document applied last did not name this node (under
	// adoptMu).
	wasOut bool

	rejected, ignored atomic.Uint64
}

// startFedcast loads the kept document, joins the topic and serves
// fetches. The caller closes the host (which ends it) and cancels ctx.
func startFedcast(ctx context.Context, o *Libp2p) (*fedcast, error) {
	f := &fedcast{o: o, proto: membershipProtocol(o.cfg.Namespace), serving: make(chan struct{}, maxExchanges)}
	if path := o.cfg.MembershipFile; path != "" {
		s, err := LoadMembership(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", dfaas.ErrInvalidConfig, err)
		}
		if s != nil {
			m, err := s.Open(o.cfg.Namespace, o.cfg.Admins)
			if err != nil {
				return nil, fmt.Errorf("%w: membership kept at %s: %w", dfaas.ErrInvalidConfig, path, err)
			}
			f.signed, f.doc = s, m // in force, even past its ValidUntil: see membership.go
			f.apply(m, "kept at "+path)
		}
	}
	name := membershipTopic(o.cfg.Namespace)
	opts := append(gossipOptions(name, o.log.With("component", "gossipsub")),
		pubsub.WithPeerFilter(func(p peer.ID, _ string) bool { return o.gater.allowed(p) }))
	ps, err := pubsub.NewGossipSub(ctx, o.host, opts...)
	if err != nil {
		return nil, fmt.Errorf("overlay: gossipsub: %w", err)
	}
	f.ps = ps
	if err := ps.RegisterTopicValidator(name, f.validate, pubsub.WithValidatorTimeout(time.Second)); err != nil {
		return nil, fmt.Errorf("overlay: gossipsub: %w", err)
	}
	if f.topic, err = ps.Join(name); err != nil {
		return nil, fmt.Errorf("overlay: gossipsub: %w", err)
	}
	if f.sub, err = f.topic.Subscribe(); err != nil {
		return nil, fmt.Errorf("overlay: gossipsub: %w", err)
	}
	events, err := f.topic.EventHandler()
	if err != nil {
		return nil, fmt.Errorf("overlay: gossipsub: %w", err)
	}
	o.host.SetStreamHandler(f.proto, f.serve)
	o.goRun(func() { f.read(ctx) })
	o.goRun(func() { f.joins(ctx, events) })
	return f, nil
}

// joins exchanges documents with every peer that joins the topic.
func (f *fedcast) joins(ctx context.Context, events *pubsub.TopicEventHandler) {
	defer events.Cancel()
	for {
		ev, err := events.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type == pubsub.PeerJoin {
			f.o.goRun(func() { f.exchange(ctx, ev.Peer) })
		}
	}
}

// check decodes and verifies a signed document as it arrives.
func (f *fedcast) check(raw []byte) (*SignedMembership, *Membership, error) {
	s, err := UnmarshalSignedMembership(raw)
	if err != nil {
		return nil, nil, err
	}
	m, err := s.Open(f.o.cfg.Namespace, f.o.cfg.Admins)
	if err != nil {
		return nil, nil, err
	}
	// One encoding only: the same document re-encoded (spaces, key case)
	// would be a new message to relay and validate again.
	if canon, err := s.Marshal(); err != nil || !bytes.Equal(canon, raw) {
		return nil, nil, fmt.Errorf("%w: not in its canonical encoding", ErrBadMembership)
	}
	return s, m, nil
}

// newer reports whether m would replace the document in force now: a
// higher version. A node without one takes only a document before its
// ValidUntil that names this node: an old one a removed member replays to
// a newcomer admits neither the newcomer nor, so, anyone's cutting it off
// from the members (once it has a document, versions only go up, however
// late a newer one reaches it).
func (f *fedcast) newer(m *Membership) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.doc != nil {
		return m.Version > f.doc.Version
	}
	return f.o.cfg.Now().Before(m.ValidUntil) && m.Admits(f.o.host.ID())
}

func (f *fedcast) validate(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	_, m, err := f.check(msg.Data)
	if err != nil {
		f.rejected.Add(1)
		f.o.log.Warn("membership message rejected", "from", from, "err", err)
		return pubsub.ValidationReject
	}
	if from == f.o.host.ID() {
		return pubsub.ValidationAccept // this node's own: put in force before it is published
	}
	if !f.newer(m) {
		f.ignored.Add(1)
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationAccept
}

// read takes the documents the topic delivers (validated already).
func (f *fedcast) read(ctx context.Context) {
	for {
		msg, err := f.sub.Next(ctx)
		if err != nil {
			return
		}
		if s, m, err := f.check(msg.Data); err == nil && f.newer(m) {
			f.adopt(s, m, "gossip via "+msg.ReceivedFrom.String())
		}
	}
}

// adopt puts m in force if it is newer than the one in force, and keeps
// it; it reports whether it did.
func (f *fedcast) adopt(s *SignedMembership, m *Membership, source string) bool {
	f.adoptMu.Lock()
	defer f.adoptMu.Unlock()
	f.mu.Lock()
	if f.doc != nil && m.Version <= f.doc.Version {
		f.mu.Unlock()
		return false
	}
	f.signed, f.doc = s, m
	if path := f.o.cfg.MembershipFile; path != "" {
		if err := StoreMembership(path, s); err != nil {
			f.o.log.Error("membership not kept: a restart takes it from the peers again", "path", path, "err", err)
		}
	}
	f.mu.Unlock()
	f.apply(m, source)
	return true
}

// apply enforces m: only its members are admitted from now on, the
// connections of others close, and their adverts leave the table.
func (f *fedcast) apply(m *Membership, source string) {
	o := f.o
	ids := make([]peer.ID, len(m.Members))
	for i, mb := range m.Members {
		ids[i] = mb.ID
	}
	prev := o.gater.allow.Load()
	o.gater.set(ids)
	// Members admitted by this version are welcome at once: dialled soon
	// and often (they were refused until now, and dial this node no
	// faster than their back-off), and followed without the bars their
	// refused connections earned. A node that this version admits for
	// the first time (it had none naming it) welcomes every member: they
	// refused it until now.
	if o.host != nil && o.hood != nil {
		self := o.host.ID()
		joined := prev == nil || !(*prev)[self] || f.wasOut
		for _, id := range ids {
			switch {
			case id == self:
			case prev != nil && !(*prev)[id]:
				o.hood.welcome(id)
				if o.host.Network().Connectedness(id) != network.Connected {
					o.redial.dropped(id, time.Now())
				}
			case joined:
				o.hood.welcome(id)
			}
		}
	}
	var cut int
	if o.host != nil {
		for _, p := range o.host.Network().Peers() {
			if !o.gater.allowed(p) {
				cut++
				o.log.Info("peer cut off: not a member", "peer", p, "membership_version", m.Version)
				_ = o.host.Network().ClosePeer(p)
			}
		}
	}
	if o.table != nil {
		for _, a := range o.table.Adverts(o.cfg.Now()) {
			if id, err := peer.Decode(string(a.Node)); err != nil || !m.Admits(id) {
				o.table.Remove(a.Node)
			}
		}
	}
	outcast := o.host != nil && !m.Admits(o.host.ID())
	o.outcast.Store(outcast)
	f.wasOut = outcast
	if outcast {
		// No member admits it: its redials would only be refused (and
		// spend its address's connection budget at the members). It
		// waits to be dialled: a member that takes a version admitting
		// it again welcomes it (above).
		o.log.Error("this node is not a member of the federation's membership: no member admits it; it stops dialling and waits", "membership_version", m.Version)
	}
	if !o.cfg.Now().Before(m.ValidUntil) {
		o.log.Warn("the membership in force is past its valid_until: ask the federation's administrator for a new version",
			"membership_version", m.Version, "valid_until", m.ValidUntil)
	}
	o.log.Info("membership in force", "version", m.Version, "members", len(m.Members), "revoked", len(m.Revoked),
		"cut_off", cut, "source", source)
	o.fire()
}

// mine is the document in force as it travels (nil if none), and its
// version (0 if none).
func (f *fedcast) mine() ([]byte, uint64) {
	f.mu.Lock()
	signed, doc := f.signed, f.doc
	f.mu.Unlock()
	if signed == nil {
		return nil, 0
	}
	raw, err := signed.Marshal()
	if err != nil {
		return nil, 0
	}
	return raw, doc.Version
}

// serve answers an exchange (see exchangeMembership) and takes the
// asker's document if it came.
func (f *fedcast) serve(s network.Stream) {
	select {
	case f.serving <- struct{}{}:
		defer func() { <-f.serving }()
	default:
		_ = s.Reset()
		return
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(fetchTimeout))
	r := bufio.NewReader(s)
	theirVersion, err := binary.ReadUvarint(r)
	if err != nil {
		_ = s.Reset()
		return
	}
	raw, version := f.mine()
	out := binary.AppendUvarint(nil, version)
	if version > theirVersion {
		out = append(binary.AppendUvarint(out, uint64(len(raw))), raw...)
	}
	if _, err := s.Write(out); err != nil {
		_ = s.Reset()
		return
	}
	if theirVersion > version {
		theirs, err := readFramed(r)
		if err != nil {
			_ = s.Reset()
			return
		}
		f.take(context.Background(), s.Conn().RemotePeer(), theirs)
	}
}

// exchange gives p the document in force here if p's is older, and takes
// p's if it is newer.
func (f *fedcast) exchange(ctx context.Context, p peer.ID) {
	raw, version := f.mine()
	theirs, err := exchangeMembership(ctx, f.o.host, f.proto, p, raw, version)
	if err != nil {
		f.o.log.Debug("membership exchange failed", "peer", p, "err", err)
		return
	}
	f.take(ctx, p, theirs)
}

// take puts a document a peer gave in force if it is newer, and publishes
// it again for the members that missed it.
func (f *fedcast) take(ctx context.Context, p peer.ID, raw []byte) {
	if len(raw) == 0 {
		return
	}
	s, m, err := f.check(raw)
	if err != nil {
		f.rejected.Add(1)
		f.o.log.Warn("membership from a peer rejected", "peer", p, "err", err)
		return
	}
	if !f.newer(m) || !f.adopt(s, m, "from "+p.String()) {
		return
	}
	if err := f.topic.Publish(ctx, raw); err != nil {
		f.o.log.Debug("membership not published again", "err", err)
	}
}

// readFramed reads one length-prefixed document (at most
// MaxMembershipBytes).
func readFramed(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > MaxMembershipBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrBadMembership, n, MaxMembershipBytes)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// exchangeMembership compares documents with p: each side says its
// version (0: none) first, and only the side with the higher one sends its
// document, length-prefixed; equal versions cost two varints. It writes
// mine (of version version; nil, 0: none) if p's is older, and returns
// p's document if p's is newer (else nil).
func exchangeMembership(ctx context.Context, h interface {
	NewStream(context.Context, peer.ID, ...protocol.ID) (network.Stream, error)
}, proto protocol.ID, p peer.ID, mine []byte, version uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(fetchTimeout))
	if _, err := s.Write(binary.AppendUvarint(nil, version)); err != nil {
		_ = s.Reset()
		return nil, err
	}
	r := bufio.NewReader(s)
	theirVersion, err := binary.ReadUvarint(r)
	if err != nil {
		_ = s.Reset()
		return nil, err
	}
	var theirs []byte
	if theirVersion > version {
		if theirs, err = readFramed(r); err != nil {
			_ = s.Reset()
			return nil, err
		}
	} else if version > theirVersion && len(mine) > 0 {
		if _, err := s.Write(append(binary.AppendUvarint(nil, uint64(len(mine))), mine...)); err != nil {
			_ = s.Reset()
			return nil, err
		}
	}
	_ = s.CloseWrite()
	// Until the peer closes: it has then put what it took in force and
	// published it again (an administrator's publish on the topic right
	// after would otherwise reach it first, and go no further than its
	// mesh).
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 1))
	return theirs, nil
}

// Membership is the signed membership document in force and its content;
// nil, nil without one (no administrators configured, or none taken yet).
func (o *Libp2p) Membership() (*Membership, *SignedMembership) {
	if o.fed == nil {
		return nil, nil
	}
	o.fed.mu.Lock()
	defer o.fed.mu.Unlock()
	return o.fed.doc, o.fed.signed
}

// ErrStaleMembership is returned by PublishMembership for a document no
// newer than the one in force.
var ErrStaleMembership = errors.New("overlay: membership: not newer than the one in force")

// PublishMembership puts a signed document in force at this node and
// publishes it to every member. It must be signed by one of Admins,
// before its ValidUntil, and of a higher version than the one in force.
func (o *Libp2p) PublishMembership(ctx context.Context, s *SignedMembership) error {
	if o.fed == nil {
		return fmt.Errorf("%w: overlay: membership: no administrator keys configured (Libp2pConfig.Admins)", dfaas.ErrInvalidConfig)
	}
	m, err := s.Open(o.cfg.Namespace, o.cfg.Admins)
	if err != nil {
		return err
	}
	if !o.cfg.Now().Before(m.ValidUntil) {
		return fmt.Errorf("%w: valid until %v, past", ErrBadMembership, m.ValidUntil)
	}
	if !o.fed.adopt(s, m, "published here") {
		return fmt.Errorf("%w: version %d", ErrStaleMembership, m.Version)
	}
	raw, err := s.Marshal()
	if err != nil {
		return err
	}
	return o.fed.topic.Publish(ctx, raw)
}
