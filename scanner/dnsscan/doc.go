// Package dnsscan is the executor of the dns task type: it resolves the
// names of a workspace, brute-forces their subdomains and tries zone
// transfers, and emits what it finds as domain and host records.
//
// # Targets
//
// A target that is a name ("example.com", or the host of "example.com:443"
// or of a URL) is resolved if the scope contains it. A wildcard target
// "*.example.com" stands for its zone, example.com: the names below it are
// brute-forced and its nameservers asked for a transfer; the apex itself is
// asked for its nameservers unless the scope excludes it, and its own
// records are reported only if the scope contains it. Addresses and CIDR
// prefixes are not names and are skipped with a log line.
//
// # Scope
//
// A name outside the scope is never queried: not a target, not a brute-force
// candidate, not the target of a CNAME, MX or NS record, not a name from a
// zone transfer. Such names still appear as fields of the in-scope record
// that pointed at them, and are counted under out_of_scope. A name in scope
// that resolves to an address outside it is reported as a domain record
// with out_of_scope set to true and the addresses listed in
// out_of_scope_ips; no host record is emitted for those addresses and
// nothing is sent to them. A zone transfer is tried only against a
// nameserver whose name and address are both in scope, since it is a
// connection to that server.
//
// # Records
//
// A domain record carries name, ips, and when present cname, mx (hosts in
// order of preference), ns, txt, source (target, brute, cname, mx, ns or
// axfr) and the out_of_scope fields above. A host record carries an
// in-scope address and the hostnames that resolved to it; it is emitted
// again, with the longer list, whenever another name resolves to it.
//
// # Parameters
//
//   - resolvers (list of host:port): the servers queried, in turn; default
//     the nameservers of /etc/resolv.conf.
//   - rate (integer, default 50): queries per second over all resolvers,
//     a token bucket without burst; retries and zone transfers count too.
//   - timeout (duration, default 2s): how long one query waits for its
//     answer; a zone transfer waits this long for each message.
//   - retries (integer, default 2): further tries of a query that timed
//     out or was refused, each against the next resolver.
//   - concurrency (integer, default 10): queries in flight at once.
//   - brute (boolean, default true): try every word of the word list as a
//     label below each zone. Before it does, a few random labels are
//     resolved; a candidate whose answers are all among theirs is the
//     zone's wildcard and not reported (counted as wildcard_filtered).
//   - wordlist (list): labels to try instead of the built-in list of about
//     500 common ones; wordlist_file (string) names a file on the worker
//     with one label a line ("#" starts a comment). Both may be given.
//   - axfr (boolean, default true): ask each in-scope nameserver of each
//     zone for a zone transfer; axfr_port (integer, default 53) is the port
//     it is asked on.
//   - max_names (integer, default 100000): a bound on the names one task
//     resolves, so that a huge zone transfer cannot run forever.
//
// # Output
//
// The task's output holds queries (sent), found (names reported),
// wildcard_filtered, out_of_scope, not_found, and statuses: how the
// resolution of each name ended, in the closed set of scanner.Status. A
// name that timed out or was refused is data, counted and logged; only
// bad arguments fail the task.
package dnsscan
