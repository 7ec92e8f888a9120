package scanfleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RecordKind is the kind of an inventory record.
type RecordKind string

// The record kinds, Faraday's hosts → services → vulnerabilities widened to
// what recon finds.
const (
	KindHost        RecordKind = "host"        // key: ip
	KindDomain      RecordKind = "domain"      // key: name
	KindService     RecordKind = "service"     // key: ip:port/proto
	KindCertificate RecordKind = "certificate" // key: sha256
	KindHTTP        RecordKind = "http"        // key: normalized url
	KindFinding     RecordKind = "finding"     // key: fingerprint of host, service, name, path
)

// RecordKinds lists every kind.
var RecordKinds = []RecordKind{KindHost, KindDomain, KindService, KindCertificate, KindHTTP, KindFinding}

// ParseRecordKind returns the kind named s or an EINVALID error.
func ParseRecordKind(s string) (RecordKind, error) {
	for _, k := range RecordKinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", Errorf(EINVALID, "kind: %q is not one of host, domain, service, certificate, http, finding", s)
}

// ServiceStates is the closed set of states a service record may carry
// (zgrab2's idea: every probe ends in exactly one). "open" is the default.
var ServiceStates = []string{"open", "closed", "filtered", "timeout", "out-of-scope", "open|filtered", "unfiltered"}

// Record is one inventory item: a flat JSON object whose "kind" field says
// what it is, identified within its workspace by a natural key derived from
// its fields, with the times and tasks that first and last saw it.
type Record struct {
	ID        string
	Workspace string
	Kind      RecordKind
	Key       string
	Data      map[string]any // the record's own fields, "kind" included
	FirstSeen time.Time
	LastSeen  time.Time
	FirstTask string
	LastTask  string
}

// reservedFields are set by the server; they are dropped from input so that
// an exported record can be ingested again.
var reservedFields = []string{"id", "key", "workspace", "first_seen", "last_seen", "first_task", "last_task"}

// MarshalJSON writes the record flat: its fields, then the server's.
func (r Record) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(r.Data)+8)
	for k, v := range r.Data {
		m[k] = v
	}
	m["kind"] = r.Kind
	m["id"] = r.ID
	m["key"] = r.Key
	m["workspace"] = r.Workspace
	m["first_seen"] = r.FirstSeen
	m["last_seen"] = r.LastSeen
	m["first_task"] = r.FirstTask
	m["last_task"] = r.LastTask
	return json.Marshal(m)
}

// NewRecord validates a record's fields, canonicalizes them in place and
// computes its key. The error names the field: `service.port: 70000 is not a
// port between 1 and 65535`.
func NewRecord(data map[string]any) (Record, error) {
	k, ok := data["kind"].(string)
	if !ok {
		if _, present := data["kind"]; !present {
			return Record{}, fmt.Errorf("kind: is missing")
		}
		return Record{}, fmt.Errorf("kind: %s is not a string", jsonText(data["kind"]))
	}
	kind, err := ParseRecordKind(k)
	if err != nil {
		return Record{}, fmt.Errorf("%s", ErrorMessage(err))
	}
	for _, f := range reservedFields {
		delete(data, f)
	}
	f := fields{kind: kind, m: data}
	var key string
	switch kind {
	case KindHost:
		ip := f.ip("ip", true)
		f.strList("hostnames")
		f.str("os")
		f.enum("state", "", "up", "down")
		key = ip
	case KindDomain:
		key = f.name("name", true)
		f.ipList("ips")
	case KindService:
		ip := f.ip("ip", true)
		port := f.port("port", true)
		proto := f.enum("proto", "tcp", "tcp", "udp", "sctp")
		f.enum("state", "open", ServiceStates...)
		f.str("name")
		f.str("banner")
		key = serviceKey(ip, port, proto)
	case KindCertificate:
		sum := strings.ToLower(f.str("sha256"))
		if f.err == nil && data["sha256"] == nil {
			f.fail("sha256", "is missing")
		} else if f.err == nil {
			if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
				f.fail("sha256", "%s is not 64 hexadecimal digits", jsonText(data["sha256"]))
			}
			data["sha256"] = sum
		}
		f.strList("sans")
		f.time("not_before")
		f.time("not_after")
		key = sum
	case KindHTTP:
		key = f.url("url", true)
		f.intRange("status_code", 100, 599)
		f.str("title")
	case KindFinding:
		name := f.str("name")
		if f.err == nil && strings.TrimSpace(name) == "" {
			f.fail("name", "is missing")
		}
		f.severity()
		host := ""
		if data["ip"] != nil {
			host = f.ip("ip", false)
		} else if v := data["host"]; v != nil {
			if h, ok := v.(string); !ok {
				f.fail("host", "%s is not a string", jsonText(v))
			} else if a, err := netip.ParseAddr(h); err == nil && a.Zone() == "" {
				host = a.Unmap().String()
				data["host"] = host
			} else {
				host = f.name("host", false)
			}
		}
		u := f.url("url", false)
		var pu *url.URL
		if u != "" {
			pu, _ = url.Parse(u)
			if host == "" {
				host = pu.Hostname()
			}
		}
		// A cloud finding names a VM of the workspace's cloud inventory,
		// which has no address of its own.
		if host == "" && data["vm_id"] != nil {
			if id := f.str("vm_id"); id != "" {
				host = "vm:" + id
			}
		}
		if f.err == nil && host == "" {
			f.fail("ip", "is missing: a finding names its ip, host, url or vm_id")
		}
		port := f.port("port", false)
		proto := ""
		if port != 0 {
			proto = f.enum("proto", "tcp", "tcp", "udp", "sctp")
		} else if pu != nil {
			// The URL names the service: a finding at :8080/admin is
			// not the same finding as one at :80/admin.
			port, proto = urlPort(pu), "tcp"
		}
		path := f.str("path")
		if path == "" && pu != nil {
			path = pu.EscapedPath()
		}
		sum := sha256.Sum256([]byte(strings.Join([]string{host, proto, strconv.Itoa(port), name, path}, "\x00")))
		key = hex.EncodeToString(sum[:16])
	}
	if f.err != nil {
		return Record{}, f.err
	}
	data["kind"] = string(kind)
	return Record{Kind: kind, Key: key, Data: data}, nil
}

