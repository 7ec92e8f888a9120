package scanfleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// bulkCreate returns the Faraday bulk_create sample as one compact line.
func bulkCreate(t testing.TB) []byte {
	t.Helper()
	pretty, err := os.ReadFile("testdata/faraday_bulk_create.json")
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, json.Compact(&buf, pretty))
	return buf.Bytes()
}

// bulkCreateKeys are the records the sample yields, in order.
var bulkCreateKeys = []string{
	"host 10.0.0.7",
	"domain www.example.com",
	"domain app.example.com",
	"finding",
	"service 10.0.0.7:443/tcp",
	"finding",
	"finding",
	"service 10.0.0.7:22/tcp",
	"host 2001:db8::1",
	"service [2001:db8::1]:53/udp",
}

// kindKeys shows records as "kind key", findings by kind alone since their
// key is a fingerprint.
func kindKeys(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Kind)
		if r.Kind != KindFinding {
			out[i] += " " + r.Key
		}
	}
	return out
}

func TestParseRecordsBulkCreate(t *testing.T) {
	t.Parallel()
	recs, err := ParseRecords(bytes.NewReader(bulkCreate(t)), 0)
	require.NoError(t, err)
	require.Equal(t, bulkCreateKeys, kindKeys(recs))

	data := func(i int) string {
		b, err := json.Marshal(recs[i].Data)
		require.NoError(t, err)
		return string(b)
	}
	require.JSONEq(t, `{"kind": "host", "ip": "10.0.0.7", "os": "Linux 5.15", "mac": "00:11:22:33:44:55",
		"description": "web front end", "hostnames": ["WWW.Example.com", "app.example.com."]}`, data(0))
	require.JSONEq(t, `{"kind": "domain", "name": "www.example.com", "ips": ["10.0.0.7"]}`, data(1))
	require.JSONEq(t, `{"kind": "finding", "ip": "10.0.0.7", "name": "ICMP timestamp request remote date disclosure",
		"severity": "low", "description": "The remote host answers ICMP timestamp requests.",
		"refs": ["CVE-1999-0524"], "type": "Vulnerability"}`, data(3))
	require.JSONEq(t, `{"kind": "service", "ip": "10.0.0.7", "port": 443, "proto": "tcp", "state": "open",
		"name": "https", "version": "nginx 1.25.3"}`, data(4))
	require.JSONEq(t, `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "proto": "tcp", "name": "TLS 1.0 enabled",
		"severity": "medium", "description": "The service accepts TLS 1.0 connections.",
		"type": "Vulnerability", "external_id": "tls-1.0"}`, data(5))
	require.JSONEq(t, `{"kind": "finding", "ip": "10.0.0.7", "port": 443, "proto": "tcp", "name": "Exposed .git directory",
		"severity": "high", "description": "The web root serves the .git directory.", "type": "VulnerabilityWeb",
		"website": "www.example.com", "path": "/.git/HEAD", "method": "GET",
		"request": "GET /.git/HEAD HTTP/1.1\r\nHost: www.example.com\r\n\r\n", "response": "ref: refs/heads/main",
		"status": "open"}`, data(6))
	require.JSONEq(t, `{"kind": "service", "ip": "10.0.0.7", "port": 22, "proto": "tcp", "state": "open",
		"name": "ssh", "version": "OpenSSH 9.6p1"}`, data(7))
	require.JSONEq(t, `{"kind": "host", "ip": "2001:db8::1", "hostnames": []}`, data(8))

	// The web finding is the same finding a native record of it makes.
	native, err := NewRecord(decodeRecord(t, `{"kind": "finding", "url": "https://10.0.0.7/.git/HEAD", "name": "Exposed .git directory"}`))
	require.NoError(t, err)
	require.Equal(t, native.Key, recs[6].Key)
	require.NotEqual(t, recs[5].Key, recs[6].Key)
	require.NotEqual(t, recs[3].Key, recs[5].Key)
}

