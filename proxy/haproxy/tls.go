package haproxy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

// startTLS writes the files of the federation's TLS: this node's
// certificate and key (0600), the current members' anchors and the anchor
// directory.
func (d *Driver) startTLS() error {
	t := &TLS{CertFile: filepath.Join(d.cfg.Dir, "node.pem"), MembersFile: filepath.Join(d.cfg.Dir, "members.pem"),
		MembersMap: filepath.Join(d.cfg.Dir, "members.map"),
		AnchorDir:  filepath.Join(d.cfg.Dir, "anchors")}
	pem, err := d.cfg.TLS.Identity.PEM()
	if err != nil {
		return err
	}
	if err := writeFile(t.CertFile, pem); err != nil {
		return err
	}
	d.certLeaf = d.cfg.TLS.Identity.Certificate().Leaf
	if err := os.MkdirAll(t.AnchorDir, 0o700); err != nil {
		return fmt.Errorf("haproxy: tls: %w", err)
	}
	d.layout.TLS = t
	members, err := d.membersPEM()
	if err != nil {
		return err
	}
	d.members = members
	if err := writeFile(t.MembersFile, members); err != nil {
		return err
	}
	var lines strings.Builder
	for _, n := range d.memberIDs() {
		lines.WriteString(string(n) + " 1\n")
		d.remember(t.MembersMap, string(n), "1")
	}
	return writeFile(t.MembersMap, []byte(lines.String()))
}

// refreshCert gives HAProxy this node's current leaf (proxy.Identity
// renews it halfway through its life): on disk for reloads, and in the
// running worker through the runtime API, for the peer listener and every
// peer server alike (they share the file). New handshakes present it;
// connections made before go on.
func (d *Driver) refreshCert() error {
	if d.layout.TLS == nil {
		return nil
	}
	// Every tick: the leaf's pointer says whether it was renewed, without
	// encoding it.
	leaf := d.cfg.TLS.Identity.Certificate().Leaf
	if leaf == d.certLeaf {
		return nil
	}
	pem, err := d.cfg.TLS.Identity.PEM()
	if err != nil {
		return err
	}
	path := d.layout.TLS.CertFile
	if err := writeFile(path, pem); err != nil {
		return err
	}
	d.certLeaf = leaf // on disk: a reload takes it whatever happens next
	if err := d.rt.SetCertEntry(path, string(pem)); err != nil {
		_ = d.rt.AbortCertEntry(path)
		return fmt.Errorf("haproxy: set ssl cert: %w", err)
	}
	if err := d.rt.CommitCertEntry(path); err != nil {
		_ = d.rt.AbortCertEntry(path)
		return fmt.Errorf("haproxy: commit ssl cert: %w", err)
	}
	d.log.Info("TLS leaf renewed", "not_after", d.cfg.TLS.Identity.NotAfter())
	return nil
}

// memberIDs are the current members and this node (what could not be a
// node id, which a map line or a runtime command must not take, left out).
func (d *Driver) memberIDs() []dfaas.NodeID {
	out := []dfaas.NodeID{d.cfg.Node}
	for _, n := range d.cfg.TLS.Members() {
		if configWord(string(n)) && !strings.ContainsRune(string(n), ';') {
			out = append(out, n)
		}
	}
	return out
}

// membersPEM is the peer listener's CA file for the current members. This
// node's own anchor is always in it, so that it is never empty.
func (d *Driver) membersPEM() ([]byte, error) {
	return proxy.AnchorsPEM(d.memberIDs()...)
}

// refreshMembers makes the peer listener's CA file hold the current
// members: on disk for the next reload, and in the running worker through
// the runtime API (new handshakes only: established connections stay).
func (d *Driver) refreshMembers() error {
	if d.layout.TLS == nil {
		return nil
	}
	// The map first: a member removed is refused on the connections it
	// holds (at their next request) from now on.
	ids := d.memberIDs()
	batch := &mapBatch{d: d}
	in := make(map[string]bool, len(ids))
	for _, n := range ids {
		in[string(n)] = true
		batch.set(d.layout.TLS.MembersMap, string(n), "1")
	}
	for n := range d.maps[d.layout.TLS.MembersMap] {
		if !in[n] {
			batch.del(d.layout.TLS.MembersMap, n)
		}
	}
	if err := batch.flush(); err != nil {
		return err
	}
	members, err := proxy.AnchorsPEM(ids...)
	if err != nil {
		return err
	}
	if bytes.Equal(members, d.members) {
		return nil
	}
	if err := writeFile(d.layout.TLS.MembersFile, members); err != nil {
		return err
	}
	d.members = members // on disk: a reload takes it whatever happens next
	return d.setCAFile(d.layout.TLS.MembersFile, members)
}

// loadAnchor makes the anchor of a peer's server available: on disk for
// reloads, and loaded in the running worker for a runtime "add server".
// An anchor's content depends on the node only, so one loaded under the
// server's name is already right.
func (d *Driver) loadAnchor(node dfaas.NodeID, name string) error {
	if d.layout.TLS == nil {
		return nil
	}
	pem, err := proxy.AnchorsPEM(node)
	if err != nil {
		return err
	}
	path := d.layout.TLS.AnchorFile(name)
	if err := writeFile(path, pem); err != nil {
		return err
	}
	if _, err := d.rt.GetCAFile(path); err == nil {
		return nil
	}
	if err := d.rt.NewCAFile(path); err != nil {
		return fmt.Errorf("haproxy: new ca-file %s: %w", path, err)
	}
	return d.setCAFile(path, pem)
}

func (d *Driver) setCAFile(path string, pem []byte) error {
	if err := d.rt.SetCAFile(path, string(pem)); err != nil {
		_ = d.rt.AbortCAFile(path)
		return fmt.Errorf("haproxy: set ca-file %s: %w", path, err)
	}
	if err := d.rt.CommitCAFile(path); err != nil {
		_ = d.rt.AbortCAFile(path)
		return fmt.Errorf("haproxy: commit ca-file %s: %w", path, err)
	}
	return nil
}

// writeFile replaces path's content atomically with a new file of mode
// 0600 (never an existing file's mode, never through a symlink).
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("haproxy: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("haproxy: %w", err)
	}
	return nil
}
