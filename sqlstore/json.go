package sqlstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// decodeObject reads a JSON object with numbers kept as json.Number, so
// that large integers come back exactly as they went in.
func decodeObject(s string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON object")
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// canonicalJSON returns the canonical form of m: encoding/json sorts map
// keys, so equal objects encode to equal bytes. HTML characters are not
// escaped, which keeps banners and titles readable in the database.
func canonicalJSON(m map[string]any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// whereClause joins conditions with AND, or returns "" for none.
func whereClause(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}
