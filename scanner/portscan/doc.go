// Package portscan is the executor of the portscan task type: a TCP connect
// scan that needs no privileges, so it runs in the external pool.
//
// The targets are expanded by scanner.NewPlan, which resolves names and
// checks every address against the task's scope: an address outside it is
// never dialed, only reported in the task's output. Probes visit the plan
// port-major (every host on the likeliest port, then every host on the
// next), so that no host takes the whole concurrency at once, and they are
// bounded by a global rate, a per-host rate, a per-host concurrency and a
// global concurrency kept below the process's file limit.
//
// Every probe ends in exactly one Status, the closed set of zgrab2's
// module statuses narrowed to a connect scan; StatusOf maps a dial error to
// it. Open ports get a banner grab and a light service guess: the first
// bytes the server sends (SSH, FTP, SMTP, POP3, IMAP, MySQL, Redis, VNC,
// telnet), else a TLS handshake, else an HTTP request. Closed, filtered
// and timed-out probes are counted, not emitted, unless emit_closed asks
// for them.
//
// On Linux the connects are non-blocking sockets waited on with one epoll
// instance, which scans all 65535 ports of loopback in 0.5 to 0.9 of the
// time nmap -sT takes (BenchmarkPortscanVsNmap on a busy 2-core machine;
// net.Dialer was 1.4 times slower than nmap there); elsewhere they go
// through net.Dialer. A socket that connected closes with SO_LINGER 0, so
// a scan leaves no TIME_WAIT behind. The tests, which read kernel socket
// state, run on Linux only.
package portscan
