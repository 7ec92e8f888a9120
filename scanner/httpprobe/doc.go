// Package httpprobe is the executor of the http task type: it requests
// each target's root over HTTP or HTTPS, follows a bounded number of
// redirects within the scope, and records what answered: status, title,
// server, content type and length, and a guess of the technology behind.
//
// # Targets
//
// A target is an http or https URL (requested as given), "host:port" or a
// host (an address or a name), or a CIDR prefix whose in-scope addresses
// are each probed. A target without a scheme is tried with each scheme of
// the schemes parameter in turn, on that scheme's default port unless the
// target names one; the first that answers ends the target's probe, or
// every scheme is tried when all_schemes is set.
//
// # Scope
//
// The connection goes through a dialer that resolves a name and checks
// every address before any packet leaves; a name the scope excludes is
// never resolved. A redirect is the server's choice, not the user's, so it
// is followed only when its host is itself in scope (an address in scope,
// or a name the scope contains) and then only to in-scope addresses; a
// redirect elsewhere is recorded (location, redirect_out_of_scope) and not
// followed. Redirects stop at max_redirects and at the first URL seen twice
// (redirect_limit, redirect_loop).
//
// # Records
//
// Each URL fetched gives an http record: url, scheme, ip, port, tls,
// status_code, title, server, content_type, content_length (the header;
// body_bytes is what was read, body_truncated when the body was longer than
// max_body), location for a redirect, technologies (a list such as
// "nginx 1.25.3", "PHP", "WordPress 6.4" from the Server, X-Powered-By and
// similar headers, session cookie names such as PHPSESSID and JSESSIONID,
// the HTML generator meta tag and body markers; see fingerprints.go). The
// record of the URL a probe started at also holds redirect_chain (every URL
// fetched, in order) and final_url when it was redirected.
//
// # Parameters
//
//   - schemes (list, default ["https", "http"]): schemes tried, in order,
//     for targets without one.
//   - all_schemes (boolean, default false): try every scheme even after one
//     answered.
//   - max_redirects (integer, default 5): redirects followed per target.
//   - timeout (duration, default 10s): one request, body included.
//   - max_body (integer, default 1048576): bytes of a body read; the rest is
//     not downloaded.
//   - concurrency (integer, default 20): targets probed at once.
//   - rate (integer, default 50): requests started per second.
//
// # Output
//
// The task's output holds targets, responses, out_of_scope, skipped
// (targets that are not targets), status_codes (responses per HTTP status),
// and statuses: how each target's probe ended, in the closed set of
// scanner.Status. A target that refuses or times out is data; only bad
// arguments fail the task.
package httpprobe
