package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/embedded"
	"github.com/dfaas-go/dfaas/proxy/haproxy"
)

// bench is one node under measure: its data plane (HAProxy's driver too,
// when it is HAProxy) in front of a platform, and its peers' stand-ins.
type bench struct {
	dp       proxy.DataPlane
	ha       *haproxy.Driver // nil on the embedded data plane
	userAddr string
	peerAddr string
	peers    []*peerStub
	closers  []func() error
}

// Close stops the data plane, the peers and the platform it started.
func (b *bench) Close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	return errors.Join(errs...)
}

// shares is a plan's shares to every peer, weighed alike, at cap each.
func (b *bench) shares(cap dfaas.Rate) []dfaas.Share {
	out := make([]dfaas.Share, len(b.peers))
	for i, p := range b.peers {
		out[i] = dfaas.Share{Node: peerID(i), Addr: p.ln.Addr().String(), Weight: 1 / float64(len(b.peers)), Cap: cap}
	}
	return out
}

// peerID is the i-th peer stand-in's node id.
func peerID(i int) dfaas.NodeID { return dfaas.NodeID(fmt.Sprintf("peer-%02d", i)) }

// okPlatform answers every call "ok" after reading its body; calls, if
// set, counts them.
func okPlatform(calls func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls != nil {
			calls()
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
}

// startBench starts a node of plane in front of platform, with peers
// stand-ins. platformAddr is where the platform already listens (HAProxy
// reaches it there); if empty, the platform is served on loopback here.
func startBench(plane string, platform http.Handler, platformAddr string, peers int) (_ *bench, err error) {
	b := &bench{}
	defer func() {
		if err != nil {
			_ = b.Close()
		}
	}()
	for range peers {
		p, err := startPeer()
		if err != nil {
			return nil, err
		}
		b.peers = append(b.peers, p)
		b.closers = append(b.closers, p.srv.Close)
	}
	if platformAddr == "" {
		srv := &http.Server{Handler: platform, ReadHeaderTimeout: 5 * time.Second}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go func() { _ = srv.Serve(l) }()
		b.closers = append(b.closers, srv.Close)
		platformAddr = l.Addr().String()
	}
	addrs, err := freeAddrs(2)
	if err != nil {
		return nil, err
	}
	b.userAddr, b.peerAddr = addrs[0], addrs[1]
	quiet := slog.New(slog.DiscardHandler)
	switch plane {
	case "embedded":
		if b.dp, err = embedded.New(embedded.Config{Node: "a", UserAddr: addrs[0], PeerAddr: addrs[1], Logger: quiet}, platform); err != nil {
			return nil, err
		}
	case "haproxy":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if b.ha, err = haproxy.Start(ctx, haproxy.Config{Node: "a", UserAddr: addrs[0], PeerAddr: addrs[1], Platform: platformAddr, Logger: quiet}); err != nil {
			return nil, err
		}
		b.dp = b.ha
	default:
		return nil, fmt.Errorf("unknown data plane %q", plane)
	}
	b.closers = append(b.closers, b.dp.Close)
	return b, nil
}
