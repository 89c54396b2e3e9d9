// Package proxytest is the conformance suite of the data-plane contract
// (package proxy): the golden vectors of the pick rule, which every
// implementation of the rule must reproduce, and Run, the request
// semantics every registered data plane must show.
package proxytest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dfaas-go/dfaas"
	"github.com/dfaas-go/dfaas/proxy"
)

//go:embed testdata/pick.json
var pickJSON []byte

// PickVector is one golden vector of the pick rule: peers (named a, b, c
// ... in the plan's order) and requests arriving Every apart, and the peer
// each request goes to.
type PickVector struct {
	Name string `json:"name"`
	// Checked says how the expected sequence was established.
	Checked string `json:"checked"`
	BurstMS int    `json:"burst_ms"`
	Peers   []struct {
		Weight float64    `json:"weight"`
		Cap    dfaas.Rate `json:"cap"`
	} `json:"peers"`
	EveryUS int `json:"every_us"`
	Count   int `json:"count"`
	// Want has a letter per request: the peer it goes to, or '-' for none.
	Want string `json:"want"`
}

// PickVectors returns the golden vectors.
func PickVectors() ([]PickVector, error) {
	var vs []PickVector
	if err := json.Unmarshal(pickJSON, &vs); err != nil {
		return nil, fmt.Errorf("proxytest: pick vectors: %w", err)
	}
	return vs, nil
}

// Burst is the vector's bucket burst.
func (v PickVector) Burst() time.Duration { return time.Duration(v.BurstMS) * time.Millisecond }

// Arrival is request i's arrival after the first.
func (v PickVector) Arrival(i int) time.Duration {
	return time.Duration(i*v.EveryUS) * time.Microsecond
}

// Shares are the vector's peers as a plan's shares, named by PeerName.
func (v PickVector) Shares() []dfaas.Share {
	out := make([]dfaas.Share, len(v.Peers))
	for i, p := range v.Peers {
		out[i] = dfaas.Share{Node: dfaas.NodeID(PeerName(i)), Addr: fmt.Sprintf("127.0.0.1:%d", 1000+i), Weight: p.Weight, Cap: p.Cap}
	}
	return out
}

// PeerName is the letter of the i-th peer.
func PeerName(i int) string { return string(rune('a' + i)) }

// RunGo applies the pick rule as package proxy implements it (proxy.Pick)
// to the vector, starting at t0, and returns the letters.
func (v PickVector) RunGo(t0 time.Time) string {
	var weights []float64
	var buckets []*proxy.Bucket
	var names []string
	for i, s := range v.Shares() {
		if !proxy.Usable(s) {
			continue
		}
		weights = append(weights, s.Weight)
		buckets = append(buckets, proxy.NewBucket(s.Cap, v.Burst(), t0))
		names = append(names, PeerName(i))
	}
	p := proxy.NewPick(weights, buckets)
	var b strings.Builder
	for i := range v.Count {
		if k := p.Next(t0.Add(v.Arrival(i))); k >= 0 {
			b.WriteString(names[k])
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}
