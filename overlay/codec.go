package overlay

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/dfaas-go/dfaas"
)

// WireVersion is the advert encoding this package writes and reads: the
// first byte of every encoded advert.
//
// Version 3 is binary, written in one canonical order (names sorted), so
// that equal adverts encode to equal bytes:
//
//	byte     version (3)
//	string   node
//	string   name (may be empty)
//	uvarint  seq
//	uvarint  ttl in ms
//	string   addr
//	uvarint  count of functions, then per function, names ascending:
//	         string name, rate capacity, rate demand
//	uvarint  count of peers named by flows, then each: string node (ascending;
//	         every one named by some flow)
//	uvarint  count of functions with traffic, then per function, names ascending:
//	         string name, rate served, rate rejected,
//	         uvarint count of flows, then per flow: uvarint peer index, rate
//
// A uvarint is in its shortest form; a string is a uvarint length and its
// bytes; a rate is a uvarint count of thousandths of a request per second,
// so a decoded rate is the encoded one rounded to 0.001 req/s. A TTL is
// truncated to the millisecond. Version 2 is version 3 without the name:
// Encode writes it for an advert without a name, and Decode reads both.
// Nodes of version 2 count adverts of version 3 as unsupported
// (ErrUnsupportedVersion) and stop following a node that sends them, so a
// federation upgrades its nodes before it names them (-name), or hears only
// part of itself meanwhile. Version 1 was JSON; a byte '{' first is reported as
// unsupported.
const WireVersion = 3

// wireVersionNoName is the previous version, still read.
const wireVersionNoName = 2

// MaxAdvertBytes is the largest encoded advert accepted.
const MaxAdvertBytes = 64 << 10

// rateScale is how many encoded units make one request per second.
const rateScale = 1000