func TestParseRecordsMixed(t *testing.T) {
	t.Parallel()
	var in bytes.Buffer
	in.WriteString(`{"kind": "host", "ip": "192.168.1.1"}` + "\n")
	in.WriteString("\n\n   \t\n") // blank lines are not the end
	in.Write(bulkCreate(t))
	in.WriteString("\r\n")
	in.WriteString(`{"kind": "service", "ip": "192.168.1.1", "port": 22}` + "\r\n")
	in.WriteString("\r\n")
	in.WriteString(`  {"kind": "http", "url": "https://www.example.com:443/"}  ` + "\n")
	in.WriteString(`{"hosts": []}` + "\n")
	in.WriteString(`{"kind": "domain", "name": "Example.com."}`) // no newline at the end

	recs, err := ParseRecords(&in, 0)
	require.NoError(t, err)
	want := append([]string{"host 192.168.1.1"}, bulkCreateKeys...)
	want = append(want, "service 192.168.1.1:22/tcp", "http https://www.example.com/", "domain example.com")
	require.Equal(t, want, kindKeys(recs))
}

func TestParseRecordsEmpty(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "\n", "\n\n\r\n  \n", "\t"} {
		recs, err := ParseRecords(strings.NewReader(in), 0)
		require.NoError(t, err, "%q", in)
		require.Empty(t, recs, "%q", in)
	}
}

func TestParseRecordsLongLines(t *testing.T) {
	t.Parallel()
	line := func(n int) string {
		// A service whose banner makes the line exactly n bytes long.
		pre, post := `{"kind":"service","ip":"10.0.0.7","port":22,"banner":"`, `"}`
		return pre + strings.Repeat("x", n-len(pre)-len(post)) + post
	}

	t.Run("a line of exactly the limit", func(t *testing.T) {
		t.Parallel()
		recs, err := ParseRecords(strings.NewReader(line(200)+"\r\n"+line(200)), 200)
		require.NoError(t, err)
		require.Len(t, recs, 2)
	})

	t.Run("a line longer than the read buffer", func(t *testing.T) {
		t.Parallel()
		long := line(300 << 10)
		recs, err := ParseRecords(strings.NewReader("\n"+long+"\n"+long), 0)
		require.NoError(t, err)
		require.Len(t, recs, 2)
		require.Len(t, recs[1].Data["banner"], 300<<10-len(`{"kind":"service","ip":"10.0.0.7","port":22,"banner":""}`))
	})

	t.Run("one byte over", func(t *testing.T) {
		t.Parallel()
		in := line(100) + "\n" + line(101) + "\n" + line(100) + "\n"
		recs, err := ParseRecords(strings.NewReader(in), 100)
		require.Nil(t, recs)
		require.Equal(t, ETOOLARGE, ErrorCode(err))
		require.Equal(t, "line 2: longer than the 100-byte line limit", ErrorMessage(err))
	})

	t.Run("over the default limit", func(t *testing.T) {
		t.Parallel()
		in := "\n\n" + line(DefaultMaxLineBytes+1)
		recs, err := ParseRecords(strings.NewReader(in), 0)
		require.Nil(t, recs)
		require.Equal(t, ETOOLARGE, ErrorCode(err))
		require.Equal(t, "line 3: longer than the 1048576-byte line limit", ErrorMessage(err))
	})

	t.Run("an earlier bad line stays the first problem", func(t *testing.T) {
		t.Parallel()
		in := line(80) + "\n" + `{"kind": "host"}` + "\n" + line(101) + "\n" + line(80)
		_, err := ParseRecords(strings.NewReader(in), 100)
		require.Equal(t, EINVALID, ErrorCode(err))
		require.Equal(t, "line 2: host.ip: is missing", ErrorMessage(err))
		require.Equal(t, []string{
			"line 2: host.ip: is missing",
			"line 3: longer than the 100-byte line limit",
		}, ErrorDetails(err))
	})
}

func TestParseRecordsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"malformed JSON", `{"kind": "host", "ip": "10.0.0.7"}` + "\n" + `{"kind": "host", "ip": }`,
			`line 2: malformed JSON at byte 24: invalid character '}' looking for beginning of value`},
		{"offset counts from the start of the line", "\n   \t" + `{"kind": "host" "ip": "10.0.0.7"}`,
			`line 2: malformed JSON at byte 21: invalid character '"' after object key:value pair`},
		{"truncated JSON", `{"kind": "host", "ip": "10.0.0.7"`,
			`line 1: malformed JSON: unexpected end of input`},
		{"two values on a line", `{"kind": "host", "ip": "10.0.0.7"} {"kind": "host", "ip": "10.0.0.8"}`,
			`line 1: malformed JSON at byte 36: data after the JSON value`},
		{"trailing garbage", `{"kind": "host", "ip": "10.0.0.7"}x`,
			`line 1: malformed JSON at byte 35: data after the JSON value`},
		{"an array", `[{"kind": "host", "ip": "10.0.0.7"}]`,
			`line 1: JSON array where map[string]interface {} was expected`},
		{"a string", `"host"`,
			`line 1: JSON string where map[string]interface {} was expected`},
		{"null", `null`,
			`line 1: not a JSON object`},
		{"neither record nor bulk_create", `{"ip": "10.0.0.7"}`,
			`line 1: kind: is missing (a line is a record with "kind" or a Faraday bulk_create document with "hosts")`},
		{"bad field", `{"kind": "service", "ip": "10.0.0.7", "port": 70000}`,
			`line 1: service.port: 70000 is not a port between 1 and 65535`},
		{"bulk_create hosts not a list", `{"hosts": {}}`,
			`line 1: hosts: {} is not a list`},
		{"bulk_create host not an object", `{"hosts": ["10.0.0.7"]}`,
			`line 1: hosts[0]: "10.0.0.7" is not an object`},
		{"bulk_create host without ip", `{"hosts": [{"hostnames": ["a.com"]}]}`,
			`line 1: hosts[0].ip: is missing`},
		{"bulk_create host bad ip", `{"hosts": [{"ip": "10.0.0.300"}]}`,
			`line 1: hosts[0]: host.ip: "10.0.0.300" is not an IP address`},
		{"bulk_create bad hostname", `{"hosts": [{"ip": "10.0.0.7", "hostnames": ["ok.com", "bad name"]}]}`,
			`line 1: hosts[0].hostnames[1]: domain.name: "bad name" has the character ' ', which a domain name cannot hold`},
		{"bulk_create services not a list", `{"hosts": [{"ip": "10.0.0.7", "services": {"port": 22}}]}`,
			`line 1: hosts[0].services: {"port":22} is not a list`},
		{"bulk_create service not an object", `{"hosts": [{"ip": "10.0.0.7", "services": [22]}]}`,
			`line 1: hosts[0].services[0]: 22 is not an object`},
		{"bulk_create service without port", `{"hosts": [{"ip": "10.0.0.7", "services": [{"name": "ssh"}]}]}`,
			`line 1: hosts[0].services[0]: service.port: is missing`},
		{"bulk_create service with no ports", `{"hosts": [{"ip": "10.0.0.7", "services": [{"name": "ssh", "ports": [], "vulnerabilities": [{"name": "x"}]}]}]}`,
			`line 1: hosts[0].services[0].ports: is empty`},
		{"bulk_create service bad protocol", `{"hosts": [{"ip": "10.0.0.7", "services": [{"port": 22, "protocol": "icmp"}]}]}`,
			`line 1: hosts[0].services[0]: service.proto: "icmp" is not one of tcp, udp, sctp`},
		{"bulk_create vulnerabilities not a list", `{"hosts": [{"ip": "10.0.0.7", "vulnerabilities": "none"}]}`,
			`line 1: hosts[0].vulnerabilities: "none" is not a list`},
		{"bulk_create vulnerability not an object", `{"hosts": [{"ip": "10.0.0.7", "services": [{"port": 22, "vulnerabilities": [1]}]}]}`,
			`line 1: hosts[0].services[0].vulnerabilities[0]: 1 is not an object`},
		{"bulk_create vulnerability without name", `{"hosts": [{"ip": "10.0.0.7", "vulnerabilities": [{"severity": "high"}]}]}`,
			`line 1: hosts[0].vulnerabilities[0].name: is missing`},
		{"bulk_create vulnerability bad severity", `{"hosts": [{"ip": "10.0.0.7", "services": [{"port": 22, "vulnerabilities": [{"name": "x", "severity": "severe"}]}]}]}`,
			`line 1: hosts[0].services[0].vulnerabilities[0]: finding.severity: "severe" is not one of info, low, medium, high, critical`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			recs, err := ParseRecords(strings.NewReader(tt.in), 0)
			require.Nil(t, recs)
			require.Equal(t, EINVALID, ErrorCode(err))
			require.Equal(t, tt.want, ErrorMessage(err))
			require.Equal(t, []string{tt.want}, ErrorDetails(err))
		})
	}
}