// urlPort returns the port of a normalized http or https URL.
func urlPort(u *url.URL) int {
	if n, err := strconv.Atoi(u.Port()); err == nil {
		return n
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

func serviceKey(ip string, port int, proto string) string {
	return net.JoinHostPort(ip, strconv.Itoa(port)) + "/" + proto
}

// fields validates the fields of one record, keeping the first error.
type fields struct {
	kind RecordKind
	m    map[string]any
	err  error
}

func (f *fields) fail(field, format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("%s.%s: %s", f.kind, field, fmt.Sprintf(format, args...))
	}
}

func (f *fields) str(name string) string {
	v, ok := f.m[name]
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		f.fail(name, "%s is not a string", jsonText(v))
	}
	return s
}

func (f *fields) required(name string) (any, bool) {
	v, ok := f.m[name]
	if !ok || v == nil {
		f.fail(name, "is missing")
		return nil, false
	}
	return v, true
}

func (f *fields) ip(name string, required bool) string {
	v, ok := f.m[name]
	if (!ok || v == nil) && !required {
		return ""
	}
	if v, ok = f.required(name); !ok {
		return ""
	}
	s, _ := v.(string)
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		f.fail(name, "%s is not an IP address", jsonText(v))
		return ""
	}
	ip := a.Unmap().String()
	f.m[name] = ip
	return ip
}

func (f *fields) name(field string, required bool) string {
	v, ok := f.m[field]
	if (!ok || v == nil) && !required {
		return ""
	}
	if v, ok = f.required(field); !ok {
		return ""
	}
	s, _ := v.(string)
	n, err := normalizeName(s)
	if err != nil {
		f.fail(field, "%s %v", jsonText(v), err)
		return ""
	}
	f.m[field] = n
	return n
}

func (f *fields) port(name string, required bool) int {
	v, ok := f.m[name]
	if (!ok || v == nil) && !required {
		return 0
	}
	if v, ok = f.required(name); !ok {
		return 0
	}
	n, err := coerceInt(v)
	if err != nil || n < 1 || n > 65535 {
		f.fail(name, "%s is not a port between 1 and 65535", jsonText(v))
		return 0
	}
	f.m[name] = n
	return int(n)
}

func (f *fields) intRange(name string, lo, hi int64) {
	v, ok := f.m[name]
	if !ok || v == nil {
		return
	}
	n, err := coerceInt(v)
	if err != nil || n < lo || n > hi {
		f.fail(name, "%s is not an integer between %d and %d", jsonText(v), lo, hi)
		return
	}
	f.m[name] = n
}

