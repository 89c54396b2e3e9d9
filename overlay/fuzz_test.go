package overlay

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas"
)

// FuzzDecode: whatever bytes arrive, Decode returns an error or an advert
// that is valid (plain host:port address, bounded finite rates, valid
// names), and encoding it again gives the same bytes: each advert has one
// encoding. A short run is part
// of the test suite; the long one is
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./overlay/
func FuzzDecode(f *testing.F) {
	good, _ := Encode(dfaas.Advert{Node: "n1", Name: "edge-1", Seq: 1, TTL: 3 * time.Second, Addr: "10.0.0.1:8081",
		Functions: map[string]dfaas.FunctionState{"hello": {Capacity: 10, Demand: 5}},
		Traffic:   map[string]dfaas.Traffic{"hello": {Served: 4, Rejected: 1, Forwarded: map[dfaas.NodeID]dfaas.Rate{"n2": 3}}}})
	f.Add(good)
	v := wire{WireVersion}
	for _, addr := range []string{"127.0.0.1:1/admin/deploy#", "10.6.6.6:8080\r", "\vredir\v//evil.example", "a:1;show info",
		"10.6.6.6:notaport", "[::1]:80", "host:0", "user@host:80", "h:80?x"} {
		f.Add([]byte(v.s("n1").s("edge-1").u(2).u(3000).s(addr).u(1).s("hello").u(1000).u(0).u(0).u(0)))
	}
	f.Add([]byte(v.head(1).s("hello").u(1 << 62).u(0).u(0).u(0)))
	f.Add([]byte(v.head(0).u(1).s("n2").u(1).s("hello").u(0).u(0).u(1).u(7).u(5)))
	f.Add([]byte(`{"v":1,"node":"n1","seq":2,"ttl_ms":3000,"addr":"h:1","fns":{"hello":{"cap":1,"dem":0}}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := Decode(raw)
		if err != nil {
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("decoded an invalid advert: %v", err)
		}
		if strings.ContainsAny(a.Addr, " \t\r\n\v\f/#?;@\\\"'") {
			t.Fatalf("address %q carries a separator", a.Addr)
		}
		rates := []dfaas.Rate{}
		for _, fs := range a.Functions {
			rates = append(rates, fs.Capacity, fs.Demand)
		}
		for _, tr := range a.Traffic {
			rates = append(rates, tr.Served, tr.Rejected)
			for _, r := range tr.Forwarded {
				rates = append(rates, r)
			}
		}
		for _, r := range rates {
			if math.IsNaN(float64(r)) || r < 0 || r > dfaas.MaxRate {
				t.Fatalf("rate %v", r)
			}
		}
		again, err := Encode(a)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, raw) {
			t.Fatalf("an accepted advert has a second encoding:\n%x\n%x", raw, again)
		}
	})
}