func TestParseRecordsBadLineInTheMiddle(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		`{"kind": "host", "ip": "10.0.0.1"}`,
		`{"kind": "host", "ip": "10.0.0.2"}`,
		`{"kind": "service", "ip": "10.0.0.3", "port": 70000}`,
		`{"kind": "host", "ip": "10.0.0.4"}`,
		`{"kind": "host", "ip": "10.0.0.5"}`,
	}, "\n")
	recs, err := ParseRecords(strings.NewReader(in), 0)
	require.Nil(t, recs, "nothing is returned when any line is bad")
	require.Equal(t, EINVALID, ErrorCode(err))
	require.Equal(t, "line 3: service.port: 70000 is not a port between 1 and 65535", ErrorMessage(err))
	require.Equal(t, []string{"line 3: service.port: 70000 is not a port between 1 and 65535"}, ErrorDetails(err))
}

func TestParseRecordsManyProblems(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	for i := 1; i <= 30; i++ {
		if i%3 == 0 {
			fmt.Fprintf(&in, `{"kind": "host", "ip": "10.0.0.%d"}`+"\n", i)
		} else {
			fmt.Fprintf(&in, `{"kind": "host", "ip": "10.0.0.%d"}`+"\n", 1000+i)
		}
	}
	in.WriteString("{not json at all\n") // not read: the limit is reached before
	recs, err := ParseRecords(strings.NewReader(in.String()), 0)
	require.Nil(t, recs)
	require.Equal(t, EINVALID, ErrorCode(err))
	require.Equal(t, `line 1: host.ip: "10.0.0.1001" is not an IP address`, ErrorMessage(err))
	details := ErrorDetails(err)
	require.Len(t, details, 20, "at most 20 problems")
	require.Equal(t, `line 2: host.ip: "10.0.0.1002" is not an IP address`, details[1])
	require.Equal(t, `line 29: host.ip: "10.0.0.1029" is not an IP address`, details[19])
}

func TestParseRecordsReadError(t *testing.T) {
	t.Parallel()
	r := iotest.TimeoutReader(strings.NewReader(`{"kind": "host", "ip": "10.0.0.1"}` + "\n" + strings.Repeat(" ", 100<<10)))
	recs, err := ParseRecords(r, 0)
	require.Nil(t, recs)
	require.ErrorIs(t, err, iotest.ErrTimeout)
	require.Equal(t, EINTERNAL, ErrorCode(err), "a read error is not the user's fault")
}

func TestParseDocument(t *testing.T) {
	t.Parallel()

	t.Run("pretty-printed bulk_create", func(t *testing.T) {
		t.Parallel()
		pretty, err := os.ReadFile("testdata/faraday_bulk_create.json")
		require.NoError(t, err)
		recs, err := ParseDocument(pretty)
		require.NoError(t, err)
		require.Equal(t, bulkCreateKeys, kindKeys(recs))

		line, err := ParseRecords(bytes.NewReader(bulkCreate(t)), 0)
		require.NoError(t, err)
		require.Equal(t, line, recs, "the same document on one line")
	})

	t.Run("a record", func(t *testing.T) {
		t.Parallel()
		recs, err := ParseDocument([]byte("\n{\n  \"kind\": \"host\",\n  \"ip\": \"10.0.0.7\"\n}\n"))
		require.NoError(t, err)
		require.Equal(t, []string{"host 10.0.0.7"}, kindKeys(recs))
	})

	t.Run("an array of records and documents", func(t *testing.T) {
		t.Parallel()
		doc := "[\n" + `{"kind": "host", "ip": "10.0.0.7"},` + "\n" +
			`{"kind": "domain", "name": "WWW.example.com"},` + "\n" +
			`{"hosts": [{"ip": "10.0.0.8", "services": [{"port": 80, "protocol": "tcp"}]}]}` + "\n]"
		recs, err := ParseDocument([]byte(doc))
		require.NoError(t, err)
		require.Equal(t, []string{"host 10.0.0.7", "domain www.example.com", "host 10.0.0.8", "service 10.0.0.8:80/tcp"}, kindKeys(recs))
	})

	t.Run("an empty array", func(t *testing.T) {
		t.Parallel()
		recs, err := ParseDocument([]byte(" [ ] "))
		require.NoError(t, err)
		require.Empty(t, recs)
	})

	errs := []struct {
		name, in, want string
	}{
		{"bad item", `[{"kind": "host", "ip": "10.0.0.7"}, {"kind": "host"}]`, "item 1: host.ip: is missing"},
		{"non-object item", `[{"kind": "host", "ip": "10.0.0.7"}, 5]`, "item 1: JSON number where map[string]interface {} was expected"},
		{"malformed array", `[{"kind": "host", "ip": "10.0.0.7"},]`, "malformed JSON at byte 37: invalid character ']' looking for beginning of value"},
		{"malformed object", "{\n  \"kind\": \"host\",\n  \"ip\": 10.0.0.7\n}", "malformed JSON at byte 33: invalid character '.' after object key:value pair"},
		{"empty", "", "malformed JSON: unexpected end of input"},
		{"bad record", `{"kind": "http", "url": "ftp://x/"}`, `http.url: "ftp://x/" is not an http or https URL`},
		{"two documents", `{"hosts": []} {"hosts": []}`, "malformed JSON at byte 15: data after the JSON value"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			recs, err := ParseDocument([]byte(tt.in))
			require.Nil(t, recs)
			require.Equal(t, EINVALID, ErrorCode(err))
			require.Equal(t, tt.want, ErrorMessage(err))
		})
	}
}

