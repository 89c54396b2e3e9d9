// Command fedbytes measures what federation-wide events cost each member:
// the bytes GossipSub (and the membership exchange on joining) carries per
// node, at rest and while the administrator publishes membership changes.
// It starts -nodes members on loopback in one process, trusting one
// administrator key, publishes a first membership, then measures each
// phase:
//
//	go run ./examples/fedbytes -nodes 16 -rest 60s -churn 3m -every 1m
//
// Each node's bytes are its libp2p streams' payloads on the GossipSub
// protocols and the membership exchange protocol, in and out, divided by
// the phase's length; the table gives their mean and maximum over nodes.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dfaas-go/dfaas/overlay"
)

func main() {
	nodes := flag.Int("nodes", 16, "members")
	rest := flag.Duration("rest", time.Minute, "length of the phase at rest")
	churn := flag.Duration("churn", 3*time.Minute, "length of the phase with changes")
	every := flag.Duration("every", time.Minute, "one membership change this often during the churn phase")
	flag.Parse()
	if err := run(*nodes, *rest, *churn, *every); err != nil {
		fmt.Fprintln(os.Stderr, "fedbytes:", err)
		os.Exit(1)
	}
}

func run(n int, rest, churn, every time.Duration) error {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	admin, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	adminID, err := peer.IDFromPrivateKey(admin)
	if err != nil {
		return err
	}
	secret := make([]byte, overlay.SecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	var members []*overlay.Libp2p
	defer func() {
		for _, o := range members {
			_ = o.Close()
		}
	}()
	for i := range n {
		cfg := overlay.Libp2pConfig{Secret: secret, Namespace: "fedbytes", Admins: []peer.ID{adminID}, Logger: quiet}
		if i > 0 {
			cfg.Bootstrap = members[0].Addrs()
		}
		o, err := overlay.NewLibp2p(ctx, cfg)
		if err != nil {
			return err
		}
		members = append(members, o)
	}
	// Spare ids: each change adds one and removes the one added before.
	version := uint64(0)
	base := make([]overlay.Member, 0, n)
	for _, o := range members {
		id, err := peer.Decode(string(o.Self()))
		if err != nil {
			return err
		}
		base = append(base, overlay.Member{ID: id})
	}
	publish := func() error {
		version++
		m := &overlay.Membership{Format: overlay.MembershipVersion, Federation: "fedbytes", Version: version,
			Issued: time.Now(), ValidUntil: time.Now().Add(time.Hour), Members: append([]overlay.Member(nil), base...)}
		_, spare, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return err
		}
		id, err := peer.IDFromPublicKey(spare)
		if err != nil {
			return err
		}
		m.Members = append(m.Members, overlay.Member{ID: id, Name: fmt.Sprintf("spare-%d", version)})
		m.Normalize()
		s, err := overlay.SignMembership(m, admin)
		if err != nil {
			return err
		}
		return members[version%uint64(n)].PublishMembership(ctx, s)
	}
	if err := publish(); err != nil {
		return err
	}
	// Settle: everyone has version 1 and the mesh is built.
	deadline := time.Now().Add(30 * time.Second)
	for !all(members, version) {
		if time.Now().After(deadline) {
			return fmt.Errorf("version %d did not reach every member in 30 s", version)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)

	fmt.Printf("%d members on loopback, %s, one administrator key\n\n", n, time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| phase | length | GossipSub + exchange, bytes/s per node (mean, max) |")
	fmt.Println("|---|---|---|")
	before := bytes(members)
	time.Sleep(rest)
	report("at rest", rest, before, bytes(members))

	before = bytes(members)
	start := time.Now()
	changes := 0
	for time.Since(start) < churn {
		if err := publish(); err != nil {
			return err
		}
		changes++
		time.Sleep(min(every, churn-time.Since(start)))
	}
	took := time.Since(start)
	if !all(members, version) {
		fmt.Fprintf(os.Stderr, "fedbytes: version %d had not reached every member at the end\n", version)
	}
	report(fmt.Sprintf("%d changes, one every %v", changes, every), took, before, bytes(members))
	return nil
}

func all(members []*overlay.Libp2p, version uint64) bool {
	for _, o := range members {
		m, _ := o.Membership()
		if m == nil || m.Version < version {
			return false
		}
	}
	return true
}

// bytes is each member's GossipSub and membership-exchange bytes, in and
// out, so far.
func bytes(members []*overlay.Libp2p) []int64 {
	out := make([]int64, len(members))
	for i, o := range members {
		for proto, t := range o.TrafficByProtocol() {
			if strings.Contains(proto, "meshsub") || strings.Contains(proto, "floodsub") || strings.Contains(proto, "/membership/") {
				out[i] += t.BytesIn + t.BytesOut
			}
		}
	}
	return out
}

func report(phase string, took time.Duration, before, after []int64) {
	var sum, most float64
	for i := range after {
		r := float64(after[i]-before[i]) / took.Seconds()
		sum += r
		most = max(most, r)
	}
	fmt.Printf("| %s | %v | %.1f, %.1f |\n", phase, took.Round(time.Second), sum/float64(len(after)), most)
}
