// Command members administers a federation's signed membership (see
// overlay.SignMembership): run it on a machine that holds the federation's
// administrator key and its secret, never on the nodes.
//
//	go run ./examples/members keygen -key admin.key
//	    makes the administrator key (0600) and prints its id: give the id to
//	    every agent (-admins, a file of ids, one per line)
//	go run ./examples/members list -key admin.key -secret fed.key -join <member multiaddr>
//	go run ./examples/members add -key admin.key -secret fed.key -join <member multiaddr> -id <node id>[=<name>],...
//	go run ./examples/members remove -key admin.key -secret fed.key -join <member multiaddr> -id <node id>,...
//
// add and remove read the membership in force at the members named by
// -join, make the next version, sign it and hand it to them; it reaches
// every member within a second or so over GossipSub, and a removed member
// is cut off everywhere (its ids stay in the document as revoked). The
// first version (-init, when none is in force) admits only the ids it
// names: name every member, or -from an allow-list file. Each version is
// valid to be taken for -valid-for (30 days by default); members keep the
// one in force past that date, with a warning, until a newer one comes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dfaas-go/dfaas/overlay"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "members:", err)
		os.Exit(1)
	}
}

const usage = "usage: members keygen|list|add|remove [flags] (members <command> -h lists its flags)"

// run runs one command; what it prints goes to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	key := fs.String("key", "admin.key", "the administrator key (Ed25519, PEM, 0600)")
	if cmd == "keygen" {
		if err := fs.Parse(args); err != nil {
			return err
		}
		k, created, err := overlay.LoadOrCreateKey(*key)
		if err != nil {
			return err
		}
		id, err := peer.IDFromPrivateKey(k)
		if err != nil {
			return err
		}
		if !created {
			fmt.Fprintf(out, "%s exists: its id is\n", *key)
		}
		fmt.Fprintln(out, id)
		return nil
	}
	secret := fs.String("secret", "fed.key", "the federation secret")
	join := fs.String("join", "", "members' full multiaddrs (with /p2p/<id>), comma-separated")
	namespace := fs.String("namespace", "dfaas", "the federation's namespace")
	admins := fs.String("admins", "", "a file of the other administrator ids whose versions this one may build on (this key's own always)")
	ids := fs.String("id", "", "node ids, comma-separated (add: each may carry =<name>)")
	from := fs.String("from", "", "add: an allow-list file whose ids to add as well")
	first := fs.Bool("init", false, "add: make the first version when none is in force (it admits only the ids named)")
	validFor := fs.Duration("valid-for", 30*24*time.Hour, "how long the new version may be taken")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the members")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch cmd {
	case "list", "add", "remove":
	default:
		return errors.New(usage)
	}
	if _, err := os.Stat(*key); errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("no administrator key at %s: make one with members keygen", *key)
	}
	k, _, err := overlay.LoadOrCreateKey(*key)
	if err != nil {
		return err
	}
	psk, err := overlay.LoadSecret(*secret)
	if err != nil {
		return err
	}
	trusted := []peer.ID{}
	if *admins != "" {
		if trusted, err = overlay.LoadAdmins(*admins); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	a, err := overlay.NewAdmin(ctx, overlay.AdminConfig{Namespace: *namespace, Secret: psk, Key: k, Join: split(*join),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer a.Close()
	trusted = append(trusted, a.ID())
	current, _, err := a.Current(ctx, trusted)
	if err != nil {
		return err
	}
	if cmd == "list" {
		if current == nil {
			fmt.Fprintln(out, "no signed membership in force")
			return nil
		}
		print(out, current)
		return nil
	}

	next := &overlay.Membership{Format: overlay.MembershipVersion, Federation: *namespace, Version: 1}
	switch {
	case current != nil:
		next.Version = current.Version + 1
		next.Members = append(next.Members, current.Members...)
		next.Revoked = append(next.Revoked, current.Revoked...)
	case cmd == "remove" || !*first:
		return errors.New("no signed membership in force: make the first one with add -init, naming every member")
	}
	named, err := parseIDs(*ids)
	if err != nil {
		return err
	}
	if *from != "" {
		list, err := overlay.LoadAllowList(*from)
		if err != nil {
			return err
		}
		for _, id := range list {
			named = append(named, overlay.Member{ID: id})
		}
	}
	if len(named) == 0 {
		return errors.New("name the nodes with -id (or -from)")
	}
	if cmd == "add" {
		for _, mb := range named {
			next.Revoked = removeID(next.Revoked, mb.ID) // added back
			next.Members = append([]overlay.Member{mb}, next.Members...)
		}
	} else {
		for _, mb := range named {
			if current == nil || !current.Admits(mb.ID) {
				return fmt.Errorf("%s is not a member", mb.ID)
			}
			next.Revoked = append(next.Revoked, mb.ID)
		}
	}
	next.Normalize()
	next.Issued = time.Now().UTC().Truncate(time.Second)
	next.ValidUntil = next.Issued.Add(*validFor)
	if err := next.Validate(*namespace); err != nil {
		return err
	}
	signed, err := overlay.SignMembership(next, k)
	if err != nil {
		return err
	}
	if err := a.Publish(ctx, signed); err != nil {
		return err
	}
	fmt.Fprintf(out, "version %d in force at the members reached\n", next.Version)
	print(out, next)
	return nil
}

func print(out io.Writer, m *overlay.Membership) {
	fmt.Fprintf(out, "version %d, issued %s, valid until %s, %d members, %d revoked\n", m.Version,
		m.Issued.Format(time.RFC3339), m.ValidUntil.Format(time.RFC3339), len(m.Members), len(m.Revoked))
	for _, mb := range m.Members {
		fmt.Fprintf(out, "member  %s %s\n", mb.ID, mb.Name)
	}
	for _, id := range m.Revoked {
		fmt.Fprintf(out, "revoked %s\n", id)
	}
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseIDs reads id[=name],...
func parseIDs(s string) ([]overlay.Member, error) {
	var out []overlay.Member
	for _, f := range split(s) {
		idText, name, _ := strings.Cut(f, "=")
		id, err := peer.Decode(idText)
		if err != nil {
			return nil, fmt.Errorf("-id %q: %w", idText, err)
		}
		out = append(out, overlay.Member{ID: id, Name: name})
	}
	return out, nil
}

func removeID(ids []peer.ID, id peer.ID) []peer.ID {
	out := ids[:0]
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}
