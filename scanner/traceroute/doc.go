// Package traceroute is the executor of the traceroute task type: it finds
// the routers between the worker and each in-scope destination with
// TTL-limited probes, ICMP echo (the default), UDP, or TCP SYN, as
// traceroute(8), mtr and paris-traceroute do.
//
// All TTLs of a round are sent at once, and a destination takes up to
// "queries" rounds; later rounds stop at the hop where the destination
// answered. Every probe of one destination has the same flow identifier
// (addresses, protocol, ports; for ICMP the checksum, kept constant by two
// compensating payload bytes), so that a router balancing flows over several
// paths sends every probe the same way, as paris-traceroute does. Probes are
// told apart by the IPv4 identification field, which routers quote back in
// their ICMP errors and which no load balancer hashes; ICMP echo probes carry
// the same number in their sequence field, TCP probes in their sequence
// number.
//
// Only the plan's addresses (scanner.NewPlan: targets clipped to the scope)
// are probed as destinations. The routers on the way only answer; they are
// recorded inside the destination's host record, never as records of their
// own, since they may be anyone's.
//
// Packets are built by hand and sent on one IPPROTO_RAW socket (IP_HDRINCL),
// answers are read from one raw ICMP socket (and a raw TCP socket for TCP
// probes), all pure Go: golang.org/x/net/icmp and ipv4, no cgo. Run opens
// every socket on the goroutine that calls it, before starting any other,
// so that a caller whose thread is inside a network namespace (the tests)
// traces from that namespace. IPv6 destinations are not traced yet; they
// are logged and counted as skipped.
package traceroute
