package scanfleet

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// decodeRecord decodes one JSON object as ingest does.
func decodeRecord(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, decodeJSON([]byte(s), &m))
	return m
}

const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestNewRecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		kind RecordKind
		key  string
		data string // the record's Data after normalization, as JSON
	}{
		{
			name: "host",
			in:   `{"kind": "host", "ip": "10.0.0.7", "hostnames": ["www.example.com"], "os": "Linux", "state": "UP"}`,
			kind: KindHost, key: "10.0.0.7",
			data: `{"kind": "host", "ip": "10.0.0.7", "hostnames": ["www.example.com"], "os": "Linux", "state": "up"}`,
		},
		{
			name: "host IPv6 and unknown fields kept",
			in:   `{"kind": "host", "ip": "2001:DB8:0::1", "mac": "00:11:22:33:44:55"}`,
			kind: KindHost, key: "2001:db8::1",
			data: `{"kind": "host", "ip": "2001:db8::1", "mac": "00:11:22:33:44:55"}`,
		},
		{
			name: "host IPv4-mapped",
			in:   `{"kind": "host", "ip": "::ffff:10.0.0.7"}`,
			kind: KindHost, key: "10.0.0.7",
			data: `{"kind": "host", "ip": "10.0.0.7"}`,
		},
		{
			name: "reserved fields dropped",
			in: `{"kind": "host", "ip": "10.0.0.7", "id": "x", "key": "y", "workspace": "other",
				"first_seen": "2020-01-01T00:00:00Z", "last_seen": "2020-01-01T00:00:00Z", "first_task": "a", "last_task": "b"}`,
			kind: KindHost, key: "10.0.0.7",
			data: `{"kind": "host", "ip": "10.0.0.7"}`,
		},
		{
			name: "domain",
			in:   `{"kind": "domain", "name": "WWW.Example.COM.", "ips": ["::ffff:10.0.0.7", "2001:DB8::1"]}`,
			kind: KindDomain, key: "www.example.com",
			data: `{"kind": "domain", "name": "www.example.com", "ips": ["10.0.0.7", "2001:db8::1"]}`,
		},
		{
			name: "domain international",
			in:   `{"kind": "domain", "name": "Bücher.example"}`,
			kind: KindDomain, key: "xn--bcher-kva.example",
			data: `{"kind": "domain", "name": "xn--bcher-kva.example"}`,
		},
		{
			name: "service",
			in:   `{"kind": "service", "ip": "10.0.0.7", "port": 443, "name": "https", "banner": "nginx"}`,
			kind: KindService, key: "10.0.0.7:443/tcp",
			data: `{"kind": "service", "ip": "10.0.0.7", "port": 443, "proto": "tcp", "state": "open", "name": "https", "banner": "nginx"}`,
		},
		{
			name: "service IPv6",
			in:   `{"kind": "service", "ip": "2001:db8::1", "port": 443, "proto": "tcp"}`,
			kind: KindService, key: "[2001:db8::1]:443/tcp",
			data: `{"kind": "service", "ip": "2001:db8::1", "port": 443, "proto": "tcp", "state": "open"}`,
		},
		{
			name: "service udp, closed, case folded",
			in:   `{"kind": "service", "ip": "10.0.0.7", "port": 53, "proto": "UDP", "state": "Open|Filtered"}`,
			kind: KindService, key: "10.0.0.7:53/udp",
			data: `{"kind": "service", "ip": "10.0.0.7", "port": 53, "proto": "udp", "state": "open|filtered"}`,
		},
		{
			name: "service port with a zero fraction",
			in:   `{"kind": "service", "ip": "10.0.0.7", "port": 22.0, "proto": ""}`,
			kind: KindService, key: "10.0.0.7:22/tcp",
			data: `{"kind": "service", "ip": "10.0.0.7", "port": 22, "proto": "tcp", "state": "open"}`,
		},
		{
			name: "certificate",
			in:   `{"kind": "certificate", "sha256": "` + strings.ToUpper(sha) + `", "sans": ["example.com"], "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z"}`,
			kind: KindCertificate, key: sha,
			data: `{"kind": "certificate", "sha256": "` + sha + `", "sans": ["example.com"], "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z"}`,
		},
		{
			name: "http",
			in:   `{"kind": "http", "url": "HTTPS://User:pw@WWW.Example.com:443#top", "status_code": 200, "title": "Home"}`,
			kind: KindHTTP, key: "https://www.example.com/",
			data: `{"kind": "http", "url": "https://www.example.com/", "status_code": 200, "title": "Home"}`,
		},
		{
			name: "http with port, path and query",
			in:   `{"kind": "http", "url": "http://10.0.0.7:8080/admin?x=1"}`,
			kind: KindHTTP, key: "http://10.0.0.7:8080/admin?x=1",
			data: `{"kind": "http", "url": "http://10.0.0.7:8080/admin?x=1"}`,
		},
		{
			name: "finding with severity alias",
			in:   `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "TLS 1.0", "severity": "Med"}`,
			kind: KindFinding, key: "",
			data: `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "proto": "tcp", "name": "TLS 1.0", "severity": "medium"}`,
		},
		{
			name: "finding default severity",
			in:   `{"kind": "finding", "host": "WWW.Example.com", "name": "x"}`,
			kind: KindFinding, key: "",
			data: `{"kind": "finding", "host": "www.example.com", "name": "x", "severity": "info"}`,
		},
		{
			name: "finding host as an address",
			in:   `{"kind": "finding", "host": "::ffff:10.0.0.7", "name": "x", "severity": "informational"}`,
			kind: KindFinding, key: "",
			data: `{"kind": "finding", "host": "10.0.0.7", "name": "x", "severity": "info"}`,
		},
		{
			name: "finding by url",
			in:   `{"kind": "finding", "url": "HTTP://Example.com:80/a#b", "name": "x", "severity": "unclassified", "ip": null}`,
			kind: KindFinding, key: "",
			data: `{"kind": "finding", "url": "http://example.com/a", "name": "x", "severity": "info", "ip": null}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRecord(decodeRecord(t, tt.in))
			require.NoError(t, err)
			require.Equal(t, tt.kind, r.Kind)
			if tt.key != "" {
				require.Equal(t, tt.key, r.Key)
			} else {
				require.Len(t, r.Key, 32, "a finding's key is a fingerprint")
			}
			got, err := json.Marshal(r.Data)
			require.NoError(t, err)
			require.JSONEq(t, tt.data, string(got))

			// Normalizing is idempotent.
			again, err := NewRecord(decodeRecord(t, string(got)))
			require.NoError(t, err)
			require.Equal(t, r.Key, again.Key)
			require.Equal(t, r.Data, again.Data)
		})
	}
}

func TestNewRecordErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"kind missing", `{"ip": "10.0.0.7"}`, `kind: is missing`},
		{"kind not a string", `{"kind": 1}`, `kind: 1 is not a string`},
		{"kind unknown", `{"kind": "vuln"}`, `kind: "vuln" is not one of host, domain, service, certificate, http, finding`},
		{"kind upper-case", `{"kind": "Host"}`, `kind: "Host" is not one of host, domain, service, certificate, http, finding`},

		{"host ip missing", `{"kind": "host"}`, `host.ip: is missing`},
		{"host ip null", `{"kind": "host", "ip": null}`, `host.ip: is missing`},
		{"host ip bad", `{"kind": "host", "ip": "10.0.0.256"}`, `host.ip: "10.0.0.256" is not an IP address`},
		{"host ip a number", `{"kind": "host", "ip": 167772167}`, `host.ip: 167772167 is not an IP address`},
		{"host ip a name", `{"kind": "host", "ip": "www.example.com"}`, `host.ip: "www.example.com" is not an IP address`},
		{"long value cut", `{"kind": "host", "ip": "` + strings.Repeat("a", 100) + `"}`, `host.ip: "` + strings.Repeat("a", 71) + `… is not an IP address`},
		{"host ip with a zone", `{"kind": "host", "ip": "fe80::1%eth0"}`, `host.ip: "fe80::1%eth0" is not an IP address`},
		{"host hostnames", `{"kind": "host", "ip": "10.0.0.7", "hostnames": "a.com"}`, `host.hostnames: "a.com" is not a list of strings`},
		{"host hostnames item", `{"kind": "host", "ip": "10.0.0.7", "hostnames": ["a.com", 5]}`, `host.hostnames: item 1: 5 is not a string`},
		{"host os", `{"kind": "host", "ip": "10.0.0.7", "os": {"name": "linux"}}`, `host.os: {"name":"linux"} is not a string`},
		{"host state", `{"kind": "host", "ip": "10.0.0.7", "state": "sideways"}`, `host.state: "sideways" is not one of up, down`},

		{"domain name missing", `{"kind": "domain"}`, `domain.name: is missing`},
		{"domain name bad", `{"kind": "domain", "name": "exa mple.com"}`, `domain.name: "exa mple.com" has the character ' ', which a domain name cannot hold`},
		{"domain name numeric", `{"kind": "domain", "name": "10.0.0.7"}`, `domain.name: "10.0.0.7" is not a valid IP address or domain name`},
		{"domain ips", `{"kind": "domain", "name": "a.com", "ips": "10.0.0.7"}`, `domain.ips: "10.0.0.7" is not a list of IP addresses`},
		{"domain ips item", `{"kind": "domain", "name": "a.com", "ips": ["10.0.0.7", "x"]}`, `domain.ips: item 1: "x" is not an IP address`},
		{"domain ips zone", `{"kind": "domain", "name": "a.com", "ips": ["fe80::1%eth0"]}`, `domain.ips: item 0: "fe80::1%eth0" is not an IP address`},

		{"service ip missing", `{"kind": "service", "port": 443}`, `service.ip: is missing`},
		{"service port missing", `{"kind": "service", "ip": "10.0.0.7"}`, `service.port: is missing`},
		{"service port zero", `{"kind": "service", "ip": "10.0.0.7", "port": 0}`, `service.port: 0 is not a port between 1 and 65535`},
		{"service port too large", `{"kind": "service", "ip": "10.0.0.7", "port": 70000}`, `service.port: 70000 is not a port between 1 and 65535`},
		{"service port string", `{"kind": "service", "ip": "10.0.0.7", "port": "443"}`, `service.port: "443" is not a port between 1 and 65535`},
		{"service port fraction", `{"kind": "service", "ip": "10.0.0.7", "port": 44.3}`, `service.port: 44.3 is not a port between 1 and 65535`},
		{"service proto", `{"kind": "service", "ip": "10.0.0.7", "port": 443, "proto": "icmp"}`, `service.proto: "icmp" is not one of tcp, udp, sctp`},
		{"service proto not a string", `{"kind": "service", "ip": "10.0.0.7", "port": 443, "proto": 6}`, `service.proto: 6 is not one of tcp, udp, sctp`},
		{"service state", `{"kind": "service", "ip": "10.0.0.7", "port": 443, "state": "opened"}`, `service.state: "opened" is not one of open, closed, filtered, timeout, out-of-scope, open|filtered, unfiltered`},
		{"service banner", `{"kind": "service", "ip": "10.0.0.7", "port": 443, "banner": ["x"]}`, `service.banner: ["x"] is not a string`},

		{"certificate sha256 missing", `{"kind": "certificate"}`, `certificate.sha256: is missing`},
		{"certificate sha256 short", `{"kind": "certificate", "sha256": "abc"}`, `certificate.sha256: "abc" is not 64 hexadecimal digits`},
		{"certificate sha256 not hex", `{"kind": "certificate", "sha256": "` + strings.Repeat("z", 64) + `"}`, `certificate.sha256: "` + strings.Repeat("z", 64) + `" is not 64 hexadecimal digits`},
		{"certificate sha256 a number", `{"kind": "certificate", "sha256": 5}`, `certificate.sha256: 5 is not a string`},
		{"certificate not_after", `{"kind": "certificate", "sha256": "` + sha + `", "not_after": "tomorrow"}`, `certificate.not_after: "tomorrow" is not an RFC 3339 time such as "2026-01-02T15:04:05Z"`},
		{"certificate sans", `{"kind": "certificate", "sha256": "` + sha + `", "sans": [1]}`, `certificate.sans: item 0: 1 is not a string`},

		{"http url missing", `{"kind": "http"}`, `http.url: is missing`},
		{"http url scheme", `{"kind": "http", "url": "ftp://example.com/"}`, `http.url: "ftp://example.com/" is not an http or https URL`},
		{"http url relative", `{"kind": "http", "url": "/admin"}`, `http.url: "/admin" is not an http or https URL`},
		{"http url no host", `{"kind": "http", "url": "http:///admin"}`, `http.url: "http:///admin" has no host`},
		{"http url bad host", `{"kind": "http", "url": "http://exa_mple..com/"}`, `http.url: "http://exa_mple..com/" has a host that has an empty label`},
		{"http url port", `{"kind": "http", "url": "http://example.com:0/"}`, `http.url: "http://example.com:0/" has a port that is not between 1 and 65535`},
		{"http url malformed", `{"kind": "http", "url": "http://[::1/"}`, `http.url: "http://[::1/" is not a URL`},
		{"http status", `{"kind": "http", "url": "http://example.com/", "status_code": 700}`, `http.status_code: 700 is not an integer between 100 and 599`},
		{"http title", `{"kind": "http", "url": "http://example.com/", "title": 1}`, `http.title: 1 is not a string`},

		{"finding name missing", `{"kind": "finding", "ip": "10.0.0.7"}`, `finding.name: is missing`},
		{"finding name blank", `{"kind": "finding", "ip": "10.0.0.7", "name": "  "}`, `finding.name: is missing`},
		{"finding name not a string", `{"kind": "finding", "ip": "10.0.0.7", "name": 5}`, `finding.name: 5 is not a string`},
		{"finding severity", `{"kind": "finding", "ip": "10.0.0.7", "name": "x", "severity": "urgent"}`, `finding.severity: "urgent" is not one of info, low, medium, high, critical`},
		{"finding without a host", `{"kind": "finding", "name": "x"}`, `finding.ip: is missing: a finding names its ip, host, url or vm_id`},
		{"finding ip bad", `{"kind": "finding", "name": "x", "ip": "x"}`, `finding.ip: "x" is not an IP address`},
		{"finding host not a string", `{"kind": "finding", "name": "x", "host": 5, "url": "http://example.com/"}`, `finding.host: 5 is not a string`},
		{"finding host bad", `{"kind": "finding", "name": "x", "host": "-x.com"}`, `finding.host: "-x.com" has a label that starts or ends with '-'`},
		{"finding host with a zone", `{"kind": "finding", "name": "x", "host": "fe80::1%eth0"}`, `finding.host: "fe80::1%eth0" has the character ':', which a domain name cannot hold`},
		{"finding url bad", `{"kind": "finding", "name": "x", "url": "gopher://x"}`, `finding.url: "gopher://x" is not an http or https URL`},
		{"finding port", `{"kind": "finding", "name": "x", "ip": "10.0.0.7", "port": 0}`, `finding.port: 0 is not a port between 1 and 65535`},
		{"finding proto", `{"kind": "finding", "name": "x", "ip": "10.0.0.7", "port": 1, "proto": "x"}`, `finding.proto: "x" is not one of tcp, udp, sctp`},
		{"finding path", `{"kind": "finding", "name": "x", "ip": "10.0.0.7", "path": 1}`, `finding.path: 1 is not a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRecord(decodeRecord(t, tt.in))
			require.Zero(t, r)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestFindingFingerprint(t *testing.T) {
	t.Parallel()
	key := func(t *testing.T, s string) string {
		t.Helper()
		r, err := NewRecord(decodeRecord(t, s))
		require.NoError(t, err)
		return r.Key
	}
	base := `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD"}`
	want := key(t, base)
	require.Len(t, want, 32)
	require.Equal(t, want, key(t, base), "stable")

	same := []struct{ name, in string }{
		{"other severity and description", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD", "severity": "high", "description": "d"}`},
		{"fields in another order", `{"path": "/.git/HEAD", "name": "Exposed .git", "port": 443, "ip": "10.0.0.7", "kind": "finding"}`},
		{"IPv4-mapped ip", `{"kind": "finding", "ip": "::ffff:10.0.0.7", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"ip as host", `{"kind": "finding", "host": "10.0.0.7", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"explicit tcp", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "proto": "TCP", "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"the url says the same", `{"kind": "finding", "url": "https://10.0.0.7/.git/HEAD", "name": "Exposed .git"}`},
		{"url with the default port", `{"kind": "finding", "url": "https://10.0.0.7:443/.git/HEAD?x=1", "name": "Exposed .git"}`},
		{"ip and url", `{"kind": "finding", "ip": "10.0.0.7", "url": "https://www.example.com/.git/HEAD", "name": "Exposed .git"}`},
		{"reserved fields", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD", "key": "k", "id": "i"}`},
	}
	for _, tt := range same {
		t.Run("same/"+tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, want, key(t, tt.in))
		})
	}

	differ := []struct{ name, in string }{
		{"host", `{"kind": "finding", "ip": "10.0.0.8", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"host name", `{"kind": "finding", "host": "www.example.com", "port": 443, "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"port", `{"kind": "finding", "ip": "10.0.0.7", "port": 8443, "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"no port", `{"kind": "finding", "ip": "10.0.0.7", "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"proto", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "proto": "udp", "name": "Exposed .git", "path": "/.git/HEAD"}`},
		{"name", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "Exposed .svn", "path": "/.git/HEAD"}`},
		{"name case", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "exposed .git", "path": "/.git/HEAD"}`},
		{"path", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "Exposed .git", "path": "/.git/config"}`},
		{"no path", `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "name": "Exposed .git"}`},
		{"url on another port", `{"kind": "finding", "url": "https://10.0.0.7:8443/.git/HEAD", "name": "Exposed .git"}`},
		{"url on plain http", `{"kind": "finding", "url": "http://10.0.0.7/.git/HEAD", "name": "Exposed .git"}`},
	}
	for _, tt := range differ {
		t.Run("differs/"+tt.name, func(t *testing.T) {
			t.Parallel()
			require.NotEqual(t, want, key(t, tt.in))
		})
	}

	t.Run("url port decides between services", func(t *testing.T) {
		t.Parallel()
		a := key(t, `{"kind": "finding", "url": "http://example.com:8080/admin", "name": "Admin panel"}`)
		b := key(t, `{"kind": "finding", "url": "http://example.com/admin", "name": "Admin panel"}`)
		require.NotEqual(t, a, b)
		require.Equal(t, b, key(t, `{"kind": "finding", "host": "example.com", "port": 80, "path": "/admin", "name": "Admin panel"}`))
	})
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"http://example.com", "http://example.com/"},
		{"HTTP://EXAMPLE.COM/A", "http://example.com/A"},
		{"  https://example.com/  ", "https://example.com/"},
		{"http://example.com:80/", "http://example.com/"},
		{"https://example.com:443/", "https://example.com/"},
		{"http://example.com:443/", "http://example.com:443/"},
		{"https://example.com:80/", "https://example.com:80/"},
		{"http://example.com:0080/", "http://example.com/"},
		{"http://example.com:08080/", "http://example.com:8080/"},
		{"http://example.com:/", "http://example.com/"},
		{"http://example.com./x", "http://example.com/x"},
		{"http://user:pass@example.com/", "http://example.com/"},
		{"http://example.com/a?b=1&c#frag", "http://example.com/a?b=1&c"},
		{"http://[2001:DB8::1]/", "http://[2001:db8::1]/"},
		{"http://[2001:db8::1]:8080/", "http://[2001:db8::1]:8080/"},
		{"http://[::ffff:10.0.0.7]/", "http://10.0.0.7/"},
		{"https://bücher.example/", "https://xn--bcher-kva.example/"},
		{"http://example.com/%7e", "http://example.com/%7e"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeURL(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			again, err := NormalizeURL(got)
			require.NoError(t, err)
			require.Equal(t, got, again, "idempotent")
		})
	}
	for _, bad := range []string{"", "example.com", "ftp://example.com/", "http://", "http://:80/", "http://example.com:99999/", "http://1.2.3/", "http://[::1/"} {
		_, err := NormalizeURL(bad)
		require.Error(t, err, bad)
	}
}

func TestParseRecordKind(t *testing.T) {
	t.Parallel()
	for _, k := range RecordKinds {
		got, err := ParseRecordKind(string(k))
		require.NoError(t, err)
		require.Equal(t, k, got)
	}
	_, err := ParseRecordKind("vulnerability")
	require.Equal(t, EINVALID, ErrorCode(err))
	require.Equal(t, `kind: "vulnerability" is not one of host, domain, service, certificate, http, finding`, ErrorMessage(err))
}

func TestRecordMarshalJSON(t *testing.T) {
	t.Parallel()
	seen := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	r, err := NewRecord(map[string]any{"kind": "service", "ip": "10.0.0.7", "port": float64(443)})
	require.NoError(t, err)
	r.ID, r.Workspace, r.FirstSeen, r.LastSeen, r.FirstTask, r.LastTask = "rec-1", "acme", seen, seen, "t1", "t2"

	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{
		"kind": "service", "ip": "10.0.0.7", "port": 443, "proto": "tcp", "state": "open",
		"id": "rec-1", "key": "10.0.0.7:443/tcp", "workspace": "acme",
		"first_seen": "2026-01-02T15:04:05Z", "last_seen": "2026-01-02T15:04:05Z",
		"first_task": "t1", "last_task": "t2"
	}`, string(b))

	// An exported record is ingested again as the same record.
	again, err := NewRecord(decodeRecord(t, string(b)))
	require.NoError(t, err)
	require.Equal(t, r.Key, again.Key)
	require.Equal(t, r.Data, again.Data)
}

// FuzzNormalizeURL checks that URL normalization never panics and is
// idempotent: an http record's key must survive a trip through the store.
func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{
		"http://example.com", "HTTPS://User:pw@WWW.Example.com:0443/a/../b?x=1#frag",
		"http://[2001:DB8::1]:8080/", "http://[::ffff:10.0.0.7]/", "http://[fe80::1%25eth0]/",
		"https://bücher.example/ü?q=ü", "http://example.com/%7e%2F", "http://example.com:/", "ftp://x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := NormalizeURL(s)
		if err != nil {
			return
		}
		again, err := NormalizeURL(u)
		require.NoError(t, err, "normalizing %q", u)
		require.Equal(t, u, again, "normalizing %q", s)
	})
}