// FuzzParseRecords feeds executor output to the ingest parser: it must never
// panic, every record it returns must have a kind and a key, and
// normalization must be idempotent, so that a record read back from the
// inventory (or exported and ingested again) keeps its key.
func FuzzParseRecords(f *testing.F) {
	f.Add(bulkCreate(f))
	f.Add([]byte(`{"kind": "host", "ip": "10.0.0.7", "hostnames": ["www.example.com"]}` + "\n\n" +
		`{"kind": "service", "ip": "2001:db8::1", "port": 443, "proto": "TCP"}` + "\r\n"))
	f.Add([]byte(`{"kind": "domain", "name": "Bücher.Example.", "ips": ["::ffff:10.0.0.7"]}`))
	f.Add([]byte(`{"kind": "certificate", "sha256": "` + strings.ToUpper(sha) + `", "not_after": "2027-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"kind": "http", "url": "HTTPS://user@WWW.Example.com:0443/a/../b?x=1#f", "status_code": 200.0}`))
	f.Add([]byte(`{"kind": "finding", "url": "http://example.com:8080/admin", "name": "Admin panel", "severity": "MED", "ip": null}`))
	f.Add([]byte(`{"kind": "finding", "host": "::ffff:10.0.0.7", "port": 22, "name": "weak ssh", "path": "/"}`))
	f.Add([]byte(`{"hosts": [{"ip": "10.0.0.8", "services": [{"ports": [80, 443], "protocol": "tcp", "vulnerabilities": [{"name": "x"}]}]}]}`))
	f.Add([]byte(`{"kind": "service", "ip": "10.0.0.3", "port": 70000}` + "\n" + `{"kind": "host", "ip": }`))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ParseRecords(bytes.NewReader(data), 4096)
		if err != nil {
			require.Nil(t, recs)
			require.Contains(t, []string{EINVALID, ETOOLARGE}, ErrorCode(err))
			require.NotEmpty(t, ErrorDetails(err))
			require.LessOrEqual(t, len(ErrorDetails(err)), 20)
			return
		}
		for _, r := range recs {
			require.NotEmpty(t, r.Key)
			require.Contains(t, RecordKinds, r.Kind)
			require.Equal(t, string(r.Kind), r.Data["kind"])

			b, err := json.Marshal(r.Data)
			require.NoError(t, err)
			for _, useNumber := range []bool{true, false} {
				var m map[string]any
				dec := json.NewDecoder(bytes.NewReader(b))
				if useNumber {
					dec.UseNumber()
				}
				require.NoError(t, dec.Decode(&m))
				again, err := NewRecord(m)
				require.NoError(t, err, "record %s", b)
				require.Equal(t, r.Key, again.Key, "record %s", b)
				require.Equal(t, r.Kind, again.Kind)
			}
		}
	})
}
