// Package synscan is the executor of the synscan task type: a stateless
// TCP SYN scanner on raw sockets, designed as masscan and zmap are (and as
// mrpf's engine). It requires raw_sockets, so it runs in the baremetal
// pool, and fails with a message naming CAP_NET_RAW where it cannot open
// them.
//
// Scope first: the addresses come only from scanner.NewPlan, which clips
// the targets to the task's scope and excludes; every reply is checked with
// Plan.Contains before it counts. Out-of-scope targets are logged and
// counted in the task's output ("out_of_scope"), never touched.
//
// Sending. Probes (addresses × ports) are numbered and visited in the
// order of a keyed Feistel permutation of the index space, so that
// consecutive probes go to unrelated hosts and ports. A probe is a copy of
// a template built once with gopacket, patched with the destination, the
// source port, the sequence number and the checksums (about fifteen times faster
// than serializing each probe: BenchmarkProbe). The route to the targets
// is the kernel's (netlink RTM_GETROUTE), as is the next hop's MAC (the
// neighbour table; when it has none, a UDP datagram to a scanned address
// makes the kernel resolve it). When every target leaves through one
// Ethernet interface to one next hop, frames go out on an AF_PACKET socket
// with PACKET_QDISC_BYPASS, in batches of up to 256 per sendmmsg(2);
// otherwise (several on-link hosts, addresses of this host, interfaces
// without Ethernet) IP packets go out on a raw IP socket (IPPROTO_RAW) and
// the kernel routes each. A token bucket holds the rate ("rate", probes per
// second), shared by "senders" sending goroutines (by default one per
// CPU: on a veth the whole round trip of a probe runs in its sender's
// system call).
//
// Receiving. One AF_PACKET SOCK_DGRAM socket with a TPACKET_V3 ring
// (gopacket/afpacket, pure Go) and a classic BPF filter (replyFilter,
// golang.org/x/net/bpf) sees only TCP SYN-ACKs and resets to the scan's
// 256 source ports and ICMP destination-unreachable errors. Nothing is
// remembered per probe: the sequence number is the low half of a SipHash
// of the target address and port under a per-scan random key, and its
// high half picks the source port, so a reply is ours exactly when its
// acknowledgment minus one and its destination port match the hash of its
// source. A bitmap of answered probes (scans up to 2^30 probes) lets a
// retry pass resend only the unanswered ("retries") and ends the wait for
// late replies ("wait") as soon as every probe is answered.
//
// Half-open connections. The source ports are chosen outside the kernel's
// ephemeral range (ip_local_port_range), so no local socket owns them and
// the scanning host's kernel answers every SYN-ACK with a reset, which
// closes the half-open connection on the target: no firewall rule, no
// spare source address as masscan needs. Where a host firewall drops
// unsolicited SYN-ACKs before TCP sees them, "send_rst" makes the scanner
// send the reset itself.
//
// Results: a service record {ip, port, proto tcp, state open} per open
// port, a host record {ip, state up} per host with an open port. The
// output counts, for the closed set of service states, open (SYN-ACK),
// closed (reset), filtered (an ICMP unreachable quoting the probe),
// timeout (no answer after every retry; nmap calls this filtered) and
// out-of-scope (targets refused), beside hosts_up, probes sent, packets
// received, replies from outside the plan and the send rate.
package synscan