// Encode returns the wire form of a valid advert.
func Encode(a dfaas.Advert) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("overlay: encode: %w", err)
	}
	b := make([]byte, 0, 96+32*len(a.Functions))
	// Without a name, version 2: nodes not upgraded yet read it (they ban
	// a peer whose adverts they cannot read).
	if a.Name == "" {
		b = append(b, wireVersionNoName)
		b = appendString(b, string(a.Node))
	} else {
		b = append(b, WireVersion)
		b = appendString(b, string(a.Node))
		b = appendString(b, a.Name)
	}
	b = binary.AppendUvarint(b, a.Seq)
	b = binary.AppendUvarint(b, uint64(a.TTL.Milliseconds()))
	b = appendString(b, a.Addr)
	b = binary.AppendUvarint(b, uint64(len(a.Functions)))
	for _, name := range slices.Sorted(maps.Keys(a.Functions)) {
		f := a.Functions[name]
		b = appendString(b, name)
		b = appendRate(b, f.Capacity)
		b = appendRate(b, f.Demand)
	}
	index := map[dfaas.NodeID]uint64{}
	for _, t := range a.Traffic {
		for peer := range t.Forwarded {
			index[peer] = 0
		}
	}
	peers := slices.Sorted(maps.Keys(index))
	b = binary.AppendUvarint(b, uint64(len(peers)))
	for i, p := range peers {
		index[p] = uint64(i)
		b = appendString(b, string(p))
	}
	b = binary.AppendUvarint(b, uint64(len(a.Traffic)))
	for _, name := range slices.Sorted(maps.Keys(a.Traffic)) {
		t := a.Traffic[name]
		b = appendString(b, name)
		b = appendRate(b, t.Served)
		b = appendRate(b, t.Rejected)
		b = binary.AppendUvarint(b, uint64(len(t.Forwarded)))
		for _, p := range slices.Sorted(maps.Keys(t.Forwarded)) {
			b = binary.AppendUvarint(b, index[p])
			b = appendRate(b, t.Forwarded[p])
		}
	}
	if len(b) > MaxAdvertBytes {
		return nil, fmt.Errorf("overlay: encode: %w: %d bytes over %d", dfaas.ErrInvalidAdvert, len(b), MaxAdvertBytes)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendRate(b []byte, r dfaas.Rate) []byte {
	return binary.AppendUvarint(b, uint64(math.Round(float64(r)*rateScale)))
}

// Decode parses and validates the wire form of an advert. Errors wrap
// ErrOversized, ErrUnsupportedVersion or dfaas.ErrInvalidAdvert.
func Decode(raw []byte) (dfaas.Advert, error) {
	if len(raw) > MaxAdvertBytes {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: %d bytes", ErrOversized, len(raw))
	}
	if len(raw) == 0 {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: empty", dfaas.ErrInvalidAdvert)
	}
	if raw[0] != WireVersion && raw[0] != wireVersionNoName {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: %d", ErrUnsupportedVersion, raw[0])
	}
	r := reader{b: raw[1:]}
	a := dfaas.Advert{Node: dfaas.NodeID(r.string())}
	if raw[0] == WireVersion {
		a.Name = r.string()
	}
	a.Seq = r.uvarint()
	ttl := r.uvarint()
	if ttl > uint64(dfaas.MaxAdvertTTL.Milliseconds()) {
		r.fail("ttl of %d ms", ttl)
	}
	a.TTL = time.Duration(ttl) * time.Millisecond
	a.Addr = r.string()
	var last string // the previous key of the list being read
	if n := r.count(dfaas.MaxAdvertFunctions); n > 0 {
		a.Functions = make(map[string]dfaas.FunctionState, n)
		for i := range n {
			name := r.string()
			r.ascending(i, name, &last)
			a.Functions[name] = dfaas.FunctionState{Capacity: r.rate(), Demand: r.rate()}
		}
	}
	// Every peer listed is some flow's: at most MaxAdvertFlows, each a
	// valid id, and each used (checked at the end).
	peers := make([]dfaas.NodeID, r.count(dfaas.MaxAdvertFlows))
	for i := range peers {
		peers[i] = dfaas.NodeID(r.string())
		r.ascending(i, string(peers[i]), &last)
		if err := dfaas.ValidateNodeID(peers[i]); err != nil && r.err == nil {
			r.fail("peer %d: %v", i, err)
		}
	}
	used := make([]bool, len(peers))
	if n := r.count(dfaas.MaxAdvertFunctions); n > 0 {
		a.Traffic = make(map[string]dfaas.Traffic, n)
		for i := range n {
			name := r.string()
			r.ascending(i, name, &last)
			var lastFlow string
			t := dfaas.Traffic{Served: r.rate(), Rejected: r.rate()}
			if m := r.count(dfaas.MaxAdvertFlows); m > 0 {
				t.Forwarded = make(map[dfaas.NodeID]dfaas.Rate, m)
				for j := range m {
					p := r.uvarint()
					if p >= uint64(len(peers)) {
						r.fail("flow to peer %d of %d", p, len(peers))
						break
					}
					r.ascending(j, string(peers[p]), &lastFlow)
					used[p] = true
					t.Forwarded[peers[p]] = r.rate()
				}
			}
			a.Traffic[name] = t
		}
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d bytes of trailing data", len(r.b))
	}
	if i := slices.Index(used, false); i >= 0 && r.err == nil {
		r.fail("peer %d named by no flow", i)
	}
	if r.err != nil {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w: %w", dfaas.ErrInvalidAdvert, r.err)
	}
	if err := a.Validate(); err != nil {
		return dfaas.Advert{}, fmt.Errorf("overlay: decode: %w", err)
	}
	return a, nil
}

// reader consumes an encoded advert. After the first error every read
// returns a zero value and the error stays.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("truncated or overlong integer")
		return 0
	}
	if n > 1 && r.b[n-1] == 0 {
		r.fail("integer not in its shortest form") // one encoding per advert
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of at most limit items; each takes at least a byte,
// so a count beyond the bytes left is an error before any allocation.
func (r *reader) count(limit int) int {
	n := r.uvarint()
	if n > uint64(limit) || n > uint64(len(r.b)) {
		r.fail("count %d over its bound", n)
		return 0
	}
	return int(n)
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("string of %d bytes with %d left", n, len(r.b))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// ascending checks that key, the i-th of a list, comes after the one
// before it (last), so that each advert has one encoding and no key twice.
func (r *reader) ascending(i int, key string, last *string) {
	if i > 0 && key <= *last {
		r.fail("%q out of order or twice", key)
	}
	*last = key
}

func (r *reader) rate() dfaas.Rate {
	v := r.uvarint()
	if v > uint64(dfaas.MaxRate)*rateScale {
		r.fail("rate over %v", dfaas.MaxRate)
		return 0
	}
	return dfaas.Rate(float64(v) / rateScale)
}
