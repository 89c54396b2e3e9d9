package overlay

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dfaas-go/dfaas"
)

// FuzzDecode: whatever bytes arrive, Decode returns an error or an advert
// that is valid (plain host:port address, bounded finite rates, valid
// names), and encoding it again gives the same advert. A short run is part
// of the test suite; the long one is
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 60s ./overlay/
func FuzzDecode(f *testing.F) {
	good, _ := Encode(dfaas.Advert{Node: "n1", Seq: 1, TTL: 3 * time.Second, Addr: "10.0.0.1:8081",
		Functions: map[string]dfaas.FunctionState{"hello": {Capacity: 10, Demand: 5}}})
	f.Add(good)
	for _, addr := range []string{"127.0.0.1:1/admin/deploy#", "10.6.6.6:8080\r", "\vredir\v//evil.example", "a:1;show info",
		"10.6.6.6:notaport", "[::1]:80", "host:0", "user@host:80", "h:80?x"} {
		f.Add([]byte(`{"v":1,"node":"n1","seq":2,"ttl_ms":3000,"addr":"` + addr + `","fns":{"hello":{"cap":1,"dem":0}}}`))
	}
	f.Add([]byte(`{"v":1,"node":"n1","seq":2,"ttl_ms":3000,"addr":"h:1","fns":{"hello":{"cap":1e300,"dem":0}}}`))
	f.Add([]byte(`{"v":1,"node":"n1","seq":2,"ttl_ms":3000,"addr":"h:1","fns":{"hello":{"cap":1.7976931348623157e308,"dem":0}}}`))
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
		for name, fs := range a.Functions {
			for _, r := range []dfaas.Rate{fs.Capacity, fs.Demand} {
				if math.IsNaN(float64(r)) || r < 0 || r > dfaas.MaxRate {
					t.Fatalf("function %s: rate %v", name, r)
				}
			}
		}
		again, err := Encode(a)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		b, err := Decode(again)
		if err != nil || b.Node != a.Node || b.Seq != a.Seq || b.Addr != a.Addr || len(b.Functions) != len(a.Functions) {
			t.Fatalf("round trip: %+v %v", b, err)
		}
	})
}
