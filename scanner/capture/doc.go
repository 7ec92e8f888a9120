// Package capture is the executor of the capture task type: it records the
// packets seen on one interface of the worker into a pcap file, stored as
// the task's artifact capture.pcap, as tcpdump -w does.
//
// A capture sends nothing. With scope_only (the default) it keeps only IP
// packets from or to an address of the task's targets clipped to the scope
// (scanner.NewPlan; names are not resolved), so that a capture on a shared
// link does not record other people's traffic.
//
// The filter is tcpdump's syntax, restricted to what filter.go lists
// (host, net, port, protocols, and comparisons on packet bytes such as
// tcp[tcpflags] & tcp-syn != 0 or len > 1000), and is
// compiled to classic BPF here, in pure Go: libpcap's compiler needs cgo,
// and shelling out to tcpdump -ddd would make the result depend on whether
// and which tcpdump a worker has. A program compiled elsewhere can be given
// as raw BPF in tcpdump -ddd's format instead. The program runs in the
// kernel, on an AF_PACKET socket with a TPACKET_V2 ring
// (github.com/gopacket/gopacket/afpacket, pure Go); the pcap is written with
// gopacket's pcapgo to a temporary file and streamed to the store from
// there, so memory stays small however large the capture.
//
// A capture ends at the first of: count packets, max_bytes of pcap, the
// duration, or a cancel; its output says which (stop_reason), with the
// packets and bytes written and the packets the kernel dropped.
//
// Run opens its socket on the goroutine that calls it, so a caller whose
// thread is inside a network namespace (the tests) captures there.
package capture
