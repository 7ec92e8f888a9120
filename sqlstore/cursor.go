package sqlstore

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/scanfleet/scanfleet"
)

// A cursor is the sort key of the last row of a page, base64url-encoded so
// that clients treat it as opaque. Composite keys join their parts with a
// newline, which no key part contains.

const maxCursorLen = 1024

func encodeCursor(parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "\n")))
}

// decodeCursor returns the n parts of cursor c, or EINVALID.
func decodeCursor(c string, n int) ([]string, error) {
	if len(c) > maxCursorLen {
		return nil, errBadCursor()
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	// The decoder skips newlines and loose trailing bits; only the one
	// encoding this server writes is accepted.
	if err != nil || len(b) == 0 || !utf8.Valid(b) || base64.RawURLEncoding.EncodeToString(b) != c {
		return nil, errBadCursor()
	}
	parts := strings.Split(string(b), "\n")
	if len(parts) != n {
		return nil, errBadCursor()
	}
	return parts, nil
}

// decodeTimeCursor decodes a cursor of a time (microseconds) and an id.
func decodeTimeCursor(c string) (int64, string, error) {
	parts, err := decodeCursor(c, 2)
	if err != nil {
		return 0, "", err
	}
	us, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return 0, "", errBadCursor()
	}
	return us, parts[1], nil
}

func encodeTimeCursor(us int64, id string) string {
	return encodeCursor(strconv.FormatInt(us, 10), id)
}

func errBadCursor() error {
	return scanfleet.Errorf(scanfleet.EINVALID, "cursor: is not a cursor this server returned")
}

// normalizePage applies the page defaults and limits.
func normalizePage(p scanfleet.Page) (scanfleet.Page, error) {
	return p.Normalize()
}
