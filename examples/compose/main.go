// Command compose is the README's program: one agent composed with
// node.Build, on the embedded data plane and in-process echo functions.
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/balance"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Echo functions in-process at 10 req/s ("hello on node edge-2: ...");
	// "openfaas" takes a gateway.
	pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Node: "edge-2", Functions: map[string]dfaas.Rate{"hello": 10}})
	if err != nil {
		log.Fatal(err)
	}
	// The federation secret (see docs/operators.md) and a stable identity.
	secret, err := overlay.LoadSecret("/etc/dfaas/federation.key")
	if err != nil {
		log.Fatal(err)
	}
	key, _, err := overlay.LoadOrCreateKey("/var/lib/dfaas/node.key")
	if err != nil {
		log.Fatal(err)
	}
	n, err := node.Build(ctx, node.Config{
		Platform:  pf,
		DataPlane: "embedded", // or "haproxy", or any data plane registered with proxy.Register
		UserAddr:  ":8090", PeerAddr: ":8091",
		Advertise: "192.0.2.2:8091",  // where peers reach this node's peer port
		Balancer:  balance.Nearest{}, // the default: Resilient's shares, nearer peers first
		Libp2p: overlay.Libp2pConfig{
			ListenAddrs: []string{"/ip4/0.0.0.0/tcp/4001"},
			Bootstrap:   []string{"/ip4/192.0.2.1/tcp/4001/p2p/12D3KooW..."}, // any agent already up
			Secret:      secret,
			PrivateKey:  key,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	<-ctx.Done()
	// Leave without losing a request: stop serving, wait (at most 10 s)
	// until the peers forward elsewhere, then close.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.Shutdown(sctx)
}
