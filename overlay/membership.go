package overlay

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dfaas-go/dfaas"
)

// Signed membership. A federation's administrator holds a key of its own
// (an Ed25519 key in the node key's format, kept off the nodes) and signs
// membership documents: a version, the members (ids, with optional names),
// the ids revoked, and a time after which the document is no longer taken.
// Agents configured to trust that key (Libp2pConfig.Admins) take the
// highest version they are shown that verifies, keep it on disk
// (Libp2pConfig.MembershipFile), and admit only its members: at the libp2p
// connection gater, on the advert streams (a former member's adverts leave
// the table) and so at both data planes' peer ports, which admit the
// overlay's Members. Documents travel on a GossipSub topic (see
// fedcast.go), so that a change published at any member reaches every
// member, and are fetched from each peer on connection, so that a node that
// was away or is new catches up.
//
// A document is taken only before its ValidUntil: an old document, replayed
// to a node that has seen none newer, stops working at that date. Once
// taken, a document stays in force past its ValidUntil until a newer one
// comes (a federation does not stop because its administrator was late);
// the agent warns.

// MembershipVersion is the format of a membership document.
const MembershipVersion = 1

// MaxMembershipBytes bounds a signed membership document: about 4000
// members with names.
const MaxMembershipBytes = 512 << 10

// maxMembers bounds the members and the revoked ids of a document.
const maxMembers = 10000

// maxMemberName bounds a member's name.
const maxMemberName = 64

// membershipDomain prefixes what an administrator signs, so that its
// signature cannot be taken for one over anything else.
const membershipDomain = "dfaas membership v1\n"

// Membership is a federation's membership document.
type Membership struct {
	// Format is MembershipVersion.
	Format int `json:"format"`
	// Federation is the federation's namespace (Libp2pConfig.Namespace):
	// a document for another federation is refused.
	Federation string `json:"federation"`
	// Version orders documents: an agent takes only a higher one than it
	// has. At least 1.
	Version uint64 `json:"version"`
	// Issued is when the document was signed.
	Issued time.Time `json:"issued"`
	// ValidUntil is the last moment the document may be taken.
	ValidUntil time.Time `json:"valid_until"`
	// Members are the nodes admitted, sorted by id.
	Members []Member `json:"members"`
	// Revoked are nodes once members and now refused, sorted: listed so
	// that a document that still names them cannot be mistaken for an
	// oversight, and kept across versions.
	Revoked []peer.ID `json:"revoked,omitempty"`
}

// Member is a node of a Membership.
type Member struct {
	ID   peer.ID `json:"id"`
	Name string  `json:"name,omitempty"`
}

// SignedMembership is a Membership as it travels and is kept: the
// document's exact bytes, the administrator key that signed them (its
// peer id) and the signature.
type SignedMembership struct {
	Document  json.RawMessage `json:"document"`
	Signer    peer.ID         `json:"signer"`
	Signature []byte          `json:"signature"`
}

// Errors of membership documents.
var (
	ErrNotSigned     = errors.New("overlay: membership: not signed by a trusted administrator key")
	ErrBadMembership = errors.New("overlay: membership: invalid document")
)

// Validate checks a document's fields for federation (its namespace).
func (m *Membership) Validate(federation string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadMembership, fmt.Sprintf(format, args...))
	}
	switch {
	case m.Format != MembershipVersion:
		return bad("format %d, want %d", m.Format, MembershipVersion)
	case m.Federation != federation:
		return bad("for federation %q, not %q", m.Federation, federation)
	case m.Version == 0:
		return bad("version 0")
	case m.ValidUntil.IsZero():
		return bad("no valid_until")
	case len(m.Members) == 0:
		return bad("no member")
	case len(m.Members) > maxMembers || len(m.Revoked) > maxMembers:
		return bad("more than %d members or revoked ids", maxMembers)
	}
	revoked := make(map[peer.ID]bool, len(m.Revoked))
	for i, id := range m.Revoked {
		if err := id.Validate(); err != nil {
			return bad("revoked id %d: %v", i, err)
		}
		if i > 0 && m.Revoked[i-1] >= id {
			return bad("revoked ids not sorted, or repeated")
		}
		revoked[id] = true
	}
	for i, mb := range m.Members {
		if err := mb.ID.Validate(); err != nil {
			return bad("member %d: %v", i, err)
		}
		// A member's data-plane identity is built from the Ed25519 key
		// its id holds (proxy.Anchor).
		if pub, err := mb.ID.ExtractPublicKey(); err != nil || pub.Type() != crypto.Ed25519 {
			return bad("member %s: not the id of an Ed25519 key", mb.ID)
		}
		if i > 0 && m.Members[i-1].ID >= mb.ID {
			return bad("members not sorted, or repeated")
		}
		if revoked[mb.ID] {
			return bad("member %s is revoked", mb.ID)
		}
		if err := validName(mb.Name); err != nil {
			return bad("member %s: %v", mb.ID, err)
		}
	}
	return nil
}

