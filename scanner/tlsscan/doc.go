// Package tlsscan is the executor of the tls task type: it completes a TLS
// handshake with each target, records the certificate the server shows,
// checks it, and probes which protocol versions the server accepts.
//
// # Targets
//
// A target is "host:port", a host (an address or a name) tried on every
// port of the ports parameter, an https URL (its host and port), or a CIDR
// prefix whose in-scope addresses are each tried on every port. A name is
// resolved and the handshake goes to its first in-scope address that
// answers, with the name as SNI; the scope is checked before any packet
// leaves, and a target outside it is counted and logged, never touched.
//
// # Verification
//
// The handshake does not verify the certificate (InsecureSkipVerify), so
// that a bad certificate is still recorded; the executor checks it
// afterwards. Each problem becomes a finding record at the endpoint:
// tls-certificate-expired (high), tls-certificate-not-yet-valid,
// tls-certificate-self-signed, tls-certificate-untrusted (the chain does
// not lead to a trusted root), tls-certificate-name-mismatch (only for
// targets named by host name), tls-weak-key (RSA or DSA under 2048 bits,
// EC under 224; high under 1024), all medium unless noted, and
// tls-deprecated-protocol (low) when TLS 1.0 or 1.1 is accepted. Trust is
// judged at a time inside the certificate's validity, so that an expired
// certificate from a trusted CA is expired, not also untrusted.
//
// # Versions
//
// With versions set, TLS 1.0, 1.1, 1.2 and 1.3 are each tried in a
// handshake of its own (MinVersion = MaxVersion, every cipher suite Go
// implements offered); the certificate record lists those that succeeded.
// Go's client speaks TLS 1.0 and 1.1 when asked to explicitly, which these
// probes do.
//
// # Records
//
// A certificate record holds sha256 (of the DER), subject, issuer, sans,
// not_before, not_after, key_type, key_bits, serial (hex),
// signature_algorithm, self_signed, trusted, versions, and where it was
// seen: seen_at ("ip:port"), ip, port and hostname (the SNI, if any).
// Every DNS name among the SANs that the scope contains becomes a domain
// record (source tls-san; a wildcard SAN "*.example.com" gives
// example.com with wildcard_san set).
//
// # Parameters
//
//   - ports (port-list, default 443): ports of targets without their own.
//   - timeout (duration, default 5s): one connection and handshake.
//   - concurrency (integer, default 20): endpoints probed at once.
//   - rate (integer, default 100): handshakes started per second.
//   - versions (boolean, default true): probe each TLS version.
//   - ca_file (string): a PEM file on the worker whose certificates are
//     the trusted roots instead of the system's.
//
// # Output
//
// The task's output holds endpoints, certificates, findings, out_of_scope,
// skipped (targets that are not targets), and statuses: how each endpoint
// ended, in the closed set of scanner.Status. A refused or silent endpoint
// is data; only bad arguments fail the task.
package tlsscan
