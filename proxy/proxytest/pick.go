// Package proxytest is the conformance suite of the data-plane contract
// (package proxy): the golden vectors of the pick rule, which every
// implementation of the rule must reproduce, and Run, the request
// semantics every registered data plane must show.
package proxytest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
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
	// Replans, if any, replace the plan before request At with the same
	// peers and caps at new Weights (rule 4: the round robin goes on).
	Replans []Replan `json:"replans,omitempty"`
	// Want has a letter per request: the peer it goes to, or '-' for none.
	Want string `json:"want"`
}

// Replan is a new plan within a vector: the peers' weights from request
// At on.
type Replan struct {
	At      int       `json:"at"`
	Weights []float64 `json:"weights"`
}

// SharesAt are the vector's shares for request i: the weights of the
// latest replan at or before it.
func (v PickVector) SharesAt(i int) []dfaas.Share {
	out := v.Shares()
	for _, rp := range v.Replans {
		if rp.At <= i && len(rp.Weights) == len(out) {
			for k := range out {
				out[k].Weight = rp.Weights[k]
			}
		}
	}
	return out
}

// ReplanAt reports whether a replan takes effect at request i.
func (v PickVector) ReplanAt(i int) bool {
	for _, rp := range v.Replans {
		if rp.At == i {
			return true
		}
	}
	return false
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
	all := map[string]*proxy.Bucket{} // buckets outlive plans
	build := func(i int, prev *proxy.Pick, prevNames []string) (*proxy.Pick, []string) {
		var weights []float64
		var buckets []*proxy.Bucket
		var ns []string
		for k, s := range v.SharesAt(i) {
			if !proxy.Usable(s) {
				continue
			}
			b, ok := all[PeerName(k)]
			if !ok {
				b = proxy.NewBucket(s.Cap, v.Burst(), t0)
				all[PeerName(k)] = b
			}
			weights, buckets, ns = append(weights, s.Weight), append(buckets, b), append(ns, PeerName(k))
		}
		p := proxy.NewPick(weights, buckets)
		prevIndex := make([]int, len(ns))
		for k, n := range ns {
			prevIndex[k] = slices.Index(prevNames, n)
		}
		p.Resume(prev, prevIndex)
		return p, ns
	}
	p, names := build(0, nil, nil)
	var b strings.Builder
	for i := range v.Count {
		if i > 0 && v.ReplanAt(i) {
			p, names = build(i, p, names)
		}
		if k := p.Next(t0.Add(v.Arrival(i))); k >= 0 {
			b.WriteString(names[k])
		} else {
			b.WriteByte('-')
		}
	}
	return b.String()
}
