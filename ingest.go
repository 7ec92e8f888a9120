package scanfleet

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/scanfleet/scanfleet/internal/lineread"
)

// Ingest limits. A body or line over its limit is refused with an error,
// never cut.
const (
	DefaultMaxBodyBytes = 10 << 20 // 10 MiB
	DefaultMaxLineBytes = 1 << 20  // 1 MiB
	maxIngestErrors     = 20
)

// ParseRecords reads JSON Lines: each non-blank line is one native record
// (an object with "kind") or one Faraday bulk_create document (an object
// with "hosts"). The whole input is read and validated before anything is
// returned; on error no record is returned and the error (EINVALID or
// ETOOLARGE) names the first bad line and field, with up to 20 problems in
// its Details. Blank lines are skipped, not taken as the end.
func ParseRecords(r io.Reader, maxLine int) ([]Record, error) {
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		out       []Record
		problems  []string
		line      []byte
		firstCode = EINVALID
	)
	for n := 1; ; n++ {
		var err error
		line, err = lineread.Read(br, line[:0], maxLine)
		if errors.Is(err, lineread.ErrTooLong) {
			// The rest of the line is not read, so this is the last
			// problem; it is the error's code only if it is the first.
			if len(problems) == 0 {
				firstCode = ETOOLARGE
			}
			problems = append(problems, fmt.Sprintf("line %d: longer than the %d-byte line limit", n, maxLine))
			break
		} else if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			// The untrimmed line, so that a syntax error's byte offset
			// counts from the start of the line as the user sees it.
			recs, perr := parseDocument(line)
			if perr != nil {
				problems = append(problems, fmt.Sprintf("line %d: %v", n, perr))
				if len(problems) >= maxIngestErrors {
					break
				}
			} else if len(problems) == 0 {
				out = append(out, recs...)
			}
		}
		if err == io.EOF {
			break
		}
	}
	if len(problems) > 0 {
		return nil, &Error{Code: firstCode, Message: problems[0], Details: problems}
	}
	return out, nil
}

// ParseDocument reads one JSON value, formatted in any way: a native record,
// a Faraday bulk_create document, or an array of native records.
func ParseDocument(data []byte) ([]Record, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var items []json.RawMessage
		if err := decodeJSON(data, &items); err != nil {
			return nil, Errorf(EINVALID, "%v", err)
		}
		var out []Record
		for i, item := range items {
			recs, err := parseDocument(item)
			if err != nil {
				return nil, Errorf(EINVALID, "item %d: %v", i, err)
			}
			out = append(out, recs...)
		}
		return out, nil
	}
	recs, err := parseDocument(data)
	if err != nil {
		return nil, Errorf(EINVALID, "%v", err)
	}
	return recs, nil
}

// parseDocument parses one JSON object: a record or a bulk_create document.
func parseDocument(data []byte) ([]Record, error) {
	var m map[string]any
	if err := decodeJSON(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	if _, ok := m["kind"]; ok {
		r, err := NewRecord(m)
		if err != nil {
			return nil, err
		}
		return []Record{r}, nil
	}
	if _, ok := m["hosts"]; ok {
		return parseBulkCreate(m)
	}
	return nil, fmt.Errorf("kind: is missing (a line is a record with \"kind\" or a Faraday bulk_create document with \"hosts\")")
}

// decodeJSON decodes one JSON value with numbers kept exact, and reports a
// syntax error with its byte offset; trailing data is an error.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			if te.Field != "" {
				return fmt.Errorf("%s: JSON %s where %s was expected", te.Field, te.Value, te.Type)
			}
			return fmt.Errorf("JSON %s where %s was expected", te.Value, te.Type)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("malformed JSON: unexpected end of input")
		}
		return fmt.Errorf("malformed JSON: %v", err)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		// Name the first byte of the extra data, counted from 1 as
		// json.SyntaxError.Offset counts, not where the decoder stopped.
		rest := data[end:]
		end += int64(len(rest) - len(bytes.TrimLeft(rest, " \t\r\n")))
		return fmt.Errorf("malformed JSON at byte %d: data after the JSON value", end+1)
	}
	return nil
}

