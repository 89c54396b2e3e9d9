package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dfaas-go/dfaas/overlay"
)

// admin is the federation's administrator in a scenario with Admin: its
// key, and the membership it signed last.
type admin struct {
	key     crypto.PrivKey
	file    string // the agents' -admins file
	version uint64
	revoked map[int]bool
}

// prepareAdmin makes the administrator's key and the agents' -admins file.
func (b *bed) prepareAdmin() error {
	k, _, err := overlay.LoadOrCreateKey(filepath.Join(b.opt.Dir, "admin.key"))
	if err != nil {
		return err
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		return err
	}
	b.admin = &admin{key: k, file: filepath.Join(b.opt.Dir, "admins"), revoked: map[int]bool{}}
	return os.WriteFile(b.admin.file, []byte(id.String()+"\n"), 0o644)
}

// addedLater reports whether a scenario event adds node i: it is no member
// at first.
func (b *bed) addedLater(i int) bool {
	for _, e := range b.s.Events {
		if e.Add == b.s.Nodes[i].Name {
			return true
		}
	}
	return false
}

// memberAfter reports whether node j is a member after event k (k < 0:
// before any).
func (b *bed) memberAfter(k, j int) bool {
	if !b.s.Admin {
		return true
	}
	member, name := !b.addedLater(j), b.s.Nodes[j].Name
	for _, e := range b.s.Events[:max(0, k+1)] {
		switch name {
		case e.Remove:
			member = false
		case e.Add:
			member = true
		}
	}
	return member
}

// publishMembership signs the membership after event k and hands it to the
// running members, as the administrator's command does; it returns once
// they all have it in force.
func (b *bed) publishMembership(ctx context.Context, k int) error {
	ids := b.ids()
	a := b.admin
	a.version++
	m := &overlay.Membership{Format: overlay.MembershipVersion, Federation: "dfaas", Version: a.version,
		Issued: time.Now().UTC(), ValidUntil: time.Now().Add(time.Hour).UTC()}
	var join []string
	for j, n := range b.s.Nodes {
		id, err := peer.Decode(ids[j])
		if err != nil {
			return err
		}
		switch {
		case b.memberAfter(k, j):
			m.Members = append(m.Members, overlay.Member{ID: id, Name: n.Name})
			delete(a.revoked, j)
			// Handed to the members already in: a node just added is
			// admitted by no one until they have the new version.
			if b.running(j) && (k < 0 || b.memberAfter(k-1, j)) {
				join = append(join, fmt.Sprintf("/ip4/%s/tcp/%d/p2p/%s", b.net.ip(j), portP2P, id))
			}
		case b.memberAfter(k-1, j) || a.revoked[j]:
			a.revoked[j] = true
			m.Revoked = append(m.Revoked, id)
		}
	}
	m.Normalize()
	s, err := overlay.SignMembership(m, a.key)
	if err != nil {
		return err
	}
	secret, err := overlay.LoadSecret(filepath.Join(b.opt.Dir, "federation.key"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Every member it joins through, as an operator would check: the
	// agents take at most 8 connections at once from one address (libp2p's
	// limit), and the links between namespaces all come from the bridge's.
	for {
		s2, err := overlay.NewAdmin(ctx, overlay.AdminConfig{Secret: secret, Key: a.key, Join: join, Logger: slog.New(slog.DiscardHandler)})
		if err == nil && len(s2.Peers()) == len(join) {
			err = s2.Publish(ctx, s)
			_ = s2.Close()
			if err != nil {
				return fmt.Errorf("testbed: membership version %d: %w", a.version, err)
			}
			return nil
		}
		if s2 != nil {
			_ = s2.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: membership version %d: not every member reached: %v", a.version, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
