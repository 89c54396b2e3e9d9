// Package overlay holds Overlay implementations: Libp2p, the production
// overlay (Kademlia DHT rendezvous for discovery, GossipSub for adverts,
// connection events for membership), and Network, an in-memory overlay with
// Connect, Disconnect and Partition for tests and simulation.
//
// Both speak the same versioned wire format (Encode, Decode) and keep peer
// adverts in the same Table, so an advert is validated, deduplicated and
// expired identically whichever carries it.
package overlay
