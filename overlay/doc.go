// Package overlay holds Overlay implementations: Libp2p, the production
// overlay (Kademlia DHT rendezvous for discovery, neighbourhoods: each node
// follows its nearest peers' adverts on direct streams, probes and
// connection events for membership), and Network, an in-memory overlay with
// the same neighbourhoods and Connect, Disconnect and Partition for tests and
// simulation. docs/control-traffic.md argues the design.
//
// Both speak the same versioned wire format (Encode, Decode) and keep peer
// adverts in the same Table, so an advert is validated, deduplicated and
// expired identically whichever carries it.
package overlay
