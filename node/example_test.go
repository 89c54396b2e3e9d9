package node_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/node"
	"github.com/dfaas-go/dfaas/overlay"
)

// Two nodes of a closed federation on loopback: "a" does not serve hello,
// so its user port forwards to "b" over TLS bound to b's identity.
func ExampleBuild() {
	ctx := context.Background()
	secret := make([]byte, overlay.SecretBytes) // in production: overlay.LoadSecret
	var bootstrap []string
	start := func(name string, capacity dfaas.Rate) *node.Node {
		pf, err := node.OpenPlatform(ctx, "runtime", node.PlatformSpec{Node: name, Functions: serving(capacity)})
		if err != nil {
			log.Fatal(err)
		}
		n, err := node.Build(ctx, node.Config{Platform: pf, Interval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Libp2p: overlay.Libp2pConfig{Secret: secret, Bootstrap: bootstrap, DiscoveryInterval: 200 * time.Millisecond}})
		if err != nil {
			log.Fatal(err)
		}
		bootstrap = n.Overlay.(*overlay.Libp2p).Addrs()
		return n
	}
	a := start("a", 0)
	defer a.Close()
	b := start("b", 10)
	defer b.Close()

	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Post("http://"+a.DataPlane.UserAddr()+"/function/hello", "text/plain", strings.NewReader("world"))
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Println(string(body))
			break
		}
	}
	http.DefaultClient.CloseIdleConnections()
	// Output: hello on node b: world
}

// serving is the functions of a node: hello at most capacity req/s, or
// none for 0.
func serving(capacity dfaas.Rate) map[string]dfaas.Rate {
	if capacity == 0 {
		return nil
	}
	return map[string]dfaas.Rate{"hello": capacity}
}
