package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/dfaas-go/dfaas"
)

// AdminConfig is how an administrator reaches a federation.
type AdminConfig struct {
	// Namespace is the federation's (Libp2pConfig.Namespace). Default
	// "dfaas".
	Namespace string
	// Secret is the federation secret.
	Secret pnet.PSK
	// Key is the administrator key: the host connects as it, which the
	// members' gaters admit (it is in their Admins), and it signs.
	Key crypto.PrivKey
	// Join are members' full multiaddrs (with /p2p/<id>).
	Join []string
	// Logger receives the session's logs. Default slog.Default().
	Logger *slog.Logger
}

// Admin is an administrator's session with a federation: a host with no
// listener, connected to a few members, that reads the membership in force
// and publishes new versions. Close it when done.
type Admin struct {
	cfg   AdminConfig
	host  host.Host
	ps    *pubsub.PubSub
	topic *pubsub.Topic
	proto protocol.ID
	peers []peer.ID
	admin peer.ID
}

// NewAdmin connects to the members at cfg.Join (those it can reach; at
// least one).
func NewAdmin(ctx context.Context, cfg AdminConfig) (_ *Admin, err error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "dfaas"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch {
	case cfg.Key == nil || cfg.Key.Type() != crypto.Ed25519:
		return nil, fmt.Errorf("%w: overlay: admin: want an Ed25519 administrator key", dfaas.ErrInvalidConfig)
	case len(cfg.Secret) != SecretBytes:
		return nil, fmt.Errorf("%w: overlay: admin: want the federation secret", dfaas.ErrInvalidConfig)
	case len(cfg.Join) == 0:
		return nil, fmt.Errorf("%w: overlay: admin: name a member to join through", dfaas.ErrInvalidConfig)
	}
	join, err := bootstrapPeers(cfg.Join)
	if err != nil {
		return nil, err
	}
	a := &Admin{cfg: cfg, proto: membershipProtocol(cfg.Namespace)}
	if a.admin, err = peer.IDFromPrivateKey(cfg.Key); err != nil {
		return nil, fmt.Errorf("overlay: admin: %w", err)
	}
	a.host, err = libp2p.New(libp2p.Identity(cfg.Key), libp2p.PrivateNetwork(cfg.Secret), libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		return nil, fmt.Errorf("overlay: admin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	name := membershipTopic(cfg.Namespace)
	if a.ps, err = pubsub.NewGossipSub(context.Background(), a.host, gossipOptions(name, cfg.Logger)...); err != nil {
		return nil, fmt.Errorf("overlay: admin: %w", err)
	}
	if a.topic, err = a.ps.Join(name); err != nil {
		return nil, fmt.Errorf("overlay: admin: %w", err)
	}
	var errs []error
	for _, ai := range join {
		if err := a.host.Connect(ctx, ai); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ai.ID, err))
			continue
		}
		a.peers = append(a.peers, ai.ID)
	}
	if len(a.peers) == 0 {
		return nil, fmt.Errorf("overlay: admin: no member reached (is this key among their administrators?): %w", errors.Join(errs...))
	}
	return a, nil
}

// Current is the membership in force at the members reached: the highest
// version among theirs signed by one of admins (a document signed by any
// other key is refused: a new version built on it would sign in whatever it
// lists); nil, nil, nil if none has one.
func (a *Admin) Current(ctx context.Context, admins []peer.ID) (*Membership, *SignedMembership, error) {
	var best *Membership
	var bestSigned *SignedMembership
	var errs []error
	for _, p := range a.peers {
		raw, err := exchangeMembership(ctx, a.host, a.proto, p, nil, 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		if len(raw) == 0 {
			continue
		}
		s, err := UnmarshalSignedMembership(raw)
		if err == nil {
			var m *Membership
			if m, err = s.Open(a.cfg.Namespace, admins); err == nil {
				if best == nil || m.Version > best.Version {
					best, bestSigned = m, s
				}
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
	}
	if best == nil && len(errs) == len(a.peers) {
		return nil, nil, errors.Join(errs...)
	}
	return best, bestSigned, nil
}

// ID is the id of this session's key, as the members trust it.
func (a *Admin) ID() peer.ID { return a.admin }

// Publish sends s to the members reached, over the membership topic and
// directly, and waits until each of them has it in force (or ctx ends).
func (a *Admin) Publish(ctx context.Context, s *SignedMembership) error {
	m, err := s.Open(a.cfg.Namespace, []peer.ID{s.Signer})
	if err != nil {
		return err
	}
	raw, err := s.Marshal()
	if err != nil {
		return err
	}
	// Directly first: an exchange hands it to each member reached, which
	// publishes it to the others.
	var errs []error
	for _, p := range a.peers {
		if _, err := exchangeMembership(ctx, a.host, a.proto, p, raw, m.Version); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	if len(errs) == len(a.peers) {
		return fmt.Errorf("overlay: admin: publish: %w", errors.Join(errs...))
	}
	if len(a.topic.ListPeers()) > 0 {
		if err := a.topic.Publish(ctx, raw); err != nil {
			a.cfg.Logger.Debug("membership not published on the topic", "err", err)
		}
	}
	// Confirmed when every member reached has this very document in
	// force; one that has another of the same version or a higher one in
	// force will never take it.
	want := s.Digest()
	for _, p := range a.peers {
		for {
			got, err := exchangeMembership(ctx, a.host, a.proto, p, nil, 0)
			if err == nil && len(got) > 0 {
				if gs, err := UnmarshalSignedMembership(got); err == nil {
					if gs.Digest() == want {
						break
					}
					if gm, err := gs.Open(a.cfg.Namespace, []peer.ID{gs.Signer}); err == nil && gm.Version >= m.Version {
						return fmt.Errorf("overlay: admin: %s has version %d in force, not this version %d: list the membership again and make the change on it", p, gm.Version, m.Version)
					}
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("overlay: admin: %s has not taken version %d: %w", p, m.Version, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// Peers are the members reached.
func (a *Admin) Peers() []peer.ID { return a.peers }

// Close ends the session.
func (a *Admin) Close() error {
	var errs []error
	if a.topic != nil {
		errs = append(errs, a.topic.Close())
	}
	if a.host != nil {
		errs = append(errs, a.host.Close())
	}
	return errors.Join(errs...)
}