// enum checks a lower-cased string field against allowed values, setting
// def when the field is absent and def is not "".
func (f *fields) enum(name, def string, allowed ...string) string {
	v, ok := f.m[name]
	if !ok || v == nil || v == "" {
		if def != "" {
			f.m[name] = def
		}
		return def
	}
	s, _ := v.(string)
	s = strings.ToLower(s)
	for _, a := range allowed {
		if s == a {
			f.m[name] = s
			return s
		}
	}
	f.fail(name, "%s is not one of %s", jsonText(v), strings.Join(allowed, ", "))
	return ""
}

var severities = map[string]string{
	"info": "info", "informational": "info", "unclassified": "info",
	"low": "low", "medium": "medium", "med": "medium", "high": "high", "critical": "critical",
}

func (f *fields) severity() {
	v, ok := f.m["severity"]
	if !ok || v == nil || v == "" {
		f.m["severity"] = "info"
		return
	}
	s, _ := v.(string)
	sev, ok := severities[strings.ToLower(s)]
	if !ok {
		f.fail("severity", "%s is not one of info, low, medium, high, critical", jsonText(v))
		return
	}
	f.m["severity"] = sev
}

func (f *fields) strList(name string) {
	v, ok := f.m[name]
	if !ok || v == nil {
		return
	}
	list, ok := v.([]any)
	if !ok {
		f.fail(name, "%s is not a list of strings", jsonText(v))
		return
	}
	for i, x := range list {
		if _, ok := x.(string); !ok {
			f.fail(name, "item %d: %s is not a string", i, jsonText(x))
			return
		}
	}
}

func (f *fields) ipList(name string) {
	v, ok := f.m[name]
	if !ok || v == nil {
		return
	}
	list, ok := v.([]any)
	if !ok {
		f.fail(name, "%s is not a list of IP addresses", jsonText(v))
		return
	}
	for i, x := range list {
		s, _ := x.(string)
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			f.fail(name, "item %d: %s is not an IP address", i, jsonText(x))
			return
		}
		list[i] = a.Unmap().String()
	}
}

func (f *fields) time(name string) {
	v, ok := f.m[name]
	if !ok || v == nil || v == "" {
		return
	}
	s, _ := v.(string)
	if _, err := time.Parse(time.RFC3339, s); err != nil {
		f.fail(name, "%s is not an RFC 3339 time such as \"2026-01-02T15:04:05Z\"", jsonText(v))
	}
}

func (f *fields) url(name string, required bool) string {
	v, ok := f.m[name]
	if (!ok || v == nil) && !required {
		return ""
	}
	if v, ok = f.required(name); !ok {
		return ""
	}
	s, _ := v.(string)
	u, err := NormalizeURL(s)
	if err != nil {
		f.fail(name, "%s %v", jsonText(v), err)
		return ""
	}
	f.m[name] = u
	return u
}

// NormalizeURL returns the canonical form of an http or https URL: lower-case
// scheme and host, no default port, "/" for an empty path, no fragment.
func NormalizeURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("is not a URL")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("is not an http or https URL")
	}
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", fmt.Errorf("has no host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	} else if host, err = normalizeName(host); err != nil {
		return "", fmt.Errorf("has a host that %v", err)
	}
	port := u.Port()
	if port != "" {
		// Canonical digits: ":0080" is ":80", which is then dropped.
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("has a port that is not between 1 and 65535")
		}
		port = strconv.Itoa(n)
	}
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		u.Host = "[" + host + "]"
	} else {
		u.Host = host
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment, u.RawFragment = "", ""
	u.User = nil
	return u.String(), nil
}

// IngestResult counts what an ingest did.
type IngestResult struct {
	Accepted  int `json:"accepted"`  // records in the request
	New       int `json:"new"`       // keys not seen before
	Changed   int `json:"changed"`   // known keys whose fields changed
	Unchanged int `json:"unchanged"` // known keys seen again as they were
}

// RecordFilter selects records of one workspace; zero fields match all.
type RecordFilter struct {
	Workspace string
	Kind      RecordKind
	Key       string    // exact natural key
	Search    string    // substring of the key
	Task      string    // last seen by this task
	SeenSince time.Time // last seen at or after
	Page      Page
}

// RecordStore stores the inventory.
type RecordStore interface {
	// UpsertRecords stores records seen by task (may be "") at now, in one
	// transaction: a new key is inserted; a known key gets its fields
	// merged, last_seen and last_task. An unknown workspace is ENOTFOUND.
	UpsertRecords(ctx context.Context, workspace, task string, records []Record, now time.Time) (IngestResult, error)
	ListRecords(ctx context.Context, f RecordFilter) ([]*Record, string, error)
	CountRecords(ctx context.Context, workspace string) (map[RecordKind]int64, error)
}