// validName checks a member's name: short, printable, no spaces.
func validName(name string) error {
	if len(name) > maxMemberName {
		return fmt.Errorf("name longer than %d bytes", maxMemberName)
	}
	if strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return fmt.Errorf("name %q has a space or an unprintable character", name)
	}
	return nil
}

// Admits reports whether id is a member.
func (m *Membership) Admits(id peer.ID) bool {
	_, ok := slices.BinarySearchFunc(m.Members, id, func(a Member, id peer.ID) int { return strings.Compare(string(a.ID), string(id)) })
	return ok
}

// Name is member id's name ("" if it has none or is no member).
func (m *Membership) Name(id peer.ID) string {
	if i, ok := slices.BinarySearchFunc(m.Members, id, func(a Member, id peer.ID) int { return strings.Compare(string(a.ID), string(id)) }); ok {
		return m.Members[i].Name
	}
	return ""
}

// Normalize sorts the members and revoked ids and drops repeats (a
// member named twice keeps its first name; a revoked id is no member).
func (m *Membership) Normalize() {
	revoked := map[peer.ID]bool{}
	for _, id := range m.Revoked {
		revoked[id] = true
	}
	m.Revoked = slices.Sorted(func(yield func(peer.ID) bool) {
		for id := range revoked {
			if !yield(id) {
				return
			}
		}
	})
	seen := map[peer.ID]bool{}
	members := m.Members[:0]
	for _, mb := range m.Members {
		if !seen[mb.ID] && !revoked[mb.ID] {
			seen[mb.ID] = true
			members = append(members, mb)
		}
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) })
	m.Members = members
}

// SignMembership signs m with the administrator key admin (Ed25519).
func SignMembership(m *Membership, admin crypto.PrivKey) (*SignedMembership, error) {
	if admin == nil || admin.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("%w: overlay: membership: want an Ed25519 administrator key", dfaas.ErrInvalidConfig)
	}
	doc, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("overlay: membership: %w", err)
	}
	sig, err := admin.Sign(append([]byte(membershipDomain), doc...))
	if err != nil {
		return nil, fmt.Errorf("overlay: membership: %w", err)
	}
	signer, err := peer.IDFromPrivateKey(admin)
	if err != nil {
		return nil, fmt.Errorf("overlay: membership: %w", err)
	}
	return &SignedMembership{Document: doc, Signer: signer, Signature: sig}, nil
}

// Open checks s's signature against the trusted administrator ids and
// decodes its document, checked for federation. It does not look at the
// document's dates.
func (s *SignedMembership) Open(federation string, admins []peer.ID) (*Membership, error) {
	if !slices.Contains(admins, s.Signer) {
		return nil, fmt.Errorf("%w: signer %s", ErrNotSigned, s.Signer)
	}
	pub, err := s.Signer.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: signer %s: %w", ErrNotSigned, s.Signer, err)
	}
	ok, err := pub.Verify(append([]byte(membershipDomain), s.Document...), s.Signature)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: the signature of %s does not verify", ErrNotSigned, s.Signer)
	}
	dec := json.NewDecoder(bytes.NewReader(s.Document))
	dec.DisallowUnknownFields()
	var m Membership
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMembership, err)
	}
	if err := m.Validate(federation); err != nil {
		return nil, err
	}
	return &m, nil
}

// Marshal is s as it travels and is kept (JSON).
func (s *SignedMembership) Marshal() ([]byte, error) { return json.Marshal(s) }

// UnmarshalSignedMembership decodes a signed document (at most
// MaxMembershipBytes).
func UnmarshalSignedMembership(raw []byte) (*SignedMembership, error) {
	if len(raw) > MaxMembershipBytes {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrBadMembership, len(raw), MaxMembershipBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var s SignedMembership
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMembership, err)
	}
	return &s, nil
}

// Digest identifies a signed document's exact bytes (its GossipSub
// message id).
func (s *SignedMembership) Digest() string {
	h := sha256.New()
	h.Write(s.Document)
	h.Write(s.Signature)
	return string(h.Sum(nil))
}

// LoadMembership reads a signed document kept at path: nil, nil if there
// is none. The file must be a regular file writable by its owner only.
func LoadMembership(path string) (*SignedMembership, error) {
	raw, err := readChecked(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("overlay: membership: %w", err)
	}
	s, err := UnmarshalSignedMembership(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// StoreMembership writes s to path (0644, through a temporary file and a
// rename: a crash leaves the old document or the new one).
func StoreMembership(path string, s *SignedMembership) error {
	raw, err := s.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("overlay: membership: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".membership-*")
	if err != nil {
		return fmt.Errorf("overlay: membership: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("overlay: membership: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("overlay: membership: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("overlay: membership: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("overlay: membership: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("overlay: membership: %w", err)
	}
	return nil
}
