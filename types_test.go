package dfaas

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestValidateAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8081", "[::1]:1", "edge-1.example.org:65535", "node7:80"} {
		assert.NoError(t, ValidateAddr(ok), ok)
	}
	for _, bad := range []string{"", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:080", "127.0.0.1:+80",
		"127.0.0.1:P/admin/deploy#", "127.0.0.1:8080/admin", "10.6.6.6:8080\r", "\vredir\v//evil.example", "10.6.6.6:notaport",
		"a;b:80", "user@host:80", "host name:80", "[fe80::1%eth0]:80", "-x.org:80", "x-.org:80", "a..b:80", "host:80?q", "%41:80",
		"0.0.0.0:8081", "[::]:8081", "[0:0::0]:80"} { // an unspecified address reaches nobody
		assert.ErrorIs(t, ValidateAddr(bad), ErrInvalidAddr, "%q", bad)
	}
}

// TestAdvertValidateRefusesHostileFields: addresses that are more than a
// host:port and absurd rates are refused.
func TestAdvertValidateRefusesHostileFields(t *testing.T) {
	good := Advert{Node: "n", Seq: 1, TTL: time.Second, Addr: "127.0.0.1:8081",
		Functions: map[string]FunctionState{"f": {Capacity: 10, Demand: 3}}}
	assert.NoError(t, good.Validate())
	for _, addr := range []string{"127.0.0.1:1/admin/deploy#", "10.6.6.6:8080\r", "\vredir\v//evil.example", "10.6.6.6:notaport"} {
		a := good
		a.Addr = addr
		assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "%q", addr)
	}
	for _, r := range []Rate{1e300, math.MaxFloat64, Rate(math.Inf(1)), Rate(math.NaN()), -1, MaxRate * 2} {
		a := good
		a.Functions = map[string]FunctionState{"f": {Capacity: r}}
		assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "capacity %v", r)
		a.Functions = map[string]FunctionState{"f": {Capacity: 1, Demand: r}}
		assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "demand %v", r)
	}
	a := good
	a.Functions = map[string]FunctionState{"f": {Capacity: MaxRate, Demand: MaxRate}}
	assert.NoError(t, a.Validate(), "the bound itself is allowed")

	// Traffic: the same bounds on rates and names, and a bounded count of
	// flows to well-formed peers.
	flows := func(n int) map[NodeID]Rate {
		m := map[NodeID]Rate{}
		for i := range n {
			m[NodeID(fmt.Sprint("p", i))] = 1
		}
		return m
	}
	for name, tr := range map[string]map[string]Traffic{
		"negative served":   {"f": {Served: -1}},
		"NaN rejected":      {"f": {Rejected: Rate(math.NaN())}},
		"bad function name": {"F/x": {Served: 1}},
		"infinite flow":     {"f": {Forwarded: map[NodeID]Rate{"p": Rate(math.Inf(1))}}},
		"flow to no one":    {"f": {Forwarded: map[NodeID]Rate{"": 1}}},
		"too many flows":    {"f": {Forwarded: flows(MaxAdvertFlows + 1)}},
		"too many in all":   {"f": {Forwarded: flows(MaxAdvertFlows)}, "g": {Forwarded: map[NodeID]Rate{"x": 1}}},
		"flow to markup":    {"f": {Forwarded: map[NodeID]Rate{"<b> x": 1}}},
	} {
		a := good
		a.Traffic = tr
		assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, name)
	}
	a = good
	a.Traffic = map[string]Traffic{"f": {Served: MaxRate, Rejected: 0, Forwarded: flows(MaxAdvertFlows)}}
	assert.NoError(t, a.Validate())

	for _, id := range []NodeID{"", "a b", "tab\t", "é", NodeID(strings.Repeat("x", 129))} {
		a := good
		a.Node = id
		assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "node id %q", id)
	}
	for _, name := range []string{"a b", "<script>", `"q"`, "é", "new\nline", "a=b", strings.Repeat("x", MaxNodeNameLen+1)} {
		a := good
		a.Name = name
		assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "node name %q", name)
	}
	for _, name := range []string{"", "edge-rome-1", "host.example.org", "N_2", strings.Repeat("x", MaxNodeNameLen)} {
		a := good
		a.Name = name
		assert.NoError(t, a.Validate(), "node name %q", name)
	}
	a = good
	a.Node = "12D3KooWETikQQcLWqf7vWTJg4bnKQKTCZneMKq6s91HvJ3FK3Zb"
	assert.NoError(t, a.Validate(), "a libp2p peer id")
	a.TTL = time.Microsecond
	assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "a ttl the wire cannot carry")
	a.TTL = MaxAdvertTTL
	assert.NoError(t, a.Validate(), "the longest ttl")
	a.TTL = MaxAdvertTTL + time.Millisecond
	assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "a ttl past the bound: an advert that outlives its node")

	// The table and the in-memory overlay take Validate's word for the
	// number of functions (the libp2p decoder checks it too).
	many := func(n int) map[string]FunctionState {
		m := make(map[string]FunctionState, n)
		for i := range n {
			m[fmt.Sprint("f", i)] = FunctionState{Capacity: 1}
		}
		return m
	}
	a = good
	a.Functions = many(MaxAdvertFunctions)
	assert.NoError(t, a.Validate(), "the most functions")
	a.Functions = many(MaxAdvertFunctions + 1)
	assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "one function too many")
	a.Functions = good.Functions
	a.Traffic = map[string]Traffic{}
	for name := range many(MaxAdvertFunctions + 1) {
		a.Traffic[name] = Traffic{Served: 1}
	}
	assert.ErrorIs(t, a.Validate(), ErrInvalidAdvert, "traffic of one function too many")
}
