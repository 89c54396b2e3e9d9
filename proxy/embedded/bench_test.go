package embedded

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/dfaas-go/dfaas"
)

// The benchmarks time one request end to end over loopback with keep-alive,
// serially (ns/op is the latency) and in parallel (the throughput). The
// difference between Direct, Local and Forward is what the proxy adds per
// hop. Run: go test -run '^$' -bench . -benchtime 5000x ./proxy/

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
}

func benchRequests(b *testing.B, url string) {
	c := benchClient()
	defer c.CloseIdleConnections()
	call := func() {
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			call()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call()
			}
		})
	})
}

const unlimited = 1e9

// BenchmarkDirect calls the platform without a proxy: the baseline.
func BenchmarkDirect(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: &echo{name: "direct"}}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	benchRequests(b, "http://"+l.Addr().String()+"/function/figlet")
}

// BenchmarkLocal: user port, executed on this node.
func BenchmarkLocal(b *testing.B) {
	p, err := New(Config{Node: "a"}, &echo{name: "a"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.Apply(b.Context(), dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Limit: unlimited, Capacity: unlimited}}}); err != nil {
		b.Fatal(err)
	}
	benchRequests(b, "http://"+p.UserAddr()+"/function/figlet")
}

// BenchmarkForward: user port of a, forwarded to b's peer port.
func BenchmarkForward(b *testing.B) {
	pa, err := New(Config{Node: "a"}, &echo{name: "a"})
	if err != nil {
		b.Fatal(err)
	}
	defer pa.Close()
	pb, err := New(Config{Node: "b"}, &echo{name: "b"})
	if err != nil {
		b.Fatal(err)
	}
	defer pb.Close()
	ctx := b.Context()
	if err := pb.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {Capacity: unlimited}}}); err != nil {
		b.Fatal(err)
	}
	if err := pa.Apply(ctx, dfaas.Plan{Functions: map[string]dfaas.FunctionPlan{"figlet": {
		Peers: []dfaas.Share{{Node: "b", Addr: pb.PeerAddr(), Weight: 1, Cap: unlimited}}}}}); err != nil {
		b.Fatal(err)
	}
	benchRequests(b, "http://"+pa.UserAddr()+"/function/figlet")
}
