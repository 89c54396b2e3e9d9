package overlay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dfaas-go/dfaas"
)

// WireVersion is the advert encoding this package writes and reads.
const WireVersion = 1

// MaxAdvertBytes is the largest encoded advert accepted.
const MaxAdvertBytes = 64 << 10

// wireAdvert is the JSON form of an advert, version 1. Field names are short
// because adverts go to every peer every tick.
type wireAdvert struct {
	V    int                     `json:"v"`
	Node string                  `json:"node"`
	Seq  uint64                  `json:"seq"`
	TTL  int64                   `json:"ttl_ms"`
	Addr string                  `json:"addr"`
	Fns  map[string]wireFunction `json:"fns"`
}

type wireFunction struct {
	Cap float64 `json:"cap"`
	Dem float64 `json:"dem"`
}

// Encode returns the wire form of a valid advert.
func Encode(a dfaas.Advert) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("overlay: encode: %w", err)
	}
	w := wireAdvert{V: WireVersion, Node: string(a.Node), Seq: a.Seq, TTL: a.TTL.Milliseconds(), Addr: a.Addr,
		Fns: make(map[string]wireFunction, len(a.Functions))}
	for name, f := range a.Functions {
		w.Fns[name] = wireFunction{Cap: float64(f.Capacity), Dem: float64(f.Demand)}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("overlay: encode: %w", err)
	}
	if len(b) > MaxAdvertBytes {
		return nil, fmt.Errorf("overlay: encode: %w: %d bytes over %d", dfaas.ErrInvalidAdvert, len(b), MaxAdvertBytes)
	}
	return b, nil
}

// Decode parses and validates the wire form of an advert. Errors wrap
// ErrOversized, ErrUnsupportedVersion or dfaas.ErrInvalidAdvert.
func Decode(b []byte) (dfaas.Advert, error) {
	if len(b) > MaxAdvertBytes {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: %d bytes", ErrOversized, len(b))
	}
	var w wireAdvert
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: %w", dfaas.ErrInvalidAdvert, err)
	}
	if dec.More() {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: trailing data", dfaas.ErrInvalidAdvert)
	}
	if w.V != WireVersion {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: %d", ErrUnsupportedVersion, w.V)
	}
	a := dfaas.Advert{Node: dfaas.NodeID(w.Node), Seq: w.Seq, TTL: time.Duration(w.TTL) * time.Millisecond, Addr: w.Addr,
		Functions: make(map[string]dfaas.FunctionState, len(w.Fns))}
	for name, f := range w.Fns {
		a.Functions[name] = dfaas.FunctionState{Capacity: dfaas.Rate(f.Cap), Demand: dfaas.Rate(f.Dem)}
	}
	if err := a.Validate(); err != nil {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w", err)
	}
	return a, nil
}
