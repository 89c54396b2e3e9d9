package haproxy

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
	"github.com/dfaas-go/dfaas/proxy/embedded"
)

// BenchmarkHop measures, side by side in one run, what one local hop and one
// forwarded hop cost through the embedded proxy and through HAProxy, in
// front of the same platform over loopback: latency quantiles of serial
// requests and the throughput of 32 concurrent clients. Run:
//
//	go test -run '^$' -bench Hop -benchtime 3000x ./proxy/haproxy/
func BenchmarkHop(b *testing.B) {
	pf := newPlatform(b, "p")
	unlimited := dfaas.FunctionPlan{Limit: 1e6, Capacity: 1e6}
	b.Run("direct", func(b *testing.B) { measure(b, "http://"+pf.addr+"/function/figlet") })

	// The embedded proxy reaches the platform over TCP, as HAProxy does.
	target, _ := url.Parse("http://" + pf.addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	quiet := slog.New(slog.DiscardHandler)
	ea, err := embedded.New(embedded.Config{Node: "a", Logger: quiet}, rp)
	if err != nil {
		b.Fatal(err)
	}
	defer ea.Close()
	eb, err := embedded.New(embedded.Config{Node: "b", Logger: quiet}, rp)
	if err != nil {
		b.Fatal(err)
	}
	defer eb.Close()
	ctx := context.Background()
	_ = eb.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}})
	_ = ea.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}})
	b.Run("embedded/local", func(b *testing.B) { measure(b, "http://"+ea.UserAddr()+"/function/figlet") })
	_ = ea.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: eb.PeerAddr(), Weight: 1, Cap: 1e6}}}}})
	b.Run("embedded/forward", func(b *testing.B) { measure(b, "http://"+ea.UserAddr()+"/function/figlet") })

	ha, err := Start(ctx, Config{Node: "a", UserAddr: freeAddr(b), PeerAddr: freeAddr(b), Platform: pf.addr, Functions: []string{"figlet"}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer ha.Close()
	hb, err := Start(ctx, Config{Node: "b", UserAddr: freeAddr(b), PeerAddr: freeAddr(b), Platform: pf.addr, Functions: []string{"figlet"}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer hb.Close()
	_ = hb.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}})
	_ = ha.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}})
	b.Run("haproxy/local", func(b *testing.B) { measure(b, "http://"+ha.UserAddr()+"/function/figlet") })
	_ = ha.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: "b", Addr: hb.PeerAddr(), Weight: 1, Cap: 1e6}}}}})
	b.Run("haproxy/forward", func(b *testing.B) { measure(b, "http://"+ha.UserAddr()+"/function/figlet") })

	// The same forwarded hops over the federation's TLS (the default).
	ta, tb := benchTLS(b), benchTLS(b)
	members := func() []dfaas.NodeID { return []dfaas.NodeID{ta.Identity.Node(), tb.Identity.Node()} }
	ta.Members, tb.Members = members, members
	eta, err := embedded.New(embedded.Config{Node: ta.Identity.Node(), TLS: ta, Logger: quiet}, rp)
	if err != nil {
		b.Fatal(err)
	}
	defer eta.Close()
	etb, err := embedded.New(embedded.Config{Node: tb.Identity.Node(), TLS: tb, Logger: quiet}, rp)
	if err != nil {
		b.Fatal(err)
	}
	defer etb.Close()
	_ = etb.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}})
	_ = eta.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: tb.Identity.Node(), Addr: etb.PeerAddr(), Weight: 1, Cap: 1e6}}}}})
	b.Run("embedded/forward-tls", func(b *testing.B) { measure(b, "http://"+eta.UserAddr()+"/function/figlet") })
	hta, err := Start(ctx, Config{Node: ta.Identity.Node(), UserAddr: freeAddr(b), PeerAddr: freeAddr(b), Platform: pf.addr, Functions: []string{"figlet"}, TLS: ta, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer hta.Close()
	htb, err := Start(ctx, Config{Node: tb.Identity.Node(), UserAddr: freeAddr(b), PeerAddr: freeAddr(b), Platform: pf.addr, Functions: []string{"figlet"}, TLS: tb, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer htb.Close()
	_ = htb.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": unlimited}})
	_ = hta.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Peers: []dfaas.Share{{Node: tb.Identity.Node(), Addr: htb.PeerAddr(), Weight: 1, Cap: 1e6}}}}})
	b.Run("haproxy/forward-tls", func(b *testing.B) { measure(b, "http://"+hta.UserAddr()+"/function/figlet") })
}

// benchTLS is a fresh node identity, its Members left to the caller.
func benchTLS(b testing.TB) *proxy.TLS {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	id, err := proxy.NewIdentity(k)
	if err != nil {
		b.Fatal(err)
	}
	return &proxy.TLS{Identity: id}
}

// measure reports p50 and p99 of b.N serial requests, then the req/s of 32
// clients sending b.N requests in all.
func measure(b *testing.B, url string) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	defer c.CloseIdleConnections()
	call := func() {
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for range 50 {
		call() // warm the connections
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		call()
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")

	var wg sync.WaitGroup
	next := make(chan struct{}, b.N)
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				call()
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