// parseBulkCreate turns a Faraday bulk_create document (hosts with services
// and vulnerabilities) into records: a host per host, a domain per
// hostname, a service per port, a finding per vulnerability.
func parseBulkCreate(doc map[string]any) ([]Record, error) {
	hosts, ok := doc["hosts"].([]any)
	if !ok {
		return nil, fmt.Errorf("hosts: %s is not a list", jsonText(doc["hosts"]))
	}
	var out []Record
	add := func(path string, m map[string]any) error {
		r, err := NewRecord(m)
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, r)
		return nil
	}
	for i, h := range hosts {
		hp := fmt.Sprintf("hosts[%d]", i)
		host, ok := h.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %s is not an object", hp, jsonText(h))
		}
		ip, _ := host["ip"].(string)
		if ip == "" {
			return nil, fmt.Errorf("%s.ip: is missing", hp)
		}
		hr := map[string]any{"kind": "host", "ip": ip}
		copyFields(hr, host, "os", "mac", "description", "hostnames", "owned", "default_gateway")
		if err := add(hp, hr); err != nil {
			return nil, err
		}
		ip = hr["ip"].(string)
		if names, ok := host["hostnames"].([]any); ok {
			for j, n := range names {
				if err := add(fmt.Sprintf("%s.hostnames[%d]", hp, j), map[string]any{"kind": "domain", "name": n, "ips": []any{ip}}); err != nil {
					return nil, err
				}
			}
		}
		if err := bulkVulns(host["vulnerabilities"], hp, ip, nil, add); err != nil {
			return nil, err
		}
		svcs, _ := host["services"].([]any)
		if v, ok := host["services"]; ok && v != nil && svcs == nil {
			return nil, fmt.Errorf("%s.services: %s is not a list", hp, jsonText(v))
		}
		for j, s := range svcs {
			sp := fmt.Sprintf("%s.services[%d]", hp, j)
			svc, ok := s.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: %s is not an object", sp, jsonText(s))
			}
			ports := []any{svc["port"]}
			if list, ok := svc["ports"].([]any); ok && svc["port"] == nil {
				ports = list
			}
			if len(ports) == 0 {
				// Else the service and its vulnerabilities would vanish.
				return nil, fmt.Errorf("%s.ports: is empty", sp)
			}
			for _, port := range ports {
				sr := map[string]any{"kind": "service", "ip": ip, "port": port, "proto": svc["protocol"], "state": svc["status"]}
				copyFields(sr, svc, "name", "version", "description", "owned")
				if err := add(sp, sr); err != nil {
					return nil, err
				}
				if err := bulkVulns(svc["vulnerabilities"], sp, ip, sr, add); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

func bulkVulns(v any, path, ip string, svc map[string]any, add func(string, map[string]any) error) error {
	if v == nil {
		return nil
	}
	vulns, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%s.vulnerabilities: %s is not a list", path, jsonText(v))
	}
	for k, x := range vulns {
		vp := fmt.Sprintf("%s.vulnerabilities[%d]", path, k)
		vuln, ok := x.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s is not an object", vp, jsonText(x))
		}
		fr := map[string]any{"kind": "finding", "ip": ip, "name": vuln["name"], "severity": vuln["severity"]}
		if svc != nil {
			fr["port"], fr["proto"] = svc["port"], svc["proto"]
		}
		if d, ok := vuln["desc"]; ok {
			fr["description"] = d
		}
		copyFields(fr, vuln, "description", "refs", "cve", "type", "path", "website", "method",
			"request", "response", "data", "resolution", "status", "external_id", "tags", "impact", "confirmed")
		if fr["name"] == nil {
			return fmt.Errorf("%s.name: is missing", vp)
		}
		if err := add(vp, fr); err != nil {
			return err
		}
	}
	return nil
}

func copyFields(dst, src map[string]any, names ...string) {
	for _, n := range names {
		if v, ok := src[n]; ok && v != nil {
			if s, ok := v.(string); ok && strings.TrimSpace(s) == "" {
				continue
			}
			dst[n] = v
		}
	}
}
